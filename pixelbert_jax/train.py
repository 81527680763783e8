"""The trainer: `build` wires a run's pieces; `train_and_evaluate` adds the loop.

`train_and_evaluate(config, workdir)` is what `main.py` calls: `build` (the task's
data and model, the optimiser and state, the jitted step, the checkpointer, restore or
initialise, the evaluators), then evaluation only (`config.mode == "eval"`) or the loop
(step, log, evaluate, checkpoint). Benchmarks and tools call `build` and `build_step`
instead of wiring the trainer again (docs/ARCHITECTURE.md, "The trainer").
"""

from collections.abc import Callable
import dataclasses
import hashlib
import json
import math
import signal
from typing import Any

import jax
from absl import logging
from clu import parameter_overview
from etils import epath
from flax import nnx

from pixelbert_jax import checkpointing, optim, prefetch, run_config, sharding, train_state
from pixelbert_jax import train_step, workdir_lock
from pixelbert_jax import progress as progress_lib
from pixelbert_jax.evaluators import context as context_lib
from pixelbert_jax.tasks import base as tasks
from pixelbert_jax.weights import from_run, init_checkpoint, init_sources


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


def make_global(mesh, rules):
  """Turns a process-local batch into global arrays sharded along the batch axis."""
  batch_sharding = sharding.batch_sharding(mesh, rules)

  def to_global(batch: dict) -> dict:
    local = {k: v for k, v in batch.items() if k != "num_skipped"}
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(batch_sharding, x), local)

  return to_global


@dataclasses.dataclass
class Step:
  """The model side of a run: its structure, state, optimiser and jitted step."""
  mesh: Any
  rules: tuple
  graphdef: Any
  other: Any  # model variables that are not checkpointed (dropout streams)
  # The state, or (`build_step(materialise=False)`) its ShapeDtypeStructs until a
  # restore or `initial_state()` fills it.
  state: train_state.TrainState
  step_fn: Any  # jitted (state, global batch) -> (state, measurements)
  initial_state: Callable[[], train_state.TrainState]  # a fresh state at step 0

  def as_model(self, state) -> nnx.Module:
    """The model of `state` in evaluation mode (inside a trace)."""
    return train_step.eval_model(self.graphdef, self.other, state)


def build_step(config, task: tasks.Task, meta: dict, vocab_size: int, steps: int,
               objective: tasks.Objective | None = None, materialise: bool = True) -> Step:
  """The model, optimiser, state and jitted step of `config` (no data needed). Without
  `materialise`, the state stays abstract: nothing is allocated for a run that restores."""
  mesh = sharding.make_mesh(config.mesh.shape, config.mesh.axes)
  rules = tuple(tuple(r) for r in config.sharding_rules)
  model_config = task.model_config(vocab_size)
  plan = train_state.plan_model(
      lambda rngs: task.make_model(model_config, meta, rngs=rngs), config.seed, mesh, rules)
  tx, schedules = optim.make_optimizer(config, plan.params, steps)
  abstract = train_state.abstract_train_state(plan, tx, config.seed, mesh)
  objective = objective or task.objective()
  state_sharding = train_state.shardings_of(abstract)
  step = train_step.make_train_step(plan.graphdef, plan.other, objective.loss_fn,
                                    objective.counts_fn, objective.weights, tx, schedules,
                                    config.micro_batches,
                                    frozen_mask=optim.frozen_mask(config, plan.params))

  def traced_step(state, batch):
    with sharding.batch_activations(mesh, rules):  # activations stay split by batch
      return step(state, batch)

  step_fn = jax.jit(traced_step, in_shardings=(state_sharding, None),
                    out_shardings=(state_sharding, None), donate_argnums=0)
  initial_state = lambda: train_state.create_train_state(*plan.create(), tx, config.seed,
                                                         mesh)
  return Step(mesh, rules, plan.graphdef, plan.other,
              initial_state() if materialise else abstract, step_fn, initial_state)


@dataclasses.dataclass
class Run:
  """Everything `build` wires for one run."""
  config: Any
  workdir: epath.Path
  task: tasks.Task
  data: tasks.TaskData
  step: Step
  steps: int  # the last step of training
  checkpointer: checkpointing.Checkpointer
  to_global: Any
  evaluators: dict
  # (host batch, global batch) pairs read ahead of the step (`prefetch`); None in eval.
  train_batches: prefetch.Prefetcher | None
  resumed_at: int | None  # the step restored from a checkpoint; None for a fresh start


