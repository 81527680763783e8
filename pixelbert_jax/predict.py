r"""Command line inference on a trained run; prints JSON to stdout.

  python -m pixelbert_jax.predict --workdir=W answer --image=cat.jpg --question="what colour?" [--top_k=5]
  python -m pixelbert_jax.predict --workdir=W match --image=cat.jpg --text="a black cat"
  python -m pixelbert_jax.predict --workdir=W rank --text="a black cat" --images=a.jpg,b.jpg
  python -m pixelbert_jax.predict --workdir=W rank --image=cat.jpg --texts "a cat" "two dogs"
  python -m pixelbert_jax.predict --workdir=W judge --left=a.jpg --right=b.jpg \
      --statement="both images contain a red circle."
  python -m pixelbert_jax.predict --workdir=W attention --image=cat.jpg --text="a cat" \
      --out_dir=/tmp/maps [--layers=last] [--heads=0,2]

The commands besides `attention` come from the tasks (`Task.capabilities`): a run
serves those of its task. `--workdir` is a training workdir, its checkpoints folder
or one step folder. A user
error (a missing run or image, an image that cannot be decoded, a command the run's
task cannot do) prints one line to stderr and exits with status 1.
"""

import argparse
import json
import os
import sys

# TensorFlow must not grab the accelerators JAX uses, if anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import logging  # noqa: E402

from pixelbert_jax import attention_maps  # noqa: E402
from pixelbert_jax.inference import Predictor  # noqa: E402
from pixelbert_jax.tasks import base as tasks  # noqa: E402


def parser() -> argparse.ArgumentParser:
  main = argparse.ArgumentParser(prog="python -m pixelbert_jax.predict",
                                 description=__doc__.split("\n\n")[0])
  main.add_argument("--workdir", required=True, help="training workdir or step folder")
  main.add_argument("--tokenizer", help="tokenizer spec replacing the run's config")
  commands = main.add_subparsers(dest="command", required=True)
  for command in tasks.commands().values():
    command.add_arguments(commands.add_parser(command.name, help=command.help))
  attention = commands.add_parser("attention", help="text-to-pixel attention overlays")
  attention.add_argument("--image", required=True)
  attention.add_argument("--text", required=True)
  attention.add_argument("--out_dir", required=True)
  for which in ("layers", "heads"):
    attention.add_argument(f"--{which}", default="all", type=_indices,
                           help=f"{which} to average: all, last or indices like 0,2")
  return main


def _indices(value: str) -> str | list[int]:
  """"all", "last" or comma-separated indices (checked against the model later)."""
  if value in ("all", "last"):
    return value
  try:
    return [int(i) for i in value.split(",")]
  except ValueError:
    raise argparse.ArgumentTypeError(
        f"expected all, last or comma-separated integers, got {value!r}") from None


def run(args) -> dict:
  """Executes one parsed command; returns what is printed."""
  predictor = Predictor(args.workdir, tokenizer=args.tokenizer)
  if args.command != "attention":
    return tasks.commands()[args.command].run(predictor, args)
  maps = attention_maps.compute(predictor, args.image, args.text, args.layers, args.heads)
  files = attention_maps.save_overlays(maps, args.out_dir)
  return {"tokens": maps.tokens, "files": files}


def main(argv: list[str] | None = None) -> int:
  args = parser().parse_args(argv)
  # Library warnings (e.g. orbax on older checkpoints) would bury the one-line error.
  logging.set_verbosity(logging.ERROR)
  try:
    result = run(args)
  except (FileNotFoundError, ValueError) as error:
    # The errors a user can fix (missing files, bad images, the wrong kind of run,
    # bad arguments; image and task errors are ValueErrors) get one line, not a trace.
    print(f"error: {error}", file=sys.stderr)
    return 1
  print(json.dumps(result, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
