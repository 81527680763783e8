"""The embedded synthetic world: a small, deterministic stand-in for the real data.

Scenes of a few simple objects (shape x colour x size x position) on noisy,
cluttered backgrounds, drawn with PIL on canvases of varied size and aspect
ratio, and written in the official file formats so the same readers serve the
synthetic world and the real data sets:

  coco/annotations/captions_{train,val}2014.json   COCO captions 2014
  coco/{train2014,val2014,test2015}/COCO_*.jpg     the COCO-style images
  coco/dataset_coco.json                           Karpathy split
  vqa/v2_OpenEnded_mscoco_*_questions.json         VQA v2 questions
  vqa/v2_mscoco_{train,val}2014_annotations.json   VQA v2 annotations
  nlvr2/{train,dev,test1}.json, nlvr2/images/      NLVR2 JSONL + image pairs
  flickr30k/dataset_flickr30k.json, flickr30k-images/   retrieval split
  vg/region_descriptions.json, vg/image_data.json, vg/VG_100K/
  vocab.txt                                        the world's WordPiece vocab

Colours, shapes, sizes, counts and positions are sampled independently per
object, and no template ties one visual word to another, so a masked visual
word cannot be guessed from the rest of the text: masked-word accuracy with the
true image vs. a shuffled one measures grounding.

Usage:
  python -m pixelbert_jax.data.synthetic --out DIR [--seed S] [--num_images N]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math
import os
import time

import numpy as np
from PIL import Image, ImageDraw

# Colour and size words start with a consonant so "a"/"an" never leaks them.
COLOURS = {
    "red": (215, 40, 40), "green": (40, 160, 60), "blue": (40, 80, 225),
    "yellow": (235, 215, 40), "purple": (140, 60, 185), "cyan": (40, 200, 215),
    "pink": (250, 130, 195),
}
SHAPES = ("circle", "square", "triangle", "diamond", "star")
SIZES = ("small", "large")
BACKGROUNDS = ("dark", "light")
RELATIONS = ("left of", "right of", "above", "below")
MAX_OBJECTS = 4
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven",
                "eight", "nine", "ten")
# The words a caption states about the pixels (colours, shapes, object counts): text
# alone cannot tell them, which is what the grounding probe and the demo rely on.
VISUAL_WORDS = tuple(COLOURS) + SHAPES + NUMBER_WORDS[1:MAX_OBJECTS + 1]

# How annotators get an answer nearly right: neighbouring colours and shapes.
COLOUR_CONFUSIONS = {
    "red": ("pink",), "pink": ("red", "purple"), "blue": ("purple", "cyan"),
    "cyan": ("blue", "green"), "green": ("cyan", "yellow"),
    "yellow": ("green",), "purple": ("blue", "pink"),
}
SHAPE_CONFUSIONS = {
    "circle": ("star",), "square": ("diamond",), "triangle": ("diamond",),
    "diamond": ("square", "triangle"), "star": ("triangle", "circle"),
}
SYNONYMS = {"circle": "round", "square": "rectangle", "diamond": "rhombus"}

# Every word the templates use besides the visual words above.
TEMPLATE_WORDS = (
    "a picture of and on background the is in image images count shapes objects "
    "object what color shape how many are there contains more than both "
    "exactly total contain biggest with left right of top middle bottom center "
    "above below yes no scene drawn shows"
).split()
PUNCTUATION = (".", ",", "?", "!", "'", "-")
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclasses.dataclass(frozen=True)
class SceneObject:
  """One drawn object; (x, y) is its centre and r its radius, in pixels."""
  shape: str
  colour: str
  size: str
  x: float
  y: float
  r: float

  @property
  def name(self) -> str:
    return f"{self.colour} {self.shape}"


@dataclasses.dataclass(frozen=True)
class Scene:
  """A canvas and the objects on it."""
  width: int
  height: int
  background: str
  objects: tuple[SceneObject, ...]


def _rng(seed: int, *keys: int) -> np.random.Generator:
  """An independent stream per (seed, data set, index): order-free, repeatable."""
  return np.random.default_rng([seed, *keys])


def _choice(rng: np.random.Generator, items):
  return items[int(rng.integers(len(items)))]


# ----------------------------------------------------------------- scenes ----


def _canvas_size(rng: np.random.Generator) -> tuple[int, int]:
  """Short side 96-160 px, aspect ratio (width / height) 0.6-1.8."""
  short = int(rng.integers(96, 161))
  aspect = float(rng.uniform(0.6, 1.8))
  if aspect >= 1.0:
    return int(round(short * aspect)), short
  return short, int(round(short / aspect))


def _place(rng, width, height, radius, placed) -> tuple[float, float] | None:
  """A centre keeping the object inside the canvas and clear of the others."""
  for _ in range(60):
    x = float(rng.uniform(radius + 2, width - radius - 2))
    y = float(rng.uniform(radius + 2, height - radius - 2))
    if all(math.hypot(x - o.x, y - o.y) > radius + o.r + 3 for o in placed):
      return x, y
  return None


def _attributes(rng: np.random.Generator) -> list[tuple[str, str, str]]:
  """(shape, colour, size) per object; count and attributes all independent."""
  return [(_choice(rng, SHAPES), _choice(rng, tuple(COLOURS)), _choice(rng, SIZES))
          for _ in range(int(rng.integers(1, MAX_OBJECTS + 1)))]


def sample_scene(rng: np.random.Generator) -> Scene:
  """Samples a scene; every attribute is drawn independently of the others.

  A crowded canvas is redrawn with the same objects (never fewer or smaller),
  so placement never biases the counts or sizes the captions talk about.
  """
  attributes = _attributes(rng)
  while True:
    width, height = _canvas_size(rng)
    objects = []
    for shape, colour, size in attributes:
      scale = (0.08, 0.11) if size == "small" else (0.15, 0.19)
      radius = float(rng.uniform(*scale)) * min(width, height)
      centre = _place(rng, width, height, radius, objects)
      if centre is None:
        break
      objects.append(SceneObject(shape, colour, size, centre[0], centre[1], radius))
    else:
      return Scene(width, height, _choice(rng, BACKGROUNDS), tuple(objects))


def relation(a: SceneObject, b: SceneObject, scene: Scene) -> str:
  """Where `a` is relative to `b`, along the axis where they differ most.

  Offsets are measured in canvas widths and heights, so wide canvases do not
  make "left of" / "right of" more common than "above" / "below".
  """
  dx, dy = (a.x - b.x) / scene.width, (a.y - b.y) / scene.height
  if abs(dx) >= abs(dy):
    return "left of" if dx < 0 else "right of"
  return "above" if dy < 0 else "below"


def region(obj: SceneObject, scene: Scene) -> str:
  """The third of the canvas (e.g. "top left") an object's centre falls in."""
  column = ("left", "center", "right")[min(int(3 * obj.x / scene.width), 2)]
  row = ("top", "middle", "bottom")[min(int(3 * obj.y / scene.height), 2)]
  if (row, column) == ("middle", "center"):
    return "center"
  return f"{row} {column}"


