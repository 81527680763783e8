"""Tests for the official VQA accuracy: hand-worked scores, each normalisation step, the CLI."""

import json
import subprocess
import sys

import pytest

from pixelbert_jax.evaluators import vqa_metric
from pixelbert_jax.evaluators import vqa_score


@pytest.mark.parametrize("matches, expected", [
    (0, 0.0),
    # The matching annotator left out: 0 of 9 match (0); the 9 others: 1/3 each.
    (1, 9 * (1 / 3) / 10),  # 0.3
    # 2 subsets with 1 match (1/3), 8 subsets with 2 matches (2/3): 6/10.
    (2, (2 * (1 / 3) + 8 * (2 / 3)) / 10),  # 0.6
    # 3 subsets with 2 matches (2/3), 7 subsets with 3 matches (1): 9/10.
    (3, (3 * (2 / 3) + 7 * 1) / 10),  # 0.9
    (4, 1.0),  # Every subset keeps at least 3 matches.
    (10, 1.0),
])
def test_leave_one_annotator_out_accuracy(matches, expected):
  answers = (["red"] * matches + ["blue", "green"] * 5)[:10]
  assert answers.count("red") == matches
  assert vqa_metric.question_accuracy("red", answers) == pytest.approx(expected)


def test_accuracy_with_fewer_annotators_averages_over_each_of_them():
  # 5 answers, 2 match: 2 subsets with 1 match (1/3), 3 subsets with 2 (2/3): (8/3)/5.
  answers = ["cat", "cat", "dog", "dog", "bird"]
  assert vqa_metric.question_accuracy("cat", answers) == pytest.approx(8 / 15)
  with pytest.raises(ValueError):
    vqa_metric.question_accuracy("cat", [])


@pytest.mark.parametrize("text, expected", [
    ("t-shirt", "t shirt"),          # Not next to a space: becomes a space.
    ("red, white", "red white"),     # Next to a space: deleted.
    ("a-b c -d", "ab c d"),          # " -" anywhere deletes every "-".
    ("1,000", "1000"),               # Digit-comma-digit: ...
    ("1,000-ish (approx)", "1000ish approx"),  # ... then every mark is deleted.
    ("yes!", "yes "),                # Spaced out, and not stripped here.
    ("dog.", "dog"),                 # Periods not before a digit go ...
    ("u.s.a.", "usa"),
    ("2.5", "2.5"),                  # ... those before a digit stay.
    ("don't 10:30", "don't 10:30"),  # Apostrophes and colons are not punctuation here.
    ("." * 40, "." * 8),             # At most 32 periods are removed (official quirk).
])
def test_process_punctuation(text, expected):
  assert vqa_metric.process_punctuation(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("Two Dogs", "2 dogs"),          # Lower-cased, number words to digits.
    ("none", "0"),
    ("ten", "10"),
    ("eleven", "eleven"),            # Only none, zero .. ten are mapped.
    ("the cat on a mat", "cat on mat"),
    ("a", ""),
    ("  big   dog ", "big dog"),     # Split and rejoined with single spaces.
    ("dont", "don't"),
    ("couldnt've", "couldn't've"),
    ("couldn'tve", "couldn't've"),
    ("yall'd've", "y'all'd've"),
    ("twas", "'twas"),
    ("wed its", "wed its"),          # Clashing words are not in the table.
    ("somebody'd", "somebodyd"),     # The official table's backwards entry.
    ("Im", "im"),                    # Lower-cased before the (capitalised) key is tried.
])
def test_process_digit_article(text, expected):
  assert vqa_metric.process_digit_article(text) == expected


def test_contraction_table_has_the_official_shape():
  table = vqa_metric.CONTRACTIONS
  assert table["ow's'at"] == table["'ows'at"] == table["'ow'sat"] == "'ow's'at"
  assert table["yall'll"] == table["y'allll"] == "y'all'll"
  assert "couldntve" not in table  # Only one apostrophe is ever left out.
  assert all(value.count("'") >= 1 for key, value in table.items()
             if key != "somebody'd")


def test_normalize_answer_official_runs_every_step():
  assert vqa_metric.normalize_answer_official("  Two\tdogs.\n") == "2 dogs"
  assert vqa_metric.normalize_answer_official("The T-Shirt!") == "t shirt"


def test_identical_answers_are_not_normalised():
  # Ten identical answers stay raw while the prediction is always processed, so
  # "t-shirt" (predicted "t shirt") misses them; one dissenter changes that.
  assert vqa_metric.question_accuracy("t-shirt", ["t-shirt"] * 10) == 0.0
  assert vqa_metric.question_accuracy("t-shirt", ["t-shirt"] * 9 + ["shirt"]) == 1.0
  # Raw identical answers still match a prediction that normalises to them.
  assert vqa_metric.question_accuracy("Yes.", ["yes"] * 10) == 1.0


