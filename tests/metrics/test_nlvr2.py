"""Tests for NLVR2 accuracy, consistency and the official prediction file."""

import json

import numpy as np
import pytest

from pixelbert_jax.metrics import nlvr2 as nlvr2_metric


def test_sentence_key_drops_the_pair_field():
  assert nlvr2_metric.sentence_key("dev-850-0-0") == "dev-850-0"
  assert nlvr2_metric.sentence_key("test1-12-3-1") == "test1-12-1"
  with pytest.raises(ValueError, match="split-set-pair-sentence"):
    nlvr2_metric.sentence_key("dev-850-0")


# (identifier, label, prediction). Four sentences:
#   dev-1-0: 4 pairs, all right          -> consistent
#   dev-1-1: 2 pairs, one wrong          -> not consistent
#   dev-2-0: 1 pair, right               -> consistent
#   dev-2-1: 2 pairs, both wrong         -> not consistent
EXAMPLES = [
    ("dev-1-0-0", True, True), ("dev-1-1-0", False, False),
    ("dev-1-2-0", True, True), ("dev-1-3-0", False, False),
    ("dev-1-0-1", True, True), ("dev-1-2-1", True, False),
    ("dev-2-3-0", False, False),
    ("dev-2-0-1", True, False), ("dev-2-1-1", False, True),
]
LABELS = {i: label for i, label, _ in EXAMPLES}
PREDICTIONS = {i: prediction for i, _, prediction in EXAMPLES}


def test_hand_built_accuracy_and_consistency():
  result = nlvr2_metric.score(PREDICTIONS, LABELS)
  assert result["count"] == 9 and result["num_sentences"] == 4
  assert result["accuracy"] == pytest.approx(100 * 6 / 9)  # 4 + 1 + 1 + 0 right.
  assert result["consistency"] == pytest.approx(100 * 2 / 4)


def test_all_right_is_fully_consistent_and_numpy_booleans_count():
  predictions = {i: np.bool_(label) for i, label in LABELS.items()}
  result = nlvr2_metric.score(predictions, LABELS)
  assert result["accuracy"] == result["consistency"] == 100.0


def test_predictions_must_match_the_examples():
  with pytest.raises(ValueError, match=r"missing identifiers 1 \(dev-2-1-1\)"):
    nlvr2_metric.score({k: v for k, v in PREDICTIONS.items() if k != "dev-2-1-1"},
                       LABELS)
  with pytest.raises(ValueError, match=r"unknown identifiers 1 \(dev-9-0-0\)"):
    nlvr2_metric.score(PREDICTIONS | {"dev-9-0-0": True}, LABELS)


def test_prediction_file_is_the_official_csv(tmp_path):
  path = tmp_path / "predictions.csv"
  nlvr2_metric.write_predictions(str(path), {"dev-1-0-0": True, "dev-1-2-1": np.False_})
  assert path.read_text() == "dev-1-0-0,True\ndev-1-2-1,False\n"
  assert nlvr2_metric.read_predictions(str(path)) == {"dev-1-0-0": True,
                                                      "dev-1-2-1": False}
  with pytest.raises(ValueError):
    nlvr2_metric.write_predictions(str(path), {"not-an-id": True})


def test_reading_is_as_lenient_as_the_official_script_but_refuses_repeats(tmp_path):
  path = tmp_path / "predictions.csv"
  path.write_text("dev-1-0-0,true\n\ndev-1-1-0,FALSE,0.93\n")  # Case, blanks, extra fields.
  assert nlvr2_metric.read_predictions(str(path)) == {"dev-1-0-0": True,
                                                      "dev-1-1-0": False}
  path.write_text("dev-1-0-0,True\ndev-1-0-0,False\n")
  with pytest.raises(ValueError, match="second prediction"):
    nlvr2_metric.read_predictions(str(path))
  path.write_text("dev-1-0-0,maybe\n")
  with pytest.raises(ValueError, match="neither True nor False"):
    nlvr2_metric.read_predictions(str(path))


def test_score_files_reads_official_data_and_predictions(tmp_path):
  data = tmp_path / "dev.json"
  data.write_text("".join(json.dumps({
      "identifier": i, "sentence": "There are two dogs.", "label": str(label),
      "left_url": "http://x/l.jpg", "right_url": "http://x/r.jpg"}) + "\n"
                          for i, label, _ in EXAMPLES))
  predictions = tmp_path / "predictions.csv"
  nlvr2_metric.write_predictions(str(predictions), PREDICTIONS)
  assert nlvr2_metric.read_labels(str(data)) == LABELS
  assert nlvr2_metric.score_files(str(predictions), str(data)) == nlvr2_metric.score(
      PREDICTIONS, LABELS)
