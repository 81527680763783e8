"""Runs that survive their users: damaged checkpoints, failed saves, refused resumes,
shared workdirs. Real runs of the tiny model, real orbax files, real processes."""

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from etils import epath

from conftest import REPO, override, trainer_overrides
from pixelbert_jax import checkpointing, run_config, train, workdir_lock

sys.path.insert(0, REPO)
from configs import pretrain as pretrain_config  # noqa: E402


def _config(world: str, steps: int, **extra):
  return override(pretrain_config.get_config("demo"),
                  {**trainer_overrides(world, steps), **extra})


@pytest.fixture(scope="module")
def six_steps(small_world, tmp_path_factory) -> epath.Path:
  """A run of 6 steps with checkpoints at steps 3 and 6 (copied by each test)."""
  workdir = tmp_path_factory.mktemp("six") / "run"
  train.train_and_evaluate(_config(small_world, 6), str(workdir))
  return workdir


def _copy(run: epath.Path, tmp_path) -> epath.Path:
  target = tmp_path / "run"
  shutil.copytree(run, target)
  return target


def _largest_array_file(workdir: epath.Path, step: int) -> str:
  files = (workdir / "checkpoints" / str(step) / "state").glob("ocdbt.process_0/d/*")
  return max((str(f) for f in files), key=os.path.getsize)


def _cut_short(path: str) -> None:
  os.truncate(path, os.path.getsize(path) // 2)


def _steps(workdir: epath.Path) -> list[int]:
  return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(six_steps, small_world,
                                                                  tmp_path):
  workdir = _copy(six_steps, tmp_path)
  _cut_short(_largest_array_file(workdir, 6))
  train.train_and_evaluate(_config(small_world, 9), str(workdir))
  # Resumed at 3, saved 6 and 9 again; the damaged 6 was moved aside, not deleted.
  assert _steps(workdir) == [3, 6, 9]
  aside = list((workdir / "damaged_checkpoints").iterdir())
  assert [p.name.split(".")[0] for p in aside] == ["6"]
  assert (aside[0] / "state" / "manifest.ocdbt").exists()
  changes = [json.loads(line) for line in
             (workdir / run_config.CHANGES_FILE).read_text().splitlines()]
  assert changes[0]["resumed_at"] == 3
  assert changes[0]["changes"]["num_train_steps"] == [6, 9]


def test_with_no_readable_checkpoint_the_error_lists_the_steps_tried(six_steps,
                                                                    small_world, tmp_path):
  workdir = _copy(six_steps, tmp_path)
  os.remove(_largest_array_file(workdir, 6))  # a deleted file
  _cut_short(_largest_array_file(workdir, 3))
  config_before = (workdir / "config.json").read_text()
  with pytest.raises(checkpointing.CheckpointDamagedError,
                     match=r"(?s)tried steps 6, 3: step 6: .*step 3: .*left in place"):
    train.train_and_evaluate(_config(small_world, 9), str(workdir))
  assert _steps(workdir) == [3, 6]
  assert not (workdir / "damaged_checkpoints").exists()
  assert (workdir / "config.json").read_text() == config_before


def test_a_refused_resume_names_the_parameters_and_keeps_the_record(six_steps,
                                                                   small_world, tmp_path):
  workdir = _copy(six_steps, tmp_path)
  config_before = (workdir / "config.json").read_text()
  wider = _config(small_world, 9, **{"model.transformer_mlp": 256})
  with pytest.raises(checkpointing.CheckpointMismatchError) as refusal:
    train.train_and_evaluate(wider, str(workdir))
  message = str(refusal.value)
  assert "shape differs (checkpoint -> model)" in message
  assert "mlp_in.kernel.value (64, 128) -> (64, 256)" in message
  assert "optimiser-state arrays" in message
  assert (workdir / "config.json").read_text() == config_before
  assert not (workdir / run_config.CHANGES_FILE).exists()
  assert _steps(workdir) == [3, 6]


def test_config_differences_are_flattened_field_by_field():
  first = {"seed": 0, "model": {"preset": "tiny", "remat": "none"}, "mesh": {}}
  now = {"seed": 0, "model": {"preset": "tiny", "remat": "full"}, "extra": [1, 2]}
  assert run_config.differences(first, now) == {
      "extra": [None, [1, 2]], "mesh": [{}, None], "model.remat": ["none", "full"]}


def _holder(workdir) -> subprocess.Popen:
  """Another process holding the workdir's lock until killed."""
  code = ("import sys, time; from pixelbert_jax import workdir_lock\n"
          f"with workdir_lock.WorkdirLock({str(workdir)!r}):\n"
          "  print('held', flush=True); time.sleep(600)\n")
  holder = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, text=True,
                            stdout=subprocess.PIPE)
  assert holder.stdout.readline().strip() == "held"
  return holder


