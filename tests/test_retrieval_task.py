"""Retrieval fine-tuning and evaluation on the shared small synthetic world.

The entry-point test pre-trains the demo model for one step, then fine-tunes
`configs/retrieval.py:demo` from it through `pixelbert_jax.main` on the world's Karpathy
COCO file (38 train + restval images, 20 negatives each) and evaluates its 5 test
images (25 captions) with 4 images per CNN call, so the last image batch is padding.
The evaluator tests build the model in-process on the 10 restval images (8 per CNN
call). Images are 64 x 64: one bucket, so each function compiles once.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from conftest import (SMALL_IMAGES, TINY_TRANSFORMER, flat_arrays, override,
                      pretrain_tiny, restore_state, run_main, scalars)
from pixelbert_jax import train, train_state
from pixelbert_jax.tasks import retrieval

from configs import retrieval as retrieval_config  # noqa: E402

STEPS = 2
LR = 5e-4  # the demo's AdamW rate
IMAGES = SMALL_IMAGES
BACKBONE = "pixel_encoder']['backbone"



def _small(world: str) -> dict:
  """The demo config on the small world's COCO split."""
  return {**TINY_TRANSFORMER, "init": "", "data.root": world,
          "data.synthetic_num_images": 48, **IMAGES,
          "data.dataset": "coco", "data.train_splits": ("train", "restval"),
          "global_batch_size": 8, "eval_folds": 1, "optimizer.warmup_steps": 0}


def _main(workdir, overrides: dict) -> None:
  run_main("configs/retrieval.py:demo", workdir, overrides)


def _flat(state, field: str, module: str) -> dict:
  return dict(flat_arrays(state[field][module]))


def _check_weights(pretrained, finetuned) -> None:
  """The CNN (parameters and statistics) is exactly the pre-trained one; the rest of
  the body trained; the score head started from the ITM head (a few Adam steps away)."""
  before, after = restore_state(pretrained, 1), restore_state(finetuned, STEPS)
  for field in ("params", "batch_stats"):
    old, new = _flat(before, field, "pixelbert"), _flat(after, field, "pixelbert")
    backbone = [p for p in old if BACKBONE in p]
    assert backbone and old.keys() == new.keys()
    for path in backbone:
      np.testing.assert_array_equal(new[path], old[path], err_msg=path)
  old, new = _flat(before, "params", "pixelbert"), _flat(after, "params", "pixelbert")
  assert any(not np.array_equal(new[p], old[p]) for p in old if BACKBONE not in p)
  itm, head = _flat(before, "params", "itm_head"), _flat(after, "params", "score_head")
  assert itm.keys() == head.keys()
  for path, value in itm.items():
    assert np.abs(head[path] - value).max() <= STEPS * LR * 1.05, path


def test_finetune_and_evaluate_through_the_entry_point(small_world, tmp_path):
  pretrained, finetuned = tmp_path / "pretrain", tmp_path / "retrieval"
  pretrain_tiny(small_world, str(pretrained))
  _main(finetuned, {**_small(small_world), "init_from": pretrained,
                    "num_train_steps": STEPS, "log_every_steps": 1,
                    "eval_batch_size": 4, "eval_pairs_per_call": 16})
  for name in ("retrieval_loss", "first_stage_loss"):
    losses = scalars(finetuned, name)
    assert len(losses) == STEPS and np.all(np.isfinite(losses))
  _check_weights(pretrained, finetuned)
  results = json.loads((finetuned / "final_eval.json").read_text())
  assert results["retrieval/num_images"] == 5 and results["retrieval/num_texts"] == 25
  assert results["retrieval/cnn_calls"] == 2  # ceil(5 / 4): once per image
  assert results["retrieval/images_encoded"] == 5
  assert results["retrieval/pairs_scored"] == 5 * 25
  assert results["retrieval/num_unscored_images"] == 0
  assert 0 <= results["retrieval/full/rsum"] <= 600


def test_loss_uses_the_positive_and_the_five_hardest_negatives():
  rng = np.random.default_rng(0)
  scores = jnp.asarray(rng.normal(size=(3, 21)) * 3, jnp.float32)
  losses = retrieval.hardest_negative_losses(scores)
  grads = jax.grad(lambda s: jnp.sum(retrieval.hardest_negative_losses(s)))(scores)
  for row, score in enumerate(np.asarray(scores)):
    hardest = 1 + np.argsort(-score[1:])[:5]
    logits = np.concatenate([score[:1], score[hardest]])
    expected = -logits[0] + np.log(np.sum(np.exp(logits)))
    np.testing.assert_allclose(losses[row], expected, rtol=1e-5)
    used = np.zeros(21, bool)
    used[[0, *hardest]] = True
    assert np.all(grads[row][~used] == 0) and np.all(grads[row][used] != 0)


def _contrastive(logits: np.ndarray, target: int) -> float:
  return float(-logits[target] + np.log(np.sum(np.exp(logits))))


def test_first_stage_loss_by_hand():
  """3 images x 2 captions, image 2 padding: it is nobody's negative and has no loss."""
  rng = np.random.default_rng(0)
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  images, texts = unit(rng.normal(size=(3, 4))), unit(rng.normal(size=(3, 2, 4)))
  valid = np.array([True, True, False])
  losses, right = retrieval.first_stage_losses(jnp.asarray(images, jnp.float32),
                                               jnp.asarray(texts, jnp.float32),
                                               jnp.asarray(valid), temperature=0.5)
  for b in (0, 1):
    to_texts = images[b] @ texts[:2].reshape(4, 4).T / 0.5  # the valid rows' captions
    to_images = texts[b, 0] @ images[:2].T / 0.5
    expected = 0.5 * (_contrastive(to_texts, 2 * b) + _contrastive(to_images, b))
    np.testing.assert_allclose(losses[b], expected, rtol=1e-5)
    assert bool(right[b]) == (int(np.argmax(to_texts)) == 2 * b)