def build(config, workdir: str) -> Run:
  """Data, model, state (restored or initialised), step, checkpointer and evaluators."""
  workdir = epath.Path(workdir)
  task = tasks.get(config)
  checkpointer = checkpointing.Checkpointer(
      workdir / "checkpoints", every_steps=config.checkpoint_every_steps,
      keep=config.keep_checkpoints, async_save=config.async_checkpoints)
  if config.init_from and checkpointer.latest_step() is None:
    from_run.state_dir(config.init_from)  # a wrong path fails now, not after the data
  data = task.make_data(str(workdir))
  steps = total_steps(config, data.batches_per_epoch)
  step = build_step(config, task, data.meta, data.tokenizer.vocab_size, steps,
                    materialise=False)
  to_global = make_global(step.mesh, step.rules)
  # Evaluation reads no training data, so it restores no iterator (whose saved state
  # would tie it to the process count that wrote the checkpoint).
  batches = (None if config.mode == "eval" else
             prefetch.Prefetcher(data.train_iterator, to_global, config.device_prefetch))
  resumed_at, step.state = restore_or_initialize(config, workdir, checkpointer, step,
                                                 batches, task)
  context = context_lib.EvalContext(step.as_model, to_global, workdir)
  return Run(config, workdir, task, data, step, steps, checkpointer, to_global,
             task.make_evaluators(data, context), batches, resumed_at)


def restore_or_initialize(config, workdir, checkpointer, step: Step, data_iterator,
                          task: tasks.Task) -> tuple[int | None, train_state.TrainState]:
  """(restored step or None, state). Resume order: the workdir's newest readable
  checkpoint, `resume_from`'s, `init` / `init_from`, scratch."""
  abstract = step.state  # nothing allocated yet: a restore holds one copy
  own = checkpointer.latest_step() is not None
  source = checkpointer if own else None
  if source is None and config.resume_from:
    source = checkpointing.Checkpointer(config.resume_from, every_steps=1, keep=1,
                                        create=False)
  if source is not None:
    restored_step, state = source.restore_latest(abstract, data_iterator,
                                                 set_aside_damaged=own)
    logging.info("Resumed from %s at step %d", source.directory, restored_step)
    return restored_step, state
  step.state = step.initial_state()
  if config.init or config.init_from:
    return None, _initialise_weights(config, workdir, step, task)
  logging.info("Starting from scratch.")
  return None, step.state


def _initialise_weights(config, workdir, step: Step, task: tasks.Task):
  """Loads imported weights (`init`) or another run's body (`init_from`) into the state."""
  state = step.state
  # Taken before the model exists: loading assigns into variables that the state shares.
  param_shardings = train_state.shardings_of(state.params)
  stat_shardings = train_state.shardings_of(state.batch_stats)
  model = train_state.merge_model(step.graphdef, state.params, state.batch_stats,
                                  step.other)
  if config.init and config.init_from:
    # Another run's body holds everything an init checkpoint would fill (the CNN, the
    # text side): no need to read, or for the synthetic backbone train, one.
    logging.info("config.init=%s is not loaded: init_from supplies the body", config.init)
  elif config.init:
    path = init_sources.resolve(config, workdir)
    components, info = init_checkpoint.load(path)
    loaded = init_checkpoint.apply(components, task.init_modules(model))
    logging.info("Initialised %s from %s (%s)", loaded, path, info.get("created"))
  if config.init_from:
    from_run.load(config.init_from, task.init_from_modules(model))
  _, params, stats, _ = train_state.split_model(model)
  return state.replace(params=jax.device_put(params, param_shardings),
                       batch_stats=jax.device_put(stats, stat_shardings))


class NonFiniteGuard:
  """Stops the run once `limit` consecutive steps were non-finite (none of them was
  applied). Each step's counter is read when the next step has been dispatched, so the
  guard costs no sync per step; before a save the newest one is read, so no checkpoint
  holds a state past the limit (and `_save` defers one inside a non-finite run)."""

  def __init__(self, limit: int):
    self.limit = limit
    self._newest = None  # the last step's measurements, not yet read

  def after_step(self, measurements: dict) -> None:
    previous, self._newest = self._newest, measurements
    if previous is not None:
      self._check(previous)

  def check_newest(self) -> int:
    """Raises past the limit; else the newest step's run of non-finite steps."""
    return 0 if self._newest is None else self._check(self._newest)

  def _check(self, measurements: dict) -> int:
    run, total = jax.device_get((measurements["nonfinite_run"],
                                 measurements["nonfinite_total"]))
    if run >= self.limit:
      raise NonFiniteError(
          f"{run} consecutive steps had a non-finite loss or gradient ({total} in all); "
          "none was applied. Lower the learning rate, check the data, or raise "
          "config.max_consecutive_nonfinite.")
    return int(run)


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
  # clu's writers and periodic actions import TensorFlow (for TensorBoard): only the
  # loop needs them, so `build` and `build_step` (benchmarks, an accelerator image
  # without TensorFlow) do not.
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  with workdir_lock.WorkdirLock(workdir):
    run = build(config, workdir)
    run_config.record(config, run.workdir, run.resumed_at)
    writer = metric_writers.create_default_writer(run.workdir,
                                                  just_logging=jax.process_index() > 0)
    return _train_or_evaluate(run, writer)


