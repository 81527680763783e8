"""The real trainer, in process, for a few steps of the tiny model on the small world."""

import sys

import numpy as np
import pytest
from etils import epath

from conftest import REPO, TINY_TRANSFORMER, override, scalars, trainer_overrides
from pixelbert_jax import checkpointing, train, train_state
from pixelbert_jax.data import synthetic

sys.path.insert(0, REPO)
from configs import pretrain as pretrain_config  # noqa: E402


def _config(world: str, steps: int, **extra):
  return override(pretrain_config.get_config("demo"),
                  {**trainer_overrides(world, steps), **extra})


def test_few_steps_learn_write_metrics_and_checkpoint(small_world, tmp_path):
  """The demo's own model (not the tiny Transformer of the other trainer tests)."""
  swaps = {"itm_swap_share": 0.5,
           "data.itm_swap_words": (tuple(synthetic.COLOURS), synthetic.SHAPES)}
  config = _config(small_world, 12, **{"optimizer.groups.transformer.lr": 2e-3}, **swaps)
  demo = pretrain_config.get_config("demo")
  for name in TINY_TRANSFORMER:
    leaf = name.split(".")[-1]
    config.model[leaf] = demo.model[leaf]
  results = train.train_and_evaluate(config, str(tmp_path / "run"))
  losses = scalars(tmp_path / "run", "training_loss")
  assert len(losses) == 12 and np.mean(losses[-3:]) < np.mean(losses[:3])
  assert {"eval/mlm_accuracy", "eval/itm_accuracy", "eval/grounding_gap",
          "eval/visual_words_true_image", "eval/itm_swap_ranking"} <= set(results)
  assert 0.0 <= results["eval/itm_swap_ranking"] <= 1.0
  assert (tmp_path / "run" / "checkpoints" / "12" / "state").exists()
  assert (tmp_path / "run" / "config.json").exists()
  assert (tmp_path / "run" / "final_eval.json").exists()


def test_eval_mode_and_refusal_of_a_mismatched_workdir(small_world, tmp_path, monkeypatch):
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(_config(small_world, 3), workdir)

  def no_fresh_state(*args, **kwargs):
    raise AssertionError("a restoring run made a fresh state beside the restored one")

  # A restore fills the abstract state: one copy of the parameters, never two.
  monkeypatch.setattr(train_state, "create_train_state", no_fresh_state)
  results = train.train_and_evaluate(_config(small_world, 3, mode="eval"), workdir)
  assert 0.0 <= results["eval/mlm_accuracy"] <= 1.0
  wider = _config(small_world, 6)
  wider.model.preset = "tiny"
  wider.model.pixel_layer_norm = True
  wider.model.pixel_pos_emb = True
  with pytest.raises(checkpointing.CheckpointMismatchError, match="does not fit"):
    train.train_and_evaluate(wider, workdir)
  assert sorted(p.name for p in epath.Path(workdir, "checkpoints").iterdir()
                if p.name.isdigit()) == ["3"]


def test_nonfinite_steps_stop_the_run_before_any_save_past_the_limit(small_world, tmp_path):
  """Zero image statistics make every step non-finite: with a limit of 3, the run stops
  at step 3's save (the guard reads each step, not only logged ones), saving nothing."""
  config = _config(small_world, 12, **{"model.image_std": (0.0, 0.0, 0.0),
                                       "max_consecutive_nonfinite": 3,
                                       "log_every_steps": 50})
  workdir = tmp_path / "run"
  with pytest.raises(train.NonFiniteError, match=r"3 consecutive steps .*\(3 in all\)"):
    train.train_and_evaluate(config, str(workdir))
  assert not [p for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]


def test_no_save_inside_a_run_of_nonfinite_steps_but_the_last(small_world, tmp_path):
  """Every step non-finite, below the limit: the saves due at steps 3 and 6 wait for a
  finite step that never comes; the last step's forced save is kept."""
  config = _config(small_world, 7, **{"model.image_std": (0.0, 0.0, 0.0),
                                      "max_consecutive_nonfinite": 100})
  workdir = tmp_path / "run"
  train.train_and_evaluate(config, str(workdir))
  assert [p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()] == ["7"]
