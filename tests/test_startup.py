"""Start-up mistakes end in one message, exit code 2 and no workdir (issue 18, item 9).

The command-line cases run `python -m pixelbert_jax.main` as a user would; each stops
in seconds, before JAX starts a backend. The config checks (`preflight`) run on real
files and folders.
"""

import os
import subprocess
import sys

from configs import nlvr2 as nlvr2_config
from configs import pretrain as pretrain_config
from pixelbert_jax import preflight

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(workdir, *flags: str) -> subprocess.CompletedProcess:
  """`python -m pixelbert_jax.main --workdir=<workdir> <flags>` in a fresh process."""
  command = [sys.executable, "-m", "pixelbert_jax.main", f"--workdir={workdir}", *flags]
  return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)


def _lines(text: str) -> list[str]:
  return [line for line in text.splitlines() if line.strip()]


def test_paper_config_without_data_names_every_missing_path(tmp_path):
  workdir = tmp_path / "run"
  done = _main(workdir, "--config=configs/pretrain.py")
  assert done.returncode == 2, done.stderr
  assert "Traceback" not in done.stderr
  for field in ("data.tokenizer", "data.karpathy_json", "data.coco_image_root"):
    assert f"config.{field}: not set" in done.stderr
  assert 'README.md, section "Data"' in done.stderr
  assert not workdir.exists()


def test_misspelt_override_is_one_line_with_the_suggestion(tmp_path):
  workdir = tmp_path / "run"
  done = _main(workdir, "--config=configs/pretrain.py:demo", "--config.trainn_steps=5")
  assert done.returncode == 2, done.stderr
  error, hint = _lines(done.stderr)
  assert error.startswith("FATAL Flags parsing error: --config.trainn_steps:")
  assert 'Did you mean "num_train_steps"' in error and "--helpshort" in hint
  assert not workdir.exists()


def test_missing_config_file_is_one_line_and_makes_no_workdir(tmp_path):
  workdir = tmp_path / "run"
  done = _main(workdir, "--config=configs/nope.py")
  assert done.returncode == 2, done.stderr
  error, _ = _lines(done.stderr)
  assert "cannot load the config file" in error and "configs/nope.py" in error
  assert not workdir.exists()


def test_demo_config_passes(tmp_path):
  assert preflight.problems(pretrain_config.get_config("demo"), str(tmp_path)) == []


def test_every_problem_of_a_real_data_config_at_once(small_world, tmp_path):
  """Set paths are checked too, optional groups go together, and wrong init sources
  are named; the message lists all of them."""
  config = nlvr2_config.get_config()
  vocab = f"{small_world}/vocab.txt"
  config.data.update(tokenizer=f"wordpiece:{vocab}", train_file=(vocab,),
                     eval_file=(str(tmp_path / "dev.json"),), images=small_world)
  config.init_from = str(tmp_path / "no_run")
  found = preflight.problems(config, str(tmp_path / "run"))
  assert found == [f"config.data.eval_file={tmp_path / 'dev.json'}: does not exist",
                   f"config.init_from={tmp_path / 'no_run'}: no checkpoint found; "
                   "expected a workdir with checkpoints/<step>/state, a checkpoints "
                   "folder, or a step folder"]
  config = pretrain_config.get_config()
  config.data.update(tokenizer=f"wordpiece:{tmp_path}", karpathy_json=vocab,
                     coco_image_root=small_world, vg_regions=vocab)
  config.resume_from = str(tmp_path)
  found = preflight.problems(config, str(tmp_path / "run"))
  assert found[0].startswith(f"config.data.tokenizer=wordpiece:{tmp_path}: ")
  assert found[1:] == [
      "config.data.vg_image_data: not set (vg_regions, vg_image_data, vg_image_root go "
      "together)",
      "config.data.vg_image_root: not set (vg_regions, vg_image_data, vg_image_root go "
      "together)",
      f"config.resume_from={tmp_path}: no finished checkpoint there (expected a run's "
      "checkpoints folder, holding <step>/state)"]
  assert len(_lines(preflight.message(found))) == len(found) + 2


def test_a_workdir_that_resumes_reads_no_init_source(tmp_path):
  """A workdir with a checkpoint resumes from it, so wrong init sources do not stop it
  (a step folder with its `state` item is what a finished checkpoint leaves)."""
  (tmp_path / "checkpoints" / "3" / "state").mkdir(parents=True)
  config = pretrain_config.get_config("demo")
  config.update(init=str(tmp_path / "no_init"), resume_from=str(tmp_path / "no_run"))
  assert preflight.problems(config, str(tmp_path)) == []
  # A fresh workdir reads `resume_from`, else `init`.
  new = str(tmp_path / "new")
  fields = lambda: [p.split("=")[0] for p in preflight.problems(config, new)]
  assert fields() == ["config.resume_from"]
  config.resume_from = ""
  assert fields() == ["config.init"]
