"""The official VQA v2 accuracy, scored exactly as the current official evaluation code does.

The reference is `PythonEvaluationTools/vqaEvaluation/vqaEval.py` of the VQA API at the
head of GT-Vision-Lab/VQA, commit a013f0043c1e2cdc995922dfe257f7149aa9af06
(2021-03-11, "Fixed processing answers bug"), the version EvalAI scores the challenge
with. The 2017 version that most copies online still carry (prediction always
normalised, ground truth only punctuation-processed) is superseded. Per question:

1. Every ground-truth answer and the prediction lose newlines and tabs (each becomes a
   space) and outer white space (`strip`). Always.
2. If the question's cleaned ground-truth answers are not all identical, every one of
   them *and* the prediction go through punctuation processing and then digit/article
   processing (lower case, number words to digits, articles dropped, contractions
   given their apostrophes). If they are all identical, neither is processed further:
   a prediction "Two" misses ten "2", and "2" matches them.
3. Each annotator is left out in turn; the prediction scores min(1, matches among the
   others / 3) against each subset and the question scores the mean. The official
   code leaves out every answer *dict* equal to the left-out one (text after step 2,
   confidence, id); with VQA's distinct `answer_id`s that is one answer by position.
   Both are done here: plain strings are left out by position, dicts by equality.
4. Overall, per answer type and per question type accuracies are means of the
   question accuracies, in percent, summed in file order as the official code sums
   them. It rounds them to 2 places; `score(..., digits=2)` does the same, and by
   default they are returned unrounded.

The official code runs under Python 2, where its `\\d` matches ASCII digits only
(its patterns carry no UNICODE flag); the patterns here are compiled with `re.ASCII`
to match. Answers in a results file must cover exactly the questions of the
annotation file, as the official `loadRes` demands (it also takes a repeated id
silently, the last one winning; here a repeat is an error naming the ids).
"""

from __future__ import annotations

import collections
import decimal
import re
from typing import Iterable, Mapping, Sequence

# Characters that punctuation processing deletes or turns into a space.
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
               ">", "<", "@", "`", ",", "?", "!")
# Any "digit,digit" in an answer makes every punctuation character vanish
# rather than become a space, so "1,000" reads "1000".
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d", re.ASCII)
# The official pattern is "(?!<=\d)(\.)(?!\d)": its first group is a mistyped
# look-behind that never fires, so it removes every period not followed by a
# digit ("2.5" keeps its period, "dog." loses it).
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)", re.ASCII)
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


def clean_whitespace(text: str) -> str:
  """Step 1, applied to every answer: newlines and tabs become spaces, then `strip`."""
  return text.replace("\n", " ").replace("\t", " ").strip()


def normalize_answer(text: str) -> str:
  """Steps 1 and 2: what a disagreed-on question's answers and prediction become."""
  return process_digit_article(process_punctuation(clean_whitespace(text)))


def compared_forms(gt_answers: Sequence[str]) -> tuple[list[str], bool]:
  """(the forms the prediction is compared with, whether they were processed).

  A question's answers are fully processed only when their cleaned forms disagree;
  the prediction is then processed too (`prediction_form`).
  """
  cleaned = [clean_whitespace(answer) for answer in gt_answers]
  if len(set(cleaned)) > 1:
    return [normalize_answer(answer) for answer in cleaned], True
  return cleaned, False


def prediction_form(prediction: str, processed: bool) -> str:
  """The prediction as compared: cleaned, and processed when the answers were."""
  return normalize_answer(prediction) if processed else clean_whitespace(prediction)


def accuracy_against_forms(prediction: str, forms: Sequence[str]) -> float:
  """Step 3 for annotators told apart by position: the prediction and the answers
  already in their compared forms (`compared_forms`, `prediction_form`)."""
  matches = sum(form == prediction for form in forms)
  # Leaving annotator i out removes its own match, if it had one.
  return _mean_left_out([matches - (form == prediction) for form in forms])


def _mean_left_out(matches_per_subset: Sequence[int]) -> float:
  subset_scores = [min(1, float(matches) / 3) for matches in matches_per_subset]
  return float(sum(subset_scores)) / len(subset_scores)


def _accuracy_against_dicts(prediction: str, forms: Sequence[str],
                            gt_answers: Sequence[Mapping]) -> float:
  """Step 3 as the official code does it on answer dicts: leaving one out drops
  every dict equal to it, the text replaced by its compared form."""
  records = [{**answer, "answer": form} for answer, form in zip(gt_answers, forms)]
  return _mean_left_out([
      sum(other["answer"] == prediction for other in records if other != record)
      for record in records])


