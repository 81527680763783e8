r"""Imports torchvision / timm ResNet(-X) and Hugging Face BERT weights for initialisation.

  python -m pixelbert_jax.tools.import_weights \
      --resnet=resnet50.pth --resnet_arch=resnet50 \
      --bert=/path/to/bert-base-uncased --out=/path/to/init

`--bert` is a Hugging Face model directory (model.safetensors or pytorch_model.bin, plus
config.json). The output directory is what a config names as `init`. Shapes and names are
checked against our modules before anything is written; unused source keys are reported.
"""

import dataclasses
import datetime
import json

from absl import app, flags, logging
import jax.numpy as jnp
from flax import nnx

from pixelbert_jax.models import heads, resnet, text, transformer, variants
from pixelbert_jax.weights import bert_import, init_checkpoint, resnet_import
from pixelbert_jax.weights.state_dicts import read_state_dict

FLAGS = flags.FLAGS
flags.DEFINE_string("resnet", None, "torchvision/timm ResNet state dict (.pth/.safetensors).")
flags.DEFINE_enum("resnet_arch", "resnet50", sorted(variants.BACKBONES), "Backbone variant.")
flags.DEFINE_string("bert", None, "Hugging Face BERT model directory.")
flags.DEFINE_string("out", None, "Output directory for the initialisation checkpoint.")


def _shapes(module: nnx.Module) -> dict[str, tuple[int, ...]]:
  return {k: v.shape for k, v in init_checkpoint.flat_variables(module).items()}


def import_resnet(path: str, arch: str) -> tuple[dict, list[str]]:
  """Reads, renames and checks a ResNet; returns its weights and the unused keys."""
  weights, unused = resnet_import.convert_resnet(read_state_dict(path))
  model = nnx.eval_shape(lambda: resnet.ResNet(variants.BACKBONES[arch], rngs=nnx.Rngs(0)))
  init_checkpoint.check_fits(_shapes(model), weights, "backbone")
  return weights, unused


def _bert_modules(spec: variants.TransformerSpec) -> dict[str, nnx.Module]:
  kw = dict(dtype=jnp.float32, rngs=nnx.Rngs(0))
  return {
      "text_embedder": text.TextEmbedder(spec, dropout=0.0, **kw),
      "encoder": transformer.Encoder(spec, dropout=0.0, **kw),
      "pooler": heads.Pooler(spec.hidden, **kw),
      "mlm_head": heads.MLMHead(spec, **kw),
  }


def import_bert(path: str) -> tuple[dict, list[str], variants.TransformerSpec]:
  """Reads, renames and checks a BERT; the MLM head is optional (BertModel has none)."""
  weights_file, config_file = bert_import.find_bert_files(path)
  spec = bert_import.spec_from_hf_config(config_file)
  components, unused = bert_import.convert_bert(read_state_dict(weights_file))
  modules = nnx.eval_shape(lambda: _bert_modules(spec))
  for name, module in modules.items():
    if name == "mlm_head" and name not in components:
      logging.info("No MLM head in %s; it will start from scratch.", path)
      continue
    init_checkpoint.check_fits(_shapes(module), components.get(name, {}), name)
  return components, unused, spec


def run(resnet_path: str | None, resnet_arch: str, bert_path: str | None,
        out: str) -> dict:
  """Imports what was given and writes the checkpoint; returns the import info."""
  if not resnet_path and not bert_path:
    raise ValueError("Give --resnet and/or --bert")
  components, info = {}, {"created": datetime.datetime.now().isoformat(), "unused": {}}
  if resnet_path:
    components["backbone"], info["unused"]["resnet"] = import_resnet(resnet_path, resnet_arch)
    info.update(resnet=str(resnet_path), backbone=resnet_arch)
  if bert_path:
    bert, info["unused"]["bert"], spec = import_bert(bert_path)
    components.update(bert)
    info.update(bert=str(bert_path), transformer=dataclasses.asdict(spec))
  info["components"] = sorted(components)
  init_checkpoint.save(out, components, info)
  return info


def main(argv):
  del argv
  if not FLAGS.out:
    raise app.UsageError("--out is required")
  info = run(FLAGS.resnet, FLAGS.resnet_arch, FLAGS.bert, FLAGS.out)
  for source, names in info["unused"].items():
    if names:
      logging.warning("Unused keys from %s (%d): %s", source, len(names), ", ".join(names))
  print(json.dumps(info, indent=2))


if __name__ == "__main__":
  app.run(main)