# -------------------------------------------------------------- rendering ----


def _polygon(shape: str, x: float, y: float, r: float, angle: float):
  """Vertices of a regular-ish polygon for the shape, rotated by `angle`."""
  if shape == "square":
    radii, count, offset = [r * 0.95] * 4, 4, math.pi / 4
  elif shape == "diamond":  # A rhombus, narrower than it is tall.
    radii, count, offset = [r, r * 0.6, r, r * 0.6], 4, -math.pi / 2
  elif shape == "triangle":
    radii, count, offset = [r] * 3, 3, -math.pi / 2
  else:  # A five-pointed star alternates outer and inner radii.
    radii, count, offset = [r, r * 0.45] * 5, 10, -math.pi / 2
  step = 2 * math.pi / count
  return [(x + rad * math.cos(offset + angle + i * step),
           y + rad * math.sin(offset + angle + i * step))
          for i, rad in enumerate(radii)]


def _background(scene: Scene, rng: np.random.Generator) -> np.ndarray:
  """A tinted grey, linear gradient in a random direction (float H x W x 3)."""
  level = rng.uniform(35, 80) if scene.background == "dark" else rng.uniform(175, 225)
  tint = rng.uniform(-12, 12, size=3)
  yy, xx = np.mgrid[0:scene.height, 0:scene.width].astype(np.float32)
  theta = rng.uniform(0, 2 * math.pi)
  ramp = (xx * math.cos(theta) + yy * math.sin(theta)) / max(scene.width, scene.height)
  image = level + tint + rng.uniform(10, 30) * ramp[..., None]
  return image.astype(np.float32)


