"""Tests for the VQA answer vocabulary and its soft targets."""

import numpy as np
import pytest

from pixelbert_jax.data import answers as answers_lib
from pixelbert_jax.data import records
from pixelbert_jax.data import synthetic
from pixelbert_jax.data.readers import vqa
from pixelbert_jax.metrics import vqa as vqa_metric


def _example(question_id, answers):
  return records.VqaExample(question_id, "1", "x.jpg", "q?", tuple(answers))


def test_vocab_keeps_frequent_answers_most_frequent_first():
  examples = [_example(1, ["yes"] * 9 + ["Yes "]),
              _example(2, ["2"] * 6 + ["two"] * 3 + ["3"]),
              _example(3, ["red"] * 6 + ["pink"] * 4)]
  vocab = answers_lib.build_answer_vocab(examples, min_count=3)
  # The official processing makes "Yes " and "yes", and "two" and "2", one answer
  # where annotators disagree.
  assert vocab.answers == ("yes", "2", "red", "pink")
  assert len(answers_lib.build_answer_vocab(examples, min_count=7)) == 2  # yes, 2
  assert "yes" in vocab and "YES" not in vocab and "3" not in vocab


def test_vocab_counts_unanimous_answers_as_written():
  # Ten identical answers are compared unprocessed, so "Two" is what scores there;
  # among disagreeing annotators "Two" counts as "2".
  examples = [_example(1, ["Two"] * 10), _example(2, ["Two"] * 5 + ["2"] * 5)]
  vocab = answers_lib.build_answer_vocab(examples, min_count=1)
  assert vocab.answers == ("2", "Two")
  np.testing.assert_allclose(vocab.dense_targets(["Two"] * 10), [0.0, 1.0])
  np.testing.assert_allclose(vocab.dense_targets(["Two"] * 5 + ["2"] * 5), [1.0, 1.0])


@pytest.mark.parametrize("count, score", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9),
                                          (4, 1.0), (10, 1.0)])
def test_soft_score_is_min_one_and_point_three_n(count, score):
  assert answers_lib.soft_score(count) == score


def test_dense_and_sparse_targets_agree():
  vocab = answers_lib.AnswerVocab(["red", "pink", "purple", "blue", "green"])
  given = ["red"] * 4 + ["pink"] * 3 + ["purple"] * 2 + ["blue"]  # ten, as in VQA v2
  dense = vocab.dense_targets(given)
  np.testing.assert_allclose(dense, [1.0, 0.9, 0.6, 0.3, 0.0])
  assert dense.dtype == np.float32
  indices, scores = vocab.sparse_targets(given)
  np.testing.assert_array_equal(indices, [0, 1, 2, 3])
  np.testing.assert_allclose(scores, [1.0, 0.9, 0.6, 0.3])
  empty_indices, _ = vocab.sparse_targets(["cyan"] * 10)
  assert empty_indices.shape == (0,)
  assert not vocab.dense_targets(["cyan"] * 10).any()
  # Scored as the official evaluation scores a prediction: "two" is credited to a "2"
  # entry only where the annotators' answers differ (they are then normalised).
  numbers = answers_lib.AnswerVocab(["2"])
  assert numbers.dense_targets(["two"] * 10)[0] == 0.0
  np.testing.assert_allclose(numbers.dense_targets(["2"] * 3 + ["3"] * 7), [0.9])


TRICKY = ["yes", "Yes", "yes.", " yes", "no", "2", "two", "Two", "10", "ten", "red",
          "Red", "red\n", "the red", "t-shirt", "t shirt", "1,000", "1000", "dog.", "dog",
          "dont", "don't", "a", "the", "", "2.5", "." * 40, "." * 35]


def test_every_target_is_the_official_score_of_its_answer():
  # Training and evaluation agree: each vocabulary entry's target is exactly what
  # the scorer gives it as the prediction, on answer sets built to trip them up.
  rng = np.random.default_rng(0)
  vocab = answers_lib.AnswerVocab(sorted(set(TRICKY)))
  for _ in range(400):
    pool = rng.choice(TRICKY, size=rng.integers(1, 4), replace=False)
    answers = [str(a) for a in rng.choice(pool, size=10)]
    expected = [vqa_metric.question_accuracy(entry, answers) for entry in vocab.answers]
    np.testing.assert_allclose(vocab.dense_targets(answers), expected, rtol=1e-6,
                               err_msg=repr(answers))


def test_save_and_load_round_trip(tmp_path):
  vocab = answers_lib.AnswerVocab(["yes", "no", "2", "rosé"])
  vocab.save(tmp_path / "ckpt" / "answers.json")
  loaded = answers_lib.AnswerVocab.load(tmp_path / "ckpt" / "answers.json")
  assert loaded.answers == vocab.answers and loaded.index["rosé"] == 3


def test_vocab_from_the_synthetic_world_gives_graded_targets(tmp_path):
  world = synthetic.generate(str(tmp_path), seed=2, num_images=30)
  examples = list(vqa.read_vqa(world["vqa_train2014_questions"],
                               world["vqa_train2014_annotations"],
                               f"{world['coco_root']}/train2014"))
  vocab = answers_lib.build_answer_vocab(examples, min_count=3)
  assert {"yes", "no"} <= set(vocab.answers)
  scores = np.concatenate([vocab.sparse_targets(e.answers)[1] for e in examples])
  # Disagreement among annotators shows up as partial credit.
  assert {0.3, 1.0} <= {round(float(s), 1) for s in scores}
