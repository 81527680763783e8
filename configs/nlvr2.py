r"""Pixel-BERT fine-tuning on NLVR2 (the "pair" setting).

  python -m pixelbert_jax.main --config=configs/nlvr2.py --workdir=DIR \
      --config.init_from=PRETRAIN_WORKDIR \
      --config.data.tokenizer=wordpiece:/path/to/bert-base-uncased/vocab.txt \
      --config.data.train_file=.../nlvr2/data/train.json \
      --config.data.eval_file=.../nlvr2/data/dev.json \
      --config.data.images=.../nlvr2/images                                  # paper R50
  python -m pixelbert_jax.main --config=configs/nlvr2.py:demo --workdir=DIR \
      [--config.init_from=/tmp/pixelbert_demo]                                # laptop
  python -m pixelbert_jax.main --config=configs/nlvr2.py:demo --workdir=DIR \
      --config.mode=eval

The paper's recipe (R50): each (image, statement) pair through the Transformer, the two
[CLS] vectors concatenated into an MLP classifier, cross-entropy; full pixel grid (no
sampling); batch 128; the pre-training optimisers (SGD 1e-2 for the CNN, AdamW 1e-4 for
the Transformer and the head). The paper states no schedule for NLVR2: we assume 10
epochs (ViLT's NLVR2 length) with the learning rate x 0.1 at the same fractions as
VQA's (12/18 and 16/18 of training). `data.images` is the folder that holds the
official `train/`, `dev/` and `test1/` image folders. For a test-P score, point
`eval_file` at test1.json; every evaluation writes `nlvr2_predictions_step{N}.csv`
in the official format. `demo` fine-tunes the tiny model on the synthetic world.
"""

import ml_collections

from configs import common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = common.base("nlvr2")
  config.model = common.model("X152" if variant == "X152" else "R50")
  config.data = common.data("nlvr2")
  config.data.update(train_file="", eval_file="", images="")
  config.optimizer = common.optimizer()
  config.optimizer.decay_fractions = (12 / 18, 16 / 18)
  common.with_head_group(config.optimizer, "^nlvr2_head/")
  config.eval_batch_size = 0  # 0: the training batch size
  config.global_batch_size = 128
  config.num_epochs = 10
  # Every evaluation predicts the whole eval split (config.eval_batches is not used).
  config.eval_every_steps = 2000
  if variant == "X152":
    config.data.update(image_short_side=600, image_long_side=1000)
  elif variant == "demo":
    _demo(config)
  elif variant not in ("", "R50"):
    raise ValueError(f"Unknown variant {variant!r}: use R50 (default), X152 or demo")
  return config


def _demo(config: ml_collections.ConfigDict) -> None:
  """The tiny model of `configs/pretrain.py:demo` on the synthetic world's NLVR2 files."""
  common.demo(config, max_text_len=24, num_train_steps=500, every_steps=250)
  config.optimizer = common.with_head_group(common.demo_optimizer(), "^nlvr2_head/")
  config.eval_batch_size = 64
