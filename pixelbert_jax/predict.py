r"""Command line inference on a trained run; prints JSON to stdout.

  python -m pixelbert_jax.predict --workdir=W answer --image=cat.jpg --question="what colour?" [--top_k=5]
  python -m pixelbert_jax.predict --workdir=W match --image=cat.jpg --text="a black cat"
  python -m pixelbert_jax.predict --workdir=W rank --text="a black cat" --images=a.jpg,b.jpg
  python -m pixelbert_jax.predict --workdir=W rank --image=cat.jpg --texts "a cat" "two dogs"
  python -m pixelbert_jax.predict --workdir=W judge --left=a.jpg --right=b.jpg \
      --statement="both images contain a red circle."
  python -m pixelbert_jax.predict --workdir=W attention --image=cat.jpg --text="a cat" \
      --out_dir=/tmp/maps [--layers=last] [--heads=0,2]

`--workdir` is a training workdir, its checkpoints folder or one step folder. A user
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


def _split_paths(values: list[str]) -> list[str]:
  """Paths given as several arguments, comma-separated, or both."""
  return [p.strip() for value in values for p in value.split(",") if p.strip()]


def parser() -> argparse.ArgumentParser:
  main = argparse.ArgumentParser(prog="python -m pixelbert_jax.predict",
                                 description=__doc__.split("\n\n")[0])
  main.add_argument("--workdir", required=True, help="training workdir or step folder")
  main.add_argument("--tokenizer", help="tokenizer spec replacing the run's config")
  commands = main.add_subparsers(dest="command", required=True)
  answer = commands.add_parser("answer", help="answer a question (VQA runs)")
  answer.add_argument("--image", required=True)
  answer.add_argument("--question", required=True)
  answer.add_argument("--top_k", type=int, default=5)
  match = commands.add_parser("match", help="does the text describe the image?")
  match.add_argument("--image", required=True)
  match.add_argument("--text", required=True)
  rank = commands.add_parser("rank", help="rank images for a text or texts for an image")
  rank.add_argument("--text", help="with --images")
  rank.add_argument("--images", nargs="+", help="paths, comma-separated or one each")
  rank.add_argument("--image", help="with --texts")
  rank.add_argument("--texts", nargs="+", help="one argument per text")
  judge = commands.add_parser("judge", help="is the statement true of the pair? (NLVR2)")
  judge.add_argument("--left", required=True, help="the left image")
  judge.add_argument("--right", required=True, help="the right image")
  judge.add_argument("--statement", required=True)
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


def _rank(predictor: Predictor, args) -> dict:
  if args.text is not None and args.images and args.image is None and not args.texts:
    paths = _split_paths(args.images)
    ranking = predictor.rank_images(args.text, paths)
    return {"ranking": [{"index": i, "image": paths[i], "score": s} for i, s in ranking]}
  if args.image is not None and args.texts and args.text is None and not args.images:
    ranking = predictor.rank_texts(args.image, args.texts)
    return {"ranking": [{"index": i, "text": args.texts[i], "score": s}
                        for i, s in ranking]}
  raise ValueError("rank needs either --text with --images, or --image with --texts")


def run(args) -> dict:
  """Executes one parsed command; returns what is printed."""
  predictor = Predictor(args.workdir, tokenizer=args.tokenizer)
  if args.command == "answer":
    answers = predictor.answer(args.image, args.question, top_k=args.top_k)
    return {"answers": [{"answer": a, "score": s} for a, s in answers]}
  if args.command == "match":
    return {"score": predictor.match(args.image, args.text)}
  if args.command == "rank":
    return _rank(predictor, args)
  if args.command == "judge":
    score = predictor.judge(args.left, args.right, args.statement)
    return {"true_probability": score, "label": score > 0.5}
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
