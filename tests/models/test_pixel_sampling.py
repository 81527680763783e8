"""Random pixel sampling: valid pixels only, no repeats, keyed determinism, gradients."""

import jax
import jax.numpy as jnp
import numpy as np

from pixelbert_jax.models.pixel_sampling import sample_pixels


def _inputs(batch=5, pixels=37, dim=3, seed=0):
  rng = np.random.default_rng(seed)
  tokens = jnp.asarray(rng.normal(size=(batch, pixels, dim)), jnp.float32)
  valid_counts = np.array([37, 20, 11, 3, 0])[:batch]
  mask = jnp.asarray(np.arange(pixels)[None, :] < valid_counts[:, None])
  return tokens, mask, valid_counts


def test_draws_only_valid_pixels_without_repeats():
  tokens, mask, counts = _inputs()
  sampled, sampled_mask, idx = jax.jit(sample_pixels, static_argnums=3)(
      jax.random.key(0), tokens, mask, 11)
  assert sampled.shape == (5, 11, 3)
  for b, count in enumerate(counts):
    kept = np.asarray(idx[b])[np.asarray(sampled_mask[b])]
    assert len(kept) == min(11, count)
    assert len(set(kept.tolist())) == len(kept)
    assert np.all(kept < count)
    np.testing.assert_array_equal(sampled[b][np.asarray(sampled_mask[b])],
                                  np.asarray(tokens[b])[kept])


def test_same_key_same_draw_different_key_different_draw():
  tokens, mask, _ = _inputs()
  first = sample_pixels(jax.random.key(1), tokens, mask, 7)[2]
  again = sample_pixels(jax.random.key(1), tokens, mask, 7)[2]
  other = sample_pixels(jax.random.key(2), tokens, mask, 7)[2]
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(np.sort(first[0]), np.sort(other[0]))


def test_draw_is_uniform_over_valid_pixels():
  tokens, mask, _ = _inputs(batch=2)
  keys = jax.random.split(jax.random.key(3), 2000)
  idx = jax.vmap(lambda k: sample_pixels(k, tokens, mask, 5)[2])(keys)
  hits = np.bincount(np.asarray(idx[:, 1]).ravel(), minlength=37)
  # 2000 draws x 5 of 20 valid pixels: 500 expected per pixel, none outside.
  assert hits[20:].sum() == 0
  assert np.all(np.abs(hits[:20] - 500) < 5 * np.sqrt(500))


def test_fewer_valid_than_k_pads_and_masks():
  tokens, mask, _ = _inputs()
  sampled, sampled_mask, _ = sample_pixels(jax.random.key(0), tokens, mask, 50)
  assert sampled.shape == (5, 50, 3)
  np.testing.assert_array_equal(np.asarray(sampled_mask).sum(1), [37, 20, 11, 3, 0])


def test_disabled_keeps_every_pixel():
  tokens, mask, _ = _inputs()
  sampled, sampled_mask, _ = sample_pixels(jax.random.key(0), tokens, mask, None)
  np.testing.assert_array_equal(sampled, tokens)
  np.testing.assert_array_equal(sampled_mask, mask)


def test_gradients_flow_to_sampled_tokens_only():
  tokens, mask, _ = _inputs()
  loss = lambda t: sample_pixels(jax.random.key(0), t, mask, 6)[0].sum()
  grad = jax.grad(loss)(tokens)
  _, sampled_mask, idx = sample_pixels(jax.random.key(0), tokens, mask, 6)
  expected = np.zeros(tokens.shape[:2])
  for b in range(tokens.shape[0]):
    expected[b, np.asarray(idx[b])] = 1.0
  np.testing.assert_array_equal(np.asarray(grad[..., 0]), expected)
  assert np.asarray(sampled_mask).sum() > 0
