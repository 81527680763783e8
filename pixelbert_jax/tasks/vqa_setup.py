"""Wires VQA v2 fine-tuning together: data, answer vocabulary, model, loss, evaluation.

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
"""

import jax
from absl import logging
from etils import epath

from pixelbert_jax.data import answers as answers_lib
from pixelbert_jax.data import pipeline
from pixelbert_jax.data import skips as skips_lib
from pixelbert_jax.data.readers import vqa as vqa_reader
from pixelbert_jax.evaluators import vqa_evaluator
from pixelbert_jax.tasks import init_from, pretrain_data, registry, vqa
from pixelbert_jax.weights import init_checkpoint

VOCAB_FILE = "answer_vocab.json"
_SPLIT_FIELDS = ("questions", "annotations", "images")


def _paths(value: str) -> list[str]:
  """A comma-separated list of paths (several training splits, e.g. train + val)."""
  return [p.strip() for p in value.split(",") if p.strip()]


def _real_splits(data_cfg) -> dict[str, list[tuple]]:
  """(questions, annotations or None, image folder) per file, for train and eval."""
  splits = {}
  for split in ("train", "eval"):
    paths = {f: _paths(data_cfg[f"{split}_{f}"]) for f in _SPLIT_FIELDS}
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
  skips = skips_lib.SkipCounter(f"vqa-{name}", max_skip_fraction=max_skip_fraction)
  examples = [e for questions, annotations, images in files
              for e in vqa_reader.read_vqa(questions, annotations, images, skips=skips)]
  skips.check(len(examples) + skips.total, final=True)
  logging.info("VQA %s: %d questions; reader skips: %s", name, len(examples),
               skips.counts)
  return examples


def _unique(ids) -> list:
  return list(dict.fromkeys(ids))


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
    logging.info("VQA submission: %d more questions from %s", len(examples) - len(evaluated),
                 data_cfg.submission_questions)
  return examples, _unique(ids)


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


def make_setup(config, workdir: str) -> registry.Setup:
  data_cfg = config.data
  world = (pretrain_data.synthetic_world(data_cfg, workdir)
           if data_cfg.kind == "synthetic" else None)
  tokenizer = pretrain_data.make_tokenizer(data_cfg, world, workdir)
  splits = _synthetic_splits(world) if world else _real_splits(data_cfg)
  train = read_split(splits["train"], "train", data_cfg.max_skip_fraction)
  held_out, question_ids = evaluation_split(data_cfg, splits["eval"])
  vocab = answer_vocab(train, config.answer_min_count, workdir)
  pipe_cfg = dict(data_cfg, global_batch_size=config.global_batch_size, num_epochs=None)
  train_iter = pipeline.vqa_pipeline(train, tokenizer, vocab, pipe_cfg, seed=config.seed,
                                     **registry.process_shard())
  eval_cfg = dict(pipe_cfg, num_workers=0,
                  global_batch_size=config.eval_batch_size or config.global_batch_size)
  eval_source = pipeline.as_source(held_out)  # image sizes read once, not per evaluation
  make_eval_iter = lambda: pipeline.vqa_pipeline(
      eval_source, tokenizer, vocab, eval_cfg, seed=config.seed, training=False,
      **registry.process_shard())
  model_config = registry.model_config(config, tokenizer.vocab_size)

  def make_evaluators(eval_step, to_global):
    return {"vqa": vqa_evaluator.VqaEvaluator(make_eval_iter, eval_step, to_global,
                                              held_out, vocab, workdir, question_ids)}

  return registry.Setup(
      model_fn=lambda rngs: vqa.VqaModel(model_config, len(vocab), rngs=rngs),
      loss_fn=vqa.loss_fn, counts_fn=vqa.counts_fn, loss_weights=vqa.LOSS_WEIGHTS,
      eval_fns=vqa_evaluator.make_eval_fns(), train_iterator=train_iter,
      batches_per_epoch=train_iter.batches_per_epoch, make_evaluators=make_evaluators,
      init_modules=lambda model: init_checkpoint.component_modules(model.pixelbert),
      init_from=lambda model, path: init_from.load(path, {"pixelbert": model.pixelbert}))
