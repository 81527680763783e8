"""What reaches the console, and the run's full log file.

Orbax logs every save and restore step at INFO (hundreds of lines in a demo run), and
the full config is long: on the console both are dropped unless the verbosity is raised
(`-v 1`); the workdir's log file (`log.<process>.txt`) keeps every line at INFO and
above. A line logged with `extra=FILE_ONLY` goes to the file only.
"""

import logging as py_logging

import jax
from absl import logging
from etils import epath

# Libraries whose INFO lines stay off the default console (matched in the file path).
QUIET_LIBRARIES = ("/orbax/",)
FILE_ONLY = {"file_only": True}


class _QuietLibraries(py_logging.Filter):
  """Drops the quiet libraries' lines below WARNING, unless `-v 1` or more."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    if logging.get_verbosity() >= 1:
      return True
    if getattr(record, "file_only", False):  # at any level (a traceback for the file)
      return False
    return (record.levelno >= py_logging.WARNING or
            not any(part in record.pathname for part in QUIET_LIBRARIES))


def set_up(workdir: str) -> epath.Path:
  """Quiets the console and adds the workdir's log file; returns the file's path."""
  logging.get_absl_handler().addFilter(_QuietLibraries())
  path = epath.Path(workdir) / f"log.{jax.process_index()}.txt"
  path.parent.mkdir(parents=True, exist_ok=True)
  handler = py_logging.FileHandler(path)
  handler.setLevel(py_logging.INFO)
  handler.setFormatter(logging.PythonFormatter())
  logging.get_absl_logger().addHandler(handler)
  return path
