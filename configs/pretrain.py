r"""Pixel-BERT pre-training with MLM + ITM and random pixel sampling.

  python -m pixelbert_jax.main --config=configs/pretrain.py --workdir=DIR     # paper R50
  python -m pixelbert_jax.main --config=configs/pretrain.py:X152 --workdir=DIR
  python -m pixelbert_jax.main --config=configs/pretrain.py:demo --workdir=DIR  # laptop

The paper's recipe (R50): COCO (Karpathy train + restval) + Visual Genome, images at
short side 800 / long side <= 1333, 100 sampled pixels, batch 4096, 40 epochs with the
learning rate x 0.1 at epochs 25 and 35; SGD (1e-2, wd 5e-4) for the CNN and AdamW
(1e-4, wd 1e-2) for the Transformer. `demo` is a small model on the embedded synthetic
world, about 30 minutes on 2 CPU cores.
"""

import ml_collections

from configs import common
from pixelbert_jax.data import synthetic


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = common.base("pretrain")
  config.model = common.model("R50")
  config.data = common.data("coco_vg")
  config.data.update(karpathy_json="", coco_image_root="", vg_regions="",
                     vg_image_data="", vg_image_root="")
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
  return common.with_variant(config, variant, _demo)


def _demo(config: ml_collections.ConfigDict) -> None:
  """The demo model on the synthetic world: learns to look in minutes on a laptop.

  Half of the masked positions go to colour, shape and count words where a caption has
  them, so that a few thousand steps teach the model to read the image
  (benchmarks/RESULTS.md, "Demo grounding")."""
  common.demo(config, max_text_len=24, num_train_steps=2000, every_steps=500)
  config.optimizer = common.demo_optimizer()
  config.num_sampled_pixels = 48
  config.eval_batches = 20
  config.data.update(mlm_focus_words=synthetic.VISUAL_WORDS, mlm_focus_share=0.5)
  # Swapped captions for the evaluation's binding measure (`itm_swap_ranking`) only;
  # training on them did worse (benchmarks/RESULTS.md, "Binding experiments").
  config.data.itm_swap_words = (tuple(synthetic.COLOURS), synthetic.SHAPES)
