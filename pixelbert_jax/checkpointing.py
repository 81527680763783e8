"""Checkpoints with orbax: the train state and the grain iterator, saved together.

Saves are asynchronous every N steps and forced at the end and on preemption; the last
K are kept. A background save that failed stops the run at the next step (`check_saves`),
not one save later. A restore compares the checkpoint's array metadata with the
configured model first: a checkpoint that does not fit is refused with the names of the
differing parameters, never silently overwritten. A checkpoint whose own files cannot be
read (cut short, deleted) is skipped with a warning for the next older one; the run's
own damaged checkpoints are moved aside (it will save those steps again), never deleted.
"""

from collections.abc import Sequence
import time
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

# How many names of differing arrays a mismatch error lists per kind.
_NAMES_SHOWN = 8


class CheckpointMismatchError(ValueError):
  """A checkpoint's arrays do not match the model the config describes."""


class CheckpointDamagedError(RuntimeError):
  """No checkpoint of a directory could be read."""


class CheckpointSaveError(RuntimeError):
  """A checkpoint could not be written."""


class Checkpointer:
  """One orbax CheckpointManager holding `state` and (optionally) `data` per step."""

  def __init__(self, directory: str | epath.Path, *, every_steps: int, keep: int,
               async_save: bool = True, create: bool = True):
    self.directory = epath.Path(directory)
    policies = ocp.checkpoint_managers
    # Every N steps and on preemption; `force=True` adds the last step. (orbax's default
    # would also save the very first step.)
    decision = policies.AnySavePolicy([policies.FixedIntervalPolicy(max(every_steps, 1)),
                                       policies.PreemptionCheckpointingPolicy()])
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=create, enable_async_checkpointing=async_save,
        save_decision_policy=decision)
    # The state's handler is named so that its array metadata can be read on its own
    # (`_mismatches`) before any array is.
    self.manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "data": grain.checkpoint.CheckpointHandler()})
    self._unconfirmed_save = None  # the step of a background save not yet checked

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def due(self, step: int, *, force: bool = False) -> bool:
    """Whether `save(step, ..., force=force)` would write a checkpoint."""
    return force or self.manager.should_save(step)

  def save(self, step: int, state: Any, data_iterator=None, *, force: bool = False) -> bool:
    """Saves if `due`; called every step, it also raises a finished background save's
    error (`check_saves`), so a failed save stops the run at the next step."""
    if not self.due(step, force=force):
      self.check_saves()
      return False
    self.check_saves(wait=True)  # the previous save's error is reported as its own
    items = {"state": ocp.args.StandardSave(state)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    try:
      saved = self.manager.save(step, args=ocp.args.Composite(**items), force=force)
    except Exception as e:  # pylint: disable=broad-exception-caught
      raise self._save_error(step, e) from e
    if saved:
      self._unconfirmed_save = step
    return saved

  def check_saves(self, wait: bool = False) -> None:
    """Raises `CheckpointSaveError` if a background save has failed. Without `wait` it
    only looks at a save that has already finished, so it costs nothing per step."""
    step = self._unconfirmed_save
    if step is None or (not wait and self.manager.is_saving_in_progress()):
      return
    self._unconfirmed_save = None
    try:
      self.manager.wait_until_finished()  # returns, or raises the save's error
    except Exception as e:  # pylint: disable=broad-exception-caught
      raise self._save_error(step, e) from e

  def _save_error(self, step: int, error: Exception) -> CheckpointSaveError:
    kept = [s for s in self.manager.all_steps(read=True) if s != step]
    return CheckpointSaveError(
        f"The checkpoint of step {step} could not be written to {self.directory} "
        f"({type(error).__name__}: {str(error)[:300]}). The run stops here; "
        f"{f'the last good checkpoint is step {max(kept)}' if kept else 'no checkpoint is kept'}"
        ". Free space or fix the directory, then run the same command again to resume.")

  def restore(self, step: int, abstract_state: Any, data_iterator=None) -> Any:
    """Restores step `step`'s state (into the abstract state's shardings) and the
    iterator. Raises CheckpointMismatchError if it does not fit the abstract state."""
    mismatches = self._mismatches(step, abstract_state)
    if mismatches:
      raise CheckpointMismatchError(
          f"The checkpoint at {self.directory}/{step} does not fit the configured model "
          "(use a new workdir, or the config it was written with: the workdir's "
          f"config.json):\n{mismatches}")
    state = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))["state"]
    # The iterator only after the arrays were read: a prefetching iterator takes one
    # state, so a damaged checkpoint must not have set it before falling back.
    if data_iterator is not None:
      self.manager.restore(step, args=ocp.args.Composite(
          data=grain.checkpoint.CheckpointRestore(data_iterator)))
    return state

  def restore_latest(self, abstract_state: Any, data_iterator=None, *,
                     set_aside_damaged: bool = False) -> tuple[int, Any]:
    """(step, state) of the newest checkpoint that can be read, falling back past
    damaged ones with a warning; a mismatch with the model is raised at once. With
    `set_aside_damaged` (the run's own workdir, which will save those steps again) the
    damaged ones are moved to `damaged_checkpoints/` beside this directory."""
    tried = []
    for step in sorted(self.manager.all_steps(read=True), reverse=True):
      state, error = self._try_restore(step, abstract_state, data_iterator)
      if _everywhere_ok(error is None):
        if tried and set_aside_damaged:
          self._set_aside([s for s, _ in tried])
        return step, state
      tried.append((step, error))
      logging.warning("The checkpoint at %s/%d cannot be read (%s); trying the one "
                      "before.", self.directory, step,
                      _short(error) if error else "another process failed to read it")
    raise CheckpointDamagedError(_damaged_message(self.directory, tried))

  def _try_restore(self, step: int, abstract_state: Any, data_iterator) -> tuple:
    """(state, None), or (None, the error) if the checkpoint's files cannot be read."""
    try:
      return self.restore(step, abstract_state, data_iterator), None
    except CheckpointMismatchError:
      raise
    except Exception as e:  # pylint: disable=broad-exception-caught
      return None, e

  def _set_aside(self, steps: Sequence[int]) -> None:
    """Moves damaged steps out of orbax's way (the run saves those steps again), never
    deleting them."""
    aside = self.directory.parent / "damaged_checkpoints"
    if jax.process_index() == 0:
      aside.mkdir(parents=True, exist_ok=True)
      for step in steps:
        target = aside / f"{step}.{time.strftime('%Y%m%d-%H%M%S')}"
        (self.directory / str(step)).rename(target)
        logging.warning("Moved the damaged checkpoint of step %d to %s", step, target)
    _sync("checkpoints_set_aside")
    self.manager.reload()

  def _mismatches(self, step: int, abstract_state: Any) -> str:
    """The differences between step's stored arrays and the abstract state ('' if none).
    Reading the metadata fails like a damaged checkpoint when its files are."""
    stored = _shapes(self.manager.item_metadata(step)["state"])
    wanted = _shapes(abstract_state)
    return _describe_differences(stored, wanted)

  def reached_preemption(self, step: int) -> bool:
    return self.manager.reached_preemption(step)

  def wait(self) -> None:
    self.check_saves(wait=True)

  def close(self) -> None:
    self.manager.close()


