"""Pixel-BERT body and heads: shapes (prime sizes), masks, attention, sizes, precision."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pixelbert_jax.data import images as images_lib
from pixelbert_jax.models import heads, variants
from pixelbert_jax.models.pixel_encoder import grid_size, normalize_images, valid_grid_mask
from pixelbert_jax.models.pixelbert import PixelBert
from pixelbert_jax.models.resnet import ResNet


def _count(module) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def _batch(batch=3, height=97, width=131, text_len=7, vocab=512, seed=0):
  rng = np.random.default_rng(seed)
  images = jnp.asarray(rng.normal(size=(batch, height, width, 3)), jnp.float32)
  sizes = jnp.asarray([[height, width], [53, width], [height, 29]][:batch])
  ids = jnp.asarray(rng.integers(5, vocab, size=(batch, text_len)), jnp.int32)
  text_mask = jnp.asarray(np.arange(text_len)[None, :] < np.array([7, 5, 2])[:batch, None])
  return images, sizes, ids, text_mask


@pytest.fixture(scope="module")
def tiny():
  model = PixelBert(variants.model_config("tiny"), rngs=nnx.Rngs(0))
  model.eval()
  return model


def test_shapes_with_prime_sizes(tiny):
  images, sizes, ids, text_mask = _batch()
  tokens, pixel_mask = tiny.encode_pixels(images, sizes)
  grid = grid_size(97, 131, 16)
  assert grid == (7, 9)
  assert tokens.shape == (3, 63, 64) and pixel_mask.shape == (3, 63)
  np.testing.assert_array_equal(np.asarray(pixel_mask).sum(1), [63, 4 * 9, 7 * 2])
  hidden, aux = tiny(ids, text_mask, tokens, pixel_mask, return_attention=True)
  assert hidden.shape == (3, 70, 64)
  assert aux["pooled"].shape == (3, 64) and aux["text"].shape == (3, 7, 64)
  assert aux["pixels"].shape == (3, 63, 64)
  assert len(aux["attention"]) == 2 and aux["attention"][0].shape == (3, 4, 70, 70)


def test_valid_grid_mask_rounds_up_like_strided_convs():
  mask = valid_grid_mask(jnp.array([[64, 65]]), (2, 3), 32)
  np.testing.assert_array_equal(np.asarray(mask).reshape(2, 3), [[1, 1, 1], [1, 1, 1]])
  mask = valid_grid_mask(jnp.array([[32, 33]]), (2, 3), 32)
  np.testing.assert_array_equal(np.asarray(mask).reshape(2, 3), [[1, 1, 0], [0, 0, 0]])


def test_uint8_images_are_normalised_on_device_like_the_host_would(tiny):
  rng = np.random.default_rng(1)
  sizes = np.array([[97, 131], [53, 131], [97, 29]])
  raw = rng.integers(0, 256, size=(3, 97, 131, 3), dtype=np.uint8)
  # The host path it replaces: normalise each image's true region, pad with zeros.
  mean, std = (np.asarray(s, np.float32) for s in (images_lib.IMAGENET_MEAN,
                                                    images_lib.IMAGENET_STD))
  normalize = lambda image: (image.astype(np.float32) / 255 - mean) / std
  host = np.stack([images_lib.pad_to_bucket(normalize(image[:h, :w]), (97, 131))[0]
                   for image, (h, w) in zip(raw, sizes)])
  device = normalize_images(jnp.asarray(raw), jnp.asarray(sizes),
                            images_lib.IMAGENET_MEAN, images_lib.IMAGENET_STD, jnp.float32)
  np.testing.assert_allclose(device, host, atol=1e-5)
  from_uint8, _ = tiny.encode_pixels(jnp.asarray(raw), jnp.asarray(sizes))
  from_float, _ = tiny.encode_pixels(jnp.asarray(host), jnp.asarray(sizes))
  np.testing.assert_allclose(from_uint8, from_float, atol=1e-4)


def test_attention_ignores_masked_text_and_pixels(tiny):
  images, sizes, ids, text_mask = _batch()
  tokens, pixel_mask = tiny.encode_pixels(images, sizes)
  _, aux = tiny(ids, text_mask, tokens, pixel_mask, return_attention=True)
  probs = np.asarray(aux["attention"][-1])
  keys_valid = np.concatenate([text_mask, pixel_mask], axis=1)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
  assert np.all(probs[~np.broadcast_to(keys_valid[:, None, None, :], probs.shape)] == 0)
  # Changing masked pixel tokens must not change any real token's output.
  noisy = jnp.where(pixel_mask[..., None], tokens, 100.0)
  out, _ = tiny(ids, text_mask, tokens, pixel_mask)
  out_noisy, _ = tiny(ids, text_mask, noisy, pixel_mask)
  np.testing.assert_allclose(out[:, :7], out_noisy[:, :7], atol=1e-5)


def test_preset_sizes_match_published_counts():
  config = variants.model_config("R50")
  model = nnx.eval_shape(lambda: PixelBert(config, rngs=nnx.Rngs(0)))
  assert _count(model.pixel_encoder.backbone) == 23_508_032  # torchvision, minus fc
  bert = _count(model.text_embedder) + _count(model.encoder) + _count(model.pooler)
  assert bert == 109_482_240  # bert-base-uncased BertModel
  x101 = nnx.eval_shape(lambda: ResNet(variants.BACKBONES["resnext101_32x8d"],
                                       rngs=nnx.Rngs(0)))
  assert _count(x101) == 88_791_336 - 2_049_000  # torchvision's count minus fc


def test_paper_resolution_gives_the_published_pixel_count():
  # R50 at 800 x 1333 keeps about 260 pixel tokens after the 2x2 pool (ViLT's table).
  stride = variants.model_config("R50").pixel_stride
  assert stride == 64
  grid = grid_size(800, 1333, stride)
  assert grid[0] * grid[1] == 13 * 21


def test_heads_shapes_and_tied_decoder(tiny):
  images, sizes, ids, text_mask = _batch()
  tokens, pixel_mask = tiny.encode_pixels(images, sizes)
  _, aux = tiny(ids, text_mask, tokens, pixel_mask)
  spec = tiny.config.transformer
  rngs = nnx.Rngs(1)
  mlm = heads.MLMHead(spec, dtype=jnp.float32, rngs=rngs)
  logits = mlm(aux["text"], tiny.text_embedder.word.embedding[...])
  assert logits.shape == (3, 7, spec.vocab_size) and logits.dtype == jnp.float32
  assert "embedding" not in str(nnx.state(mlm))  # tied, not a second table
  itm = heads.ScoreHead(spec.hidden, dtype=jnp.float32, rngs=rngs)
  assert itm(aux["pooled"]).shape == (3,)
  vqa = heads.vqa_head(spec.hidden, 29, dtype=jnp.float32, rngs=rngs)
  assert vqa(aux["pooled"]).shape == (3, 29)
  nlvr2 = heads.nlvr2_pair_head(spec.hidden, dtype=jnp.float32, rngs=rngs)
  pair = jnp.concatenate([aux["pooled"], aux["pooled"][::-1]], axis=-1)
  assert nlvr2(pair).shape == (3, 2)
  retrieval = heads.ScoreHead(spec.hidden, dtype=jnp.float32, rngs=rngs)
  nnx.update(retrieval, nnx.clone(nnx.state(itm)))  # what init_from does for retrieval
  np.testing.assert_array_equal(retrieval(aux["pooled"]), itm(aux["pooled"]))


def test_optional_pool_and_position_embeddings():
  config = variants.model_config("tiny", pixel_pool=True, pixel_pos_emb=True, max_grid=(4, 5))
  model = PixelBert(config, rngs=nnx.Rngs(0))
  images, sizes, _, _ = _batch()
  tokens, mask = model.encode_pixels(images, sizes)
  assert config.pixel_stride == 32 and tokens.shape == (3, 4 * 5, 64)
  with pytest.raises(ValueError, match="max_grid"):
    model.encode_pixels(jnp.zeros((1, 200, 131, 3)), jnp.array([[200, 131]]))


def test_batch_norm_frozen_by_default_trainable_on_request():
  images, sizes, _, _ = _batch()
  for train_stats, should_change in ((False, False), (True, True)):
    model = PixelBert(variants.model_config("tiny", train_bn_stats=train_stats),
                      rngs=nnx.Rngs(0))
    model.train()
    before = np.asarray(model.pixel_encoder.backbone.stem_norm.mean[...]).copy()
    model.encode_pixels(images, sizes)
    after = np.asarray(model.pixel_encoder.backbone.stem_norm.mean[...])
    assert (not np.allclose(before, after)) == should_change


def test_bfloat16_compute_stays_close_to_float32():
  images, sizes, ids, text_mask = _batch()
  outputs = {}
  for dtype in ("float32", "bfloat16"):
    model = PixelBert(variants.model_config("tiny", dtype=dtype), rngs=nnx.Rngs(0))
    model.eval()
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    tokens, pixel_mask = model.encode_pixels(images, sizes)
    hidden, _ = model(ids, text_mask, tokens, pixel_mask)
    assert hidden.dtype == jnp.dtype(dtype)
    outputs[dtype] = np.asarray(hidden, np.float32)
  diff = np.linalg.norm(outputs["bfloat16"] - outputs["float32"])
  assert diff / np.linalg.norm(outputs["float32"]) < 3e-2