def _draw_clutter(draw: ImageDraw.ImageDraw, scene: Scene, rng, base: float) -> None:
  """Grey lines and specks: distractors that carry no colour word."""
  for _ in range(int(rng.integers(2, 9))):
    grey = int(np.clip(base + rng.choice([-1, 1]) * rng.uniform(25, 60), 0, 255))
    x0, x1 = rng.uniform(0, scene.width, size=2)
    y0, y1 = rng.uniform(0, scene.height, size=2)
    if rng.random() < 0.5:
      draw.line([(x0, y0), (x1, y1)], fill=(grey,) * 3, width=1)
    else:
      draw.ellipse([x0, y0, x0 + 3, y0 + 3], fill=(grey,) * 3)


def _draw_object(draw: ImageDraw.ImageDraw, obj: SceneObject, rng) -> None:
  jitter = rng.integers(-18, 19, size=3)
  fill = tuple(int(c) for c in np.clip(np.array(COLOURS[obj.colour]) + jitter, 0, 255))
  if obj.shape == "circle":
    draw.ellipse([obj.x - obj.r, obj.y - obj.r, obj.x + obj.r, obj.y + obj.r], fill=fill)
  else:
    angle = float(rng.uniform(-0.25, 0.25))  # Small, so squares stay squares.
    draw.polygon(_polygon(obj.shape, obj.x, obj.y, obj.r, angle), fill=fill)


def render_scene(scene: Scene, rng: np.random.Generator) -> Image.Image:
  """Draws a scene: gradient background, clutter, objects, then sensor noise."""
  background = _background(scene, rng)
  image = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
  draw = ImageDraw.Draw(image)
  _draw_clutter(draw, scene, rng, float(background.mean()))
  for obj in scene.objects:
    _draw_object(draw, obj, rng)
  noisy = np.asarray(image, np.float32) + rng.normal(
      0, rng.uniform(3, 10), size=(scene.height, scene.width, 1)).astype(np.float32)
  return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


# --------------------------------------------------------------- captions ----


def _sentence(text: str, mark: str = ".") -> str:
  """Capitalised and punctuated, as people type captions."""
  return text[0].upper() + text[1:] + mark


def _listing(scene: Scene, rng) -> str:
  order = rng.permutation(len(scene.objects))
  phrases = [f"a {scene.objects[i].size} {scene.objects[i].name}" for i in order]
  listed = phrases[0] if len(phrases) == 1 else (
      ", ".join(phrases[:-1]) + " and " + phrases[-1])
  return f"a picture of {listed} on a {scene.background} background"


def _related_pair(scene: Scene, rng) -> str:
  if len(scene.objects) == 1:  # Stands in, so template odds never depend on count.
    obj = scene.objects[0]
    return f"a {obj.size} {obj.name} on a {scene.background} background"
  a, b = (scene.objects[i] for i in rng.permutation(len(scene.objects))[:2])
  return f"a {a.name} {relation(a, b, scene)} a {b.name}"


def _position(scene: Scene, rng) -> str:
  obj = _choice(rng, scene.objects)
  return f"a {obj.size} {obj.name} in the {region(obj, scene)} of the image"


def _count(scene: Scene, rng) -> str:
  # "the count of shapes is N" reads the same for every N: no plural leak.
  biggest = max(scene.objects, key=lambda o: o.r)
  return (f"the count of shapes is {NUMBER_WORDS[len(scene.objects)]} and the "
          f"biggest is a {biggest.name}")


