"""The official VQA v2 accuracy, scored the way the VQA API's evaluation code scores it.

The reference is `vqaEval.py` of the VQA API (GT-Vision-Lab/VQA,
PythonEvaluationTools). Its behaviour, reproduced here:

* The predicted answer always has newlines and tabs turned into spaces, is
  stripped, then goes through punctuation processing and digit/article
  processing (lower case, number words to digits, articles dropped,
  contractions given their apostrophes).
* The ground-truth answers of a question go through punctuation processing
  only, and only when its answers are not all identical. When all 10 agree they
  are compared as they stand: a prediction "t-shirt" becomes "t shirt" and no
  longer matches ten untouched "t-shirt" answers. That is the official quirk.
* Each of the 10 annotators is left out in turn; the prediction scores
  min(1, matches among the other 9 / 3) against each subset and the question
  scores the mean. The official code leaves an answer out by comparing answer
  dicts (text, confidence, id); with VQA's distinct answer ids that is leaving
  out by position, which is what is done here.
* Overall, per answer type and per question type accuracies are means of the
  question accuracies, in percent. The official code rounds them to 2 places;
  here they are returned unrounded.

Answers in a results file must cover exactly the questions of the annotation
file, as the official `loadRes` demands; the error here names the ids.
"""

from __future__ import annotations

import collections
import re
from typing import Iterable, Mapping, Sequence

# Characters that punctuation processing deletes or turns into a space.
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
               ">", "<", "@", "`", ",", "?", "!")
# Any "digit,digit" in an answer makes every punctuation character vanish
# rather than become a space, so "1,000" reads "1000".
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
# The official pattern is "(?!<=\d)(\.)(?!\d)": its first group is a mistyped
# look-behind that never fires, so it removes every period not followed by a
# digit ("2.5" keeps its period, "dog." loses it).
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
# The official call passes re.UNICODE (32) where `sub` expects a count, so at
# most 32 periods are removed.
_MAX_PERIODS_REMOVED = 32

NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3",
                "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8",
                "nine": "9", "ten": "10"}
ARTICLES = frozenset({"a", "an", "the"})

# The spelled-out forms the official table restores. Its keys are each form with
# exactly one apostrophe left out ("dont" -> "don't"; "couldnt've" and
# "couldn'tve" -> "couldn't've"). Forms that would clash with common words (we'd,
# she'll, it's, we're, ...) are not in the table, so "wed" and "its" stay as
# they are. The capitalised forms can never match: words are lower-cased first.
_CONTRACTED_FORMS = (
    "ain't", "aren't", "can't", "could've", "couldn't", "couldn't've", "didn't",
    "doesn't", "don't", "hadn't", "hadn't've", "hasn't", "haven't", "he'd", "he'd've",
    "he's", "how'd", "how'll", "how's", "I'd've", "I'm", "I've", "isn't", "it'd",
    "it'd've", "it'll", "ma'am", "mightn't", "mightn't've", "might've", "mustn't",
    "must've", "needn't", "not've", "o'clock", "oughtn't", "'ow's'at", "shan't",
    "she'd've", "should've", "shouldn't", "shouldn't've", "somebody'd've",
    "somebody'll", "somebody's", "someone'd", "someone'd've", "someone'll",
    "someone's", "something'd", "something'd've", "something'll", "that's",
    "there'd", "there'd've", "there're", "there's", "they'd", "they'd've", "they'll",
    "they're", "they've", "'twas", "wasn't", "we'd've", "we've", "weren't",
    "what'll", "what're", "what's", "what've", "when's", "where'd", "where's",
    "where've", "who'd", "who'd've", "who'll", "who's", "who've", "why'll", "why're",
    "why's", "won't", "would've", "wouldn't", "wouldn't've", "y'all", "y'all'll",
    "y'all'd've", "you'd", "you'd've", "you'll", "you're", "you've",
)


def _contraction_table() -> dict[str, str]:
  """Maps each form with one apostrophe left out to the spelled-out form."""
  table = {}
  for form in _CONTRACTED_FORMS:
    for i, char in enumerate(form):
      if char == "'":
        table[form[:i] + form[i + 1:]] = form
  # The official table has this entry backwards: it strips the apostrophe.
  table["somebody'd"] = "somebodyd"
  return table


CONTRACTIONS = _contraction_table()


def process_punctuation(text: str) -> str:
  """The official punctuation step: delete or space out punctuation, drop periods.

  A punctuation character is deleted when it stands next to a space anywhere in
  the answer ("red, white" -> "red white") or when the answer holds a
  digit-comma-digit; otherwise it becomes a space ("t-shirt" -> "t shirt").
  Both tests look at the answer as given, not as already edited.
  """
  has_digit_comma = _DIGIT_COMMA_DIGIT.search(text) is not None
  out = text
  for char in PUNCTUATION:
    touches_space = char + " " in text or " " + char in text
    out = out.replace(char, "" if touches_space or has_digit_comma else " ")
  return _PERIOD_NOT_BEFORE_DIGIT.sub("", out, count=_MAX_PERIODS_REMOVED)


def process_digit_article(text: str) -> str:
  """The official word step: lower-case, number words to digits, no articles.

  Words are split on white space and rejoined with single spaces; contractions
  are restored after the articles are gone.
  """
  words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
  words = [word for word in words if word not in ARTICLES]
  return " ".join(CONTRACTIONS.get(word, word) for word in words)


