"""The run's record of its config: `config.json`, written once a start or resume is sure.

A run that starts from step 0 writes `config.json`; a resumed run keeps the one it
was started with (`predict` and `export` rebuild the model from it) and appends the
fields it changed, with the step it resumed at, to `config_changes.jsonl` beside it.
Both are written only after the restore succeeded, so a refused resume (another model,
a damaged checkpoint) leaves the run's record as it was.
"""

import json
import time
from typing import Any

import jax
from absl import logging
from etils import epath

CONFIG_FILE = "config.json"
CHANGES_FILE = "config_changes.jsonl"


def record(config, workdir: epath.Path, resumed_at: int | None) -> None:
  """Writes config.json (a start) or logs and appends the changes (a resume)."""
  if jax.process_index() > 0:
    return
  path = workdir / CONFIG_FILE
  current = json.loads(config.to_json_best_effort())
  if resumed_at is None or not path.exists():
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2))
    return
  changes = differences(json.loads(path.read_text()), current)
  if not changes:
    return
  logging.info("Resumed at step %d with %d config fields changed from %s: %s", resumed_at,
               len(changes), path, ", ".join(sorted(changes)))
  entry = {"time": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "resumed_at": resumed_at,
           "changes": changes}
  with (workdir / CHANGES_FILE).open("a") as f:
    f.write(json.dumps(entry) + "\n")


def differences(first: dict, current: dict) -> dict[str, list]:
  """{dotted field: [first value, current value]} of every field that differs."""
  old, new = _flatten(first), _flatten(current)
  return {name: [old.get(name), new.get(name)] for name in sorted(old.keys() | new.keys())
          if old.get(name) != new.get(name)}


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict) and value:
      flat.update(_flatten(value, name + "."))
    else:
      flat[name] = value
  return flat
