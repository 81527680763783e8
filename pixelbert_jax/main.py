r"""Entry point: `python -m pixelbert_jax.main --config=configs/pretrain.py[:variant] --workdir=DIR`.

Any config field can be overridden with `--config.field=value`. Mistakes found before
any work (a config file that does not load, a misspelt field, a missing data path or
init source: `preflight`) end in one message and exit code 2, with no workdir made.
Multi-process runs (TPU pods, SLURM, or explicit coordinator flags) are detected and
initialised here.
"""

import os
import re
import sys

# TensorFlow (used by clu's summary writer) must not grab the accelerators JAX uses.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from pixelbert_jax import checkpointing, compile_cache, console, distributed  # noqa: E402
from pixelbert_jax import preflight, train  # noqa: E402
from pixelbert_jax import workdir_lock  # noqa: E402
from pixelbert_jax.data import skips  # noqa: E402
from pixelbert_jax.data.readers import common as readers_common  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, optionally with :variant.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, logs and results go.")
flags.mark_flags_as_required(["config", "workdir"])

USAGE_ERROR = 2  # the exit code of a mistake on the command line, as argparse's
# Errors whose message is the whole story (bad data, a checkpoint that cannot be used,
# a held workdir, a diverged run): printed without their traceback.
RUN_ERRORS = (checkpointing.CheckpointMismatchError, checkpointing.CheckpointDamagedError,
              checkpointing.CheckpointSaveError, workdir_lock.WorkdirLockedError,
              train.NonFiniteError, skips.TooManySkipped, readers_common.DataFileError)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with each mistake as one line and exit code 2: ml_collections
  raises a misspelt `--config.field` and a config file that does not load as chained
  tracebacks (and the latter only at the config's first use, after start-up)."""
  try:
    remaining = FLAGS(argv)
    FLAGS.config.get("task")  # a config file that failed to load raises here
  except flags.Error as error:
    _usage_error(_one_line(str(error)))
  except OSError as error:
    # The load's own error is the message's last line.
    reason = str(error).strip().splitlines()[-1].strip()
    _usage_error(f"--config: cannot load the config file: {reason}")
  except (AttributeError, KeyError) as error:
    line = _unknown_field(error, argv)
    if line is None:
      raise  # an error in a config file's own code: its traceback shows the line
    _usage_error(line)
  return remaining


def _one_line(text: str) -> str:
  """A flag error in one line: its first and last lines (a config file's ValueError
  carries its whole traceback inside the message)."""
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  return lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"


def _unknown_field(error: Exception, argv: list[str]) -> str | None:
  """ml_collections' error for an override that names no field (a KeyError, maybe
  inside an AttributeError, its text the key and a "Did you mean" line) as one line
  naming the flag; None for any other error."""
  while error.args and isinstance(error.args[0], BaseException):
    error = error.args[0]
  key, _, hint = str(error.args[0] if error.args else "").partition("\n")
  key = key.strip("'\"")
  field = re.compile(rf"--?config\.([\w.]*\.)?{re.escape(key)}(=|\.|$)")
  named = [arg.split("=")[0] for arg in argv if key and field.match(arg)]
  if not named:
    return None
  return f"{named[0]}: the config has no field {key!r}" + (f". {hint}" if hint else "")


def _usage_error(line: str) -> None:
  """Ends the program as absl does for a bad flag, with exit code 2."""
  print(f"FATAL Flags parsing error: {line}\n"
        "Pass --helpshort or --helpfull to see help on flags.", file=sys.stderr)
  sys.exit(USAGE_ERROR)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  # Before anything is made or started: every missing path in one message.
  found = preflight.problems(FLAGS.config, FLAGS.workdir)
  if found:
    print(preflight.message(found), file=sys.stderr)
    sys.exit(USAGE_ERROR)
  distributed.initialize()
  distributed.hide_accelerators_from_tensorflow()
  log_file = console.set_up(FLAGS.workdir)
  logging.info("Config:\n%s", FLAGS.config, extra=console.FILE_ONLY)
  logging.info("Task %s, model %s; the full log: %s", FLAGS.config.task,
               FLAGS.config.model.preset, log_file)
  compile_cache.enable(FLAGS.config.xla_cache_dir)
  try:
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except RUN_ERRORS as error:
    # Each says what happened and what to do: the console gets that; the traceback
    # goes to the log file for whoever debugs the project itself.
    logging.exception("The run stopped.", extra=console.FILE_ONLY)
    print(f"ERROR ({type(error).__name__}): {error}\nThe full log: {log_file}",
          file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
