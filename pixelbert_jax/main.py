r"""Entry point: `python -m pixelbert_jax.main --config=configs/pretrain.py[:variant] --workdir=DIR`.

Any config field can be overridden with `--config.field=value`. A missing data path
or init source (`preflight`) ends in one message and exit code 2, with no workdir made.
Multi-process runs (TPU pods, SLURM, or explicit coordinator flags) are detected and
initialised here.
"""

import os
import sys

# TensorFlow (used by clu's summary writer) must not grab the accelerators JAX uses.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from pixelbert_jax import console, distributed, preflight, train  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, optionally with :variant.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, logs and results go.")
flags.mark_flags_as_required(["config", "workdir"])

USAGE_ERROR = 2  # the exit code of a mistake on the command line, as argparse's


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
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
