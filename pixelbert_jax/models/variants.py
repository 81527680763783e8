"""Every size in one place: backbones, Transformers and the Pixel-BERT presets.

Sizes follow torchvision (ResNet / ResNeXt) and BERT; the tiny ones serve tests and the
laptop demo. A preset names a backbone and a Transformer; any field can be overridden.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
  """A ResNet / ResNeXt in torchvision's layout (v1.5: stride on the 3x3 conv)."""
  block: str  # "basic" or "bottleneck"
  stage_sizes: tuple[int, ...]
  stage_planes: tuple[int, ...] = (64, 128, 256, 512)
  groups: int = 1
  width_per_group: int = 64
  stem_width: int = 64

  @property
  def expansion(self) -> int:
    return 4 if self.block == "bottleneck" else 1

  @property
  def out_channels(self) -> int:
    return self.stage_planes[-1] * self.expansion

  @property
  def stride(self) -> int:
    """Output stride: stem conv and max-pool (4), then 2 per stage after the first."""
    return 4 * 2 ** (len(self.stage_sizes) - 1)


@dataclasses.dataclass(frozen=True)
class TransformerSpec:
  """A BERT encoder and its text embeddings."""
  num_layers: int
  hidden: int
  heads: int
  mlp: int
  vocab_size: int = 30522
  max_positions: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  init_std: float = 0.02  # BERT's; about 1/sqrt(hidden) suits narrow models better


BACKBONES = {
    "resnet18": BackboneSpec("basic", (2, 2, 2, 2)),
    "resnet34": BackboneSpec("basic", (3, 4, 6, 3)),
    "resnet50": BackboneSpec("bottleneck", (3, 4, 6, 3)),
    "resnet101": BackboneSpec("bottleneck", (3, 4, 23, 3)),
    "resnet152": BackboneSpec("bottleneck", (3, 8, 36, 3)),
    "resnext50_32x4d": BackboneSpec("bottleneck", (3, 4, 6, 3), groups=32,
                                    width_per_group=4),
    "resnext101_32x8d": BackboneSpec("bottleneck", (3, 4, 23, 3), groups=32,
                                     width_per_group=8),
    "resnext152_32x8d": BackboneSpec("bottleneck", (3, 8, 36, 3), groups=32,
                                     width_per_group=8),
    # Three stages give output stride 16, so a 128-px image keeps dozens of pixels.
    "tiny": BackboneSpec("basic", (1, 1, 1), stage_planes=(16, 32, 64), stem_width=16),
}

TRANSFORMERS = {
    "bert_base": TransformerSpec(num_layers=12, hidden=768, heads=12, mlp=3072),
    "bert_large": TransformerSpec(num_layers=24, hidden=1024, heads=16, mlp=4096),
    "tiny": TransformerSpec(num_layers=2, hidden=64, heads=4, mlp=128, vocab_size=512,
                            max_positions=64, init_std=0.125),
}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Everything that fixes the model's structure and numerics."""
  backbone: BackboneSpec
  transformer: TransformerSpec
  pixel_pool: bool = True  # the paper's 2x2 max-pool after the backbone
  pixel_layer_norm: bool = True
  pixel_pos_emb: bool = False  # learned 2-D position embeddings (ClipBERT), off in paper
  max_grid: tuple[int, int] = (32, 32)  # largest feature grid the 2-D embeddings cover
  train_bn_stats: bool = False  # frozen batch-norm statistics by default
  dropout: float = 0.1
  dtype: str = "float32"  # compute dtype; parameters stay float32
  # Rematerialisation per Transformer layer and CNN block: none / full / dots / names
  # (`models/remat.py`; a bool from older configs means full or none).
  remat: str = "none"
  # The attention core through `jax.nn.dot_product_attention` (cuDNN on a GPU).
  fused_attention: bool = False
  # Per-channel statistics that uint8 images are normalised with, in [0, 1] units.
  image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
  image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)

  @property
  def pixel_stride(self) -> int:
    return self.backbone.stride * (2 if self.pixel_pool else 1)


PRESETS = {
    "R50": dict(backbone="resnet50", transformer="bert_base"),
    "R101": dict(backbone="resnet101", transformer="bert_base"),
    "R152": dict(backbone="resnet152", transformer="bert_base"),
    "X152": dict(backbone="resnext152_32x8d", transformer="bert_base"),
    "tiny": dict(backbone="tiny", transformer="tiny", pixel_pool=False),
}


def model_config(preset: str = "R50", **overrides: Any) -> ModelConfig:
  """Builds a ModelConfig from a preset name plus overrides.

  `backbone` / `transformer` overrides may be names from the tables or specs; any other
  key overrides a ModelConfig field, and `transformer_<field>` overrides one
  TransformerSpec field (e.g. `transformer_vocab_size=1000`).
  """
  if preset not in PRESETS:
    raise ValueError(f"Unknown model preset {preset!r}; known: {sorted(PRESETS)}")
  fields = {**PRESETS[preset], **overrides}
  spec_overrides = {k[len("transformer_"):]: fields.pop(k)
                    for k in list(fields) if k.startswith("transformer_")}
  fields["backbone"] = _lookup(fields["backbone"], BACKBONES, "backbone")
  transformer = _lookup(fields["transformer"], TRANSFORMERS, "transformer")
  fields["transformer"] = dataclasses.replace(transformer, **spec_overrides)
  if "max_grid" in fields:
    fields["max_grid"] = tuple(fields["max_grid"])
  return ModelConfig(**fields)


def from_config(model_cfg: Mapping[str, Any], vocab_size: int) -> ModelConfig:
  """A ModelConfig from a run's `config.model` (a preset and its overrides); the
  tokenizer fixes the vocabulary. Sequences (JSON made them lists) become tuples."""
  fields = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(model_cfg).items()}
  preset = fields.pop("preset")
  for name in ("max_grid", "image_mean", "image_std"):
    fields[name] = tuple(fields[name])
  return model_config(preset, transformer_vocab_size=vocab_size, **fields)


def _lookup(value, table: dict, kind: str):
  if not isinstance(value, str):
    return value
  if value not in table:
    raise ValueError(f"Unknown {kind} {value!r}; known: {sorted(table)}")
  return table[value]
