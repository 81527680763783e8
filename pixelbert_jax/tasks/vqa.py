"""VQA v2 fine-tuning: the Pixel-BERT body, an MLP over answers, BCE on soft scores.

Data come from the official VQA v2 files named in `config.data` (kind "vqa") or from
the embedded synthetic world (kind "synthetic": train2014 to train, val2014 to
evaluate). The answer vocabulary is built from the training annotations (answers given
at least `config.answer_min_count` times) and saved as `WORKDIR/answer_vocab.json`; a
run that finds that file (a resumed run, `mode=eval`) uses it as it is, so answer
indices always mean what the checkpoint's head learned.

`config.data.submission_questions` (with `submission_images`) adds the questions of
another file to the evaluation, unannotated: an EvalAI test-dev submission must answer
the whole test-std file (`v2_OpenEnded_mscoco_test2015_questions.json`), while only
test-dev (or whatever `eval_questions` names) is scored where annotations exist.

The paper treats VQA as multi-label classification over the answer vocabulary with an
MLP on the pooled [CLS] state. Fine-tuning keeps every valid feature pixel: random pixel
sampling is a pre-training device only.

Loss normalisation: binary cross-entropy with logits against the soft scores, summed
over the answers of an example and averaged over the valid examples of the global
batch. UNITER and ViLT write the same quantity as the element-wise mean times the number
of answers; taking the mean over answers instead would shrink the gradient by ~3000 and
make the learning rate depend on the vocabulary size. Padding and skipped examples
(`valid` False) count in neither the sum nor the number of examples.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from etils import epath
from flax import nnx

from pixelbert_jax.data import answers as answers_lib
from pixelbert_jax.data import pipeline
from pixelbert_jax.data.readers import vqa as vqa_reader
from pixelbert_jax.evaluators import vqa_evaluator
from pixelbert_jax.models import heads, layers
from pixelbert_jax.models.pixelbert import PixelBert
from pixelbert_jax.models.variants import ModelConfig
from pixelbert_jax.tasks import base, common

# The objective: the one loss term, at weight 1.
LOSS_WEIGHTS = {"vqa_loss": 1.0}
VOCAB_FILE = "answer_vocab.json"
_SPLIT_FIELDS = ("questions", "annotations", "images")


class VqaModel(nnx.Module):
  """The Pixel-BERT body with the VQA answer classifier."""

  def __init__(self, config: ModelConfig, num_answers: int, *, rngs: nnx.Rngs):
    dtype = layers.compute_dtype(config.dtype)
    self.pixelbert = PixelBert(config, rngs=rngs)
    self.vqa_head = heads.vqa_head(config.transformer.hidden, num_answers, dtype=dtype,
                                   rngs=rngs)

  def __call__(self, token_ids: jax.Array, text_mask: jax.Array, images: jax.Array,
               image_sizes: jax.Array) -> jax.Array:
    """Questions and padded uint8 images -> (B, num_answers) float32 logits."""
    pixels, pixel_mask = self.pixelbert.encode_pixels(images, image_sizes)
    _, aux = self.pixelbert(token_ids, text_mask, pixels, pixel_mask)
    return self.vqa_head(aux["pooled"])


def logits(model: VqaModel, batch: dict) -> jax.Array:
  return model(batch["token_ids"], batch["text_mask"], batch["images"],
               batch["image_sizes"])


def example_losses(answer_logits: jax.Array, targets: jax.Array) -> jax.Array:
  """(B,) BCE summed over the answers (see the module docstring)."""
  return jnp.sum(optax.sigmoid_binary_cross_entropy(answer_logits, targets), axis=-1)


def predict(answer_logits: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(B,) index of the most likely answer and its probability."""
  best = jnp.argmax(answer_logits, axis=-1).astype(jnp.int32)
  best_logit = jnp.take_along_axis(answer_logits, best[:, None], axis=-1)[:, 0]
  return best, jax.nn.sigmoid(best_logit)


def target_score(targets: jax.Array, answer_index: jax.Array) -> jax.Array:
  """(B,) the soft score of the predicted answer: the usual training-time VQA score."""
  return jnp.take_along_axis(targets, answer_index[:, None], axis=-1)[:, 0]


