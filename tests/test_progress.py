"""The console's speed and ETA count training time only."""

import time

from clu import metric_writers

from pixelbert_jax import progress


def test_format_seconds():
  assert progress.format_seconds(12.4) == "12s"
  assert progress.format_seconds(245) == "4m05s"
  assert progress.format_seconds(3720) == "1h02m"


def test_an_evaluation_does_not_slow_the_reported_speed():
  report = progress.Progress(0, 1000, metric_writers.LoggingWriter(), every_secs=0.0)
  report.step(1, None)
  with report.paused("Evaluation"):
    time.sleep(0.5)  # at wall-clock speed, 1 step in 0.5 s: 2 steps/s
  assert report.step(2, None) > 20


def test_reports_only_every_so_often():
  report = progress.Progress(0, 1000, metric_writers.LoggingWriter(), every_secs=60.0)
  assert report.step(1, None) is None
  assert report.step(1000, None) is not None  # the last step always reports
