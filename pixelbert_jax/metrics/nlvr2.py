"""NLVR2 accuracy and consistency, and the official prediction file.

An identifier "dev-850-0-0" is split-set-pair-sentence. One sentence was written
for a set of images and is paired with up to four image pairs, so every example
sharing split, set and sentence index is the same sentence; its key here is the
identifier without the pair field ("dev-850-0"). The official `metrics.py`
(lil-lab/nlvr, nlvr2/eval) blanks that field instead ("dev-850--0"), which groups
the examples the same way.

* accuracy: the share of examples predicted right (the official script prints
  it as "precision");
* consistency: the share of unique sentences whose every example is right.

Both are returned in percent, as papers report them; the official script
prints fractions.

The prediction file the official script reads (and the one the NLVR2 team runs
on their hidden test set) is a CSV without a header: one line per example,
"identifier,prediction", the prediction written like the labels of the JSON
files, "True" or "False"; the script compares it with the label ignoring case.
"""

from __future__ import annotations

import json
from typing import Iterable, Mapping

from etils import epath

_BOOLEANS = {"true": True, "false": False}


def sentence_key(identifier: str) -> str:
  """The key shared by one sentence's examples: "dev-850-0-0" -> "dev-850-0"."""
  fields = identifier.split("-")
  if len(fields) != 4:
    raise ValueError(f"{identifier!r} is not an NLVR2 identifier split-set-pair-sentence")
  return "-".join(fields[:2] + fields[3:])


def _describe(ids: Iterable[str], limit: int = 10) -> str:
  ids = sorted(ids)
  return f"{len(ids)} ({', '.join(ids[:limit])}{', ...' if len(ids) > limit else ''})"


def score(predictions: Mapping[str, bool], labels: Mapping[str, bool]) -> dict:
  """{"accuracy", "consistency"} in percent, with "count" and "num_sentences".

  Args:
    predictions: identifier -> predicted truth value, one for every labelled
      example and no others (a ValueError names the odd ids).
    labels: identifier -> label.
  """
  problems = {"missing": labels.keys() - predictions.keys(),
              "unknown": predictions.keys() - labels.keys()}
  found = [f"{name} identifiers {_describe(ids)}" for name, ids in problems.items() if ids]
  if found:
    raise ValueError("predictions must cover exactly the labelled examples: "
                     + "; ".join(found))
  if not labels:
    raise ValueError("no labelled examples to score")
  sentence_right = {}
  num_right = 0
  for identifier, label in labels.items():
    right = bool(predictions[identifier]) == bool(label)
    num_right += right
    key = sentence_key(identifier)
    sentence_right[key] = sentence_right.get(key, True) and right
  return {"accuracy": 100.0 * num_right / len(labels),
          "consistency": 100.0 * sum(sentence_right.values()) / len(sentence_right),
          "count": len(labels), "num_sentences": len(sentence_right)}


def _parse_bool(text: str, where: str) -> bool:
  value = _BOOLEANS.get(str(text).strip().lower())
  if value is None:
    raise ValueError(f"{where}: {text!r} is neither True nor False")
  return value


def read_labels(jsonl_path: str | epath.PathLike) -> dict[str, bool]:
  """identifier -> label of an official JSON-lines file (dev.json, test1.json)."""
  labels = {}
  with epath.Path(jsonl_path).open(encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      where = f"{jsonl_path}:{number}"
      try:
        entry = json.loads(line)
        identifier, label = entry["identifier"], entry["label"]
      except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{where}: not a JSON object with an identifier and a label "
                         f"({error!r})") from error
      labels[identifier] = _parse_bool(label, where)
  return labels


def write_predictions(path: str | epath.PathLike, predictions: Mapping[str, bool]) -> None:
  """Writes the official CSV: "identifier,True" or "identifier,False" per line (local
  or `gs://` paths)."""
  with epath.Path(path).open("w", encoding="utf-8") as f:
    for identifier, prediction in predictions.items():
      sentence_key(identifier)  # Refuse ids the official script would misread.
      f.write(f"{identifier},{bool(prediction)}\n")


def read_predictions(path: str | epath.PathLike) -> dict[str, bool]:
  """identifier -> prediction from an official CSV; a repeated id is an error."""
  predictions = {}
  with epath.Path(path).open(encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      # Like the official reader: the first two comma-separated fields count.
      fields, where = line.strip().split(","), f"{path}:{number}"
      if len(fields) < 2:
        raise ValueError(f"{where}: expected 'identifier,True|False'")
      if fields[0] in predictions:
        raise ValueError(f"{where}: a second prediction for {fields[0]}")
      predictions[fields[0]] = _parse_bool(fields[1], where)
  return predictions


def score_files(predictions_csv: str, labels_jsonl: str) -> dict:
  """`score` of an official prediction file against an official data file."""
  return score(read_predictions(predictions_csv), read_labels(labels_jsonl))
