"""Killed and restarted runs continue exactly; SIGTERM saves and exits cleanly.

Real processes of the real entry point: one run goes straight through; the other is
killed with SIGKILL while an asynchronous save is in flight, killed again right after a
checkpoint is committed, stopped with SIGTERM, and finished. Parameters, optimiser state
and the sequence of batches must be identical, bit for bit.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
from etils import epath

from conftest import REPO, flat_arrays, restore_state, trainer_overrides

STEPS = 9


def _command(world: str, workdir) -> list[str]:
  overrides = {**trainer_overrides(world, STEPS), "debug_batch_digests": True}
  return ([sys.executable, "-m", "pixelbert_jax.main", "--config=configs/pretrain.py:demo",
           f"--workdir={workdir}"] + [f"--config.{k}={v}" for k, v in overrides.items()])


def _env(cache) -> dict:
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
             JAX_COMPILATION_CACHE_DIR=str(cache),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  return env


def _start(world, workdir, cache) -> subprocess.Popen:
  log = open(epath.Path(workdir).parent / f"{epath.Path(workdir).name}.log", "ab")
  return subprocess.Popen(_command(world, workdir), cwd=REPO, env=_env(cache),
                          stdout=log, stderr=subprocess.STDOUT)


def _wait_until(process, condition, timeout=300.0, interval=0.005) -> None:
  deadline = time.time() + timeout
  while not condition():
    assert process.poll() is None, "the run ended before the condition was met"
    assert time.time() < deadline, "timed out"
    time.sleep(interval)


def _checkpoints(workdir) -> list[str]:
  root = epath.Path(workdir) / "checkpoints"
  return [p.name for p in root.iterdir()] if root.exists() else []


def _digest_lines(workdir) -> list[str]:
  path = epath.Path(workdir) / "batch_digests.0.jsonl"
  return path.read_text().splitlines() if path.exists() else []


def _digests(workdir) -> dict[int, str]:
  """Step -> batch digest; a replayed step must have read the very same batch."""
  by_step = {}
  for line in _digest_lines(workdir):
    entry = json.loads(line)
    assert by_step.setdefault(entry["step"], entry["sha1"]) == entry["sha1"]
  return by_step


def test_sigkill_and_sigterm_resume_exactly(small_world, tmp_path):
  cache = tmp_path / "jax_cache"
  straight = _start(small_world, tmp_path / "straight", cache)
  assert straight.wait(timeout=600) == 0

  workdir = tmp_path / "interrupted"
  run = _start(small_world, workdir, cache)  # 1: SIGKILL during the async save of step 6
  _wait_until(run, lambda: any(n.startswith("6") for n in _checkpoints(workdir)))
  run.send_signal(signal.SIGKILL)
  run.wait()

  run = _start(small_world, workdir, cache)  # 2: SIGKILL right after step 6 is committed
  _wait_until(run, lambda: "6" in _checkpoints(workdir))
  run.send_signal(signal.SIGKILL)
  run.wait()

  seen = len(_digest_lines(workdir))
  run = _start(small_world, workdir, cache)  # 3: SIGTERM once it is training: save, exit 0
  _wait_until(run, lambda: len(_digest_lines(workdir)) > seen, interval=0.05)
  run.send_signal(signal.SIGTERM)
  assert run.wait(timeout=300) == 0
  saved = [int(n) for n in _checkpoints(workdir) if n.isdigit()]
  assert max(saved) >= 7

  assert _start(small_world, workdir, cache).wait(timeout=600) == 0  # 4: finish
  assert _digests(workdir) == _digests(tmp_path / "straight")
  expected = flat_arrays(restore_state(tmp_path / "straight", STEPS))
  actual = flat_arrays(restore_state(workdir, STEPS))
  assert len(expected) == len(actual) > 100
  for (path, a), (_, b) in zip(expected, actual):
    np.testing.assert_array_equal(a, b, err_msg=path)
