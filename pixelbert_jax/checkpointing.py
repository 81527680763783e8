"""Checkpoints with orbax: the train state and the grain iterator, saved together.

Saves are asynchronous every N steps and forced at the end and on preemption; the last
K are kept. A checkpoint whose arrays do not fit the configured model is refused with
the offending names, never silently overwritten.
"""

from typing import Any

import grain
import orbax.checkpoint as ocp
from etils import epath


class CheckpointMismatchError(ValueError):
  """A checkpoint's arrays do not match the model the config describes."""


class Checkpointer:
  """One orbax CheckpointManager holding `state` and (optionally) `data` per step."""

  def __init__(self, directory: str | epath.Path, *, every_steps: int, keep: int,
               async_save: bool = True):
    self.directory = epath.Path(directory)
    policies = ocp.checkpoint_managers
    # Every N steps and on preemption; `force=True` adds the last step. (orbax's default
    # would also save the very first step.)
    decision = policies.AnySavePolicy([policies.FixedIntervalPolicy(max(every_steps, 1)),
                                       policies.PreemptionCheckpointingPolicy()])
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=async_save,
        save_decision_policy=decision)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def due(self, step: int, *, force: bool = False) -> bool:
    """Whether `save(step, ..., force=force)` would write a checkpoint."""
    return force or self.manager.should_save(step)

  def save(self, step: int, state: Any, data_iterator=None, *, force: bool = False) -> bool:
    items = {"state": ocp.args.StandardSave(state)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    return self.manager.save(step, args=ocp.args.Composite(**items), force=force)

  def restore(self, step: int, abstract_state: Any, data_iterator=None) -> Any:
    """Restores the state (into the abstract state's shardings) and the iterator."""
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    except (ValueError, KeyError, TypeError) as e:
      raise CheckpointMismatchError(
          f"The checkpoint at {self.directory}/{step} does not fit the configured model "
          f"(use a new workdir or the config it was written with): {e}") from e
    return restored["state"]

  def reached_preemption(self, step: int) -> bool:
    return self.manager.reached_preemption(step)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()
