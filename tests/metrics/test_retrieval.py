"""Tests for retrieval recall@K: hand-worked matrices, ties, several captions, COCO-1K folds."""

import numpy as np
import pytest

from pixelbert_jax.metrics import retrieval as retrieval_metric

# 3 images with 2 captions each; ranks worked out by hand below.
SCORES = np.array([
    [0.9, 0.1, 0.8, 0.2, 0.3, 0.4],
    [0.7, 0.6, 0.5, 0.65, 0.1, 0.2],
    [0.9, 0.8, 0.7, 0.6, 0.5, 0.1],
], np.float32)
TEXT_TO_IMAGE = np.array([0, 0, 1, 1, 2, 2])


def test_hand_worked_ranks():
  image_ranks, text_ranks = retrieval_metric.retrieval_ranks(SCORES, TEXT_TO_IMAGE)
  # Image 0: its best caption (0.9) leads. Image 1: best own 0.65, beaten by 0.7.
  # Image 2: best own 0.5, beaten by 0.9, 0.8, 0.7, 0.6.
  np.testing.assert_array_equal(image_ranks, [0, 1, 4])
  # Text 0: 0.9 ties image 2's 0.9, so it is ranked after it. Text 1: 0.1 under
  # 0.6 and 0.8. Text 2: 0.5 under 0.8, 0.7. Text 3, 4 lead. Text 5: 0.1 last.
  np.testing.assert_array_equal(text_ranks, [1, 2, 2, 0, 0, 2])


def test_hand_worked_recalls_and_rsum():
  metrics = retrieval_metric.retrieval_metrics(SCORES, TEXT_TO_IMAGE, ks=(1, 2, 5))
  expected = {"i2t_r1": 100 / 3, "i2t_r2": 200 / 3, "i2t_r5": 100.0,
              "t2i_r1": 100 * 2 / 6, "t2i_r2": 100 * 3 / 6, "t2i_r5": 100.0}
  expected["rsum"] = sum(expected.values())
  assert metrics == pytest.approx(expected)
  assert set(retrieval_metric.retrieval_metrics(SCORES, TEXT_TO_IMAGE)) == {
      "i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum"}


