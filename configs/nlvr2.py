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
  config = common.fine_tuning("nlvr2", "^nlvr2_head/", batch=128, epochs=10,
                              every_steps=2000)
  # Each a list of JSON-lines files (train + dev for a test-P submission); a single
  # path needs no brackets on the command line.
  config.data.update(train_file=(), eval_file=(), images="")
  # `demo`: the demo model on the synthetic world's NLVR2 files.
  return common.with_variant(config, variant, lambda c: common.demo_fine_tuning(
      c, "^nlvr2_head/", max_text_len=24))
