"""VQA v2 fine-tuning from a tiny pre-training run, through the real entry point.

One pre-training step of the demo model writes a checkpoint; `pixelbert_jax.main` then
fine-tunes `configs/vqa.py:demo` from it on the small synthetic world and evaluates the
whole val split, and runs again with `--config.mode=eval`. Images are 64 x 64 (one
bucket, so each step compiles once) and the eval batch of 8 does not divide the 60 val
questions. The body's learning rates are 0, so that its weights must still equal the
pre-trained ones exactly; the head trains from its fresh initialisation. A body of
another shape is refused with the names of what does not fit. Everything shares one
test so that one pre-training run serves all the checks, even when pytest-xdist
spreads tests over workers.
"""

import json

import numpy as np
import pytest
from etils import epath
from flax import nnx

from conftest import (SMALL_IMAGES, TINY_TRANSFORMER, flat_arrays, module_arrays,
                      override, pretrain_tiny, restore_state, run_main, scalars)
from pixelbert_jax.data import answers as answers_lib
from pixelbert_jax.data.readers import vqa as vqa_reader
from pixelbert_jax.evaluators import context as evaluator_context
from pixelbert_jax.evaluators import gather, vqa_evaluator
from pixelbert_jax.metrics import vqa as vqa_metric
from pixelbert_jax.tasks import base as tasks
from pixelbert_jax.weights import from_run as init_from
from pixelbert_jax.weights import init_checkpoint

from configs import vqa as vqa_config  # noqa: E402

STEPS = 2
HEAD_LR = 1e-3
IMAGES = SMALL_IMAGES


def _vqa_overrides(world: str, init: str) -> dict:
  # With `init_from`, `init` (here a path that does not exist) is not read at all: the
  # other run's body fills everything it would.
  return {**TINY_TRANSFORMER, "init": "/nowhere/init" if init else "", "init_from": init,
          "data.root": world,
          "data.synthetic_num_images": 48,
          **IMAGES, "data.max_text_len": 16, "global_batch_size": 8,
          "eval_batch_size": 8, "num_train_steps": STEPS, "log_every_steps": 1,
          "optimizer.warmup_steps": 0, "optimizer.groups.cnn.lr": 0.0,
          "optimizer.groups.transformer.lr": 0.0, "optimizer.groups.head.lr": HEAD_LR}