def question_accuracy(prediction: str, gt_answers: Sequence[str] | Sequence[Mapping]
                      ) -> float:
  """The official accuracy (0..1) of one predicted answer against its annotators.

  Args:
    prediction: the predicted answer, as submitted.
    gt_answers: the annotators' answers: strings (annotators by position), or the
      official answer dicts ({"answer", "answer_confidence", "answer_id"}).

  Three agreeing annotators give full credit: with 10 answers, n matches score
  0, 0.3, 0.6, 0.9 for n = 0..3 and 1 from n = 4 on.
  """
  if not gt_answers:
    raise ValueError("a question needs at least one ground-truth answer")
  as_dicts = not isinstance(gt_answers[0], str)
  texts = [answer["answer"] for answer in gt_answers] if as_dicts else list(gt_answers)
  forms, processed = compared_forms(texts)
  prediction = prediction_form(prediction, processed)
  if as_dicts:
    return _accuracy_against_dicts(prediction, forms, gt_answers)
  return accuracy_against_forms(prediction, forms)


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


def _predictions_by_id(results: Iterable[Mapping], by_id: Iterable) -> dict:
  """One string answer per question of `by_id`, or a ValueError naming the ids."""
  if not isinstance(results, list):
    raise ValueError("results must be a list of {\"question_id\", \"answer\"} objects")
  predictions, repeated = {}, set()
  for result in results:
    question_id, answer = result["question_id"], result["answer"]
    if not isinstance(answer, str):
      raise ValueError(f"question {question_id}: answer {answer!r} is not a string")
    if question_id in predictions:
      repeated.add(question_id)
    predictions[question_id] = answer
  wanted = set(by_id)
  problems = {"missing": wanted - predictions.keys(),
              "unknown": predictions.keys() - wanted,
              "repeated": repeated}
  found = [f"{name} question ids {_describe(ids)}" for name, ids in problems.items() if ids]
  if found:
    raise ValueError("results must answer each question exactly once: "
                     + "; ".join(found))
  return predictions


def check_results(questions: Mapping, results: Iterable[Mapping]) -> int:
  """How many questions `results` answers; a ValueError unless it answers each
  question of the questions file exactly once (what EvalAI takes: for test-dev, the
  whole test2015 questions file, not only test-dev's)."""
  return len(_predictions_by_id(results, [q["question_id"] for q in questions["questions"]]))


def _accuracies(questions: Mapping, annotations: Mapping,
                results: Iterable[Mapping]) -> tuple[dict, dict]:
  """(annotations by id, {question_id: accuracy in 0..1}), both in file order."""
  by_id = _annotations_by_id(annotations)
  _check_questions(questions, by_id)
  predictions = _predictions_by_id(results, by_id)
  accuracies = {question_id: question_accuracy(predictions[question_id],
                                                annotation["answers"])
                for question_id, annotation in by_id.items()}
  return by_id, accuracies


def question_accuracies(questions: Mapping, annotations: Mapping,
                        results: Iterable[Mapping]) -> dict:
  """{question_id: accuracy in 0..1} over official-format inputs, for analysis."""
  return _accuracies(questions, annotations, results)[1]


def round_like_python2(value: float, digits: int) -> float:
  """Python 2's `round`, which the official report uses: ties go away from zero.

  Python 3's `round` sends exact ties to the even digit, and such ties do occur
  (a mean of 8 questions can be exactly 12.125: Python 2 says 12.13, Python 3 12.12).
  Both round the exact binary value, so 2.675 (really 2.67499...) is 2.67 in both.
  """
  exact = decimal.Decimal(value)  # The float's exact binary value.
  step = decimal.Decimal(1).scaleb(-digits)
  return float(exact.quantize(step, rounding=decimal.ROUND_HALF_UP))


def _mean_percent(values: Sequence[float], digits: int | None) -> float:
  """100 * the mean, summed in order as the official code does; rounded if asked."""
  mean = 100 * float(sum(values)) / len(values)
  return mean if digits is None else round_like_python2(mean, digits)


def score(questions: Mapping, annotations: Mapping, results: Iterable[Mapping], *,
          digits: int | None = None) -> dict:
  """Official VQA accuracies, in percent; rounded to `digits` places if given.

  Args:
    questions: a loaded questions file, {"questions": [{"question_id", ...}]}.
    annotations: a loaded annotations file, {"annotations": [{"question_id",
      "question_type", "answer_type", "answers": [{"answer", ...}], ...}]}.
    results: a loaded results file, [{"question_id", "answer"}].
    digits: None (unrounded) or the official report's 2.

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
      "overall": _mean_percent(list(accuracies.values()), digits),
      "perAnswerType": {k: _mean_percent(v, digits) for k, v in answer_types.items()},
      "perQuestionType": {k: _mean_percent(v, digits)
                          for k, v in question_types.items()},
      "count": len(accuracies),
  }
