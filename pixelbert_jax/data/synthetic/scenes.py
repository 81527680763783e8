"""Scenes of the synthetic world: sampling their objects and drawing them.

A scene is a canvas of varied size and aspect ratio with a few objects on it,
each of a shape, a colour, a size and a position drawn independently of the
others; rendering adds a gradient background, grey clutter and sensor noise.
"""

from __future__ import annotations

import dataclasses
import math

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


def choice(rng: np.random.Generator, items):
  """One of `items` as it is: a str stays a str (`rng.choice` returns np.str_)."""
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
  return [(choice(rng, SHAPES), choice(rng, tuple(COLOURS)), choice(rng, SIZES))
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
      return Scene(width, height, choice(rng, BACKGROUNDS), tuple(objects))


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


def polygon(shape: str, x: float, y: float, r: float, angle: float):
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
    draw.polygon(polygon(obj.shape, obj.x, obj.y, obj.r, angle), fill=fill)


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

