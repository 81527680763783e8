"""Inference shared by the tasks whose head scores an (image, text) pair as a match.

Pre-training's ITM head and retrieval's score head both give one logit per pair; a
run of either can match a text to an image and rank images for a text or texts for
an image (`predictor.match(...)`, `predict match`, `predict rank`). A retrieval head was
trained to rank, so its sigmoid orders pairs but is not calibrated.
"""

import numpy as np

from pixelbert_jax.tasks import base, common


def _ranking(scores: np.ndarray) -> list[tuple[int, float]]:
  order = np.argsort(-scores, kind="stable")
  return [(int(i), float(scores[i])) for i in order]


def match_batch(predictor, images, texts) -> list[float]:
  """For each (image, text), the probability that the text describes the image."""
  return [float(s) for s in common.sigmoid(predictor.pair_logits(images, texts))]


def match(predictor, image, text: str) -> float:
  """The probability that `text` describes `image`."""
  return match_batch(predictor, [image], [text])[0]


def rank_images(predictor, text: str, images) -> list[tuple[int, float]]:
  """(index into `images`, match probability), best match first."""
  return _ranking(common.sigmoid(predictor.pair_logits(images, [text] * len(images))))


def rank_texts(predictor, image, texts) -> list[tuple[int, float]]:
  """(index into `texts`, match probability), best match first."""
  return _ranking(common.sigmoid(predictor.pair_logits([image] * len(texts), texts)))


def _split_paths(values: list[str]) -> list[str]:
  """Paths given as several arguments, comma-separated, or both."""
  return [p.strip() for value in values for p in value.split(",") if p.strip()]


def _match_arguments(parser) -> None:
  parser.add_argument("--image", required=True)
  parser.add_argument("--text", required=True)


def _rank_arguments(parser) -> None:
  parser.add_argument("--text", help="with --images")
  parser.add_argument("--images", nargs="+", help="paths, comma-separated or one each")
  parser.add_argument("--image", help="with --texts")
  parser.add_argument("--texts", nargs="+", help="one argument per text")


def _rank_command(predictor, args) -> dict:
  if args.text is not None and args.images and args.image is None and not args.texts:
    paths = _split_paths(args.images)
    ranking = predictor.rank_images(args.text, paths)
    return {"ranking": [{"index": i, "image": paths[i], "score": s} for i, s in ranking]}
  if args.image is not None and args.texts and args.text is None and not args.images:
    ranking = predictor.rank_texts(args.image, args.texts)
    return {"ranking": [{"index": i, "text": args.texts[i], "score": s}
                        for i, s in ranking]}
  raise ValueError("rank needs either --text with --images, or --image with --texts")


CAPABILITY = base.Capability(
    {"match": match, "match_batch": match_batch, "rank_images": rank_images,
     "rank_texts": rank_texts},
    (base.Command("match", "does the text describe the image?", _match_arguments,
                  lambda predictor, args: {"score": predictor.match(args.image,
                                                                    args.text)}),
     base.Command("rank", "rank images for a text or texts for an image",
                  _rank_arguments, _rank_command)))
