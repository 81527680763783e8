r"""Pixel-BERT fine-tuning and evaluation for image-text retrieval (COCO, Flickr30K).

  python -m pixelbert_jax.main --config=configs/retrieval.py:coco --workdir=DIR \
      --config.init_from=PRETRAIN_WORKDIR \
      --config.data.tokenizer=wordpiece:/path/to/bert-base-uncased/vocab.txt \
      --config.data.karpathy_json=.../dataset_coco.json \
      --config.data.images=.../coco                     # holding train2014/, val2014/
  python -m pixelbert_jax.main --config=configs/retrieval.py:flickr30k --workdir=DIR \
      --config.init_from=PRETRAIN_WORKDIR --config.data.tokenizer=wordpiece:... \
      --config.data.karpathy_json=.../dataset_flickr30k.json \
      --config.data.images=.../flickr30k-images
  python -m pixelbert_jax.main --config=configs/retrieval.py:demo --workdir=DIR \
      [--config.init_from=/tmp/pixelbert_demo]                                # laptop
  python -m pixelbert_jax.main --config=configs/retrieval.py:coco --workdir=DIR \
      --config.mode=eval [--config.eval_top_k=128]           # evaluate a checkpoint

The paper's recipe (R50): each image with its caption and 20 random negative captions,
a one-logit head on [CLS], softmax cross-entropy through the 5 hardest negatives; the
CNN frozen; AdamW 1e-4, wd 1e-2; batch 8 x 64 = 512 images; COCO 4 epochs, Flickr30K
10 epochs with the learning rate x 0.1 after epoch 6. The paper gives no decay for
COCO: we keep the rate constant after warm-up. The score head starts from the
pre-training ITM head (`init_score_head_from_itm`; set it False for a checkpoint
without one). Training reads Karpathy's train + restval (COCO) or train (Flickr30K)
and evaluates on the test split: COCO 5K, plus COCO 1K as the 5-fold average
(`eval_folds`), Flickr30K 1K. Evaluation scores every (image, caption) pair with the
full model, the CNN once per image; `eval_top_k` > 0 scores only a cheap first
stage's top-k candidates (see `evaluators/retrieval_evaluator.py`). That first stage,
two projections of the pooled pixel tokens and the pooled caption embeddings, trains
beside the ranking loss on its own contrastive loss (`first_stage`; not part of the
paper, and its gradients stop before the body, so the paper's training is unchanged). `demo` fine-tunes
the tiny model on the synthetic world's Flickr30K-style split.
"""

import ml_collections

from configs import common


def get_config(variant: str = "coco") -> ml_collections.ConfigDict:
  config = common.base("retrieval")
  config.model = common.model("R50")
  config.data = common.data("karpathy")
  config.data.update(dataset="coco", karpathy_json="", images="",
                     train_splits=("train", "restval"), eval_split="test")
  config.optimizer = _optimizer(common.optimizer())
  config.optimizer.decay_fractions = ()
  config.num_negatives = 20
  config.num_hard_negatives = 5
  config.init_score_head_from_itm = True
  config.global_batch_size = 512
  config.num_epochs = 4
  # Evaluation: images per CNN call, (image, caption) pairs per Transformer call.
  config.eval_batch_size = 64
  config.eval_pairs_per_call = 512
  config.eval_top_k = 0  # 0: score every pair; k > 0: two-stage
  # The two-stage mode's first stage, trained beside the ranking loss (not in the paper).
  config.first_stage = dict(dim=256, temperature=0.07, loss_weight=1.0)
  config.eval_folds = 5  # COCO 1K; 1 for none
  # Every evaluation scores the whole eval split (config.eval_batches is not used).
  config.eval_every_steps = 100_000  # at the end only: COCO 5K is ~125M pairs
  if variant == "flickr30k":
    _flickr30k(config)
  elif variant == "demo":
    _flickr30k(config)
    _demo(config)
  elif variant not in ("", "coco"):
    raise ValueError(f"Unknown variant {variant!r}: use coco (default), flickr30k or demo")
  return config


def _optimizer(opt: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The paper freezes the CNN: its parameters join the `frozen` group; the rest of
  the body, the score head (its own group, for its learning rate) and the first stage
  use AdamW."""
  opt.groups.frozen.pattern = common.BACKBONE
  del opt.groups["cnn"]
  # The first stage is not the paper's: its own rate, and clipped apart from the body.
  opt.groups.first_stage = dict(opt.groups.transformer, pattern="^first_stage/",
                                lr=1e-3, clip_separately=1.0)
  return common.with_head_group(opt, "^score_head/")


def _flickr30k(config: ml_collections.ConfigDict) -> None:
  config.data.update(dataset="flickr30k", train_splits=("train",))
  config.num_epochs = 10
  config.optimizer.decay_fractions = (6 / 10,)
  config.eval_folds = 1


def _demo(config: ml_collections.ConfigDict) -> None:
  """The tiny model of `configs/pretrain.py:demo` on the synthetic Flickr30K split."""
  common.demo(config, max_text_len=16, num_train_steps=300, every_steps=300)
  config.optimizer = _optimizer(common.optimizer(transformer_lr=5e-4))
  config.optimizer.update(schedule="linear", warmup_fraction=0.05)
  config.global_batch_size = 16
  config.eval_batch_size = 32
  config.eval_pairs_per_call = 256
  config.first_stage.dim = 64
