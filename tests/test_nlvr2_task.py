"""NLVR2 fine-tuning from a tiny pre-training run, through the real entry point.

One pre-training step of the demo model on the shared small world writes a
checkpoint; `pixelbert_jax.main` then fine-tunes `configs/nlvr2.py:demo` from it on a
160-image synthetic world (28 train and 6 dev examples; the vocabulary is the same in
every world) and evaluates the whole dev split with an eval batch of 4, which does not
divide 6. The body's learning rates are 0, so its weights must still equal the
pre-trained ones exactly; the head trains from its fresh initialisation. Images are
64 x 64 (one bucket, so each step compiles once).
"""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from etils import epath
from flax import nnx

from conftest import (SMALL_IMAGES, TINY_TRANSFORMER, flat_arrays, module_arrays,
                      pretrain_tiny, restore_state, run_main, scalars)
from pixelbert_jax.data import synthetic
from pixelbert_jax.data.readers import nlvr2 as nlvr2_reader
from pixelbert_jax.evaluators import context as evaluator_context
from pixelbert_jax.evaluators import nlvr2_evaluator
from pixelbert_jax.metrics import nlvr2 as nlvr2_metric
from pixelbert_jax.tasks import base as tasks
from pixelbert_jax.tasks import nlvr2

from configs import nlvr2 as nlvr2_config  # noqa: E402

STEPS = 2
HEAD_LR = 1e-3
WORLD_IMAGES = 160  # -> 6 dev examples
EVAL_BATCH = 4
IMAGES = SMALL_IMAGES


def _nlvr2_overrides(world: str, init: str) -> dict:
  return {**TINY_TRANSFORMER, "init": "", "init_from": init, "data.root": world,
          "data.synthetic_num_images": WORLD_IMAGES, **IMAGES, "global_batch_size": 8,
          "eval_batch_size": EVAL_BATCH, "num_train_steps": STEPS, "log_every_steps": 1,
          "optimizer.warmup_steps": 0, "optimizer.groups.cnn.lr": 0.0,
          "optimizer.groups.transformer.lr": 0.0, "optimizer.groups.head.lr": HEAD_LR}


def _main(workdir, overrides: dict) -> None:
  run_main("configs/nlvr2.py:demo", workdir, overrides)


def _check_body_and_head(pretrained, finetuned) -> None:
  """The body equals the pre-trained one (learning rates 0); the head moved from its
  fresh initialisation by a few Adam steps of at most about the learning rate."""
  state = restore_state(finetuned, STEPS)
  body, pretrained_body = module_arrays(state, "pixelbert"), module_arrays(
      restore_state(pretrained, 1), "pixelbert")
  assert body.keys() == pretrained_body.keys()
  for path, value in pretrained_body.items():
    np.testing.assert_array_equal(body[path], value, err_msg=path)
  head = {path.removesuffix("['value']"): value
          for path, value in flat_arrays(state["params"]["nlvr2_head"])}
  for name in ("['dense_in']['bias']", "['dense_out']['bias']"):
    assert np.abs(head[name]).max() <= STEPS * HEAD_LR * 1.01 and np.any(head[name]), name


def _check_evaluation(workdir, world) -> None:
  """Every dev example predicted once, in the official CSV format, scored officially."""
  results = json.loads((workdir / "final_eval.json").read_text())
  dev = epath.Path(world) / "nlvr2" / "dev.json"
  identifiers = [json.loads(line)["identifier"] for line in dev.read_text().splitlines()
                 if line.strip()]
  assert len(identifiers) % EVAL_BATCH and len(identifiers) > EVAL_BATCH
  assert results["nlvr2/num_examples"] == len(identifiers)
  assert results["nlvr2/num_unpredicted"] == 0
  csv = workdir / f"nlvr2_predictions_step{STEPS}.csv"
  lines = csv.read_text().splitlines()
  assert [line.split(",")[0] for line in lines] == identifiers  # once each, in order
  assert all(re.fullmatch(r"dev-\d+-\d+-\d+,(True|False)", line) for line in lines)
  official = nlvr2_metric.score_files(str(csv), str(dev))
  assert results["nlvr2/accuracy"] == pytest.approx(official["accuracy"])
  assert results["nlvr2/consistency"] == pytest.approx(official["consistency"])
  assert np.isfinite(results["nlvr2/loss"])


def test_finetune_from_pretraining_through_the_entry_point(small_world, tmp_path):
  pretrained, finetuned = tmp_path / "pretrain", tmp_path / "nlvr2"
  pretrain_tiny(small_world, str(pretrained))
  _main(finetuned, _nlvr2_overrides(str(tmp_path / "world"), pretrained))
  losses = scalars(finetuned, "nlvr2_loss")
  assert len(losses) == STEPS and np.all(np.isfinite(losses))
  _check_body_and_head(pretrained, finetuned)
  _check_evaluation(finetuned, tmp_path / "world")


