"""Tests for the official VQA accuracy: hand-worked scores, each normalisation step, the CLI."""

import json
import subprocess
import sys

import pytest

from pixelbert_jax.metrics import vqa as vqa_metric
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


def test_normalize_answer_runs_every_step():
  assert vqa_metric.normalize_answer("  Two\tdogs.\n") == "2 dogs"
  assert vqa_metric.normalize_answer("The T-Shirt!") == "t shirt"
  assert vqa_metric.clean_whitespace("\tred\n ") == "red"
  assert vqa_metric.clean_whitespace("re\nd") == "re d"  # Inside: a space, kept.


# Each case below is worked by hand from vqaEval.py at GT-Vision-Lab/VQA a013f00:
# (1) strip "\n", "\t" and outer spaces from every answer and the prediction;
# (2) if the cleaned answers differ, punctuation + digit/article processing on
# all of them and on the prediction; (3) min(1, others matching / 3), averaged.
TEN_OF = lambda answer: [answer] * 10


@pytest.mark.parametrize("prediction, answers, expected", [
    # Whitespace in ground truth: cleaned always, so ten identical answers.
    ("red", ["red\n"] * 5 + [" red"] * 5, 1.0),
    ("\tred ", ["red\n"] * 5 + [" red"] * 5, 1.0),   # The prediction is cleaned too.
    ("Red", ["red\n"] * 5 + [" red"] * 5, 0.0),      # Identical: no lower-casing.
    ("re d", ["re\nd"] * 10, 1.0),                   # Inner newline -> space.
    # Identical answers are compared as written, with no further processing.
    ("2", TEN_OF("2"), 1.0),
    ("Two", TEN_OF("2"), 0.0),
    ("two", TEN_OF("2"), 0.0),
    ("t-shirt", TEN_OF("t-shirt"), 1.0),  # The 2017 code scored this 0.
    ("t shirt", TEN_OF("t-shirt"), 0.0),
    ("yes.", TEN_OF("yes"), 0.0),
    # Disagreeing answers: everything processed, the prediction included.
    ("Two", ["2"] * 9 + ["3"], 1.0),
    ("two", ["two"] * 8 + ["2"] * 2, 1.0),             # All become "2" (2017: 0.6).
    ("t-shirt", ["t-shirt"] * 9 + ["shirt"], 1.0),     # "t shirt" on both sides.
    ("tshirt", ["t-shirt"] * 9 + ["shirt"], 0.0),
    ("yes", ["yes!"] * 9 + ["no"], 1.0),               # "yes " -> "yes" by split/join.
    # Number words and articles.
    ("ten", ["10"] * 3 + ["9"] * 7, 0.9),              # 3 matches: 3 x 2/3 + 7 x 1.
    ("none", ["0"] * 2 + ["zero"] * 2 + ["1"] * 6, 1.0),  # 4 x "0".
    ("a dog", ["the dog"] * 3 + ["dog"] * 7, 1.0),
    ("an apple", ["apple"] * 2 + ["pear"] * 8, 0.6),   # 2 x 1/3 + 8 x 2/3.
    # Contractions get their apostrophe back.
    ("dont", ["don't"] * 2 + ["dont"] * 2 + ["no"] * 6, 1.0),
    ("cant", ["can't"] + ["no"] * 9, 0.3),
    # "1,000": a digit-comma-digit deletes every punctuation mark.
    ("1,000", ["1,000"] * 5 + ["1000"] * 5, 1.0),
    ("1000", ["1,000"] * 2 + ["100"] * 8, 0.6),
    ("1 000", ["1,000"] * 2 + ["100"] * 8, 0.0),
    # Periods: removed unless before a digit.
    ("dog", ["dog."] * 3 + ["cat"] * 7, 0.9),
    ("2.5", ["2.5"] * 4 + ["2"] * 6, 1.0),
    ("25", ["2.5"] * 4 + ["2"] * 6, 0.0),
    # 32+ periods: only the first 32 are removed (re.UNICODE passed as the count).
    ("." * 40, ["." * 40] * 5 + ["no"] * 5, 1.0),      # Both sides keep 8.
    ("." * 35, ["." * 40] * 5 + ["no"] * 5, 0.0),      # 3 periods vs 8.
    ("." * 8, ["." * 40] * 5 + ["no"] * 5, 0.0),       # 8 periods: all removed.
    # Answers that become empty match an empty prediction.
    ("an", ["a"] * 4 + ["the"] * 3 + ["no"] * 3, 1.0),
    ("", ["a"] * 4 + ["the"] * 3 + ["no"] * 3, 1.0),
    ("a", TEN_OF("the"), 0.0),                         # Identical: "the" stays "the".
    ("", TEN_OF(" \n"), 1.0),                          # Ten "" after cleaning.
])
def test_question_accuracy_worked_cases(prediction, answers, expected):
  assert vqa_metric.question_accuracy(prediction, answers) == pytest.approx(expected)


