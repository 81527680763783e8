"""The embedded synthetic world: a small, deterministic stand-in for the real data.

Scenes of a few simple objects (shape x colour x size x position) on noisy,
cluttered backgrounds, drawn with PIL on canvases of varied size and aspect
ratio (`scenes`), described in captions, VQA questions and NLVR2 statements
(`language`), and written in the official file formats (`formats`), so the same
readers serve the synthetic world and the real data sets.

Colours, shapes, sizes, counts and positions are sampled independently per
object, and no template ties one visual word to another, so a masked visual
word cannot be guessed from the rest of the text: masked-word accuracy with the
true image vs. a shuffled one measures grounding.

Usage:
  python -m pixelbert_jax.data.synthetic --out DIR [--seed S] [--num_images N]
"""

from pixelbert_jax.data.synthetic.cli import main
from pixelbert_jax.data.synthetic.formats import generate, write_vocab
from pixelbert_jax.data.synthetic.language import (
    COLOUR_CONFUSIONS, NUMBER_WORDS, PUNCTUATION, QUESTION_MAKERS, SHAPE_CONFUSIONS,
    SPECIAL_TOKENS, STATEMENT_MAKERS, SYNONYMS, TEMPLATE_WORDS, VISUAL_WORDS, Question,
    annotator_answers, make_captions, make_questions, make_statement, vocabulary)
from pixelbert_jax.data.synthetic.scenes import (
    BACKGROUNDS, COLOURS, MAX_OBJECTS, RELATIONS, SHAPES, SIZES, Scene, SceneObject,
    polygon, region, relation, render_scene, sample_scene)

__all__ = [
    "BACKGROUNDS", "COLOURS", "COLOUR_CONFUSIONS", "MAX_OBJECTS", "NUMBER_WORDS",
    "PUNCTUATION", "QUESTION_MAKERS", "Question", "RELATIONS", "SHAPES",
    "SHAPE_CONFUSIONS", "SIZES", "SPECIAL_TOKENS", "STATEMENT_MAKERS", "SYNONYMS",
    "Scene", "SceneObject", "TEMPLATE_WORDS", "VISUAL_WORDS", "annotator_answers",
    "generate", "main", "make_captions", "make_questions", "make_statement", "polygon",
    "region", "relation", "render_scene", "sample_scene", "vocabulary", "write_vocab",
]
