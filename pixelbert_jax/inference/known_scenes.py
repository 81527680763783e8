"""Scores a trained demo run through the inference API on scenes with known answers.

Fresh synthetic scenes (their own random stream, never in the world's splits) carry
their own truth: what each question's answer is, which caption belongs to which image,
and which pixels each object covers. So the Predictor's `answer`, `match`, `rank_*`
and the attention maps can be scored directly, each next to what guessing gives. The
benchmarks `demo_inference.py` and `attention_grounding.py` print these as tables;
the suite asserts them on the committed demo export.
"""

import collections
import dataclasses
import statistics

import numpy as np

from pixelbert_jax import attention_maps
from pixelbert_jax.data import synthetic
from pixelbert_jax.inference import Predictor
from pixelbert_jax.weights import synthetic_backbone

SCENE_STREAM = 104729  # apart from the world's and the synthetic backbone's scenes
_TEXT_STREAM = 7919  # the questions' and captions' own random stream
# Which token of "A {size} {colour} {shape}." an attention probe scores.
PROBES = ("colour", "masked-colour", "masked-shape")


@dataclasses.dataclass(frozen=True)
class Row:
  """One measured quantity next to what guessing gives."""
  name: str
  count: int  # questions, pairs or queries measured
  value: float
  chance: float


def scene_and_image(index: int, seed: int) -> tuple[synthetic.Scene, np.ndarray]:
  rng = np.random.default_rng([seed, SCENE_STREAM, index])
  scene = synthetic.sample_scene(rng)
  return scene, np.asarray(synthetic.render_scene(scene, rng))


def fresh_scenes(count: int, seed: int = 0) -> list[tuple[synthetic.Scene, np.ndarray]]:
  return [scene_and_image(i, seed) for i in range(count)]


def _text_rng(seed: int, index: int) -> np.random.Generator:
  return np.random.default_rng([seed, _TEXT_STREAM, index])


def vqa_rows(predictor: Predictor, scenes: list, seed: int = 0) -> list[Row]:
  """Top-1 accuracy per question kind; chance is always giving its commonest answer."""
  asked = [(image, q) for index, (scene, image) in enumerate(scenes)
           for q in synthetic.make_questions(scene, _text_rng(seed, index))]
  found = predictor.answer_batch([image for image, _ in asked],
                                 [q.text for _, q in asked], top_k=1)
  by_kind = collections.defaultdict(list)
  for (_, question), answers in zip(asked, found):
    by_kind[question.kind].append((question.answer, answers[0][0]))
  rows = []
  for kind, pairs in sorted(by_kind.items()):
    truths = [truth for truth, _ in pairs]
    common = collections.Counter(truths).most_common(1)[0][0]
    rows.append(Row(kind, len(pairs), statistics.fmean(t == p for t, p in pairs),
                    statistics.fmean(t == common for t in truths)))
  return rows


def match_rows(predictor: Predictor, scenes: list, seed: int = 0) -> list[Row]:
  """Each scene's caption against the next scene's caption of the same template."""
  captions = [synthetic.make_captions(scene, _text_rng(seed, i))
              for i, (scene, _) in enumerate(scenes)]
  images = [image for _, image in scenes]
  template = np.random.default_rng([seed, _TEXT_STREAM]).integers(
      len(captions[0]), size=len(scenes))
  true = predictor.match_batch(images, [c[t] for c, t in zip(captions, template)])
  false = predictor.match_batch(images, [captions[(i + 1) % len(scenes)][t]
                                         for i, t in enumerate(template)])
  above = statistics.fmean(t > f for t, f in zip(true, false))
  accuracy = statistics.fmean([t > 0.5 for t in true] + [f <= 0.5 for f in false])
  return [Row("true caption scores higher", len(scenes), above, 0.5),
          Row("accuracy at 0.5", 2 * len(scenes), accuracy, 0.5)]


def rank_rows(predictor: Predictor, scenes: list, seed: int = 0,
              group: int = 10) -> list[Row]:
  """Recall at 1 in groups of `group` scenes, by each scene's listing caption."""
  listing = [synthetic.make_captions(scene, _text_rng(seed, i))[0]
             for i, (scene, _) in enumerate(scenes)]
  text_hits, image_hits = [], []
  for start in range(0, len(scenes) - group + 1, group):
    images = [image for _, image in scenes[start:start + group]]
    texts = listing[start:start + group]
    for i in range(group):
      image_hits.append(predictor.rank_images(texts[i], images)[0][0] == i)
      text_hits.append(predictor.rank_texts(images[i], texts)[0][0] == i)
  return [Row("image for a caption (IR)", len(image_hits), statistics.fmean(image_hits),
              1 / group),
          Row("caption for an image (TR)", len(text_hits), statistics.fmean(text_hits),
              1 / group)]


