"""Text of the synthetic world: captions, VQA questions and answers, NLVR2 statements.

No template ties one visual word to another, so a masked visual word cannot be
guessed from the rest of the text; `vocabulary()` lists every word the
templates can write.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

from pixelbert_jax.data.synthetic.scenes import (
    BACKGROUNDS, COLOURS, MAX_OBJECTS, RELATIONS, SHAPES, SIZES, Scene,
    SceneObject, choice, region, relation)

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
  obj = choice(rng, scene.objects)
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
  chosen = templates[:count] + [choice(rng, templates[1:])
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
  obj = choice(rng, candidates)
  return Question(f"What color is the {obj.shape}?", obj.colour, "colour",
                  "what color is the", "other")


def _shape_question(scene, rng):
  candidates = _unique(scene, lambda o: o.colour)
  if not candidates:
    return None
  obj = choice(rng, candidates)
  return Question(f"What shape is the {obj.colour} object?", obj.shape, "shape",
                  "what shape is the", "other")


def _count_question(scene, rng):
  if rng.random() < 0.5:
    return Question("How many objects are there?", str(len(scene.objects)),
                    "number", "how many", "number")
  colour = choice(rng, tuple(COLOURS))
  answer = sum(o.colour == colour for o in scene.objects)
  return Question(f"How many {colour} shapes are there?", str(answer), "number",
                  "how many", "number")


def _exists_question(scene, rng):
  present = {o.name for o in scene.objects}
  if rng.random() < 0.5:  # Half yes, half no: the text alone says nothing.
    name = choice(rng, sorted(present))
  else:
    absent = [f"{c} {s}" for c in COLOURS for s in SHAPES if f"{c} {s}" not in present]
    name = choice(rng, absent)
  return Question(f"Is there a {name}?", "yes" if name in present else "no",
                  "yes/no", "is there a", "yes/no")


def _relation_question(scene, rng):
  candidates = _unique(scene, lambda o: o.name)
  if len(candidates) < 2:
    return None
  a, b = (candidates[i] for i in rng.permutation(len(candidates))[:2])
  truth = relation(a, b, scene)
  asked = truth if rng.random() < 0.5 else choice(
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
    return choice(rng, COLOUR_CONFUSIONS[question.answer])
  if question.kind == "shape":
    return choice(rng, SHAPE_CONFUSIONS[question.answer])
  if question.kind == "number":
    return str(max(0, int(question.answer) + choice(rng, (-1, 1))))
  return "no" if question.answer == "yes" else "yes"


def _variant(answer: str, rng) -> str:
  """The right answer, typed differently: "Red", "red.", "two", "rectangle"."""
  options = [answer.capitalize(), answer + "."]
  if answer.isdigit():
    options.append(NUMBER_WORDS[int(answer)])
  if answer in SYNONYMS:
    options.append(SYNONYMS[answer])
  return choice(rng, options)


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
  obj = choice(rng, scenes[side].objects)
  name = obj.name if rng.random() < 0.5 else (
      f"{choice(rng, tuple(COLOURS))} {choice(rng, SHAPES)}")
  truth = any(o.name == name for o in scenes[side].objects)
  return f"the {('left', 'right')[side]} image contains a {name}", truth


def _statement_both(scenes, rng):
  colour = choice(rng, tuple(COLOURS))
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
    text, truth = choice(rng, STATEMENT_MAKERS)(scenes, rng)
    if truth == label:
      return _sentence(text)
  return None


# ------------------------------------------------------------- vocabulary ----


def vocabulary() -> list[str]:
  """The world's closed BERT-style vocabulary: specials, then sorted tokens."""
  words = set(TEMPLATE_WORDS) | set(COLOURS) | set(SHAPES) | set(SIZES)
  words |= set(BACKGROUNDS) | set(SYNONYMS.values()) | set(NUMBER_WORDS)
  words |= {s + "s" for s in SHAPES} | {w for r in RELATIONS for w in r.split()}
  words |= {str(d) for d in range(10)} | set(PUNCTUATION)
  return list(SPECIAL_TOKENS) + sorted(words)


# ---------------------------------------------------------------- SNLI-VE ----


def _absent_name(scene: Scene, rng) -> str:
  """A "colour shape" no object of the scene has; half the time one of its colours
  on another shape, so that colour alone does not decide."""
  present = {o.name for o in scene.objects}
  while True:
    colour = (choice(rng, scene.objects).colour if rng.random() < 0.5
              else choice(rng, tuple(COLOURS)))
    name = f"{colour} {choice(rng, SHAPES)}"
    if name not in present:
      return name


def make_hypotheses(scene: Scene, rng: np.random.Generator) -> list[tuple[str, str]]:
  """Four (hypothesis, label) pairs about one image premise, in random order.

  "There is a <colour shape>" is entailed when the scene has one and contradicted when
  it has none; "Both images contain a <colour shape>" is contradicted by a scene
  without one and left open (neutral) by a scene with one: the other image is not
  seen. Each template is true or false of half the scenes it is used on, so the text
  alone tells at most which two labels are possible, and the image decides.
  """
  present = choice(rng, scene.objects).name
  pairs = [(f"there is a {present}", "entailment"),
           (f"there is a {_absent_name(scene, rng)}", "contradiction"),
           (f"both images contain a {present}", "neutral"),
           (f"both images contain a {_absent_name(scene, rng)}", "contradiction")]
  return [(_sentence(pairs[i][0]), pairs[i][1]) for i in rng.permutation(len(pairs))]
