"""Hugging Face BERT checkpoints -> our text embedder, encoder, pooler and MLM head.

Accepts `BertModel` names and `BertForPreTraining` / `BertForMaskedLM` names (prefixed
`bert.`, with `cls.predictions.*`), and the old TF-converted `gamma` / `beta` spelling.
"""

import json
import re

import numpy as np
from etils import epath

from pixelbert_jax.models.variants import TransformerSpec
from pixelbert_jax.weights.renaming import dense_param, identity, rename

_LN = r"LayerNorm\.(weight|bias|gamma|beta)"
_LN_NAME = {"weight": "scale", "gamma": "scale", "bias": "bias", "beta": "bias"}
_DENSE = r"(weight|bias)"


def _dense(prefix: str):
  """A rule template for a Linear: `weight` -> `kernel`, `bias` -> `bias`."""

  def template(match: re.Match) -> str:
    field = "kernel" if match.groups()[-1] == "weight" else "bias"
    return f"{prefix.format(*match.groups())}.{field}"

  return template


_LAYER = r"encoder\.layer\.(\d+)\."
RULES = (
    (r"embeddings\.word_embeddings\.weight", "text_embedder.word.embedding", identity),
    (r"embeddings\.position_embeddings\.weight", "text_embedder.position.embedding", identity),
    (r"embeddings\.token_type_embeddings\.weight", "text_embedder.token_type.embedding",
     identity),
    (rf"embeddings\.{_LN}", lambda m: f"text_embedder.norm.{_LN_NAME[m[1]]}", identity),
    (_LAYER + rf"attention\.self\.(query|key|value)\.{_DENSE}",
     _dense("encoder.layers.{0}.attention.{1}"), dense_param),
    (_LAYER + rf"attention\.output\.dense\.{_DENSE}",
     _dense("encoder.layers.{0}.attention.out"), dense_param),
    (_LAYER + rf"attention\.output\.{_LN}",
     lambda m: f"encoder.layers.{m[1]}.attention_norm.{_LN_NAME[m[2]]}", identity),
    (_LAYER + rf"intermediate\.dense\.{_DENSE}", _dense("encoder.layers.{0}.mlp_in"),
     dense_param),
    (_LAYER + rf"output\.dense\.{_DENSE}", _dense("encoder.layers.{0}.mlp_out"),
     dense_param),
    (_LAYER + rf"output\.{_LN}",
     lambda m: f"encoder.layers.{m[1]}.mlp_norm.{_LN_NAME[m[2]]}", identity),
    (rf"pooler\.dense\.{_DENSE}", _dense("pooler.dense"), dense_param),
    (rf"cls\.predictions\.transform\.dense\.{_DENSE}", _dense("mlm_head.transform"),
     dense_param),
    (rf"cls\.predictions\.transform\.{_LN}",
     lambda m: f"mlm_head.norm.{_LN_NAME[m[1]]}", identity),
    (r"cls\.predictions\.bias", "mlm_head.bias", identity),
)
# The decoder is tied to the word embeddings; position_ids is a buffer.
IGNORED = (r"cls\.predictions\.decoder\.(weight|bias)", r"embeddings\.position_ids")


def convert_bert(state_dict: dict[str, np.ndarray]) -> tuple[dict[str, dict[str, np.ndarray]],
                                                             list[str]]:
  """Returns {component: {our name: array}} and the unused source names."""
  stripped = {re.sub(r"^bert\.", "", name): value for name, value in state_dict.items()}
  renamed, unused = rename(stripped, RULES, IGNORED)
  components: dict[str, dict[str, np.ndarray]] = {}
  for name, value in renamed.items():
    component, rest = name.split(".", 1)
    components.setdefault(component, {})[rest] = value
  return components, unused


def spec_from_hf_config(config_path: str | epath.Path) -> TransformerSpec:
  """Reads a Hugging Face `config.json` into a TransformerSpec, refusing what we lack."""
  config = json.loads(epath.Path(config_path).read_text())
  if config.get("hidden_act", "gelu") != "gelu":
    raise ValueError(f"Only BERT's exact GELU is supported, got {config['hidden_act']!r}")
  if config.get("position_embedding_type", "absolute") != "absolute":
    raise ValueError("Only absolute position embeddings are supported")
  return TransformerSpec(
      num_layers=config["num_hidden_layers"], hidden=config["hidden_size"],
      heads=config["num_attention_heads"], mlp=config["intermediate_size"],
      vocab_size=config["vocab_size"], max_positions=config["max_position_embeddings"],
      type_vocab_size=config.get("type_vocab_size", 2),
      layer_norm_eps=config.get("layer_norm_eps", 1e-12))


def find_bert_files(path: str | epath.Path) -> tuple[epath.Path, epath.Path]:
  """A Hugging Face model directory -> (weights file, config.json)."""
  path = epath.Path(path)
  for name in ("model.safetensors", "pytorch_model.bin"):
    if (path / name).exists():
      weights = path / name
      break
  else:
    raise FileNotFoundError(f"No model.safetensors or pytorch_model.bin in {path}")
  if not (path / "config.json").exists():
    raise FileNotFoundError(f"No config.json in {path}")
  return weights, path / "config.json"
