"""Hugging Face BERT -> our text embedder, Transformer and MLM head, through the importer."""

import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from pixelbert_jax.models import heads, text, transformer
from pixelbert_jax.models.variants import TransformerSpec
from pixelbert_jax.tools import import_weights
from pixelbert_jax.weights import init_checkpoint

CONFIG = dict(vocab_size=1009, hidden_size=192, num_hidden_layers=3, num_attention_heads=6,
              intermediate_size=500, max_position_embeddings=64, type_vocab_size=2)


def _reference(directory, fmt: str) -> transformers.BertForPreTraining:
  """A random, non-default BERT whose biases and LayerNorms are not at their init."""
  torch.manual_seed(0)
  model = transformers.BertForPreTraining(transformers.BertConfig(**CONFIG)).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "LayerNorm" in name or name.endswith("bias"):
        p.add_(0.1 * torch.randn_like(p))
  model.config.save_pretrained(directory)
  if fmt == "safetensors":
    model.save_pretrained(directory)
  else:
    torch.save(model.state_dict(), directory / "pytorch_model.bin")
  return model


def _ours(components, spec):
  kw = dict(dtype=np.float32, rngs=nnx.Rngs(1))
  modules = {"text_embedder": text.TextEmbedder(spec, dropout=0.1, **kw),
             "encoder": transformer.Encoder(spec, dropout=0.1, **kw),
             "pooler": heads.Pooler(spec.hidden, **kw), "mlm_head": heads.MLMHead(spec, **kw)}
  assert sorted(init_checkpoint.apply(components, modules)) == sorted(modules)
  for module in modules.values():
    module.eval()
  return modules


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_hidden_states_and_mlm_logits_match(tmp_path, fmt):
  (tmp_path / "bert").mkdir()
  reference = _reference(tmp_path / "bert", fmt)
  info = import_weights.run(None, "resnet50", str(tmp_path / "bert"), str(tmp_path / "init"))
  assert info["unused"]["bert"] == ["cls.seq_relationship.bias", "cls.seq_relationship.weight"]
  components, info = init_checkpoint.load(tmp_path / "init")
  modules = _ours(components, TransformerSpec(**info["transformer"]))

  rng = np.random.default_rng(0)
  ids = rng.integers(0, CONFIG["vocab_size"], size=(2, 13))
  token_types = rng.integers(0, 2, size=(2, 13))
  mask = np.arange(13)[None, :] < np.array([[13], [9]])
  with torch.no_grad():
    out = reference(input_ids=torch.tensor(ids), token_type_ids=torch.tensor(token_types),
                    attention_mask=torch.tensor(mask.astype(np.int64)),
                    output_hidden_states=True)
  embedded = modules["text_embedder"](ids, token_types)
  hidden, _ = modules["encoder"](embedded, mask)
  logits = modules["mlm_head"](hidden, modules["text_embedder"].word.embedding[...])

  def rel(a, b):  # padded positions are free to differ
    return np.linalg.norm((np.asarray(a) - b)[mask]) / np.linalg.norm(b[mask])

  assert rel(hidden, out.hidden_states[-1].numpy()) <= 1e-4
  assert rel(logits, out.prediction_logits.numpy()) <= 1e-4
