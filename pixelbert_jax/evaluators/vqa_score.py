"""Scores a VQA v2 results file with the official accuracy and prints it as JSON.

  python -m pixelbert_jax.evaluators.vqa_score \\
      --questions v2_OpenEnded_mscoco_val2014_questions.json \\
      --annotations v2_mscoco_val2014_annotations.json \\
      --results val2014_results.json

The results file is the one EvalAI takes: [{"question_id": int, "answer": str}].
Accuracies are percentages, unrounded (the official code rounds to 2 places).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from pixelbert_jax.evaluators import vqa_metric


def _load_json(path: str):
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      description="Official VQA v2 accuracy of a results file.")
  parser.add_argument("--questions", required=True, help="the questions JSON file")
  parser.add_argument("--annotations", required=True, help="the annotations JSON file")
  parser.add_argument("--results", required=True,
                      help='the results JSON file, [{"question_id", "answer"}]')
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  """Prints {"overall", "perAnswerType", "perQuestionType", "count"}; 0 on success."""
  parser = _parser()
  args = parser.parse_args(argv)
  try:
    accuracies = vqa_metric.score(_load_json(args.questions),
                                  _load_json(args.annotations), _load_json(args.results))
  except ValueError as error:  # Mismatched or malformed files: say why, exit 2.
    parser.error(str(error))
  except KeyError as error:
    parser.error(f"a file is not in the official format: no field {error}")
  json.dump(accuracies, sys.stdout, indent=2)
  sys.stdout.write("\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
