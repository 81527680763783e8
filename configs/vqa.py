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
submission, list several training files (e.g. `--config.data.train_questions="('train.json', 'val.json')"`), point
`eval_questions` at the test-dev questions with `eval_annotations` empty, and
`submission_questions` / `submission_images` at
`v2_OpenEnded_mscoco_test2015_questions.json` / `test2015`: the run then writes
`vqa_predictions_step{N}.json` answering every test-std question, as EvalAI requires.
`demo` fine-tunes the tiny model on the embedded synthetic world.
"""

import ml_collections

from configs import common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = common.fine_tuning("vqa", "^vqa_head/", batch=256, epochs=18,
                              every_steps=5000)
  # VQA questions are short; ClipBERT's Pixel-BERT-style config uses 20 tokens, and 24
  # keeps the rare long question whole at no visible cost next to ~260 pixels.
  config.data.max_text_len = 24
  # Lists of files (e.g. train + val questions for a test-dev submission), one image
  # folder per questions file; a single path needs no brackets on the command line.
  config.data.update({f"{split}_{field}": () for split in ("train", "eval")
                      for field in ("questions", "annotations", "images")})
  # Questions answered besides the eval split's, unscored: for a test-dev submission,
  # EvalAI wants the whole test2015 (test-std) questions file answered.
  config.data.update(submission_questions="", submission_images="")
  config.answer_min_count = 9
  # `demo`: the demo model on the synthetic world's VQA files.
  return common.with_variant(config, variant, lambda c: common.demo_fine_tuning(
      c, "^vqa_head/", max_text_len=16))