def make_captions(scene: Scene, rng: np.random.Generator, count: int = 5) -> list[str]:
  """`count` captions: every template once, then randomly chosen ones.

  The listing names every object, its size and the background, so the set of
  captions identifies its image (what retrieval needs). Each template is used
  the same number of times whatever the scene, so how often a word appears
  says nothing about the scene either.
  """
  templates = [_listing, _position, _count, _related_pair]
  chosen = templates[:count] + [_choice(rng, templates[1:])
                                for _ in range(count - len(templates))]
  return [_sentence(template(scene, rng)) for template in chosen]


# -------------------------------------------------------------------- VQA ----


@dataclasses.dataclass(frozen=True)
class Question:
  text: str
  answer: str
  kind: str  # "colour", "shape", "number" or "yes/no": picks the confusions.
  question_type: str
  answer_type: str


def _unique(scene: Scene, key) -> list[SceneObject]:
  values = collections.Counter(key(o) for o in scene.objects)
  return [o for o in scene.objects if values[key(o)] == 1]


def _colour_question(scene, rng):
  candidates = _unique(scene, lambda o: o.shape)
  if not candidates:
    return None
  obj = _choice(rng, candidates)
  return Question(f"What color is the {obj.shape}?", obj.colour, "colour",
                  "what color is the", "other")


def _shape_question(scene, rng):
  candidates = _unique(scene, lambda o: o.colour)
  if not candidates:
    return None
  obj = _choice(rng, candidates)
  return Question(f"What shape is the {obj.colour} object?", obj.shape, "shape",
                  "what shape is the", "other")


def _count_question(scene, rng):
  if rng.random() < 0.5:
    return Question("How many objects are there?", str(len(scene.objects)),
                    "number", "how many", "number")
  colour = _choice(rng, tuple(COLOURS))
  answer = sum(o.colour == colour for o in scene.objects)
  return Question(f"How many {colour} shapes are there?", str(answer), "number",
                  "how many", "number")


def _exists_question(scene, rng):
  present = {o.name for o in scene.objects}
  if rng.random() < 0.5:  # Half yes, half no: the text alone says nothing.
    name = _choice(rng, sorted(present))
  else:
    absent = [f"{c} {s}" for c in COLOURS for s in SHAPES if f"{c} {s}" not in present]
    name = _choice(rng, absent)
  return Question(f"Is there a {name}?", "yes" if name in present else "no",
                  "yes/no", "is there a", "yes/no")


def _relation_question(scene, rng):
  candidates = _unique(scene, lambda o: o.name)
  if len(candidates) < 2:
    return None
  a, b = (candidates[i] for i in rng.permutation(len(candidates))[:2])
  truth = relation(a, b, scene)
  asked = truth if rng.random() < 0.5 else _choice(
      rng, [r for r in RELATIONS if r != truth])
  return Question(f"Is the {a.name} {asked} the {b.name}?",
                  "yes" if asked == truth else "no", "yes/no", "is the", "yes/no")


QUESTION_MAKERS = (_colour_question, _shape_question, _count_question,
                   _exists_question, _relation_question)


def make_questions(scene: Scene, rng: np.random.Generator, count: int = 3) -> list[Question]:
  """Up to `count` questions of different kinds about one scene."""
  questions = []
  for index in rng.permutation(len(QUESTION_MAKERS)):
    question = QUESTION_MAKERS[index](scene, rng)
    if question is not None and question.text not in {q.text for q in questions}:
      questions.append(question)
    if len(questions) == count:
      break
  return questions


def _near_miss(question: Question, rng) -> str:
  """A plausible wrong answer of the kind annotators actually give."""
  if question.kind == "colour":
    return _choice(rng, COLOUR_CONFUSIONS[question.answer])
  if question.kind == "shape":
    return _choice(rng, SHAPE_CONFUSIONS[question.answer])
  if question.kind == "number":
    return str(max(0, int(question.answer) + _choice(rng, (-1, 1))))
  return "no" if question.answer == "yes" else "yes"


def _variant(answer: str, rng) -> str:
  """The right answer, typed differently: "Red", "red.", "two", "rectangle"."""
  options = [answer.capitalize(), answer + "."]
  if answer.isdigit():
    options.append(NUMBER_WORDS[int(answer)])
  if answer in SYNONYMS:
    options.append(SYNONYMS[answer])
  return _choice(rng, options)


