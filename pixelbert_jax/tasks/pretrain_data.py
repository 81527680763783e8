"""Pre-training data: COCO (Karpathy train + restval) and Visual Genome, or the synthetic world.

Nothing from the Karpathy test images reaches pre-training: VG images that are COCO
test images are excluded, as the paper requires.
"""

import time

import jax
from absl import logging
from etils import epath

from pixelbert_jax.data import skips as skips_lib
from pixelbert_jax.data import synthetic
from pixelbert_jax.data import tokenizer as tokenizer_lib
from pixelbert_jax.data.readers import coco, visual_genome

# Words whose masked prediction needs the image: the probe of grounding.
SYNTHETIC_VISUAL_WORDS = synthetic.VISUAL_WORDS
WORLD_MARKER = "world.done"


def world_root(data_cfg, workdir: str) -> epath.Path:
  """The synthetic world's folder: the data root, or one inside the workdir."""
  return epath.Path(data_cfg.root or epath.Path(workdir) / "synthetic_world")


def synthetic_world(data_cfg, workdir: str) -> dict[str, str]:
  """Generates the synthetic world under the data root (or workdir) once; returns paths."""
  root = world_root(data_cfg, workdir)
  marker = root / WORLD_MARKER
  if jax.process_index() > 0:  # process 0 writes the world; the others wait for it
    wait_for(marker)
  elif not marker.exists():
    logging.info("Generating the synthetic world (%d images) in %s",
                 data_cfg.synthetic_num_images, root)
    paths = synthetic.generate(str(root), seed=data_cfg.synthetic_seed,
                               num_images=data_cfg.synthetic_num_images)
    marker.write_text("\n".join(f"{k}\t{v}" for k, v in sorted(paths.items())))
  return dict(line.split("\t", 1) for line in marker.read_text().splitlines())


def wait_for(marker: epath.Path, timeout_s: float = 1800) -> None:
  deadline = time.time() + timeout_s
  while not marker.exists():
    if time.time() > deadline:
      raise TimeoutError(f"{marker} did not appear; did process 0 fail?")
    time.sleep(1)


TOKENIZER_DIR = "tokenizer"  # a run's own copy of its tokenizer, inside its workdir


def make_tokenizer(data_cfg, world: dict | None,
                   workdir: str | None = None) -> tokenizer_lib.Tokenizer:
  """The tokenizer the config names (or the synthetic world's vocabulary); with a
  workdir, process 0 also keeps a copy there so that the run outlives its data."""
  spec = data_cfg.tokenizer or (f"wordpiece:{world['vocab']}" if world else "")
  if not spec:
    raise ValueError("config.data.tokenizer is required for real data, e.g. "
                     "wordpiece:/path/to/bert-base-uncased/vocab.txt")
  tokenizer = tokenizer_lib.from_config(spec)
  if workdir is not None and jax.process_index() == 0:
    tokenizer_lib.save_copy(spec, epath.Path(workdir) / TOKENIZER_DIR)
  return tokenizer


def _karpathy(path, root, splits, skips):
  return list(coco.read_karpathy(path, root, splits=splits, skips=skips))


def pretrain_examples(data_cfg, world: dict | None) -> tuple[list, list, skips_lib.SkipCounter]:
  """(train examples, held-out examples, reader skip counter)."""
  skips = skips_lib.SkipCounter("pretrain-readers",
                                max_skip_fraction=data_cfg.max_skip_fraction)
  if world:
    karpathy, image_root = world["karpathy_coco"], world["coco_root"]
    regions = (world["vg_region_descriptions"], world["vg_image_data"], world["vg_root"])
  else:
    karpathy, image_root = data_cfg.karpathy_json, data_cfg.coco_image_root
    regions = (data_cfg.vg_regions, data_cfg.vg_image_data, data_cfg.vg_image_root)
  train = _karpathy(karpathy, image_root, ("train", "restval"), skips)
  held_out = _karpathy(karpathy, image_root, ("val",), skips)
  if regions[0]:
    test_ids = {int(e.image_id) for e in _karpathy(karpathy, image_root, ("test",), skips)}
    train += list(visual_genome.read_visual_genome(*regions, exclude_coco_ids=test_ids,
                                                   skips=skips))
  logging.info("Pre-training on %d pairs, %d held out; reader skips: %s", len(train),
               len(held_out), skips.counts)
  return train, held_out, skips