def test_a_second_run_on_a_held_workdir_is_refused_naming_the_holder(small_world, tmp_path):
  workdir = tmp_path / "run"
  holder = _holder(workdir)
  try:
    command = ([sys.executable, "-m", "pixelbert_jax.main",
                "--config=configs/pretrain.py:demo", f"--workdir={workdir}"]
               + [f"--config.{k}={v}" for k, v in trainer_overrides(small_world, 3).items()])
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert f"in use by another run: pid {holder.pid} on host" in done.stderr
    assert "Traceback" not in done.stderr  # the message is the whole story
    assert not (workdir / "checkpoints").exists() and not (workdir / "config.json").exists()
  finally:
    holder.kill()
    holder.wait()
  # The holder died without releasing: its lock is stale and taken over.
  with workdir_lock.WorkdirLock(workdir) as lock:
    assert json.loads(lock.path.read_text())["pid"] == os.getpid()
  assert not (workdir / workdir_lock.LOCK_FILE).exists()


def test_a_lock_of_another_host_is_stale_only_after_its_heartbeat_stops(tmp_path):
  lock_file = tmp_path / workdir_lock.LOCK_FILE
  lock_file.write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": "earlier"}))
  with pytest.raises(workdir_lock.WorkdirLockedError, match="pid 1 on host elsewhere"):
    with workdir_lock.WorkdirLock(tmp_path, stale_after_s=60):
      pass
  an_hour_ago = time.time() - 3600
  os.utime(lock_file, (an_hour_ago, an_hour_ago))
  with workdir_lock.WorkdirLock(tmp_path, stale_after_s=60, heartbeat_s=0.05) as lock:
    time.sleep(0.3)
    assert time.time() - os.path.getmtime(lock.path) < 5  # the heartbeat renews it
  assert not lock_file.exists()


def _mount_namespace_prefix() -> list[str]:
  """`unshare` into a private mount namespace (as root, or as a mapped root user); the
  tmpfs mounted there vanishes with the process."""
  for prefix in (["unshare", "--mount"], ["unshare", "--user", "--map-root-user", "--mount"]):
    try:
      if subprocess.run(prefix + ["true"], capture_output=True).returncode == 0:
        return prefix
    except FileNotFoundError:
      break
  pytest.skip("no private mount namespace here (unshare) to mount a small tmpfs")


def test_a_failed_background_save_stops_the_run_at_the_next_step(small_world, tmp_path):
  """A 3 MB tmpfs holds one checkpoint (about 2 MB) but not two: the step-200 save
  fails with ENOSPC in the background. The run must stop at the next step, long before
  the next save (the last step, 300), keeping step 100."""
  workdir = tmp_path / "run"
  (workdir / "checkpoints").mkdir(parents=True)
  overrides = {**trainer_overrides(small_world, 300), "checkpoint_every_steps": 100}
  main = " ".join([sys.executable, "-m", "pixelbert_jax.main",
                   "--config=configs/pretrain.py:demo", f"--workdir={workdir}"]
                  + [f"'--config.{k}={v}'" for k, v in overrides.items()])
  script = (f"mount -t tmpfs -o size=3m tmpfs {workdir}/checkpoints && "
            f"{{ {main}; echo \"rc=$?\"; ls {workdir}/checkpoints; }}")
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  done = subprocess.run(_mount_namespace_prefix() + ["bash", "-c", script], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=600)
  assert "rc=1" in done.stdout, done.stdout[-2000:] + done.stderr[-3000:]
  listing = done.stdout.split("rc=1", 1)[1].split()
  assert [name for name in listing if name.isdigit()] == ["100"]  # and orbax's tmp folder
  # ENOSPC as the OS or as TensorStore words it (both seen).
  full = "No space left on device" in done.stderr or "RESOURCE_EXHAUSTED" in done.stderr
  assert ("ERROR (CheckpointSaveError): The checkpoint of step 200 could not be written"
          in done.stderr and full and "the last good checkpoint is step 100" in
          done.stderr), done.stderr[-3000:]
  logged = [int(m) for m in re.findall(r"\] \[(\d+)\] .*training_loss", done.stderr)]
  assert 200 < max(logged) < 300, max(logged)
