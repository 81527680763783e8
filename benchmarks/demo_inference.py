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
* `--judge=WORKDIR` (an NLVR2 run): `Predictor.judge_batch` on each scene paired with
  the next and a statement true or false by a fair coin; accuracy per statement kind
  against always giving the commoner label.

The scoring lives in `pixelbert_jax.inference.known_scenes`.

  python benchmarks/demo_inference.py --vqa=/tmp/pixelbert_ablation/mlm___itm/vqa \
    --match=/tmp/pixelbert_ablation/mlm___itm/pretrain \
    --rank=/tmp/pixelbert_ablation/mlm___itm/retrieval [--scenes=200]
"""

import argparse

from pixelbert_jax.inference import known_scenes
from pixelbert_jax.inference import Predictor


def _table(title: str, header: tuple[str, ...], rows: list[known_scenes.Row]) -> None:
  print(f"\n{title}\n\n| {' | '.join(header)} |\n|{' --- |' * len(header)}")
  for row in rows:
    print(f"| {row.name} | {row.count} | {row.value:.3f} | {row.chance:.3f} |")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--vqa", help="a VQA run")
  parser.add_argument("--match", help="a pre-training or retrieval run")
  parser.add_argument("--rank", help="a pre-training or retrieval run")
  parser.add_argument("--judge", help="an NLVR2 run")
  parser.add_argument("--scenes", type=int, default=200)
  parser.add_argument("--group", type=int, default=10)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  scenes = known_scenes.fresh_scenes(args.scenes, args.seed)
  print(f"{args.scenes} fresh scenes, seed {args.seed}")
  if args.vqa:
    _table(f"`answer` ({args.vqa})", ("question kind", "questions", "top-1 accuracy",
                                      "most common answer"),
           known_scenes.vqa_rows(Predictor(args.vqa), scenes, args.seed))
  if args.match:
    _table(f"`match` ({args.match})", ("measure", "pairs", "value", "chance"),
           known_scenes.match_rows(Predictor(args.match), scenes, args.seed))
  if args.rank:
    _table(f"`rank_images` / `rank_texts` ({args.rank})",
           ("query", "queries", "recall at 1", "chance"),
           known_scenes.rank_rows(Predictor(args.rank), scenes, args.seed, args.group))
  if args.judge:
    _table(f"`judge` ({args.judge})", ("statement kind", "pairs", "accuracy",
                                       "commoner label"),
           known_scenes.judge_rows(Predictor(args.judge), scenes, args.seed))


if __name__ == "__main__":
  main()
