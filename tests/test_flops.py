"""The analytic FLOP count agrees with published numbers and with XLA's own count."""

import jax
import jax.numpy as jnp
from flax import nnx

from pixelbert_jax import flops
from pixelbert_jax.models import variants
from pixelbert_jax.models.pixelbert import PixelBert


def test_resnet50_at_224_is_4_1_gmacs():
  spec = variants.BACKBONES["resnet50"]
  assert abs(flops.backbone_flops(spec, 224, 224) / 2e9 - 4.09) < 0.01


def test_matches_xla_cost_analysis_on_the_tiny_model():
  config = variants.model_config("tiny", pixel_pool=True)
  graphdef, state = nnx.split(PixelBert(config, rngs=nnx.Rngs(0)))

  def forward(state, images, sizes, ids, text_mask):
    model = nnx.merge(graphdef, state)
    tokens, pixel_mask = model.encode_pixels(images, sizes)
    return model(ids, text_mask, tokens, pixel_mask)[0]

  args = (state, jnp.zeros((1, 131, 97, 3)), jnp.array([[131, 97]]),
          jnp.zeros((1, 17), jnp.int32), jnp.ones((1, 17), bool))
  cost = jax.jit(forward).lower(*args).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  analytic = flops.pair_flops(config, 131, 97, 17).total
  # XLA also counts element-wise work, which the analytic count leaves out.
  assert 0.97 < analytic / cost["flops"] <= 1.0