def test_ties_count_against_the_correct_item():
  # All scores equal: every wrong item is ranked first.
  ranks = retrieval_metric.retrieval_ranks(np.zeros((3, 6)), TEXT_TO_IMAGE)
  np.testing.assert_array_equal(ranks[0], [4, 4, 4])  # 6 texts, 2 of them own.
  np.testing.assert_array_equal(ranks[1], [2] * 6)
  # Own captions tied with each other do not push the image down.
  scores = np.array([[1.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
  image_ranks, _ = retrieval_metric.retrieval_ranks(scores, [0, 0, 1])
  np.testing.assert_array_equal(image_ranks, [0, 0])


def _ranks_by_definition(scores, text_to_image):
  """Loops straight from the definition: wrong items scoring at least as high."""
  num_images, num_texts = scores.shape
  image_ranks = []
  for i in range(num_images):
    own = [j for j in range(num_texts) if text_to_image[j] == i]
    best = max(scores[i, j] for j in own)
    image_ranks.append(sum(scores[i, j] >= best for j in range(num_texts) if j not in own))
  text_ranks = [sum(scores[i, j] >= scores[text_to_image[j], j]
                    for i in range(num_images) if i != text_to_image[j])
                for j in range(num_texts)]
  return image_ranks, text_ranks


@pytest.mark.parametrize("seed", range(4))
def test_ranks_match_the_definition_with_uneven_captions_and_many_ties(seed, monkeypatch):
  monkeypatch.setattr(retrieval_metric, "_ROWS_PER_BLOCK", 3)  # Several row blocks.
  rng = np.random.default_rng(seed)
  text_to_image = np.concatenate([np.arange(7), rng.integers(0, 7, 12)])  # 1-4 each.
  rng.shuffle(text_to_image)
  scores = rng.integers(0, 4, (7, 19))  # Integer scores: ties everywhere.
  image_ranks, text_ranks = retrieval_metric.retrieval_ranks(scores, text_to_image)
  expected_images, expected_texts = _ranks_by_definition(scores, text_to_image)
  np.testing.assert_array_equal(image_ranks, expected_images)
  np.testing.assert_array_equal(text_ranks, expected_texts)


def test_ranks_match_argsort_without_ties(monkeypatch):
  monkeypatch.setattr(retrieval_metric, "_ROWS_PER_BLOCK", 64)
  rng = np.random.default_rng(0)
  scores = rng.standard_normal((211, 1055))  # float64: no ties to break.
  text_to_image = np.repeat(np.arange(211), 5)
  image_ranks, text_ranks = retrieval_metric.retrieval_ranks(scores, text_to_image)
  order = np.argsort(-scores, axis=1)  # Rank position of every text, per image.
  positions = np.argsort(order, axis=1)
  np.testing.assert_array_equal(image_ranks, positions.reshape(211, 211, 5)[
      np.arange(211), np.arange(211)].min(axis=1))
  image_order = np.argsort(np.argsort(-scores, axis=0), axis=0)
  np.testing.assert_array_equal(text_ranks, image_order[text_to_image, np.arange(1055)])


def test_ranks_do_not_depend_on_text_order():
  permutation = np.array([5, 2, 0, 3, 1, 4])
  image_ranks, text_ranks = retrieval_metric.retrieval_ranks(
      np.zeros((3, 6))[:, permutation], TEXT_TO_IMAGE[permutation])
  np.testing.assert_array_equal(image_ranks, [4, 4, 4])
  np.testing.assert_array_equal(text_ranks, [2] * 6)


def _two_fold_scores():
  """4 images with one caption each (own score 1); folds {0, 1} and {2, 3}."""
  scores = np.eye(4)
  scores[0, 2] = 5.0  # Across folds: hurts image 0 and text 2 only in the full matrix.
  scores[3, 2] = 2.0  # Inside fold 2: image 3 prefers text 2, text 2 prefers image 3.
  return scores, np.arange(4)


def test_fold_metrics_score_each_fold_with_its_own_texts():
  scores, text_to_image = _two_fold_scores()
  folds = retrieval_metric.fold_metrics(scores, text_to_image, num_folds=2)
  assert folds[0] == pytest.approx({name: 100.0 for name in folds[0]} | {"rsum": 600.0})
  assert folds[1]["i2t_r1"] == folds[1]["t2i_r1"] == 50.0
  assert folds[1]["rsum"] == 500.0
  average = retrieval_metric.fold_average_metrics(scores, text_to_image, num_folds=2)
  assert average["i2t_r1"] == average["t2i_r1"] == 75.0
  assert average["i2t_r5"] == 100.0 and average["rsum"] == 550.0
  # The whole matrix also sees the cross-fold distractor: images 0 and 3 miss.
  assert retrieval_metric.retrieval_metrics(scores, text_to_image)["i2t_r1"] == 50.0


def test_coco_1k_default_is_five_folds_of_consecutive_images():
  rng = np.random.default_rng(1)
  scores = rng.standard_normal((20, 100))
  text_to_image = np.repeat(np.arange(20), 5)
  rng.shuffle(text_to_image)  # Texts need not be in image order.
  folds = [retrieval_metric.retrieval_metrics(
      scores[s:s + 4][:, (text_to_image >= s) & (text_to_image < s + 4)],
      text_to_image[(text_to_image >= s) & (text_to_image < s + 4)] - s)
           for s in range(0, 20, 4)]
  expected = {name: np.mean([fold[name] for fold in folds]) for name in folds[0]}
  assert retrieval_metric.fold_average_metrics(scores, text_to_image) == pytest.approx(
      expected)


@pytest.mark.parametrize("scores, text_to_image, message", [
    (np.array([[np.nan, 0.0], [0.0, 1.0]]), [0, 1], "NaN"),
    (np.zeros((3, 2)), [0, 1], r"images without a text: \[2\]"),
    (np.zeros((2, 2)), [0, 2], "outside"),
    (np.zeros((2, 3)), [0, 1], "num_texts"),
    (np.zeros((2, 2)), [0.0, 1.0], "integers"),
])
def test_bad_inputs_are_refused(scores, text_to_image, message):
  with pytest.raises(ValueError, match=message):
    retrieval_metric.retrieval_ranks(scores, text_to_image)


def test_folds_must_split_the_images_evenly():
  with pytest.raises(ValueError, match="equal folds"):
    retrieval_metric.fold_metrics(np.eye(5), np.arange(5), num_folds=2)