def test_first_stage_trains_only_itself(fresh_model):
  """Its gradients stop at the pooled embeddings: the body trains as in the paper."""
  model = fresh_model[2]
  rng = np.random.default_rng(1)
  batch = {"images": jnp.asarray(rng.integers(0, 256, (3, 64, 64, 3)), jnp.uint8),
           "image_sizes": jnp.asarray([[64, 64]] * 3, jnp.int32),
           "token_ids": jnp.asarray(rng.integers(5, 50, (3, 4, 6)), jnp.int32),
           "text_mask": jnp.ones((3, 4, 6), bool), "valid": jnp.ones(3, bool)}
  loss_fn = retrieval.make_loss_fn(num_hard=3)
  grads = nnx.jit(nnx.grad(lambda m: loss_fn(m, batch, None)["first_stage_loss"]))(model)
  flat = dict(flat_arrays(nnx.to_pure_dict(grads)))
  own = lambda path: "'first_stage'" in path
  assert all(np.all(v == 0) for p, v in flat.items() if not own(p))
  assert optax.tree.norm({p: v for p, v in flat.items() if own(p)}) > 0


def _in_process(world: str, workdir: str, **overrides):
  """(evaluator, state, model, run) of a freshly initialised demo model on 8 CPU devices,
  evaluating the 10 restval images in CNN batches of 8."""
  config = override(retrieval_config.get_config("demo"), {
      **_small(world), "data.eval_split": "restval", "eval_batch_size": 8,
      "eval_pairs_per_call": 24, **overrides})
  run = train.build(config, workdir)
  state = run.step.state
  model = train_state.merge_model(run.step.graphdef, state.params, state.batch_stats,
                                  run.step.other)
  model.eval()
  return run.evaluators["retrieval"], state, model, run


def _direct_scores(evaluator, model, texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(items, scores): three images of the first image batch against `texts`, through
  the model's training-time call (images and captions together)."""
  batch = next(iter(evaluator.make_image_iterator()))
  rows = np.flatnonzero(batch["valid"])[:3]
  table = evaluator.texts
  token_ids = np.repeat(table["token_ids"][texts][None], len(rows), axis=0)
  text_mask = np.repeat(table["text_mask"][texts][None], len(rows), axis=0)
  scores = model(jnp.asarray(token_ids), jnp.asarray(text_mask),
                 jnp.asarray(batch["images"][rows]),
                 jnp.asarray(batch["image_sizes"][rows]))
  return batch["example_index"][rows], np.asarray(scores)


@pytest.fixture(scope="module")
def fresh_model(small_world, tmp_path_factory):
  return _in_process(small_world, str(tmp_path_factory.mktemp("retrieval")))


def test_evaluator_scores_every_pair_once_per_image_features(fresh_model):
  evaluator, state, model, _ = fresh_model
  full = evaluator.score_matrix(state)
  assert full.shape == (10, 50) and np.all(np.isfinite(full))
  assert evaluator.cnn_calls == 2 and evaluator.pairs_scored == 500  # 10 = 8 + 2
  assert evaluator.images_encoded == 10
  texts = np.array([1, 20, 49])
  items, direct = _direct_scores(evaluator, model, texts)
  np.testing.assert_allclose(full[np.ix_(items, texts)], direct, rtol=1e-4, atol=1e-5)
  # Two-stage with k >= the number of images keeps every pair: the same matrix.
  evaluator.top_k = 10
  np.testing.assert_array_equal(evaluator.score_matrix(state), full)
  assert evaluator.cnn_calls == 4
  # A small k scores only the candidates, exactly as the full model does.
  evaluator.top_k = 2
  two_stage = evaluator.score_matrix(state)
  scored = np.isfinite(two_stage)
  assert evaluator.pairs_scored == scored.sum() < 500
  assert np.all(scored.sum(axis=1) >= 2) and np.all(scored.sum(axis=0) >= 2)
  np.testing.assert_array_equal(two_stage[scored], full[scored])
  names = dict(evaluator.metrics(two_stage))
  assert "two_stage_top2/rsum" in names and not any(n.startswith("full") for n in names)


def test_frozen_backbone_gets_no_gradient(fresh_model):
  # The demo's retrieval config freezes the CNN: one training step leaves it exactly as
  # it was and moves the rest.
  _, state, _, run = fresh_model
  before = dict(flat_arrays(nnx.to_pure_dict(state.params)))
  batch = run.to_global(next(run.data.train_iterator))
  after_state, measurements = run.step.step_fn(jax.tree.map(jnp.copy, state), batch)
  after = dict(flat_arrays(nnx.to_pure_dict(after_state.params)))
  backbone = [p for p in before if BACKBONE in p]
  assert backbone and all(np.array_equal(before[p], after[p]) for p in backbone)
  assert any(not np.array_equal(before[p], after[p]) for p in before if BACKBONE not in p)
  assert np.isfinite(measurements["l2_grads"]) and measurements["l2_grads"] > 0