def _main(workdir, overrides: dict, cache) -> None:
  run_main("configs/vqa.py:demo", workdir, overrides,
           env=dict(JAX_COMPILATION_CACHE_DIR=str(cache),
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0"))


def _check_body_and_head(pretrained, finetuned) -> None:
  """The body equals the pre-trained one (its learning rates are 0); the head is a
  fresh initialisation moved by a few Adam steps of at most about the learning rate."""
  body = module_arrays(restore_state(finetuned, STEPS), "pixelbert")
  pretrained_body = module_arrays(restore_state(pretrained, 1), "pixelbert")
  assert body.keys() == pretrained_body.keys()
  for path, value in pretrained_body.items():
    np.testing.assert_array_equal(body[path], value, err_msg=path)
  head = {path.removesuffix("['value']"): value for path, value in
          flat_arrays(restore_state(finetuned, STEPS)["params"]["vqa_head"])}
  moved = STEPS * HEAD_LR * 1.01
  for name in ("['dense_in']['bias']", "['norm']['bias']", "['dense_out']['bias']"):
    assert np.abs(head[name]).max() <= moved and np.any(head[name]), name  # from 0
  assert np.abs(head["['norm']['scale']"] - 1).max() <= moved  # from 1
  for name in ("['dense_in']['kernel']", "['dense_out']['kernel']"):
    assert 0.017 < np.std(head[name]) < 0.023, name  # from N(0, 0.02**2)


def _check_mismatch_is_refused(pretrained, world) -> None:
  """A body of another shape names what does not fit (checked before any copy, so an
  abstract model serves)."""
  config = override(vqa_config.get_config("demo"), _vqa_overrides(world, ""))
  config.model.pixel_pos_emb = True  # two more parameters than the checkpoint holds
  task = tasks.get(config)
  data = task.make_data(str(pretrained.parent / "mismatch"))
  model = nnx.eval_shape(lambda: task.make_model(
      task.model_config(data.tokenizer.vocab_size), data.meta,
      rngs=nnx.Rngs(params=0, dropout=1)))
  with pytest.raises(init_checkpoint.WeightMismatchError,
                     match=r"'pixelbert from .*checkpoints/1'.*missing \(2\): "
                           r"pixel_encoder\.col_embedding, pixel_encoder\.row_embedding"):
    init_from.load(pretrained, {"pixelbert": model.pixelbert})


def _check_evaluation(workdir, world) -> dict:
  """Every val question answered once, in the EvalAI format, scored officially."""
  results = json.loads((workdir / "final_eval.json").read_text())
  predictions = json.loads((workdir / f"vqa_predictions_step{STEPS}.json").read_text())
  vqa_files = epath.Path(world) / "vqa"
  questions = json.loads(
      (vqa_files / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())
  annotations = json.loads((vqa_files / "v2_mscoco_val2014_annotations.json").read_text())
  question_ids = [q["question_id"] for q in questions["questions"]]
  assert len(question_ids) % 8 and results["vqa/num_questions"] == len(question_ids)
  assert results["vqa/num_unanswered"] == 0
  assert sorted(p["question_id"] for p in predictions) == sorted(question_ids)
  vocab = json.loads((workdir / "answer_vocab.json").read_text())["answers"]
  assert all(p.keys() == {"question_id", "answer"} and type(p["question_id"]) is int
             and p["answer"] in vocab for p in predictions)
  official = vqa_metric.score(questions, annotations, predictions)
  assert results["vqa/accuracy"] == pytest.approx(official["overall"])
  for answer_type, accuracy in official["perAnswerType"].items():
    assert results[f"vqa/{vqa_evaluator.metric_name(answer_type)}"] == pytest.approx(accuracy)
  return predictions


def test_finetune_from_pretraining_through_the_entry_point(small_world, tmp_path):
  pretrained, finetuned, cache = tmp_path / "pretrain", tmp_path / "vqa", tmp_path / "cache"
  pretrain_tiny(small_world, str(pretrained))
  # A workdir, its checkpoints folder and a step folder all name the same weights.
  assert (init_from.state_dir(pretrained) == init_from.state_dir(pretrained / "checkpoints")
          == init_from.state_dir(pretrained / "checkpoints" / "1"))
  _main(finetuned, _vqa_overrides(small_world, pretrained), cache)

  losses = scalars(finetuned, "vqa_loss")
  assert len(losses) == STEPS and np.all(np.isfinite(losses))
  _check_body_and_head(pretrained, finetuned)
  predictions = _check_evaluation(finetuned, small_world)

  # Evaluation alone, on the fine-tuned workdir's checkpoint, with the test-std
  # questions added as for an EvalAI test-dev submission: the same val answers again,
  # and every test2015 question answered after them.
  (finetuned / f"vqa_predictions_step{STEPS}.json").unlink()
  test_std = epath.Path(small_world) / "vqa" / "v2_OpenEnded_mscoco_test2015_questions.json"
  _main(finetuned, {**_vqa_overrides(small_world, pretrained), "mode": "eval",
                    "data.submission_questions": test_std,
                    "data.submission_images": f"{small_world}/coco/test2015"}, cache)
  again = json.loads((finetuned / f"vqa_predictions_step{STEPS}.json").read_text())
  test_ids = [q["question_id"] for q in json.loads(test_std.read_text())["questions"]]
  assert again[:len(predictions)] == predictions
  assert [p["question_id"] for p in again[len(predictions):]] == test_ids
  accuracies = scalars(finetuned, "vqa/accuracy")
  assert len(accuracies) == 2 and accuracies[0] == pytest.approx(accuracies[1])
  assert scalars(finetuned, "vqa/num_questions")[-1] == len(predictions) + len(test_ids)

  _check_mismatch_is_refused(pretrained, small_world)


def test_init_from_names_what_it_looked_for(tmp_path):
  with pytest.raises(FileNotFoundError, match="no checkpoint found"):
    init_from.state_dir(tmp_path)


def test_a_wrong_init_from_fails_before_any_data_is_made(tmp_path):
  from pixelbert_jax import train  # pylint: disable=g-import-not-at-top
  world = tmp_path / "world"
  config = override(vqa_config.get_config("demo"),
                    _vqa_overrides(str(world), str(tmp_path / "no_such_run")))
  with pytest.raises(FileNotFoundError, match="no checkpoint found"):
    train.build(config, str(tmp_path / "run"))
  assert not world.exists()  # no synthetic world written first


def test_valid_rows_drop_padding():
  rows = gather.valid_rows({"answer": np.arange(4), "valid": np.array([1, 0, 1, 0], bool)})
  np.testing.assert_array_equal(rows["answer"], [0, 2])
  assert vqa_evaluator.metric_name("yes/no") == "accuracy_yes_no"


def test_results_answer_questions_the_reader_skipped(small_world, tmp_path):
  # val2014 plus a question without text: the reader skips it, the results file still
  # answers it (with the vocabulary's most frequent answer) and keeps the file's order.
  vqa_files = epath.Path(small_world) / "vqa"
  questions = json.loads((vqa_files / "v2_OpenEnded_mscoco_val2014_questions.json")
                         .read_text())
  questions["questions"].insert(1, {"question_id": 7, "image_id": 1, "question": None})
  path = tmp_path / "questions.json"
  path.write_text(json.dumps(questions))
  examples = list(vqa_reader.read_vqa(path, None, f"{small_world}/coco/val2014"))
  ids = vqa_reader.question_ids(path)
  assert len(ids) == len(examples) + 1 and ids[1] == 7
  vocab = answers_lib.AnswerVocab(["yes", "no", "2"])
  context = evaluator_context.EvalContext(None, None, epath.Path(tmp_path))
  evaluator = vqa_evaluator.VqaEvaluator(None, context, make_iterator=None,
                                         examples=examples, vocab=vocab, question_ids=ids)
  results = evaluator.results({i: (1, 0.0) for i in range(len(examples))})
  assert [r["question_id"] for r in results] == ids
  assert results[1]["answer"] == "yes" and results[0]["answer"] == "no"
  assert not evaluator.annotated  # No annotations: the file is written, not scored.
