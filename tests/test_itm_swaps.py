"""Hard ITM negatives: one word swapped within its group, in the data and in the loss."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from configs import pretrain as pretrain_config
from conftest import override, trainer_overrides
from pixelbert_jax.data import pipeline, swaps, synthetic
from pixelbert_jax.data import tokenizer as tokenizer_lib
from pixelbert_jax.models import variants
from pixelbert_jax.data.synthetic import cache
from pixelbert_jax.tasks import base as tasks
from pixelbert_jax.tasks import pretrain

GROUPS = (tuple(synthetic.COLOURS), synthetic.SHAPES)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
  vocab = synthetic.write_vocab(str(tmp_path_factory.mktemp("vocab") / "vocab.txt"))
  return tokenizer_lib.from_config(f"wordpiece:{vocab}")


def _group_of(tokenizer, token: int) -> int:
  word = tokenizer.ids_to_text([token])
  return next(i for i, group in enumerate(GROUPS) if word in group)


def test_a_swap_changes_one_word_within_its_group(tokenizer):
  swapper = swaps.WordSwapper.from_words(tokenizer, GROUPS)
  ids, _ = tokenizer.encode("A large red circle left of a small blue star.", 16)
  changed_words = set()
  for seed in range(40):
    swapped, found = swapper(ids, np.random.default_rng(seed))
    assert found
    where = np.flatnonzero(swapped != ids)
    assert len(where) == 1
    old, new = int(ids[where[0]]), int(swapped[where[0]])
    assert _group_of(tokenizer, old) == _group_of(tokenizer, new)
    changed_words.add(tokenizer.ids_to_text([old]))
  assert changed_words == {"red", "circle", "blue", "star"}  # every position is drawn
  plain, _ = tokenizer.encode("There are two objects.", 16)
  same, found = swapper(plain, np.random.default_rng(0))
  assert not found and (same == plain).all()


def test_bad_word_groups_are_refused(tokenizer):
  with pytest.raises(ValueError, match="'reddish' is not one token"):
    swaps.WordSwapper.from_words(tokenizer, [("red", "reddish")])
  with pytest.raises(ValueError, match="two words or more"):
    swaps.WordSwapper.from_words(tokenizer, [("red",), ("circle", "star")])
  with pytest.raises(ValueError, match="a list of words, not the string"):
    swaps.WordSwapper.from_words(tokenizer, ["red"])


def test_pipeline_batches_carry_the_swaps(small_world):
  data = ml_collections.ConfigDict(dict(root=small_world, synthetic_num_images=48,
                                        synthetic_seed=0, max_skip_fraction=0.01))
  world = cache.ensure(data, small_world)
  tokenizer = tokenizer_lib.from_config(f"wordpiece:{world['vocab']}")
  examples = pretrain.read_examples(data, world)[0]
  cfg = dict(global_batch_size=8, image_short_side=64, image_long_side=64,
             max_text_len=16, itm_swap_words=GROUPS)
  batch = next(pipeline.pretrain_pipeline(examples, tokenizer, cfg, seed=0))
  assert batch["swap_ids"].shape == batch["token_ids"].shape
  assert batch["has_swap"].any()
  differ = (batch["swap_ids"] != batch["token_ids"]).sum(axis=1)
  np.testing.assert_array_equal(differ, batch["has_swap"].astype(int))


def test_swapped_negatives_are_own_image_and_label_zero():
  """With share 1, every negative that has a swap scores its own image against its
  swapped caption with label 0; the positives are untouched."""
  config = variants.model_config("tiny", transformer_vocab_size=97, dropout=0.0)
  model = pretrain.PretrainModel(config, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  b, t = 8, 10
  ids = rng.integers(5, 97, (b, t)).astype(np.int32)
  batch = dict(token_ids=ids, text_mask=np.ones((b, t), bool),
               swap_ids=np.where(np.arange(t) == 3, 4, ids).astype(np.int32),
               has_swap=np.arange(b) != 2, valid=np.ones(b, bool))
  tokens = jnp.asarray(rng.normal(size=(b, 6, 64)), jnp.float32)
  mask = jnp.ones((b, 6), bool)
  key = jax.random.key(3)
  sums = pretrain.itm_sums(model, batch, tokens, mask, key, swap_share=1.0)

  partner = np.asarray(pretrain.itm_partners(jax.random.fold_in(key, 1), b))
  negative = partner != np.arange(b)
  swap = negative & batch["has_swap"]
  assert swap.any() and (negative & ~swap).any()
  text = np.where(swap[:, None], batch["swap_ids"], ids[partner])
  _, aux = model.pixelbert(jnp.asarray(text), batch["text_mask"], tokens, mask)
  logits = model.itm_head(aux["pooled"])
  labels = (~negative).astype(np.float32)
  expected = optax.sigmoid_binary_cross_entropy(logits, labels).sum()
  np.testing.assert_allclose(sums["itm_loss"], expected, rtol=1e-5)
  unswapped = pretrain.itm_sums(model, batch, tokens, mask, key, swap_share=0.0)
  assert not np.isclose(unswapped["itm_loss"], sums["itm_loss"])


@pytest.mark.parametrize("share", [0.0, 0.5])
def test_training_batches_carry_swaps_only_when_they_train(small_world, tmp_path, share):
  """The demo names swap words for its evaluation; with share 0 the training pipeline
  leaves them out rather than build and ship captions no loss reads."""
  config = override(pretrain_config.get_config("demo"),
                    dict(trainer_overrides(small_world, 1), itm_swap_share=share))
  assert config.data.itm_swap_words
  batch = next(iter(tasks.get(config).make_data(str(tmp_path)).train_iterator))
  assert ("swap_ids" in batch) == bool(share)