def annotator_answers(question: Question, rng: np.random.Generator) -> list[str]:
  """Ten answers with realistic disagreement, so soft scores matter.

  Half the questions are easy (annotators nearly always agree), the rest harder
  (between 50 % and 90 % get it right); right answers are now and then typed
  differently, wrong ones are near misses.
  """
  accuracy = 0.97 if rng.random() < 0.5 else float(rng.uniform(0.5, 0.9))
  answers = []
  for _ in range(10):
    if rng.random() >= accuracy:
      answers.append(_near_miss(question, rng))
    elif rng.random() < 0.15:
      answers.append(_variant(question.answer, rng))
    else:
      answers.append(question.answer)
  return answers


# ------------------------------------------------------------------ NLVR2 ----


def _statement_in(scenes, rng):
  side = int(rng.integers(2))
  obj = _choice(rng, scenes[side].objects)
  name = obj.name if rng.random() < 0.5 else (
      f"{_choice(rng, tuple(COLOURS))} {_choice(rng, SHAPES)}")
  truth = any(o.name == name for o in scenes[side].objects)
  return f"the {('left', 'right')[side]} image contains a {name}", truth


def _statement_both(scenes, rng):
  colour = _choice(rng, tuple(COLOURS))
  truth = all(any(o.colour == colour for o in s.objects) for s in scenes)
  return f"both images contain a {colour} object", truth


def _statement_total(scenes, rng):
  total = sum(len(s.objects) for s in scenes)
  said = total if rng.random() < 0.5 else int(rng.integers(2, 2 * MAX_OBJECTS + 1))
  return f"there are exactly {NUMBER_WORDS[said]} shapes in total", said == total


def _statement_more(scenes, rng):
  side = int(rng.integers(2))
  truth = len(scenes[side].objects) > len(scenes[1 - side].objects)
  first, second = ("left", "right") if side == 0 else ("right", "left")
  return f"the {first} image contains more shapes than the {second} image", truth


STATEMENT_MAKERS = (_statement_in, _statement_both, _statement_total, _statement_more)


def make_statement(scenes: tuple[Scene, Scene], label: bool,
                   rng: np.random.Generator) -> str | None:
  """A statement about the pair whose truth is `label`, or None if none found."""
  for _ in range(40):
    text, truth = _choice(rng, STATEMENT_MAKERS)(scenes, rng)
    if truth == label:
      return _sentence(text)
  return None


# ---------------------------------------------------------------- writing ----


def _save(image: Image.Image, path: str) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  if path.endswith(".png"):
    image.save(path, format="PNG")
  else:
    image.save(path, format="JPEG", quality=90)


def _write_json(path: str, data) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(data, f, separators=(",", ":"))
  return path


def _info(description: str) -> dict:
  return {"description": f"pixelbert_jax synthetic world: {description}",
          "version": "1.0", "year": 2026, "contributor": "pixelbert_jax",
          "date_created": "2026-11-27"}


# Per-data-set stream keys, so adding one data set never changes another.
_COCO, _FLICKR, _NLVR2, _VG = 1, 2, 3, 4
_COCO_SUBSETS = {"train2014": 0, "val2014": 1, "test2015": 2}


def _draw_coco_subset(root: str, subset: str, count: int, seed: int) -> list[dict]:
  """Draws one COCO image folder; returns per image its id, file and scene."""
  entries = []
  offset = (_COCO_SUBSETS[subset] + 1) * 100_000
  for index in range(count):
    rng = _rng(seed, _COCO, _COCO_SUBSETS[subset], index)
    scene = sample_scene(rng)
    image_id = offset + 7 * index + 1
    file_name = f"COCO_{subset}_{image_id:012d}.jpg"
    _save(render_scene(scene, rng), os.path.join(root, subset, file_name))
    entries.append({"id": image_id, "file_name": file_name, "scene": scene,
                    "captions": make_captions(scene, rng),
                    "questions": make_questions(scene, rng), "rng": rng})
  return entries