def test_answer_dicts_are_left_out_as_the_official_code_compares_them():
  # Distinct answer_ids: one annotator left out at a time, as with strings.
  blue = [{"answer": "blue", "answer_confidence": "yes", "answer_id": i} for i in range(4, 11)]
  red = [{"answer": "red", "answer_confidence": "yes", "answer_id": i} for i in (1, 2, 3)]
  assert vqa_metric.question_accuracy("red", red + blue) == pytest.approx(0.9)
  # Three equal dicts: leaving one out drops all three (0 matches), the 7 other
  # subsets keep 3 matches: 7 / 10.
  same = [{"answer": "red", "answer_confidence": "yes", "answer_id": 1}] * 3
  assert vqa_metric.question_accuracy("red", same + blue) == pytest.approx(0.7)
  # Equal after processing counts: "Red" and "red" dicts become equal.
  mixed = [{"answer": text, "answer_id": 1} for text in ("Red", "red", "red")]
  assert vqa_metric.question_accuracy("red", mixed + blue) == pytest.approx(0.7)


def test_official_report_rounds_ties_away_from_zero_like_python2():
  # 1 right of 32 questions: exactly 3.125 %. The official report (Python 2's
  # round) prints 3.13; Python 3's round would print 3.12.
  rows = [(q, "red" if q == 1 else "blue") for q in range(1, 33)]
  questions = {"questions": [{"question_id": q, "image_id": 1} for q, _ in rows]}
  annotations = {"annotations": [
      {"question_id": q, "image_id": 1, "question_type": "what", "answer_type": "other",
       "answers": _answers(["red"] * 10)} for q, _ in rows]}
  results = [{"question_id": q, "answer": answer} for q, answer in rows]
  assert vqa_metric.score(questions, annotations, results)["overall"] == 3.125
  rounded = vqa_metric.score(questions, annotations, results, digits=2)
  assert rounded["overall"] == 3.13 and rounded["perAnswerType"] == {"other": 3.13}
  assert vqa_metric.round_like_python2(2.675, 2) == 2.67  # Really 2.67499999...


def _answers(texts):
  return [{"answer": t, "answer_confidence": "yes", "answer_id": i + 1}
          for i, t in enumerate(texts)]


def _official_files():
  """Six questions in the official format; `RESULTS` scores them, by hand from the
  official code, 0.0, 1.0, 0.6, 0.0, 0.3 and 1.0."""
  rows = [(1, 10, "is the", "yes/no", ["yes"] * 10),      # "Yes": case kept, 0.
          (2, 10, "is the", "yes/no", ["yes"] * 9 + ["no"]),  # "Yes" -> "yes": 1.
          (3, 10, "how many", "number", ["2"] * 2 + ["3"] * 8),  # "two" -> "2": 0.6.
          (4, 12, "how many", "number", ["4"] * 10),       # "four" stays: 0.
          (5, 11, "what color is the", "other", ["red"] + ["blue"] * 9),  # 0.3.
          (6, 11, "what is the", "other", ["t-shirt\n"] * 10)]  # Cleaned: 1.
  questions = {"questions": [{"question_id": q, "image_id": i, "question": f"{t}?"}
                             for q, i, t, _, _ in rows]}
  annotations = {"annotations": [
      {"question_id": q, "image_id": i, "question_type": t, "answer_type": a,
       "answers": _answers(texts), "multiple_choice_answer": texts[-1]}
      for q, i, t, a, texts in rows]}
  return questions, annotations


RESULTS = [{"question_id": 1, "answer": "Yes"}, {"question_id": 2, "answer": "Yes"},
           {"question_id": 3, "answer": "two"}, {"question_id": 4, "answer": "four"},
           {"question_id": 5, "answer": "red"}, {"question_id": 6, "answer": "t-shirt"}]
