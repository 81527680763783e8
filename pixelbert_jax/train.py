"""The training loop: set up, restore or initialise, step, log, evaluate, checkpoint.

`train_and_evaluate(config, workdir)` is what `main.py` calls; it reads top to bottom and
leaves the details to small functions and modules.
"""

import hashlib
import json
import math
import signal

import jax
from absl import logging
from clu import metric_writers, parameter_overview, periodic_actions
from etils import epath
from flax import nnx

from pixelbert_jax import checkpointing, optim, sharding, train_state, train_step
from pixelbert_jax.tasks import registry
from pixelbert_jax.tools import synthetic_backbone
from pixelbert_jax.weights import init_checkpoint


class NonFiniteError(RuntimeError):
  """Too many consecutive steps had a non-finite loss or gradient."""


class _Preemption:
  """Remembers a SIGTERM so the loop can save a checkpoint and exit cleanly.

  Only for one process: with several, JAX's distributed runtime owns SIGTERM and
  agrees on a common step through its coordination service (`reached_preemption`),
  so that every process joins the same final save; a Python handler would replace
  that notifier and leave the other processes waiting in the save.
  """

  def __init__(self, enabled: bool):
    self.enabled = enabled
    self.requested = False
    self._previous = None

  def __enter__(self) -> "_Preemption":
    if self.enabled:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def __exit__(self, *exc_info) -> None:
    # Gives SIGTERM back to whoever had it (a notebook, a test runner).
    if self.enabled:
      signal.signal(signal.SIGTERM, self._previous)

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning("SIGTERM received: saving a checkpoint and stopping.")
    self.requested = True


def total_steps(config, batches_per_epoch: int) -> int:
  if config.num_train_steps > 0:
    return config.num_train_steps
  return max(1, math.ceil(config.num_epochs * batches_per_epoch))


def write_config(config, workdir: epath.Path) -> None:
  if jax.process_index() == 0:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))


def make_global(mesh, rules):
  """Turns a process-local batch into global arrays sharded along the batch axis."""
  batch_sharding = sharding.batch_sharding(mesh, rules)

  def to_global(batch: dict) -> dict:
    local = {k: v for k, v in batch.items() if k != "num_skipped"}
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(batch_sharding, x), local)

  return to_global


def restore_or_initialize(config, workdir, checkpointer, state, data_iterator, setup, parts):
  """Resume order: the workdir's checkpoint, `resume_from`, `init` / `init_from`, scratch."""
  abstract = train_state.abstract_of(state)
  latest = checkpointer.latest_step()
  if latest is not None:
    logging.info("Resuming from the workdir's checkpoint at step %d", latest)
    return checkpointer.restore(latest, abstract, data_iterator)
  if config.resume_from:
    other = checkpointing.Checkpointer(config.resume_from, every_steps=1, keep=1)
    step = other.latest_step()
    logging.info("Resuming from %s at step %s", config.resume_from, step)
    return other.restore(step, abstract, data_iterator)
  if config.init or config.get("init_from"):
    return _initialise_weights(config, workdir, state, setup, parts)
  logging.info("Starting from scratch.")
  return state


def _initialise_weights(config, workdir, state, setup, parts):
  """Loads imported weights (`init`) or another run's body (`init_from`) into the state."""
  graphdef, other = parts
  # Taken before the model exists: loading assigns into variables that the state shares.
  param_shardings = train_state.shardings_of(state.params)
  stat_shardings = train_state.shardings_of(state.batch_stats)
  model = train_state.merge_model(graphdef, state.params, state.batch_stats, other)
  if config.init:
    path = synthetic_backbone.resolve_init(config, workdir)
    components, info = init_checkpoint.load(path)
    loaded = init_checkpoint.apply(components, setup.init_modules(model))
    logging.info("Initialised %s from %s (%s)", loaded, path, info.get("created"))
  if config.get("init_from"):
    setup.init_from(model, config.init_from)
  _, params, stats, _ = train_state.split_model(model)
  return state.replace(params=jax.device_put(params, param_shardings),
                       batch_stats=jax.device_put(stats, stat_shardings))


def _check_nonfinite(state, limit: int) -> None:
  worst, total = jax.device_get((state.nonfinite_max_run, state.nonfinite_total))
  if worst >= limit:
    raise NonFiniteError(
        f"{worst} consecutive steps had a non-finite loss or gradient ({total} in all); "
        "none was applied. Lower the learning rate, check the data, or raise "
        "config.max_consecutive_nonfinite.")