def loss_fn(model: VqaModel, batch: dict, key: jax.Array) -> dict:
  """{"vqa_loss", "vqa_score"} summed over the valid examples; `key` is unused (no
  pixel sampling; dropout draws from the model's own stream)."""
  del key
  answer_logits = logits(model, batch)
  valid = batch["valid"].astype(jnp.float32)
  answer, _ = predict(answer_logits)
  return {"vqa_loss": jnp.sum(example_losses(answer_logits, batch["targets"]) * valid),
          "vqa_score": jnp.sum(target_score(batch["targets"], answer) * valid)}


def counts_fn(batch: dict) -> dict:
  """Both sums are per valid example of the global batch."""
  valid = jnp.sum(batch["valid"].astype(jnp.float32))
  return {"vqa_loss": valid, "vqa_score": valid}


def predict_fn(model: VqaModel, batch: dict) -> dict:
  """Per example: the predicted answer's index and the loss (the evaluator's input)."""
  answer_logits = logits(model, batch)
  answer, _ = predict(answer_logits)
  return {"answer_index": answer,
          "loss": example_losses(answer_logits, batch["targets"])}


def _real_splits(data_cfg) -> dict[str, list[tuple]]:
  """(questions, annotations or None, image folder) per file, for train and eval."""
  splits = {}
  for split in ("train", "eval"):
    paths = {f: list(data_cfg[f"{split}_{f}"]) for f in _SPLIT_FIELDS}
    if not paths["questions"] or len(paths["images"]) != len(paths["questions"]):
      raise ValueError(
          f"config.data.{split}_questions and {split}_images are required for real VQA "
          "data (one image folder per questions file), e.g. --config.data."
          f"{split}_questions=.../v2_OpenEnded_mscoco_val2014_questions.json "
          f"--config.data.{split}_images=.../val2014; or use configs/vqa.py:demo")
    annotations = paths["annotations"] or [None] * len(paths["questions"])
    if split == "train" and not paths["annotations"]:
      raise ValueError("config.data.train_annotations is required to train")
    splits[split] = list(zip(paths["questions"], annotations, paths["images"]))
  return splits


def _synthetic_splits(world: dict) -> dict[str, list[tuple]]:
  files = lambda s: (world[f"vqa_{s}_questions"], world[f"vqa_{s}_annotations"],
                     str(epath.Path(world["coco_root"]) / s))
  return {"train": [files("train2014")], "eval": [files("val2014")]}


def read_split(files: list[tuple], name: str, max_skip_fraction: float) -> list:
  """The examples of every (questions, annotations, images) triple; bounded skips."""
  readers = [lambda skips, f=f: vqa_reader.read_vqa(*f, skips=skips) for f in files]
  return common.read_split(f"vqa-{name}", readers, max_skip_fraction)


def evaluation_split(data_cfg, files: list[tuple]) -> tuple[list, list]:
  """(examples to evaluate, question ids the predictions file must answer).

  The ids are every question of the eval files (and of the submission file), in
  order, including those the reader skipped: they are answered with the fallback.
  """
  examples = read_split(files, "eval", data_cfg.max_skip_fraction)
  ids = [i for questions, _, _ in files for i in vqa_reader.question_ids(questions)]
  if data_cfg.submission_questions:
    if not data_cfg.submission_images:
      raise ValueError("config.data.submission_images (e.g. .../test2015) is required "
                       "with config.data.submission_questions")
    extra = read_split([(data_cfg.submission_questions, None,
                         data_cfg.submission_images)], "submission",
                       data_cfg.max_skip_fraction)
    evaluated = {e.question_id for e in examples}
    examples += [e for e in extra if e.question_id not in evaluated]
    ids += vqa_reader.question_ids(data_cfg.submission_questions)
    logging.info("VQA submission: %d more questions from %s",
                 len(examples) - len(evaluated), data_cfg.submission_questions)
  return examples, list(dict.fromkeys(ids))


def answer_vocab(train: list, min_count: int, workdir: str) -> answers_lib.AnswerVocab:
  """The workdir's saved vocabulary, or a new one built from `train` and saved there."""
  path = epath.Path(workdir) / VOCAB_FILE
  if path.exists():
    return answers_lib.AnswerVocab.load(path)
  vocab = answers_lib.build_answer_vocab(train, min_count=min_count)
  if not len(vocab):
    raise ValueError(f"No training answer is given {min_count} times or more; lower "
                     "config.answer_min_count")
  if jax.process_index() == 0:  # every process builds the same list from the same data
    # Renamed into place, so that no process ever reads a half-written file.
    partial = path.parent / f"{VOCAB_FILE}.tmp"
    vocab.save(partial)
    partial.rename(path)
  logging.info("VQA answer vocabulary: %d answers (min count %d)", len(vocab), min_count)
  return vocab


