r"""Pixel-BERT fine-tuning on visual entailment (SNLI-VE).

  python -m pixelbert_jax.main --config=configs/snli_ve.py --workdir=DIR \
      --config.init_from=PRETRAIN_WORKDIR \
      --config.data.tokenizer=wordpiece:/path/to/bert-base-uncased/vocab.txt \
      --config.data.train_file=.../snli_ve_train.jsonl \
      --config.data.eval_file=.../snli_ve_dev.jsonl \
      --config.data.images=.../flickr30k-images                              # R50
  python -m pixelbert_jax.main --config=configs/snli_ve.py:demo --workdir=DIR \
      --config.init_from=/tmp/pixelbert_demo                                  # laptop

Pixel-BERT reports no SNLI-VE result; this recipe is an assumption in the paper's
style: a three-way MLP on [CLS] with cross-entropy, the full pixel grid, the
pre-training optimisers (SGD 1e-2 for the CNN, AdamW 1e-4 for the Transformer and the
head), batch 128 and 4 epochs with the learning rate x 0.1 at the same fractions as
VQA's (12/18 and 16/18). `eval_file` may be snli_ve_test.jsonl for a test score.
`demo` fine-tunes the demo model on the synthetic world's SNLI-VE set.
"""

import ml_collections

from configs import common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = common.fine_tuning("snli_ve", "^snli_ve_head/", batch=128, epochs=4,
                              every_steps=2000)
  # Each a list of JSON-lines files; a single path needs no brackets on the command line.
  config.data.update(train_file=(), eval_file=(), images="", max_text_len=32)
  # `demo`: the demo model on the synthetic world's SNLI-VE set.
  return common.with_variant(config, variant, lambda c: common.demo_fine_tuning(
      c, "^snli_ve_head/", max_text_len=16))
