"""Blocks shared by every task config: model, data, optimiser, mesh, checkpoints, logging."""

from collections.abc import Callable

import ml_collections

from pixelbert_jax import sharding
from pixelbert_jax.data import data_config

ConfigDict = ml_collections.ConfigDict
# The CNN's parameters, by name: the `cnn` optimiser group, or `frozen` to freeze it.
BACKBONE = "^pixelbert/pixel_encoder/backbone/"


def model(preset: str = "R50") -> ConfigDict:
  """Model structure; `preset` picks sizes from `pixelbert_jax.models.variants`."""
  return ConfigDict(dict(
      preset=preset, dtype="bfloat16", dropout=0.1, pixel_pool=True, pixel_layer_norm=True,
      pixel_pos_emb=False, max_grid=(32, 32), train_bn_stats=False, remat="none",
      # The attention core as one fused op (cuDNN on GPUs; see models/transformer.py).
      fused_attention=True,
      # The backbone's input statistics (torchvision's ImageNet ones); the model
      # normalises the pipeline's uint8 images with them on the device.
      image_mean=(0.485, 0.456, 0.406), image_std=(0.229, 0.224, 0.225)))


def data(kind: str) -> ConfigDict:
  """Where the data lives and how it is preprocessed: the pipelines' fields with their
  defaults (`data_config.DATA_DEFAULTS`, the paper's R50 resolution), 8 loading workers."""
  return ConfigDict(dict(
      data_config.DATA_DEFAULTS, kind=kind, root="", tokenizer="", num_workers=8,
      synthetic_num_images=3000, synthetic_seed=0))


def optimizer(cnn_lr: float = 1e-2, transformer_lr: float = 1e-4) -> ConfigDict:
  """The paper's two optimisers, warm-up and step decay at 25/40 and 35/40 of training."""
  return ConfigDict(dict(
      groups=dict(
          frozen=dict(pattern="^$", optimizer="frozen"),
          cnn=dict(pattern=BACKBONE, optimizer="sgd",
                   lr=cnn_lr, momentum=0.9, weight_decay=5e-4),
          transformer=dict(pattern=".*", optimizer="adamw", lr=transformer_lr,
                           b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-2),
      ),
      # BERT's practice: no weight decay on biases and normalisation parameters.
      no_decay_pattern=r"(bias|scale)$",
      schedule="step", decay_fractions=(25 / 40, 35 / 40), decay_factor=0.1,
      warmup_steps=-1, warmup_fraction=0.02, clip_grad_norm=1.0))


def base(task: str) -> ConfigDict:
  """Run-level fields every task shares."""
  config = ConfigDict()
  config.task = task
  config.seed = 0
  config.global_batch_size = 256
  config.micro_batches = 1  # gradient accumulation: micro-batches per optimiser update
  config.num_epochs = 1.0
  config.num_train_steps = -1  # > 0 overrides num_epochs
  config.mesh = ConfigDict(dict(shape=(-1, 1, 1), axes=sharding.MESH_AXES))
  config.sharding_rules = tuple(sharding.DEFAULT_RULES)
  config.init = ""  # an import_weights directory (backbone / BERT initialisation)
  # or "synthetic": a backbone trained on synthetic scenes with these settings.
  config.synthetic_backbone = ConfigDict(dict(steps=300, num_scenes=3200, batch_size=64,
                                              learning_rate=3e-3))
  config.init_from = ""  # a workdir or checkpoint of another run (fine-tuning)
  config.resume_from = ""  # an explicit checkpoint to resume from
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  config.async_checkpoints = True
  config.log_every_steps = 50
  config.eval_every_steps = 1000
  config.eval_batches = 50
  config.eval_batch_size = 0  # 0: the training batch size
  config.profile_steps = 0
  # XLA's persistent compilation cache: "" = $PIXELBERT_CACHE/xla (or the user's
  # JAX_COMPILATION_CACHE_DIR), "none" = off, else a folder (`compile_cache`).
  config.xla_cache_dir = ""
  config.device_prefetch = 2  # batches read and put on the devices ahead of the step
  config.max_consecutive_nonfinite = 10
  config.mode = "train"  # or "eval"
  config.debug_batch_digests = False  # write a digest of every batch (resume tests)
  return config


