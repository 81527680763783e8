"""Scores a VQA v2 results file with the official accuracy and prints it as JSON.

  python -m pixelbert_jax.evaluators.vqa_score \\
      --questions v2_OpenEnded_mscoco_val2014_questions.json \\
      --annotations v2_mscoco_val2014_annotations.json \\
      --results val2014_results.json
  python -m pixelbert_jax.evaluators.vqa_score \\
      --questions v2_OpenEnded_mscoco_test2015_questions.json --results test_results.json

The results file is the one EvalAI takes: [{"question_id": int, "answer": str}].
Accuracies are percentages rounded to 2 places as the official code (GT-Vision-Lab/VQA
at a013f00, see `vqa_metric`) prints them; `--unrounded` keeps every digit. Without
annotations (test-dev, test-std) the file is only checked: it must answer every
question of the questions file exactly once, as EvalAI requires.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from pixelbert_jax.metrics import vqa as vqa_metric


def _load_json(path: str):
  with open(path, encoding="utf-8") as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as error:
      raise ValueError(f"{path} is not valid JSON: {error}") from None


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      description="Official VQA v2 accuracy of a results file.")
  parser.add_argument("--questions", required=True, help="the questions JSON file")
  parser.add_argument("--annotations",
                      help="the annotations JSON file; without it the results are "
                      "only checked for covering the questions")
  parser.add_argument("--results", required=True,
                      help='the results JSON file, [{"question_id", "answer"}]')
  parser.add_argument("--unrounded", action="store_true",
                      help="print accuracies unrounded instead of to 2 places")
  return parser


def _evaluate(args) -> dict:
  questions, results = _load_json(args.questions), _load_json(args.results)
  if not args.annotations:
    return {"count": vqa_metric.check_results(questions, results), "complete": True}
  return vqa_metric.score(questions, _load_json(args.annotations), results,
                          digits=None if args.unrounded else 2)


def main(argv: Sequence[str] | None = None) -> int:
  """Prints {"overall", "perAnswerType", "perQuestionType", "count"} (or, without
  annotations, {"count", "complete"}); 0 on success."""
  parser = _parser()
  args = parser.parse_args(argv)
  try:
    accuracies = _evaluate(args)
  except ValueError as error:  # Mismatched or malformed files: say why, exit 2.
    parser.error(str(error))
  except KeyError as error:
    parser.error(f"a file is not in the official format: no field {error}")
  json.dump(accuracies, sys.stdout, indent=2)
  sys.stdout.write("\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