def _coco_captions_json(subset: str, entries: list[dict], first_id: int) -> dict:
  images, annotations = [], []
  for entry in entries:
    scene = entry["scene"]
    images.append({"license": 1, "file_name": entry["file_name"],
                   "coco_url": "", "height": scene.height, "width": scene.width,
                   "date_captured": "2026-11-27 00:00:00", "flickr_url": "",
                   "id": entry["id"]})
    for caption in entry["captions"]:
      annotations.append({"image_id": entry["id"], "id": first_id + len(annotations),
                          "caption": caption})
  return {"info": _info(f"COCO captions {subset}"), "images": images,
          "licenses": [{"url": "", "id": 1, "name": "synthetic"}],
          "annotations": annotations}


def _karpathy_tokens(text: str) -> list[str]:
  return "".join(c if c.isalnum() else " " for c in text.lower()).split()


def _karpathy_json(dataset: str, items: list[tuple[str, str, str, list[str], dict]]) -> dict:
  """Karpathy-split JSON from (filepath, filename, split, captions, extra) items."""
  images, sentid = [], 0
  for imgid, (filepath, filename, split, captions, extra) in enumerate(items):
    sentences = []
    for caption in captions:
      sentences.append({"tokens": _karpathy_tokens(caption), "raw": caption,
                        "imgid": imgid, "sentid": sentid + len(sentences)})
    image = {"filepath": filepath, "sentids": [s["sentid"] for s in sentences],
             "filename": filename, "imgid": imgid, "split": split,
             "sentences": sentences, **extra}
    if not filepath:
      del image["filepath"]  # Flickr30K's Karpathy file has no such field.
    images.append(image)
    sentid += len(sentences)
  return {"images": images, "dataset": dataset}


