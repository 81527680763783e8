"""Where `config.init` points: an initialisation checkpoint, found by path or by name.

A path names an `import_weights` directory (ImageNet CNN, BERT); the name "synthetic"
names the demos' stand-in for ImageNet, a small backbone trained on synthetic scenes
and kept beside the synthetic world (`synthetic_backbone`).
"""

from pixelbert_jax.weights import synthetic_backbone

SYNTHETIC = "synthetic"


def resolve(config, workdir: str) -> str:
  """`config.init` as an initialisation checkpoint's directory."""
  if config.init == SYNTHETIC:
    return synthetic_backbone.ensure(config, workdir)
  return config.init