def _train_or_evaluate(run: Run, writer) -> dict:
  """Evaluation only, or the loop; closes the input threads and checkpointer after."""
  config = run.config
  try:
    if config.mode == "eval":
      return _evaluate(run.evaluators, run.step.state, writer,
                       int(jax.device_get(run.step.state.step)))
    _write_parameter_table(run)
    return _loop(run, writer)
  finally:
    if run.train_batches is not None:
      run.train_batches.close()
    run.checkpointer.close()


def _write_parameter_table(run: Run) -> None:
  """The parameter table goes to parameters.txt (hundreds of lines); the console gets
  the totals."""
  params = nnx.to_pure_dict(run.step.state.params)
  frozen = optim.frozen_mask(run.config, run.step.state.params)
  total = parameter_overview.count_parameters(params)
  trained = sum(x.size for x, m in zip(jax.tree.leaves(run.step.state.params),
                                        jax.tree.leaves(frozen)) if not m)
  if jax.process_index() == 0:
    (run.workdir / "parameters.txt").write_text(
        parameter_overview.get_parameter_overview(params, include_stats=False))
  logging.info("%s parameters, %s trained (table: %s)", f"{total:,}", f"{trained:,}",
               run.workdir / "parameters.txt")


def _loop(run: Run, writer) -> dict:
  """Runs the steps from the state's step to `run.steps`; saves, logs and evaluates."""
  config, workdir, steps, checkpointer = run.config, run.workdir, run.steps, run.checkpointer
  state, batches = run.step.state, run.train_batches
  first = int(jax.device_get(state.step))
  preemption = _Preemption(enabled=jax.process_count() == 1)
  progress = progress_lib.Progress(first, steps, writer)
  profile = _profiler(config, workdir)
  guard = NonFiniteGuard(config.max_consecutive_nonfinite)
  with preemption:
    results, deferred = {}, False
    for step in range(first + 1, steps + 1):
      batch, global_batch = next(batches)
      if config.debug_batch_digests:
        _record_batch(workdir, step, batch)
      state, measurements = _run_step(run.step.step_fn, state, batch, global_batch, step,
                                      progress)
      profile(step)
      progress.step(step, measurements)
      guard.after_step(measurements)
      if step % config.log_every_steps == 0 or step == steps:
        writer.write_scalars(step, jax.device_get(measurements))
      stop = (preemption.requested if preemption.enabled
              else checkpointer.reached_preemption(step))
      with progress.paused():
        deferred = _save(checkpointer, guard, step, state, batches,
                         force=stop or step == steps, deferred=deferred)
      if stop:
        break
      if step % config.eval_every_steps == 0 or step == steps:
        with progress.paused(f"Evaluation at step {step}"):
          results = _evaluate(run.evaluators, state, writer, step)
  checkpointer.wait()
  writer.flush()
  _write_results(workdir, results)
  return results


def _save(checkpointer, guard, step: int, state, batches, *, force: bool,
          deferred: bool) -> bool:
  """Saves when due, but not a state inside a run of non-finite steps: that save waits
  for the next finite step (a forced one, the last or a preemption's, does not wait).
  Returns whether a save is waiting."""
  if not (deferred or checkpointer.due(step, force=force)):
    checkpointer.save(step, state, batches)  # not due: reports a failed background save
    return False
  run = guard.check_newest()
  if run and not force:
    if not deferred:
      logging.warning("Step %d ends a run of %d non-finite steps: its checkpoint waits "
                      "for the next finite step.", step, run)
    checkpointer.check_saves()
    return True
  checkpointer.save(step, state, batches, force=True)
  return False


def _run_step(step_fn, state, batch, global_batch, step: int, progress):
  """One step; the first of each image shape (a compile) is timed and logged."""
  with jax.profiler.StepTraceAnnotation("train", step_num=step):
    if not progress.new_shape(batch):
      return step_fn(state, global_batch)
    with progress.paused("Compiling and running the first step"):
      return jax.block_until_ready(step_fn(state, global_batch))


def _profiler(config, workdir):
  """A hook tracing `config.profile_steps` steps (after the first compile) with
  jax.profiler into the workdir, for TensorBoard's profile plugin."""
  if jax.process_index() > 0 or not config.profile_steps:
    return lambda step: None
  from clu import periodic_actions  # pylint: disable=g-import-not-at-top (imports TF)
  return periodic_actions.Profile(num_profile_steps=config.profile_steps,
                                  logdir=str(workdir))


def _write_results(workdir: epath.Path, results: dict) -> None:
  """final_eval.json, and a last console line saying where the results are."""
  if jax.process_index() > 0:
    return
  if results:
    (workdir / "final_eval.json").write_text(json.dumps(results, indent=2))
  logging.info("Done. Results: %s; curves: tensorboard --logdir %s",
               workdir / "final_eval.json" if results else "(no evaluation)", workdir)