def normalize_answer_official(text: str) -> str:
  """What the official code does to every predicted answer before comparing."""
  text = text.replace("\n", " ").replace("\t", " ").strip()
  return process_digit_article(process_punctuation(text))


def question_accuracy(prediction: str, gt_answers: Sequence[str]) -> float:
  """The official accuracy (0..1) of one predicted answer against its annotators.

  Three agreeing annotators give full credit: with 10 answers, n matches score
  0, 0.3, 0.6, 0.9 for n = 0..3 and 1 from n = 4 on.
  """
  if not gt_answers:
    raise ValueError("a question needs at least one ground-truth answer")
  prediction = normalize_answer_official(prediction)
  answers = list(gt_answers)
  if len(set(answers)) > 1:  # The official quirk: identical answers stay raw.
    answers = [process_punctuation(answer) for answer in answers]
  matches = sum(answer == prediction for answer in answers)
  # Leaving annotator i out removes its own match, if it had one.
  subset_scores = [min(1.0, (matches - (answer == prediction)) / 3)
                   for answer in answers]
  return sum(subset_scores) / len(subset_scores)


def _describe(ids: Iterable, limit: int = 10) -> str:
  ids = sorted(ids, key=str)
  shown = ", ".join(str(i) for i in ids[:limit])
  return f"{len(ids)} ({shown}{', ...' if len(ids) > limit else ''})"


def _annotations_by_id(annotations: Mapping) -> dict:
  """The annotations keyed by question id, in file order."""
  by_id = {}
  for annotation in annotations["annotations"]:
    if annotation["question_id"] in by_id:
      raise ValueError(f"question {annotation['question_id']} is annotated twice")
    by_id[annotation["question_id"]] = annotation
  return by_id


def _check_questions(questions: Mapping, by_id: Mapping) -> None:
  """The questions file must hold the annotated questions, on the same images."""
  images = {q["question_id"]: q["image_id"] for q in questions["questions"]}
  if images.keys() != by_id.keys():
    raise ValueError(
        "questions and annotations are not of the same questions: "
        f"{_describe(images.keys() - by_id.keys())} only in questions, "
        f"{_describe(by_id.keys() - images.keys())} only in annotations")
  wrong = [i for i, image in images.items() if by_id[i]["image_id"] != image]
  if wrong:
    raise ValueError(f"questions on other images than annotated: {_describe(wrong)}")


def _predictions_by_id(results: Iterable[Mapping], by_id: Mapping) -> dict:
  """One string answer per annotated question, or a ValueError naming the ids."""
  predictions, repeated = {}, set()
  for result in results:
    question_id, answer = result["question_id"], result["answer"]
    if not isinstance(answer, str):
      raise ValueError(f"question {question_id}: answer {answer!r} is not a string")
    if question_id in predictions:
      repeated.add(question_id)
    predictions[question_id] = answer
  problems = {"missing": by_id.keys() - predictions.keys(),
              "unknown": predictions.keys() - by_id.keys(),
              "repeated": repeated}
  found = [f"{name} question ids {_describe(ids)}" for name, ids in problems.items() if ids]
  if found:
    raise ValueError("results must answer each annotated question exactly once: "
                     + "; ".join(found))
  return predictions


def _accuracies(questions: Mapping, annotations: Mapping,
                results: Iterable[Mapping]) -> tuple[dict, dict]:
  """(annotations by id, {question_id: accuracy in 0..1}), both in file order."""
  by_id = _annotations_by_id(annotations)
  _check_questions(questions, by_id)
  predictions = _predictions_by_id(results, by_id)
  accuracies = {question_id: question_accuracy(
      predictions[question_id], [a["answer"] for a in annotation["answers"]])
                for question_id, annotation in by_id.items()}
  return by_id, accuracies


def question_accuracies(questions: Mapping, annotations: Mapping,
                        results: Iterable[Mapping]) -> dict:
  """{question_id: accuracy in 0..1} over official-format inputs, for analysis."""
  return _accuracies(questions, annotations, results)[1]


def _mean_percent(values: Sequence[float]) -> float:
  return 100.0 * sum(values) / len(values)


def score(questions: Mapping, annotations: Mapping, results: Iterable[Mapping]) -> dict:
  """Official VQA accuracies, in percent, unrounded.

  Args:
    questions: a loaded questions file, {"questions": [{"question_id", ...}]}.
    annotations: a loaded annotations file, {"annotations": [{"question_id",
      "question_type", "answer_type", "answers": [{"answer", ...}], ...}]}.
    results: a loaded results file, [{"question_id", "answer"}].

  Returns:
    {"overall", "perAnswerType": {type: acc}, "perQuestionType": {type: acc},
     "count": number of questions}.
  """
  by_id, accuracies = _accuracies(questions, annotations, results)
  if not accuracies:
    raise ValueError("no annotated questions to score")
  answer_types, question_types = collections.defaultdict(list), collections.defaultdict(list)
  for question_id, accuracy in accuracies.items():
    answer_types[by_id[question_id]["answer_type"]].append(accuracy)
    question_types[by_id[question_id]["question_type"]].append(accuracy)
  return {
      "overall": _mean_percent(list(accuracies.values())),
      "perAnswerType": {k: _mean_percent(v) for k, v in answer_types.items()},
      "perQuestionType": {k: _mean_percent(v) for k, v in question_types.items()},
      "count": len(accuracies),
  }
