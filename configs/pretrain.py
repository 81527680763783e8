r"""Pixel-BERT pre-training with MLM + ITM and random pixel sampling.

  python -m pixelbert_jax.main --config=configs/pretrain.py --workdir=DIR     # paper R50
  python -m pixelbert_jax.main --config=configs/pretrain.py:X152 --workdir=DIR
  python -m pixelbert_jax.main --config=configs/pretrain.py:demo --workdir=DIR  # laptop
  python -m pixelbert_jax.main --config=configs/pretrain.py:cc --workdir=DIR \
      --config.data.mixture.coco.paths="('/data/dataset_coco.json', '/data/coco')" ...
  python -m pixelbert_jax.main --config=configs/pretrain.py:demo_mixture --workdir=DIR

The paper's recipe (R50): COCO (Karpathy train + restval) + Visual Genome, images at
short side 800 / long side <= 1333, 100 sampled pixels, batch 4096, 40 epochs with the
learning rate x 0.1 at epochs 25 and 35; SGD (1e-2, wd 5e-4) for the CNN and AdamW
(1e-4, wd 1e-2) for the Transformer. `demo` is a small model on the embedded synthetic
world, about 6 minutes on 2 CPU cores.

Beyond the paper, `cc` pre-trains on a weighted mixture (`data.mixture`, see
`pixelbert_jax.data.mixture`): COCO, Visual Genome and CC3M, each source
`{format, paths, weight, max_skip_fraction, image_pattern}`; the paths are the user's.
`demo_mixture` is the demo on the synthetic world's twin of it: its COCO, VG and
CC3M-style web corpus (noisy captions, dead urls).
"""

import ml_collections

from configs import common
from pixelbert_jax.data import data_config
from pixelbert_jax.data import synthetic


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = common.base("pretrain")
  config.model = common.model("R50")
  config.data = common.data("coco_vg")
  config.data.update(karpathy_json="", coco_image_root="", vg_regions="",
                     vg_image_data="", vg_image_root="")
  # name -> `data_config.mixture_source`; empty: the fields above (COCO + VG).
  config.data.mixture = ml_collections.ConfigDict()
  config.optimizer = common.optimizer()
  config.objectives = ml_collections.ConfigDict(dict(mlm=True, itm=True))
  config.num_sampled_pixels = 100
  config.eval_num_sampled_pixels = None
  config.probe_words = ()
  # Hard ITM negatives (`data.swaps`), beyond the paper: this share of the negatives
  # gets its own caption with one word of `data.itm_swap_words`' groups swapped.
  config.itm_swap_share = 0.0
  config.global_batch_size = 4096
  config.num_epochs = 40
  if variant == "cc":
    _cc(config)
    return config
  if variant == "demo_mixture":
    _demo(config)
    _demo_mixture(config)
    return config
  return common.with_variant(config, variant, _demo)


def _cc(config: ml_collections.ConfigDict) -> None:
  """COCO + VG + CC3M at 0.25 / 0.35 / 0.4 of each epoch (paths set by the user).

  An epoch of a mixture holds as many examples as its sources: about 0.57 M COCO
  captions, 5.4 M VG phrases and 2.8 M CC3M pairs (of 3.3 M urls) make 8.8 M, so 27
  epochs see about the paper's 40 x 6 M examples. CC3M loses about 15 % of its rows to
  dead urls: its reader may skip up to 20 %."""
  source = data_config.mixture_source
  config.data.mixture = ml_collections.ConfigDict(dict(
      coco=source("karpathy", ("", ""), 0.25),
      vg=source("vg", ("", "", ""), 0.35),
      cc3m=source("cc3m", ("", ""), 0.4, max_skip_fraction=0.2)))
  config.num_epochs = 27


def _demo_mixture(config: ml_collections.ConfigDict) -> None:
  """The demo on the synthetic world's twin of `cc`: its COCO, VG and CC3M-style web
  corpus (a 1/8-size pool of web images, one noisy caption each, 1 url in 7 dead)."""
  source = data_config.mixture_source
  config.data.mixture = ml_collections.ConfigDict(dict(
      coco=source("karpathy", ("karpathy_coco", "coco_root"), 0.5),
      vg=source("vg", ("vg_region_descriptions", "vg_image_data", "vg_root"), 0.2),
      cc3m=source("cc3m", ("cc3m_tsv", "cc3m_images"), 0.3, max_skip_fraction=0.25)))


def _demo(config: ml_collections.ConfigDict) -> None:
  """The demo model on the synthetic world: learns to look in minutes on a laptop.

  Half of the masked positions go to colour, shape and count words where a caption has
  them, so that a few thousand steps teach the model to read the image
  (benchmarks/RESULTS.md, "Demo grounding")."""
  common.demo(config, max_text_len=24, num_train_steps=1400, every_steps=350)
  # One 128 x 128 bucket: one compile instead of five. The fine-tunes keep the long
  # side at 224 (VQA lost 17 points at 128; benchmarks/RESULTS.md, "A cheaper demo
  # recipe").
  config.data.image_long_side = 128
  config.optimizer = common.demo_optimizer()
  # Twice the fine-tunes' rate: 1400 steps reach what 2000 at 5e-4 did
  # (benchmarks/RESULTS.md, "A cheaper demo recipe").
  config.optimizer.groups.transformer.lr = 1e-3
  config.num_sampled_pixels = 48
  config.eval_batches = 20
  config.data.update(mlm_focus_words=synthetic.VISUAL_WORDS, mlm_focus_share=0.5)
  # Swapped captions for the evaluation's binding measure (`itm_swap_ranking`) only;
  # training on them did worse (benchmarks/RESULTS.md, "Binding experiments").
  config.data.itm_swap_words = (tuple(synthetic.COLOURS), synthetic.SHAPES)