def test_pairs_stay_with_their_example():
  """Reordering the examples reorders the logits (the (B, 2) <-> (2B) reshapes keep each
  example's two images and statement together); swapping an example's images changes
  its logits (left and right are concatenated in order)."""
  model_config = tasks.get(nlvr2_config.get_config("demo")).model_config(
      len(synthetic.vocabulary()))
  model = nlvr2.Nlvr2Model(model_config, rngs=nnx.Rngs(params=0, dropout=1))
  model.eval()
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (3, 2, 64, 64, 3)), jnp.uint8)
  sizes = jnp.asarray([[[64, 64], [64, 40]], [[40, 64], [64, 64]], [[64, 64], [32, 64]]],
                      jnp.int32)
  token_ids = jnp.asarray(rng.integers(5, 50, (3, 5)), jnp.int32)
  mask = jnp.asarray([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], bool)
  run = nnx.jit(lambda m, *args: m(*args))
  logits = run(model, token_ids, mask, images, sizes)
  assert logits.shape == (3, 2) and logits.dtype == jnp.float32
  order = jnp.asarray([2, 0, 1])
  np.testing.assert_allclose(run(model, token_ids[order], mask[order], images[order],
                                 sizes[order]), logits[order], rtol=1e-5, atol=1e-5)
  swapped = run(model, token_ids, mask, images[:, ::-1], sizes[:, ::-1])
  assert not np.allclose(swapped, logits)


def test_hidden_labels_and_padding_do_not_count():
  batch = {"label": jnp.asarray([1, 0, -1, 1], jnp.int32),
           "valid": jnp.asarray([True, True, True, False])}
  np.testing.assert_array_equal(nlvr2.labelled(batch), [1, 1, 0, 0])
  assert nlvr2.counts_fn(batch) == {"nlvr2_loss": 2.0, "nlvr2_accuracy": 2.0}
  pair_logits = jnp.asarray([[0.0, 2.0], [0.0, 2.0], [1.0, 0.0], [0.0, 0.0]])
  prediction, p_true = nlvr2.predict(pair_logits)
  np.testing.assert_array_equal(prediction, [1, 1, 0, 0])
  np.testing.assert_allclose(p_true[0], jax.nn.sigmoid(2.0), rtol=1e-6)
  losses = nlvr2.example_losses(pair_logits, batch["label"])
  np.testing.assert_allclose(losses[:2], [np.log1p(np.exp(-2.0)), np.log1p(np.exp(2.0))],
                             rtol=1e-5)


def test_prediction_file_covers_examples_the_reader_skipped(small_world, tmp_path):
  # dev.json plus a line whose images are missing and one with a bad label: the reader
  # skips both, and the official CSV still answers them ("False", unpredicted).
  dev = epath.Path(small_world) / "nlvr2" / "dev.json"
  extra = [{"identifier": "dev-999-0-0", "sentence": "No such images.", "label": "True"},
           {"identifier": "dev-0-0-1", "sentence": "A bad label.", "label": "maybe"}]
  jsonl = tmp_path / "dev.json"
  jsonl.write_text(dev.read_text() + "".join(json.dumps(e) + "\n" for e in extra))
  images = f"{small_world}/nlvr2/images"
  examples = list(nlvr2_reader.read_nlvr2(jsonl, images))
  identifiers = nlvr2_reader.identifiers(jsonl)
  assert identifiers[-2:] == ["dev-999-0-0", "dev-0-0-1"]
  assert len(examples) == len(identifiers) - 2
  context = evaluator_context.EvalContext(None, None, epath.Path(tmp_path))
  evaluator = nlvr2_evaluator.Nlvr2Evaluator(None, context, make_iterator=None,
                                             examples=examples, identifiers=identifiers)
  predicted = {i: (True, 0.1) for i in range(len(examples))}  # Every example read: True.
  path = evaluator.write(evaluator.file_predictions(predicted), step=3)
  written = nlvr2_metric.read_predictions(path)
  assert list(written) == identifiers
  assert written["dev-999-0-0"] is False and written["dev-0-0-1"] is False
  assert sum(written.values()) == len(examples)
  with pytest.raises(ValueError, match=r"identifiers to cover miss .*dev-0-0-0"):
    nlvr2_evaluator.Nlvr2Evaluator(None, context, make_iterator=None, examples=examples,
                                   identifiers=identifiers[1:])