def demo_optimizer() -> ConfigDict:
  """The demos' optimiser: the paper's groups at from-scratch rates, linear decay, and
  the CNN frozen as its synthetic pre-training left it (why: benchmarks/RESULTS.md,
  "The wider model becomes the demo")."""
  opt = optimizer(cnn_lr=2e-2, transformer_lr=5e-4)
  opt.update(schedule="linear", warmup_fraction=0.05)
  opt.groups.frozen.pattern = BACKBONE
  return opt


def with_head_group(opt: ConfigDict, pattern: str) -> ConfigDict:
  """Gives a task head its own group (AdamW like the body) so its rate can change."""
  opt.groups.head = dict(opt.groups.transformer, pattern=pattern)
  return opt


def demo(config: ConfigDict, *, max_text_len: int, num_train_steps: int,
         every_steps: int) -> None:
  """What every demo shares: the tiny CNN under a 4-layer, width-128 Transformer,
  float32 and no dropout, the synthetic world at 128 px, batch 32, a fixed number of
  steps, evaluations and saves every `every_steps`. Stride 16 without the extra pool
  keeps 8 x 8 to 8 x 14 pixels. Why this width: benchmarks/RESULTS.md, "The wider
  model becomes the demo"."""
  config.model = model("tiny")
  # Explicit attention on the CPU: off a GPU the fused op runs XLA einsums in the
  # layout the heads-first products replaced (benchmarks/RESULTS.md, "The demo in
  # minutes").
  config.model.update(dtype="float32", dropout=0.0, pixel_pool=False, fused_attention=False,
                      transformer_num_layers=4, transformer_hidden=128,
                      transformer_mlp=256, transformer_init_std=0.088)
  config.data.update(kind="synthetic", image_short_side=128, image_long_side=224,
                     max_text_len=max_text_len, num_workers=0,
                     synthetic_num_images=3000)
  config.init = "synthetic"  # the demos' stand-in for an ImageNet backbone
  config.synthetic_backbone.steps = 1000
  config.global_batch_size = 32
  config.num_epochs = -1
  config.num_train_steps = num_train_steps
  config.log_every_steps = 50
  config.eval_every_steps = config.checkpoint_every_steps = every_steps


def fine_tuning(task: str, head_pattern: str, *, batch: int, epochs: float,
                every_steps: int) -> ConfigDict:
  """What the fine-tuning configs share: R50, the pre-training optimisers with VQA's
  step decay at 12/18 and 16/18 of training, the task head in a group of its own, and
  an evaluation of the whole eval split every `every_steps`."""
  config = base(task)
  config.model = model("R50")
  config.data = data(task)
  config.optimizer = with_head_group(optimizer(), head_pattern)
  config.optimizer.decay_fractions = (12 / 18, 16 / 18)
  config.global_batch_size = batch
  config.num_epochs = epochs
  config.eval_every_steps = every_steps
  return config


def demo_fine_tuning(config: ConfigDict, head_pattern: str, *, max_text_len: int) -> None:
  """The demo model fine-tuned for 500 steps on the synthetic world (`demo`)."""
  demo(config, max_text_len=max_text_len, num_train_steps=500, every_steps=250)
  config.optimizer = with_head_group(demo_optimizer(), head_pattern)
  config.eval_batch_size = 64


def with_variant(config: ConfigDict, variant: str,
                 demo_fn: Callable[[ConfigDict], None]) -> ConfigDict:
  """The variants of the paper's task configs: R50 (the default), X152 (ResNeXt-152
  at 600 / <= 1000 px, as the paper) and demo (`demo_fn`)."""
  if variant == "X152":
    config.model = model("X152")
    config.data.update(image_short_side=600, image_long_side=1000)
  elif variant == "demo":
    demo_fn(config)
  elif variant not in ("", "R50"):
    raise ValueError(f"Unknown variant {variant!r}: use R50 (default), X152 or demo")
  return config
