"""Two real JAX processes (localhost coordinator, gloo) match one process, same global batch."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import portpicker
import pytest
from etils import epath

from conftest import REPO, flat_arrays, restore_state, scalars, trainer_overrides

STEPS = 3


def _command(world, workdir, extra=()) -> list[str]:
  overrides = {**trainer_overrides(world, STEPS), "debug_batch_digests": True}
  return ([sys.executable, "-m", "pixelbert_jax.main", "--config=configs/pretrain.py:demo",
           f"--workdir={workdir}", *extra]
          + [f"--config.{k}={v}" for k, v in overrides.items()])


def _env(devices: int) -> dict:
  return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")


def _lines(path) -> list[str]:
  return epath.Path(path).read_text().splitlines()


def test_two_processes_match_one(small_world, tmp_path):
  single = subprocess.run(_command(small_world, tmp_path / "single"), cwd=REPO,
                          env=_env(4), capture_output=True, text=True, timeout=600)
  assert single.returncode == 0, single.stdout[-3000:] + single.stderr[-3000:]

  port = portpicker.pick_unused_port()
  workers = [subprocess.Popen(
      _command(small_world, tmp_path / "multi",
               [f"--coordinator_address=localhost:{port}", "--num_processes=2",
                f"--process_id={i}"]),
      cwd=REPO, env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
  outputs = [w.communicate(timeout=600)[0] for w in workers]
  for worker, output in zip(workers, outputs):
    assert worker.returncode == 0, output[-3000:]
  assert "Process 1 of 2" in outputs[1]

  # Each process read its own half of every global batch: disjoint from the other's.
  halves = [_lines(tmp_path / "multi" / f"batch_digests.{i}.jsonl") for i in range(2)]
  assert len(halves[0]) == len(halves[1]) == STEPS and halves[0] != halves[1]
  np.testing.assert_allclose(scalars(tmp_path / "multi", "training_loss"),
                             scalars(tmp_path / "single", "training_loss"), rtol=1e-5)
  # Cross-process sums round differently; Adam turns the noise on parameters whose true
  # gradient is zero (e.g. attention key biases) into steps of up to lr, so parameters
  # agree to lr x steps.
  for (path, a), (_, b) in zip(flat_arrays(restore_state(tmp_path / "single", STEPS)),
                               flat_arrays(restore_state(tmp_path / "multi", STEPS))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=STEPS * 5e-4, err_msg=path)

  # The single run's checkpoint, evaluated again by two processes (mode=eval): the
  # evaluators gather every example once whatever the process count.
  port = portpicker.pick_unused_port()
  evaluators = [subprocess.Popen(
      _command(small_world, tmp_path / "single",
               [f"--coordinator_address=localhost:{port}", "--num_processes=2",
                f"--process_id={i}", "--config.mode=eval"]),
      cwd=REPO, env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for i in range(2)]
  for worker in evaluators:
    output = worker.communicate(timeout=600)[0]
    assert worker.returncode == 0, output[-3000:]
  for tag in ("eval/mlm_accuracy", "eval/itm_accuracy", "eval/visual_words_true_image"):
    trained, evaluated = scalars(tmp_path / "single", tag)
    assert evaluated == pytest.approx(trained, abs=1e-6), tag


def test_sigterm_to_one_process_stops_both_at_one_saved_step(small_world, tmp_path):
  # A long run, so that the signal arrives mid-training.
  port = portpicker.pick_unused_port()
  workdir = tmp_path / "preempted"
  workers = [subprocess.Popen(
      _command(small_world, workdir,
               [f"--coordinator_address=localhost:{port}", "--num_processes=2",
                f"--process_id={i}", "--config.num_train_steps=500",
                "--config.checkpoint_every_steps=1000"]),
      cwd=REPO, env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
  digests = workdir / "batch_digests.1.jsonl"
  deadline = time.time() + 300
  while not (digests.exists() and len(_lines(digests)) >= 2):
    assert all(w.poll() is None for w in workers) and time.time() < deadline
    time.sleep(0.05)
  workers[1].send_signal(signal.SIGTERM)  # The coordination service tells process 0.
  outputs = [w.communicate(timeout=300)[0] for w in workers]
  for worker, output in zip(workers, outputs):
    assert worker.returncode == 0, output[-3000:]
  saved = [int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
  assert len(saved) == 1 and 2 <= saved[0] < 500
  assert len(_lines(workdir / "batch_digests.0.jsonl")) == saved[0]