def _everywhere_ok(ok: bool) -> bool:
  """Whether every process read its part (a damaged shard may be read by one only):
  all processes then fall back together."""
  if jax.process_count() == 1:
    return ok
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(np.all(multihost_utils.process_allgather(np.array(ok))))


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def _shapes(tree: Any) -> dict[str, tuple]:
  """{dotted array name: shape} of a state or of its orbax metadata (same names)."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {".".join(str(_key_name(k)) for k in path): tuple(leaf.shape)
          for path, leaf in leaves}


def _key_name(key) -> Any:
  for field in ("key", "name", "idx"):
    if hasattr(key, field):
      return getattr(key, field)
  return key


def _describe_differences(stored: dict, wanted: dict) -> str:
  """Lines naming the model's arrays that differ; optimiser arrays only counted (they
  follow their parameters)."""
  kinds = {
      "shape differs (checkpoint -> model)": [
          f"{n} {stored[n]} -> {wanted[n]}" for n in wanted
          if n in stored and stored[n] != wanted[n]],
      "in the model, not in the checkpoint": [n for n in wanted if n not in stored],
      "in the checkpoint, not in the model": [n for n in stored if n not in wanted],
  }
  lines, optimiser = [], 0
  for kind, names in kinds.items():
    model_names = [n for n in names if not n.startswith("opt_state")]
    optimiser += len(names) - len(model_names)
    if model_names:
      shown = ", ".join(model_names[:_NAMES_SHOWN])
      more = len(model_names) - _NAMES_SHOWN
      lines.append(f"  {kind}: {shown}{f' and {more} more' if more > 0 else ''}")
  if optimiser and lines:
    lines.append(f"  and {optimiser} optimiser-state arrays with them")
  elif optimiser:
    lines.append(f"  {optimiser} optimiser-state arrays differ (was the optimiser "
                 "changed, e.g. its groups or frozen parameters?)")
  return "\n".join(lines)


def _short(error: Exception) -> str:
  return f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"


def _damaged_message(directory: epath.Path, tried: Sequence[tuple]) -> str:
  if not tried:
    return f"No checkpoint in {directory} to restore."
  steps = ", ".join(str(step) for step, _ in tried)
  reasons = "; ".join(f"step {step}: {_short(e) if e else 'unreadable on another process'}"
                      for step, e in tried)
  return (f"None of the checkpoints in {directory} can be read (tried steps {steps}: "
          f"{reasons}). They are left in place. To start again from step 0, use a new "
          "workdir; to keep this workdir, move its checkpoints folder aside; if the files "
          "were copied or synced, copy them again.")
