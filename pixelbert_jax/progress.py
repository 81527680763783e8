"""What the console tells a user while training: speed, ETA, compiles, evaluations.

Speed and ETA count training time only: time spent compiling, evaluating and saving is
measured apart (`paused`), so an evaluation does not make the ETA jump (clu's
ReportProgress divides by wall time since its last report, evaluations included).
"""

import contextlib
import time

import jax
from absl import logging


def format_seconds(seconds: float) -> str:
  """1h02m, 4m05s, 12s."""
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  if hours:
    return f"{hours}h{minutes:02d}m"
  return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
  """Logs steps/s and the ETA every `every_secs` seconds of training."""

  def __init__(self, first_step: int, last_step: int, writer, every_secs: float = 30.0):
    self.last_step, self.writer, self.every_secs = last_step, writer, every_secs
    self._mark_step, self._mark_time = first_step, time.monotonic()
    self._paused = 0.0  # seconds not spent training since the mark
    self._compiled_shapes = set()

  @contextlib.contextmanager
  def paused(self, what: str = ""):
    """Time inside is not training time; with `what`, its duration is logged."""
    start = time.monotonic()
    try:
      yield
    finally:
      seconds = time.monotonic() - start
      self._paused += seconds
      if what:
        logging.info("%s took %s", what, format_seconds(seconds))

  def new_shape(self, batch: dict) -> bool:
    """Whether the step has not yet run (so compiles) for this batch's image shape."""
    shape = tuple(batch["images"].shape)
    if shape in self._compiled_shapes:
      return False
    self._compiled_shapes.add(shape)
    logging.info("Compiling the train step for images %s ...", "x".join(map(str, shape)))
    return True

  def step(self, step: int, measurements) -> float | None:
    """After each step: reports if `every_secs` of training have passed; returns the
    steps/s it reported (None when it did not report)."""
    training = time.monotonic() - self._mark_time - self._paused
    if training < self.every_secs and step != self.last_step:
      return None
    jax.block_until_ready(measurements)  # dispatch runs ahead of the device
    training = time.monotonic() - self._mark_time - self._paused
    rate = (step - self._mark_step) / max(training, 1e-9)
    eta = (self.last_step - step) / max(rate, 1e-9)
    logging.info("step %d/%d: %.2f steps/s, ETA %s (training only)", step,
                 self.last_step, rate, format_seconds(eta))
    self.writer.write_scalars(step, {"steps_per_sec": rate})
    self._mark_step, self._mark_time, self._paused = step, time.monotonic(), 0.0
    return rate
