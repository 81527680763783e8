"""Blocks shared by every task config: model, data, optimiser, mesh, checkpoints, logging."""

import ml_collections

from pixelbert_jax import sharding

ConfigDict = ml_collections.ConfigDict
# The CNN's parameters, by name: the `cnn` optimiser group, or `frozen` to freeze it.
BACKBONE = "^pixelbert/pixel_encoder/backbone/"


def model(preset: str = "R50") -> ConfigDict:
  """Model structure; `preset` picks sizes from `pixelbert_jax.models.variants`."""
  return ConfigDict(dict(
      preset=preset, dtype="bfloat16", dropout=0.1, pixel_pool=True, pixel_layer_norm=True,
      pixel_pos_emb=False, max_grid=(32, 32), train_bn_stats=False, remat=False,
      # The backbone's input statistics (torchvision's ImageNet ones); the model
      # normalises the pipeline's uint8 images with them on the device.
      image_mean=(0.485, 0.456, 0.406), image_std=(0.229, 0.224, 0.225),
      vocab_size=30522))


def data(kind: str) -> ConfigDict:
  """Where the data lives and how it is preprocessed (the paper's R50 resolution)."""
  return ConfigDict(dict(
      kind=kind, root="", tokenizer="", max_text_len=40,
      image_short_side=800, image_long_side=1333,
      aspect_ratios=(9 / 16, 3 / 4, 1.0, 4 / 3, 16 / 9), bucket_multiple=64,
      mlm_probability=0.15, mlm_focus_words=(), mlm_focus_share=0.0, num_workers=8, max_skip_fraction=0.01,
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
  config.profile_steps = 0
  config.max_consecutive_nonfinite = 10
  config.mode = "train"  # or "eval"
  config.debug_batch_digests = False  # write a digest of every batch (resume tests)
  return config


def demo_optimizer() -> ConfigDict:
  """The demos' optimiser: the paper's groups at from-scratch rates, linear decay, and
  the CNN frozen as its synthetic pre-training left it. Trained on, its pixel tokens
  lose the objects' shapes (a linear probe: 0.41 against 0.93 frozen) and the VQA demo
  scores 69.2 % instead of 78.7 %."""
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
  keeps 8 x 8 to 8 x 14 pixels.

  The tiny preset's 2 x 64 Transformer learns the demo's tasks far less well (VQA
  61.0 % against 78.7 %, shapes at chance) and its colour words never attend to their
  colour; these do (README, "Demo results")."""
  config.model = model("tiny")
  config.model.update(dtype="float32", dropout=0.0, pixel_pool=False,
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