# NLVR2 statement kinds by a phrase only that kind's sentences hold (`synthetic`).
_STATEMENT_KINDS = (("both images", "both"), ("in total", "total"),
                    ("more shapes", "more"), ("contains a", "contains"))


def _statement_kind(sentence: str) -> str:
  return next(kind for phrase, kind in _STATEMENT_KINDS if phrase in sentence.lower())


def judge_rows(predictor: Predictor, scenes: list, seed: int = 0) -> list[Row]:
  """NLVR2: each scene with the next as (left, right), a statement true or false by a
  fair coin; accuracy at 0.5 per statement kind and overall, chance being the
  commoner label's share."""
  asked = []
  for i, (scene, image) in enumerate(scenes):
    right_scene, right = scenes[(i + 1) % len(scenes)]
    rng = _text_rng(seed, i)
    label = bool(rng.random() < 0.5)
    sentence = synthetic.make_statement((scene, right_scene), label, rng)
    if sentence is not None:  # none found in 40 draws: rare, and left out
      asked.append((image, right, sentence, label))
  lefts, rights, sentences, _ = zip(*asked)
  found = predictor.judge_batch(lefts, rights, sentences)
  by_kind = collections.defaultdict(list)
  for (_, _, sentence, label), probability in zip(asked, found):
    by_kind[_statement_kind(sentence)].append((label, probability > 0.5))
    by_kind["all"].append((label, probability > 0.5))
  rows = []
  for kind, pairs in sorted(by_kind.items()):
    truths = [truth for truth, _ in pairs]
    share = statistics.fmean(truths)
    rows.append(Row(kind, len(pairs), statistics.fmean(t == p for t, p in pairs),
                    max(share, 1 - share)))
  return rows


def colour_masses(heat: np.ndarray, labels: np.ndarray, colour: str) -> tuple[float, float]:
  """(mass on objects of `colour`, mass on the other objects) of one (H, W) map."""
  index = synthetic_backbone.COLOUR_CLASSES.index(colour)
  total = max(float(heat.sum()), 1e-12)
  same = float(heat[labels == index].sum()) / total
  other = float(heat[(labels > 0) & (labels != index)].sum()) / total
  return same, other


def probe_caption(obj: synthetic.SceneObject, probe: str) -> tuple[str, str]:
  """The caption and the token whose attention is scored: the colour word itself, or
  [MASK] in place of the colour (where the model looks to fill it in) or of the shape
  (where it looks for the named colour's object to read the shape off)."""
  if probe not in PROBES:
    raise ValueError(f"probe must be one of {PROBES}, not {probe!r}")
  colour = "[MASK]" if probe == "masked-colour" else obj.colour
  shape = "[MASK]" if probe == "masked-shape" else obj.shape
  token = "[MASK]" if probe.startswith("masked") else obj.colour
  return f"A {obj.size} {colour} {shape}.", token


def attention_records(predictor: Predictor, scene, image: np.ndarray, layers="all",
                      heads="all", probe: str = "colour") -> list[dict]:
  """One record per object of the scene: the probed token's attention mass on objects
  of the object's colour against the mass on the other objects, and the same for
  attention spread evenly (what the object areas alone give)."""
  labels = np.asarray(synthetic_backbone.label_map(
      scene, "colour", synthetic_backbone.COLOUR_CLASSES))
  records = []
  for obj in scene.objects:
    caption, token = probe_caption(obj, probe)
    maps = attention_maps.compute(predictor, image, caption, layers, heads)
    heat = maps.maps[maps.tokens.index(token)]
    same, other = colour_masses(heat, labels, obj.colour)
    area = colour_masses(np.ones_like(heat), labels, obj.colour)
    records.append(dict(same=same, other=other, hit=same > other,
                        uniform_hit=area[0] > area[1], alone=area[1] == 0))
  return records


def attention_summary(records: list[dict]) -> dict:
  """Hit rates over the words whose scene has objects of another colour too."""
  contested = [r for r in records if not r["alone"]]
  mean = lambda key: statistics.fmean(float(r[key]) for r in contested)
  return dict(words=len(records), contested=len(contested), hit_rate=mean("hit"),
              uniform_hit_rate=mean("uniform_hit"), mass_same=mean("same"),
              mass_other=mean("other"))