def _record_batch(workdir: epath.Path, step: int, batch: dict) -> None:
  """Appends a digest of this process's batch (config.debug_batch_digests), to check
  that a resumed run reads exactly the batches of an uninterrupted one."""
  digest = hashlib.sha1()
  for name in sorted(batch):
    digest.update(name.encode() + batch[name].tobytes())
  with (workdir / f"batch_digests.{jax.process_index()}.jsonl").open("a") as f:
    f.write(json.dumps({"step": step, "sha1": digest.hexdigest()}) + "\n")


def _evaluate(evaluators, state, writer, step) -> dict:
  results = {}
  for name, evaluator in evaluators.items():
    for metric, value in evaluator.run(state):
      results[f"{name}/{metric}"] = value
  writer.write_scalars(step, results)
  return results


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains (or, with config.mode == "eval", only evaluates); returns the last eval."""
  workdir = epath.Path(workdir)
  write_config(config, workdir)
  mesh = sharding.make_mesh(config.mesh.shape, config.mesh.axes)
  rules = tuple(tuple(r) for r in config.sharding_rules)
  setup = registry.make_setup(config, str(workdir))
  graphdef, params, stats, other = train_state.init_model(setup.model_fn, config.seed, mesh,
                                                          rules)
  steps = total_steps(config, setup.batches_per_epoch)
  tx, schedules = optim.make_optimizer(config, params, steps)
  state = train_state.create_train_state(params, stats, tx, config.seed, mesh)
  checkpointer = checkpointing.Checkpointer(
      workdir / "checkpoints", every_steps=config.checkpoint_every_steps,
      keep=config.keep_checkpoints, async_save=config.async_checkpoints)
  train_iter = setup.train_iterator
  # Evaluation reads no training data, so it restores no iterator (whose saved state
  # would tie it to the process count that wrote the checkpoint).
  state = restore_or_initialize(config, workdir, checkpointer, state,
                                None if config.mode == "eval" else train_iter, setup,
                                (graphdef, other))
  to_global = make_global(mesh, rules)
  evaluators = setup.make_evaluators(
      jax.jit(train_step.make_eval_step(graphdef, other, *setup.eval_fns)), to_global)
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  if config.mode == "eval":
    return _evaluate(evaluators, state, writer, int(jax.device_get(state.step)))

  state_sharding = train_state.shardings_of(state)
  step_fn = jax.jit(
      train_step.make_train_step(graphdef, other, setup.loss_fn, setup.counts_fn,
                                 setup.loss_weights, tx, schedules, config.micro_batches),
      in_shardings=(state_sharding, None), out_shardings=(state_sharding, None),
      donate_argnums=0)
  parameter_overview.log_parameter_overview(nnx.to_pure_dict(state.params),
                                           include_stats=False)
  return _loop(config, workdir, state, step_fn, train_iter, to_global, evaluators,
               checkpointer, writer, steps)


def _loop(config, workdir, state, step_fn, train_iter, to_global, evaluators, checkpointer,
          writer, steps) -> dict:
  """Runs the steps from the state's step to `steps`; saves, logs and evaluates."""
  first = int(jax.device_get(state.step))
  preemption = _Preemption(enabled=jax.process_count() == 1)
  hooks = [periodic_actions.ReportProgress(num_train_steps=steps, writer=writer)]
  if jax.process_index() == 0 and config.profile_steps:
    hooks.append(periodic_actions.Profile(num_profile_steps=config.profile_steps,
                                          logdir=str(workdir)))
  with preemption:
    results = {}
    for step in range(first + 1, steps + 1):
      batch = next(train_iter)
      if config.get("debug_batch_digests"):
        _record_batch(workdir, step, batch)
      with jax.profiler.StepTraceAnnotation("train", step_num=step):
        state, measurements = step_fn(state, to_global(batch))
      for hook in hooks:
        hook(step)
      if step % config.log_every_steps == 0 or step == steps:
        writer.write_scalars(step, jax.device_get(measurements))
        _check_nonfinite(state, config.max_consecutive_nonfinite)
      stop = (preemption.requested if preemption.enabled
              else checkpointer.reached_preemption(step))
      checkpointer.save(step, state, train_iter, force=stop or step == steps)
      if stop:
        break
      if step % config.eval_every_steps == 0 or step == steps:
        results = _evaluate(evaluators, state, writer, step)
  checkpointer.wait()
  writer.flush()
  if jax.process_index() == 0 and results:
    (epath.Path(workdir) / "final_eval.json").write_text(json.dumps(results, indent=2))
  return results