def test_annotator_answers_get_punctuation_processing_only():
  # The prediction "two" becomes "2"; the annotators' "two" stay "two", so only
  # the two "2" answers match: 0.6.
  answers = ["two"] * 8 + ["2"] * 2
  assert vqa_metric.question_accuracy("two", answers) == pytest.approx(0.6)
  # Annotators' "yes!" becomes "yes " (not stripped) and never matches "yes".
  assert vqa_metric.question_accuracy("yes", ["yes!"] * 9 + ["no"]) == 0.0


def _answers(texts):
  return [{"answer": t, "answer_confidence": "yes", "answer_id": i + 1}
          for i, t in enumerate(texts)]


def _official_files():
  """Four questions whose accuracies are 1.0, 0.6, 0.3 and 0.0 for `RESULTS`."""
  rows = [(1, 10, "is the", "yes/no", ["yes"] * 10),
          (2, 10, "how many", "number", ["2"] * 2 + ["3"] * 8),
          (3, 11, "what color is the", "other", ["red"] + ["blue"] * 9),
          (4, 12, "how many", "number", ["4"] * 10)]
  questions = {"questions": [{"question_id": q, "image_id": i, "question": f"{t}?"}
                             for q, i, t, _, _ in rows]}
  annotations = {"annotations": [
      {"question_id": q, "image_id": i, "question_type": t, "answer_type": a,
       "answers": _answers(texts), "multiple_choice_answer": texts[-1]}
      for q, i, t, a, texts in rows]}
  return questions, annotations


RESULTS = [{"question_id": 1, "answer": "Yes"}, {"question_id": 2, "answer": "two"},
           {"question_id": 3, "answer": "red"}, {"question_id": 4, "answer": "four dogs"}]


def test_score_reports_overall_per_answer_type_and_per_question_type():
  questions, annotations = _official_files()
  result = vqa_metric.score(questions, annotations, RESULTS)
  assert result["count"] == 4
  assert result["overall"] == pytest.approx(100 * (1.0 + 0.6 + 0.3 + 0.0) / 4)
  assert result["perAnswerType"] == pytest.approx(
      {"yes/no": 100.0, "number": 30.0, "other": 30.0})
  assert result["perQuestionType"] == pytest.approx(
      {"is the": 100.0, "how many": 30.0, "what color is the": 30.0})
  per_question = vqa_metric.question_accuracies(questions, annotations, RESULTS)
  assert per_question == pytest.approx({1: 1.0, 2: 0.6, 3: 0.3, 4: 0.0})


@pytest.mark.parametrize("results, message", [
    (RESULTS[:3], r"missing question ids 1 \(4\)"),
    (RESULTS + [{"question_id": 99, "answer": "x"}], r"unknown question ids 1 \(99\)"),
    (RESULTS + RESULTS[:1], r"repeated question ids 1 \(1\)"),
    (RESULTS[:3] + [{"question_id": 4, "answer": 4}], "not a string"),
])
def test_score_refuses_results_that_do_not_match(results, message):
  questions, annotations = _official_files()
  with pytest.raises(ValueError, match=message):
    vqa_metric.score(questions, annotations, results)


def test_score_refuses_questions_of_another_split():
  questions, annotations = _official_files()
  questions["questions"].pop()
  with pytest.raises(ValueError, match=r"1 \(4\) only in annotations"):
    vqa_metric.score(questions, annotations, RESULTS)


def _write_files(tmp_path, results=RESULTS):
  questions, annotations = _official_files()
  paths = {}
  for name, data in [("questions", questions), ("annotations", annotations),
                     ("results", results)]:
    paths[name] = tmp_path / f"{name}.json"
    paths[name].write_text(json.dumps(data))
  return [f"--{name}={path}" for name, path in paths.items()]


def test_cli_prints_the_scores_as_json(tmp_path, capsys):
  assert vqa_score.main(_write_files(tmp_path)) == 0
  printed = json.loads(capsys.readouterr().out)
  assert printed == vqa_metric.score(*_official_files(), RESULTS)  # Floats survive JSON.
  assert printed["count"] == 4


def test_cli_names_missing_questions_and_exits_2(tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    vqa_score.main(_write_files(tmp_path, RESULTS[1:]))
  assert exit_info.value.code == 2
  assert "missing question ids 1 (1)" in capsys.readouterr().err


def test_cli_runs_as_a_module(tmp_path):
  done = subprocess.run([sys.executable, "-m", "pixelbert_jax.evaluators.vqa_score",
                         *_write_files(tmp_path)], capture_output=True, text=True,
                        check=True)
  assert json.loads(done.stdout)["overall"] == pytest.approx(47.5)
