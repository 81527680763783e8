r"""Are a trained demo's answers and rankings right? The Predictor on fresh scenes.

Fresh synthetic scenes (their own random stream, never in the world's splits) come
with known answers, so the inference API can be scored directly, each next to what
guessing would give:

* `--vqa=WORKDIR`: `Predictor.answer` on each scene's questions; top-1 accuracy per
  question kind against always giving the kind's most common answer.
* `--match=WORKDIR` (a pre-training or retrieval run): `Predictor.match` on each
  scene's caption and on the next scene's caption of the same template; how often
  the true caption scores higher (chance 0.5), and accuracy at 0.5.
* `--rank=WORKDIR` (the same kinds of run): in groups of `--group` scenes,
  `rank_images` for each scene's listing caption and `rank_texts` for each image;
  recall at 1 (chance 1 / group).

  python benchmarks/demo_inference.py --vqa=/tmp/pixelbert_ablation/mlm___itm/vqa \
    --match=/tmp/pixelbert_ablation/mlm___itm/pretrain \
    --rank=/tmp/pixelbert_ablation/mlm___itm/retrieval [--scenes=200]
"""

import argparse
import collections
import statistics

import numpy as np

from attention_grounding import scene_and_image
from pixelbert_jax.data import synthetic
from pixelbert_jax.inference import Predictor

_QUESTION_STREAM = 7919  # the questions' and captions' own random stream


def _scenes(count: int, seed: int) -> list[tuple]:
  return [scene_and_image(i, seed) for i in range(count)]


def vqa_rows(workdir: str, scenes: list[tuple], seed: int) -> list[tuple]:
  """(kind, questions, accuracy, most common answer's accuracy) per question kind."""
  predictor = Predictor(workdir)
  asked = []
  for index, (scene, image) in enumerate(scenes):
    rng = np.random.default_rng([seed, _QUESTION_STREAM, index])
    asked += [(image, q) for q in synthetic.make_questions(scene, rng)]
  found = predictor.answer_batch([image for image, _ in asked],
                                 [q.text for _, q in asked], top_k=1)
  by_kind = collections.defaultdict(list)
  for (_, question), answers in zip(asked, found):
    by_kind[question.kind].append((question.answer, answers[0][0]))
  rows = []
  for kind, pairs in sorted(by_kind.items()):
    truths = [truth for truth, _ in pairs]
    common = collections.Counter(truths).most_common(1)[0][0]
    rows.append((kind, len(pairs), statistics.fmean(t == p for t, p in pairs),
                 statistics.fmean(t == common for t in truths)))
  return rows


def match_rows(workdir: str, scenes: list[tuple], seed: int) -> list[tuple]:
  """(measure, pairs, value, chance) for true captions against the next scene's."""
  predictor = Predictor(workdir)
  captions = [synthetic.make_captions(scene, np.random.default_rng(
      [seed, _QUESTION_STREAM, i])) for i, (scene, _) in enumerate(scenes)]
  images = [image for _, image in scenes]
  template = np.random.default_rng([seed, _QUESTION_STREAM]).integers(
      len(captions[0]), size=len(scenes))
  true = predictor.match_batch(images, [c[t] for c, t in zip(captions, template)])
  false = predictor.match_batch(images, [captions[(i + 1) % len(scenes)][t]
                                         for i, t in enumerate(template)])
  pairs = len(scenes)
  above = statistics.fmean(t > f for t, f in zip(true, false))
  accuracy = statistics.fmean([t > 0.5 for t in true] + [f <= 0.5 for f in false])
  return [("true caption scores higher", pairs, above, 0.5),
          ("accuracy at 0.5", 2 * pairs, accuracy, 0.5)]


def rank_rows(workdir: str, scenes: list[tuple], seed: int, group: int) -> list[tuple]:
  """(direction, queries, recall at 1, chance) over groups of `group` scenes."""
  predictor = Predictor(workdir)
  listing = [synthetic.make_captions(scene, np.random.default_rng(
      [seed, _QUESTION_STREAM, i]))[0] for i, (scene, _) in enumerate(scenes)]
  text_hits, image_hits = [], []
  for start in range(0, len(scenes) - group + 1, group):
    images = [image for _, image in scenes[start:start + group]]
    texts = listing[start:start + group]
    for i in range(group):
      image_hits.append(predictor.rank_images(texts[i], images)[0][0] == i)
      text_hits.append(predictor.rank_texts(images[i], texts)[0][0] == i)
  return [("image for a caption (IR)", len(image_hits), statistics.fmean(image_hits),
           1 / group),
          ("caption for an image (TR)", len(text_hits), statistics.fmean(text_hits),
           1 / group)]


def _table(title: str, header: tuple[str, ...], rows: list[tuple]) -> None:
  print(f"\n{title}\n\n| {' | '.join(header)} |\n|{' --- |' * len(header)}")
  for name, count, value, chance in rows:
    print(f"| {name} | {count} | {value:.3f} | {chance:.3f} |")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--vqa", help="a VQA run")
  parser.add_argument("--match", help="a pre-training or retrieval run")
  parser.add_argument("--rank", help="a pre-training or retrieval run")
  parser.add_argument("--scenes", type=int, default=200)
  parser.add_argument("--group", type=int, default=10)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  scenes = _scenes(args.scenes, args.seed)
  print(f"{args.scenes} fresh scenes, seed {args.seed}")
  if args.vqa:
    _table(f"`answer` ({args.vqa})", ("question kind", "questions", "top-1 accuracy",
                                      "most common answer"),
           vqa_rows(args.vqa, scenes, args.seed))
  if args.match:
    _table(f"`match` ({args.match})", ("measure", "pairs", "value", "chance"),
           match_rows(args.match, scenes, args.seed))
  if args.rank:
    _table(f"`rank_images` / `rank_texts` ({args.rank})",
           ("query", "queries", "recall at 1", "chance"),
           rank_rows(args.rank, scenes, args.seed, args.group))


if __name__ == "__main__":
  main()