# (0 + 1 + 0.6 + 0 + 0.3 + 1) / 6 = 48.333...; per type, the means of their questions.
EXPECTED = {"overall": 100 * 2.9 / 6,
            "perAnswerType": {"yes/no": 50.0, "number": 30.0, "other": 65.0},
            "perQuestionType": {"is the": 50.0, "how many": 30.0,
                                "what color is the": 30.0, "what is the": 100.0}}


def test_score_reports_overall_per_answer_type_and_per_question_type():
  questions, annotations = _official_files()
  result = vqa_metric.score(questions, annotations, RESULTS)
  assert result["count"] == 6
  for field, expected in EXPECTED.items():
    assert result[field] == pytest.approx(expected), field
  per_question = vqa_metric.question_accuracies(questions, annotations, RESULTS)
  assert per_question == pytest.approx({1: 0.0, 2: 1.0, 3: 0.6, 4: 0.0, 5: 0.3, 6: 1.0})


@pytest.mark.parametrize("results, message", [
    (RESULTS[:5], r"missing question ids 1 \(6\)"),
    (RESULTS + [{"question_id": 99, "answer": "x"}], r"unknown question ids 1 \(99\)"),
    (RESULTS + RESULTS[:1], r"repeated question ids 1 \(1\)"),
    (RESULTS[:5] + [{"question_id": 6, "answer": 4}], "not a string"),
    ({"question_id": 1, "answer": "yes"}, "must be a list"),
])
def test_score_refuses_results_that_do_not_match(results, message):
  questions, annotations = _official_files()
  with pytest.raises(ValueError, match=message):
    vqa_metric.score(questions, annotations, results)


def test_score_refuses_questions_of_another_split():
  questions, annotations = _official_files()
  questions["questions"].pop()
  with pytest.raises(ValueError, match=r"1 \(6\) only in annotations"):
    vqa_metric.score(questions, annotations, RESULTS)


def _write_files(tmp_path, results=RESULTS, annotations=True):
  questions, annotation_data = _official_files()
  files = [("questions", questions), ("results", results)]
  files += [("annotations", annotation_data)] if annotations else []
  paths = {}
  for name, data in files:
    paths[name] = tmp_path / f"{name}.json"
    paths[name].write_text(json.dumps(data))
  return [f"--{name}={path}" for name, path in paths.items()]


def test_cli_prints_the_official_rounded_scores(tmp_path, capsys):
  assert vqa_score.main(_write_files(tmp_path)) == 0
  printed = json.loads(capsys.readouterr().out)
  assert printed == {"overall": 48.33, "count": 6,
                     **{k: v for k, v in EXPECTED.items() if k != "overall"}}
  assert vqa_score.main(_write_files(tmp_path) + ["--unrounded"]) == 0
  unrounded = json.loads(capsys.readouterr().out)
  assert unrounded == vqa_metric.score(*_official_files(), RESULTS)  # Floats survive JSON.


def test_cli_names_missing_questions_and_exits_2(tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    vqa_score.main(_write_files(tmp_path, RESULTS[1:]))
  assert exit_info.value.code == 2
  assert "missing question ids 1 (1)" in capsys.readouterr().err


def test_cli_checks_a_submission_without_annotations(tmp_path, capsys):
  # A test-std submission: no annotations, every question answered exactly once.
  assert vqa_score.main(_write_files(tmp_path, annotations=False)) == 0
  assert json.loads(capsys.readouterr().out) == {"count": 6, "complete": True}
  other_split = [{"question_id": q + 100, "answer": "yes"} for q in range(1, 7)]
  with pytest.raises(SystemExit) as exit_info:
    vqa_score.main(_write_files(tmp_path, other_split, annotations=False))
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert "missing question ids 6 (1, 2, 3, 4, 5, 6)" in err
  assert "unknown question ids 6 (101, 102" in err
  (tmp_path / "results.json").write_text('[{"question_id": 1')
  with pytest.raises(SystemExit):
    vqa_score.main([f"--questions={tmp_path / 'questions.json'}",
                    f"--results={tmp_path / 'results.json'}"])
  assert "results.json is not valid JSON" in capsys.readouterr().err


def test_cli_runs_as_a_module(tmp_path):
  done = subprocess.run([sys.executable, "-m", "pixelbert_jax.evaluators.vqa_score",
                         *_write_files(tmp_path)], capture_output=True, text=True,
                        check=True)
  assert json.loads(done.stdout)["overall"] == pytest.approx(48.33)
