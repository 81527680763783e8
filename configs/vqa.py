r"""Pixel-BERT fine-tuning on VQA v2.

  python -m pixelbert_jax.main --config=configs/vqa.py --workdir=DIR \
      --config.init_from=PRETRAIN_WORKDIR \
      --config.data.tokenizer=wordpiece:/path/to/bert-base-uncased/vocab.txt \
      --config.data.train_questions=.../v2_OpenEnded_mscoco_train2014_questions.json \
      --config.data.train_annotations=.../v2_mscoco_train2014_annotations.json \
      --config.data.train_images=.../train2014 \
      --config.data.eval_questions=.../v2_OpenEnded_mscoco_val2014_questions.json \
      --config.data.eval_annotations=.../v2_mscoco_val2014_annotations.json \
      --config.data.eval_images=.../val2014                                  # paper R50
  python -m pixelbert_jax.main --config=configs/vqa.py:demo --workdir=DIR \
      [--config.init_from=/tmp/pixelbert_demo]                                # laptop
  python -m pixelbert_jax.main --config=configs/vqa.py:demo --workdir=DIR --config.mode=eval

The paper's recipe (R50): answer classification with an MLP on [CLS] and BCE on soft
scores, full pixel grid (no sampling), batch 256, 18 epochs with the learning rate
x 0.1 at epochs 12 and 16, the pre-training optimisers (SGD 1e-2 for the CNN, AdamW 1e-4
for the Transformer and the head). The vocabulary holds the training answers given at
least 9 times: the threshold of the common 3129-answer vocabulary, which counts each
question's multiple-choice answer over train + val, while `data.answers` counts every
annotator answer, so the size differs (the run logs it). Training targets score each
answer as the official evaluation would (`data/answers.py`). For a test-dev
submission, list several training files (comma-separated, e.g. train and val), point
`eval_questions` at the test-dev questions with `eval_annotations` empty, and
`submission_questions` / `submission_images` at
`v2_OpenEnded_mscoco_test2015_questions.json` / `test2015`: the run then writes
`vqa_predictions_step{N}.json` answering every test-std question, as EvalAI requires.
`demo` fine-tunes the tiny model on the embedded synthetic world.
"""

import ml_collections

from configs import common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = common.base("vqa")
  config.model = common.model("X152" if variant == "X152" else "R50")
  config.data = common.data("vqa")
  # VQA questions are short; ClipBERT's Pixel-BERT-style config uses 20 tokens, and 24
  # keeps the rare long question whole at no visible cost next to ~260 pixels.
  config.data.max_text_len = 24
  config.data.update({f"{split}_{field}": "" for split in ("train", "eval")
                      for field in ("questions", "annotations", "images")})
  # Questions answered besides the eval split's, unscored: for a test-dev submission,
  # EvalAI wants the whole test2015 (test-std) questions file answered.
  config.data.update(submission_questions="", submission_images="")
  config.optimizer = common.optimizer()
  config.optimizer.decay_fractions = (12 / 18, 16 / 18)
  common.with_head_group(config.optimizer, "^vqa_head/")
  config.answer_min_count = 9
  config.eval_batch_size = 0  # 0: the training batch size
  config.global_batch_size = 256
  config.num_epochs = 18
  # Every evaluation answers the whole eval split (config.eval_batches is not used).
  config.eval_every_steps = 5000
  if variant == "X152":
    config.data.update(image_short_side=600, image_long_side=1000)
  elif variant == "demo":
    _demo(config)
  elif variant not in ("", "R50"):
    raise ValueError(f"Unknown variant {variant!r}: use R50 (default), X152 or demo")
  return config


def _demo(config: ml_collections.ConfigDict) -> None:
  """The tiny model of `configs/pretrain.py:demo` on the synthetic world's VQA files."""
  common.demo(config, max_text_len=16, num_train_steps=500, every_steps=250)
  config.optimizer = common.with_head_group(common.demo_optimizer(), "^vqa_head/")
  config.eval_batch_size = 64