# ---- Inference: what a VQA run answers (Predictor methods, `predict answer`). ----


def answer_batch(predictor, images, questions, top_k: int = 5
                 ) -> list[list[tuple[str, float]]]:
  """For each (image, question), the `top_k` answers with their probabilities
  (independent sigmoids: the head was trained with BCE, so they need not sum to 1)."""
  if top_k < 1:
    raise ValueError(f"top_k must be at least 1, got {top_k}")
  answer_logits = predictor.pair_logits(images, questions)
  best = np.argsort(-answer_logits, axis=1, kind="stable")[:, :top_k]
  scores = common.sigmoid(np.take_along_axis(answer_logits, best, axis=1))
  answers = predictor.run.meta["answer_vocab"].answers
  return [[(answers[i], float(s)) for i, s in zip(row, row_scores)]
          for row, row_scores in zip(best, scores)]


def answer(predictor, image, question: str, top_k: int = 5) -> list[tuple[str, float]]:
  """The `top_k` answers to a question about an image, most likely first."""
  return answer_batch(predictor, [image], [question], top_k)[0]


def _answer_arguments(parser) -> None:
  parser.add_argument("--image", required=True)
  parser.add_argument("--question", required=True)
  parser.add_argument("--top_k", type=int, default=5)


def _answer_command(predictor, args) -> dict:
  answers = predictor.answer(args.image, args.question, top_k=args.top_k)
  return {"answers": [{"answer": a, "score": s} for a, s in answers]}


class Task(base.Task):
  """VQA v2 fine-tuning and evaluation (see the module docstring)."""

  name = "vqa"
  checkpoint_kind = "VQA"
  pair_head = "vqa_head"
  run_files = (VOCAB_FILE,)
  data_paths = base.DataPaths(
      required=("train_questions", "train_annotations", "train_images",
                "eval_questions", "eval_images"),
      optional=(("eval_annotations",), ("submission_questions", "submission_images")))
  fixed_objective = base.Objective(loss_fn, counts_fn, LOSS_WEIGHTS)
  capabilities = (base.Capability(
      {"answer": answer, "answer_batch": answer_batch},
      (base.Command("answer", "answer a question (VQA runs)", _answer_arguments,
                    _answer_command),)),)

  def make_model(self, model_config, meta, *, rngs):
    return VqaModel(model_config, len(meta["answer_vocab"]), rngs=rngs)

  def make_data(self, workdir: str) -> base.TaskData:
    config, data_cfg = self.config, self.config.data
    world, tokenizer = common.world_and_tokenizer(data_cfg, workdir)
    splits = _synthetic_splits(world) if world else _real_splits(data_cfg)
    train = read_split(splits["train"], "train", data_cfg.max_skip_fraction)
    held_out, question_ids = evaluation_split(data_cfg, splits["eval"])
    vocab = answer_vocab(train, config.answer_min_count, workdir)
    train_iter = pipeline.vqa_pipeline(
        train, tokenizer, vocab, common.pipeline_config(config, training=True),
        seed=config.seed, **common.process_shard())
    eval_cfg = common.pipeline_config(config, training=False)
    eval_source = pipeline.as_source(held_out)  # image sizes read once, not per eval
    make_eval_iter = lambda: pipeline.vqa_pipeline(
        eval_source, tokenizer, vocab, eval_cfg, seed=config.seed, training=False,
        **common.process_shard())
    return base.TaskData(tokenizer, train_iter, {"answer_vocab": vocab},
                         dict(make_iterator=make_eval_iter, examples=held_out,
                              question_ids=question_ids))

  def make_evaluators(self, data, context):
    return {"vqa": vqa_evaluator.VqaEvaluator(
        context.jit(predict_fn), context, vocab=data.meta["answer_vocab"],
        **data.evaluation)}

  def run_meta(self, workdir):
    path = epath.Path(workdir) / VOCAB_FILE
    if not path.exists():
      raise FileNotFoundError(f"{path} is missing: a VQA run writes its answer list there")
    return {"answer_vocab": answers_lib.AnswerVocab.load(path)}
