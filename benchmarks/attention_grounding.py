r"""Does a colour word look at objects of its colour? Attention maps on fresh scenes.

For each of N new synthetic scenes (their own random stream, never in the world's
splits), each object's listing caption ("a large red circle.") goes through
`attention_maps.compute` with the trained run. For every colour word, the attention
mass that falls on objects of that colour is compared with the mass on the scene's
other objects. A word "hits" when its own colour gets more mass than the other
objects; uniform attention hits as often as its colour covers more object area, so
the table also shows that baseline.

  python benchmarks/attention_grounding.py --workdir=/tmp/pixelbert_demo [--scenes=200]
      [--probe=masked-shape] [--per_head]
"""

import argparse
import statistics

import numpy as np

from pixelbert_jax import attention_maps
from pixelbert_jax.data import synthetic
from pixelbert_jax.inference import Predictor
from pixelbert_jax.tools import synthetic_backbone

_STREAM = 104729  # apart from the world's and the synthetic backbone's scenes


def scene_and_image(index: int, seed: int):
  rng = np.random.default_rng([seed, _STREAM, index])
  scene = synthetic.sample_scene(rng)
  return scene, np.asarray(synthetic.render_scene(scene, rng))


def colour_masses(heat: np.ndarray, labels: np.ndarray, colour: str) -> tuple[float, float]:
  """(mass on objects of `colour`, mass on the other objects) of one (H, W) map."""
  index = synthetic_backbone.COLOUR_CLASSES.index(colour)
  total = max(float(heat.sum()), 1e-12)
  same = float(heat[labels == index].sum()) / total
  other = float(heat[(labels > 0) & (labels != index)].sum()) / total
  return same, other


# Which token of "A {size} {colour} {shape}." is scored against the object's colour.
PROBES = ("colour", "masked-colour", "masked-shape")


def _probe_caption(obj, probe: str) -> tuple[str, str]:
  """The caption and the token whose attention is scored: the colour word itself, or
  [MASK] in place of the colour (where the model looks to fill it in) or of the shape
  (where it looks for the named colour's object to read the shape off)."""
  colour = "[MASK]" if probe == "masked-colour" else obj.colour
  shape = "[MASK]" if probe == "masked-shape" else obj.shape
  token = "[MASK]" if probe.startswith("masked") else obj.colour
  return f"A {obj.size} {colour} {shape}.", token


def score_scene(predictor: Predictor, scene, image: np.ndarray, layers, heads="all",
                probe: str = "colour") -> list[dict]:
  """One record per object of the scene: the probed token's attention mass on objects
  of the object's colour against the mass on the other objects."""
  labels = np.asarray(synthetic_backbone._label_map(  # pylint: disable=protected-access
      scene, "colour", synthetic_backbone.COLOUR_CLASSES))
  records = []
  for obj in scene.objects:
    caption, token = _probe_caption(obj, probe)
    maps = attention_maps.compute(predictor, image, caption, layers, heads)
    heat = maps.maps[maps.tokens.index(token)]
    same, other = colour_masses(heat, labels, obj.colour)
    area = colour_masses(np.ones_like(heat), labels, obj.colour)
    records.append(dict(same=same, other=other, hit=same > other,
                        uniform_hit=area[0] > area[1], alone=area[1] == 0))
  return records


def summary(records: list[dict]) -> dict:
  """Hit rates over the words whose scene has objects of another colour too."""
  contested = [r for r in records if not r["alone"]]
  mean = lambda key: statistics.fmean(float(r[key]) for r in contested)
  return dict(words=len(records), contested=len(contested), hit_rate=mean("hit"),
              uniform_hit_rate=mean("uniform_hit"), mass_same=mean("same"),
              mass_other=mean("other"))


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
  parser.add_argument("--probe", default="colour", choices=PROBES,
                      help="the colour word, or [MASK] in place of the colour or shape")
  args = parser.parse_args()
  predictor = Predictor(args.workdir)
  scenes = [scene_and_image(i, args.seed) for i in range(args.scenes)]
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
    records = [r for scene, image in scenes
               for r in score_scene(predictor, scene, image, layers, heads, args.probe)]
    print(_row(name, summary(records)), flush=True)


if __name__ == "__main__":
  main()
