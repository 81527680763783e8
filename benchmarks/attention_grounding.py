r"""Does a colour word look at objects of its colour? Attention maps on fresh scenes.

For each of N new synthetic scenes (their own random stream, never in the world's
splits), each object's listing caption ("a large red circle.") goes through
`attention_maps.compute` with the trained run. For every colour word, the attention
mass that falls on objects of that colour is compared with the mass on the scene's
other objects. A word "hits" when its own colour gets more mass than the other
objects; uniform attention hits as often as its colour covers more object area, so
the table also shows that baseline. The scoring lives in
`pixelbert_jax.inference.known_scenes`.

  python benchmarks/attention_grounding.py --workdir=/tmp/pixelbert_demo [--scenes=200]
      [--probe=masked-shape] [--per_head]
"""

import argparse

from pixelbert_jax.inference import known_scenes
from pixelbert_jax.inference import Predictor


def _row(name: str, result: dict) -> str:
  return (f"| {name} | {result['words']} | {result['contested']} | {result['hit_rate']:.3f} "
          f"| {result['uniform_hit_rate']:.3f} | {result['mass_same']:.3f} | "
          f"{result['mass_other']:.3f} |")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True, help="a pre-training (or any) run")
  parser.add_argument("--scenes", type=int, default=200)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--layers", default="all", choices=("all", "last"))
  parser.add_argument("--per_head", action="store_true",
                      help="a row for every layer and head instead of their average")
  parser.add_argument("--probe", default="colour", choices=known_scenes.PROBES,
                      help="the colour word, or [MASK] in place of the colour or shape")
  args = parser.parse_args()
  predictor = Predictor(args.workdir)
  scenes = known_scenes.fresh_scenes(args.scenes, args.seed)
  spec = predictor.model_config.transformer
  choices = ([(f"layer {l} head {h}", [l], [h]) for l in range(spec.num_layers)
              for h in range(spec.heads)] if args.per_head
             else [(f"{args.layers} layers", args.layers, "all")])
  print(f"`python benchmarks/attention_grounding.py --workdir={args.workdir} "
        f"--scenes={args.scenes} --layers={args.layers} --probe={args.probe}"
        f"{' --per_head' if args.per_head else ''}`\n")
  print("| attention of | words | with other colours present | hit rate | uniform "
        "attention's hit rate | mass on own colour | mass on other objects |")
  print("| --- | --- | --- | --- | --- | --- | --- |")
  for name, layers, heads in choices:
    records = [r for scene, image in scenes for r in known_scenes.attention_records(
        predictor, scene, image, layers, heads, args.probe)]
    print(_row(name, known_scenes.attention_summary(records)), flush=True)


if __name__ == "__main__":
  main()