def _karpathy_split(subset: str, index: int, count: int) -> str:
  """train2014 -> train; val2014 -> a quarter val, a quarter test, half restval."""
  if subset == "train2014":
    return "train"
  quarter = max(1, count // 4)
  return "val" if index < quarter else "test" if index < 2 * quarter else "restval"


def _write_coco(out: str, coco: dict[str, list[dict]]) -> dict[str, str]:
  root = os.path.join(out, "coco")
  paths, items, first_id = {"coco_root": root}, [], 1
  for subset in ("train2014", "val2014"):
    data = _coco_captions_json(subset, coco[subset], first_id)
    first_id += len(data["annotations"])
    paths[f"coco_captions_{subset[:-4]}"] = _write_json(
        os.path.join(root, "annotations", f"captions_{subset}.json"), data)
    for index, entry in enumerate(coco[subset]):
      split = _karpathy_split(subset, index, len(coco[subset]))
      items.append((subset, entry["file_name"], split, entry["captions"],
                    {"cocoid": entry["id"]}))
  paths["karpathy_coco"] = _write_json(os.path.join(root, "dataset_coco.json"),
                                       _karpathy_json("coco", items))
  return paths


def _vqa_records(entries: list[dict]) -> tuple[list[dict], list[dict]]:
  questions, annotations = [], []
  for entry in entries:
    for k, question in enumerate(entry["questions"]):
      qid = entry["id"] * 1000 + k
      questions.append({"image_id": entry["id"], "question": question.text,
                        "question_id": qid})
      answers = annotator_answers(question, entry["rng"])
      annotations.append({
          "question_type": question.question_type,
          "multiple_choice_answer": collections.Counter(answers).most_common(1)[0][0],
          "answers": [{"answer": a, "answer_confidence": "yes" if a == question.answer
                       else "maybe", "answer_id": i + 1} for i, a in enumerate(answers)],
          "image_id": entry["id"], "answer_type": question.answer_type,
          "question_id": qid})
  return questions, annotations


def _vqa_files(subset: str, entries: list[dict]) -> dict[str, list[dict]]:
  """{data_subtype: its images' entries}: test2015 is written twice, as in the
  official release, as test-std (every image) and test-dev (a subset, here every
  other image)."""
  if subset == "test2015":
    return {"test2015": entries, "test-dev2015": entries[::2]}
  return {subset: entries}


def _write_vqa(out: str, coco: dict[str, list[dict]]) -> dict[str, str]:
  root, paths = os.path.join(out, "vqa"), {}
  files = {t: e for subset, entries in coco.items()
           for t, e in _vqa_files(subset, entries).items()}
  for data_subtype, entries in files.items():
    questions, annotations = _vqa_records(entries)
    header = {"info": _info(f"VQA v2 {data_subtype}"), "data_type": "mscoco",
              "data_subtype": data_subtype,
              "license": {"url": "", "name": "synthetic"}}
    paths[f"vqa_{data_subtype}_questions"] = _write_json(
        os.path.join(root, f"v2_OpenEnded_mscoco_{data_subtype}_questions.json"),
        {**header, "task_type": "Open-Ended", "questions": questions})
    if not data_subtype.startswith("test"):  # Test splits ship without annotations.
      paths[f"vqa_{data_subtype}_annotations"] = _write_json(
          os.path.join(root, f"v2_mscoco_{data_subtype}_annotations.json"),
          {**header, "annotations": annotations})
  return paths


def _nlvr2_example(split: str, set_id: int, seed: int, images: str) -> dict:
  """One pair of PNG images and one balanced true/false statement about them."""
  rng = _rng(seed, _NLVR2, ("train", "dev", "test1").index(split), set_id)
  label = bool(rng.random() < 0.5)
  while True:
    scenes = (sample_scene(rng), sample_scene(rng))
    sentence = make_statement(scenes, label, rng)
    if sentence is not None:
      break
  # Real NLVR2 spreads train images over numbered sub-folders.
  directory = str(set_id % 10) if split == "train" else ""
  for side, scene in enumerate(scenes):
    name = f"{split}-{set_id}-0-img{side}.png"
    _save(render_scene(scene, rng), os.path.join(images, split, directory, name))
  example = {"identifier": f"{split}-{set_id}-0-0", "sentence": sentence,
             "label": str(label), "synset": "synthetic", "query": "synthetic"}
  if directory:
    example["directory"] = directory
  return example


def _write_nlvr2(out: str, seed: int, num_pairs: int) -> dict[str, str]:
  root = os.path.join(out, "nlvr2")
  images = os.path.join(root, "images")
  paths = {"nlvr2_root": root, "nlvr2_images": images}
  counts = {"dev": max(2, num_pairs * 15 // 100), "test1": max(2, num_pairs * 15 // 100)}
  counts["train"] = max(2, num_pairs - counts["dev"] - counts["test1"])
  for split, count in counts.items():
    lines = [json.dumps(_nlvr2_example(split, i, seed, images)) for i in range(count)]
    os.makedirs(root, exist_ok=True)
    paths[f"nlvr2_{split}"] = os.path.join(root, f"{split}.json")
    with open(paths[f"nlvr2_{split}"], "w", encoding="utf-8") as f:
      f.write("\n".join(lines) + "\n")
  return paths


def _write_flickr30k(out: str, seed: int, count: int) -> dict[str, str]:
  root = os.path.join(out, "flickr30k")
  images = os.path.join(root, "flickr30k-images")
  items = []
  for index in range(count):
    rng = _rng(seed, _FLICKR, index)
    scene = sample_scene(rng)
    filename = f"{1_000_000_000 + 9973 * index}.jpg"
    _save(render_scene(scene, rng), os.path.join(images, filename))
    split = "val" if index % 7 == 5 else "test" if index % 7 == 6 else "train"
    items.append(("", filename, split, make_captions(scene, rng), {}))
  return {"flickr30k_root": root, "flickr30k_images": images,
          "karpathy_flickr30k": _write_json(os.path.join(root, "dataset_flickr30k.json"),
                                            _karpathy_json("flickr30k", items))}


def _vg_regions(image_id: int, scene: Scene, first_id: int) -> list[dict]:
  regions = []
  for obj in scene.objects:
    left, top = max(0, int(obj.x - obj.r)), max(0, int(obj.y - obj.r))
    regions.append({"region_id": first_id + len(regions), "image_id": image_id,
                    "x": left, "y": top, "width": int(2 * obj.r),
                    "height": int(2 * obj.r), "phrase": f"{obj.size} {obj.name}"})
  return regions


def _write_visual_genome(out: str, seed: int, count: int) -> dict[str, str]:
  root = os.path.join(out, "vg")
  image_data, descriptions, first_region = [], [], 1
  for index in range(count):
    rng = _rng(seed, _VG, index)
    scene = sample_scene(rng)
    image_id = index + 1
    _save(render_scene(scene, rng), os.path.join(root, "VG_100K", f"{image_id}.jpg"))
    image_data.append({"image_id": image_id, "width": scene.width,
                       "height": scene.height, "coco_id": None, "flickr_id": None,
                       "url": f"https://cs.stanford.edu/people/rak248/VG_100K/{image_id}.jpg"})
    regions = _vg_regions(image_id, scene, first_region)
    first_region += len(regions)
    descriptions.append({"regions": regions, "id": image_id})
  return {"vg_root": root,
          "vg_image_data": _write_json(os.path.join(root, "image_data.json"), image_data),
          "vg_region_descriptions": _write_json(
              os.path.join(root, "region_descriptions.json"), descriptions)}


def vocabulary() -> list[str]:
  """The world's closed BERT-style vocabulary: specials, then sorted tokens."""
  words = set(TEMPLATE_WORDS) | set(COLOURS) | set(SHAPES) | set(SIZES)
  words |= set(BACKGROUNDS) | set(SYNONYMS.values()) | set(NUMBER_WORDS)
  words |= {s + "s" for s in SHAPES} | {w for r in RELATIONS for w in r.split()}
  words |= {str(d) for d in range(10)} | set(PUNCTUATION)
  return list(SPECIAL_TOKENS) + sorted(words)


def write_vocab(path: str) -> str:
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(vocabulary()) + "\n")
  return path


def generate(out_dir: str, seed: int = 0, num_images: int = 1000) -> dict[str, str]:
  """Writes the whole synthetic world under `out_dir`.

  Args:
    out_dir: the folder to write into (created if needed).
    seed: the same seed always writes byte-identical files.
    num_images: COCO-style images (train2014 60 %, val2014 40 %); the other data
      sets are sized from it: test2015 1/8, Flickr30K 1/4, NLVR2 pairs 1/4 (two
      images each), Visual Genome 1/8.

  Returns:
    A dict from names (e.g. "coco_captions_train", "karpathy_coco",
    "vqa_train2014_questions", "nlvr2_dev", "vocab") to the written paths.
  """
  os.makedirs(out_dir, exist_ok=True)
  num_train = max(2, num_images * 6 // 10)
  sizes = {"train2014": num_train, "val2014": max(4, num_images - num_train),
           "test2015": max(2, num_images // 8)}
  root = os.path.join(out_dir, "coco")
  coco = {s: _draw_coco_subset(root, s, n, seed) for s, n in sizes.items()}
  paths = {"root": out_dir, **_write_coco(out_dir, coco), **_write_vqa(out_dir, coco)}
  paths.update(_write_nlvr2(out_dir, seed, max(8, num_images // 4)))
  paths.update(_write_flickr30k(out_dir, seed, max(7, num_images // 4)))
  paths.update(_write_visual_genome(out_dir, seed, max(4, num_images // 8)))
  paths["vocab"] = write_vocab(os.path.join(out_dir, "vocab.txt"))
  return paths


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True, help="Folder to write the world into.")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--num_images", type=int, default=1000,
                      help="COCO-style images; other data sets scale with it.")
  args = parser.parse_args(argv)
  start = time.perf_counter()
  paths = generate(args.out, seed=args.seed, num_images=args.num_images)
  seconds = time.perf_counter() - start
  images = sum(name.endswith((".jpg", ".png"))
               for _, _, files in os.walk(args.out) for name in files)
  print(f"Wrote {images} images and {len(paths) - 1} files under {args.out} "
        f"in {seconds:.1f} s ({images / seconds:.0f} images/s).")


if __name__ == "__main__":
  main()
