"""The fused attention core matches the explicit one, and every rematerialisation policy
computes the same loss and gradients, recomputing what it does not save.

XLA:CPU's scheduler does not turn recomputation into a smaller peak (its compiled
memory analysis barely moves), so the memory each policy saves is for an accelerator
to measure; here the compiled step is checked to recompute.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pixelbert_jax.models import remat, variants
from pixelbert_jax.models.pixelbert import PixelBert
from pixelbert_jax.models.transformer import Encoder, SelfAttention


def _attention_inputs(batch=3, length=13, hidden=64):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(batch, length, hidden)), jnp.float32)
  mask = np.ones((batch, length), bool)
  mask[0, 9:] = False  # padding at the end, as text is padded
  mask[1, 2:5] = False  # holes, as unsampled pixel slots are
  return x, jnp.asarray(mask)


def _attention_pair(dtype):
  """Two layers with the same weights: the explicit core and the fused one."""
  spec = variants.TRANSFORMERS["tiny"]
  make = lambda fused: SelfAttention(spec, dropout=0.0, dtype=dtype, fused=fused,
                                     rngs=nnx.Rngs(0))
  return make(False), make(True)


@pytest.mark.parametrize("dtype, tolerance", [(jnp.float32, 2e-5), (jnp.bfloat16, 2e-2)])
def test_fused_attention_matches_explicit_forward_and_gradients(dtype, tolerance):
  explicit, fused = _attention_pair(dtype)
  x, mask = _attention_inputs()

  def loss(layer, x):
    out, _ = layer(x.astype(dtype), mask, need_probs=False)
    return jnp.sum(out.astype(jnp.float32) ** 2), out

  (value_e, out_e), grads_e = nnx.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
      explicit, x)
  (value_f, out_f), grads_f = nnx.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
      fused, x)
  np.testing.assert_allclose(np.float32(out_f), np.float32(out_e), rtol=tolerance,
                             atol=tolerance)
  np.testing.assert_allclose(value_f, value_e, rtol=tolerance)
  # One scale for all: the key bias's gradient is zero up to rounding (softmax does
  # not see a shift shared by all keys), so its own scale would be noise.
  scale = max(float(jnp.max(jnp.abs(g.astype(jnp.float32))))
              for g in jax.tree.leaves(grads_e))
  for g_f, g_e in zip(jax.tree.leaves(grads_f), jax.tree.leaves(grads_e)):
    np.testing.assert_allclose(np.float32(g_f) / scale, np.float32(g_e) / scale,
                               atol=tolerance)


def test_fused_attention_ignores_masked_keys_and_falls_back_for_probabilities():
  explicit, fused = _attention_pair(jnp.float32)
  x, mask = _attention_inputs()
  changed = x.at[0, 10].set(100.0).at[1, 3].set(-50.0)  # only masked keys change
  out, probs = fused(x, mask, need_probs=False)
  out_changed, _ = fused(changed, mask, need_probs=False)
  assert probs is None
  keep = np.asarray(mask)
  np.testing.assert_allclose(np.asarray(out_changed)[keep], np.asarray(out)[keep],
                             rtol=1e-5, atol=1e-5)
  # Asked for probabilities, the fused layer computes them the explicit way.
  _, probs = fused(x, mask, need_probs=True)
  _, expected = explicit(x, mask, need_probs=True)
  np.testing.assert_allclose(probs, expected, rtol=1e-6)
  assert float(jnp.max(probs[0, :, :, 9:])) == 0.0


def _model_and_batch(policy: str):
  config = variants.model_config("tiny", dropout=0.0, remat=policy,
                                 transformer_num_layers=3)
  model = PixelBert(config, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(1)
  batch = dict(images=jnp.asarray(rng.normal(size=(2, 64, 80, 3)), jnp.float32),
               sizes=jnp.asarray([[64, 80], [48, 64]]),
               ids=jnp.asarray(rng.integers(5, 512, size=(2, 9)), jnp.int32),
               text_mask=jnp.ones((2, 9), bool))
  return model, batch


def _loss(model, batch):
  tokens, pixel_mask = model.encode_pixels(batch["images"], batch["sizes"])
  _, aux = model(batch["ids"], batch["text_mask"], tokens, pixel_mask)
  return jnp.sum(aux["pooled"] ** 2) + jnp.mean(aux["pixels"] ** 2)


def _gradient(policy: str, model_and_batch, loss):
  """(value, gradients) of `loss` and the matrix products in the compiled step."""
  model, batch = model_and_batch(policy)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  grad_fn = jax.jit(jax.value_and_grad(
      # Fresh copies of the other variables in the traced function, as the train step
      # makes them: remat writes them back, and NNX refuses outer-trace variables.
      lambda params, rest, batch: loss(
          nnx.merge(graphdef, params, jax.tree.map(lambda x: x, rest)), batch)))
  compiled = grad_fn.lower(params, rest, batch).compile()
  return compiled(params, rest, batch), len(re.findall(r" dot\(", compiled.as_text()))


def _encoder_and_batch(policy: str):
  spec = variants.TransformerSpec(num_layers=2, hidden=128, heads=4, mlp=256)
  encoder = Encoder(spec, dropout=0.0, dtype=jnp.float32, remat=policy, rngs=nnx.Rngs(0))
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 64, 128)), jnp.float32)
  return encoder, dict(x=x, mask=jnp.ones((2, 64), bool))


def _encoder_loss(encoder, batch):
  return jnp.sum(encoder(batch["x"], batch["mask"])[0] ** 2)


@pytest.mark.parametrize("policy", ["full", "dots", "names"])
def test_every_remat_policy_gives_the_same_gradients(policy):
  """The tiny PixelBert, CNN blocks and Transformer layers both rematerialised."""
  (value, grads), _ = _gradient("none", _model_and_batch, _loss)
  (value_p, grads_p), _ = _gradient(policy, _model_and_batch, _loss)
  np.testing.assert_allclose(value_p, value, rtol=1e-6)
  for g_p, g in zip(jax.tree.leaves(grads_p), jax.tree.leaves(grads)):
    np.testing.assert_allclose(g_p, g, rtol=1e-4, atol=1e-6)


def test_full_remat_recomputes_the_layers_products():
  """How much `dots` and `names` recompute depends on XLA's fusion choices; `full`
  must run some of the forward products again in the backward pass."""
  products = {policy: _gradient(policy, _encoder_and_batch, _encoder_loss)[1]
              for policy in ("none", "full")}
  assert products["full"] > products["none"], products


def test_remat_policy_names_and_old_boolean_configs():
  assert remat.policy_name(False) == "none" and remat.policy_name(True) == "full"
  assert remat.policy_name("dots") == "dots"
  with pytest.raises(ValueError, match="Unknown remat policy 'everything'"):
    remat.policy_name("everything")
