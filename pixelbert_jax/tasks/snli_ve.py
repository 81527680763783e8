"""Visual entailment (SNLI-VE): does an image entail, contradict or leave open a sentence?

Each (image premise, text hypothesis) pair goes through the Pixel-BERT body with every
feature pixel (no sampling, as in all fine-tuning); a two-layer MLP on the pooled [CLS]
gives three logits (entailment, neutral, contradiction), trained with softmax
cross-entropy averaged over the valid examples of the global batch, as UNITER and
ViLT fine-tune it. Evaluation reports accuracy and each class's accuracy (recall), in
percent.

Data: the official `snli_ve_{train,dev,test}.jsonl` files and Flickr30K's image folder
(kind "snli_ve"), or the synthetic world's SNLI-VE set (kind "synthetic": train to
train, dev to evaluate), whose hypotheses need the image to be judged.

Written against the task protocol (`tasks/base.py`) alone: this module and
`configs/snli_ve.py` are the whole task.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from pixelbert_jax.data import pipeline, preprocess
from pixelbert_jax.data.readers import snli_ve as snli_ve_reader
from pixelbert_jax.evaluators import average as average_lib
from pixelbert_jax.models import heads, layers
from pixelbert_jax.models.pixelbert import PixelBert
from pixelbert_jax.models.variants import ModelConfig
from pixelbert_jax.tasks import base, common

LABELS = snli_ve_reader.LABELS
LOSS_WEIGHTS = {"snli_ve_loss": 1.0}


class SnliVeModel(nnx.Module):
  """The Pixel-BERT body with a three-way classifier on the pooled [CLS]."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    dtype = layers.compute_dtype(config.dtype)
    hidden = config.transformer.hidden
    self.pixelbert = PixelBert(config, rngs=rngs)
    self.snli_ve_head = heads.MLPClassifier(hidden, 2 * hidden, len(LABELS), dtype=dtype,
                                            rngs=rngs)

  def __call__(self, token_ids, text_mask, images, image_sizes) -> jax.Array:
    """Hypotheses and padded uint8 images -> (B, 3) float32 logits."""
    pixels, pixel_mask = self.pixelbert.encode_pixels(images, image_sizes)
    _, aux = self.pixelbert(token_ids, text_mask, pixels, pixel_mask)
    return self.snli_ve_head(aux["pooled"])


def _logits(model: SnliVeModel, batch: dict) -> jax.Array:
  return model(batch["token_ids"], batch["text_mask"], batch["images"],
               batch["image_sizes"])


def _sums(logits: jax.Array, batch: dict) -> dict:
  valid = batch["valid"].astype(jnp.float32)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
  right = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
  return {"snli_ve_loss": jnp.sum(losses * valid),
          "snli_ve_accuracy": jnp.sum(right * valid)}


def loss_fn(model: SnliVeModel, batch: dict, key: jax.Array) -> dict:
  """Cross-entropy and accuracy summed over the valid examples; `key` is unused."""
  del key
  return _sums(_logits(model, batch), batch)


def counts_fn(batch: dict) -> dict:
  valid = jnp.sum(batch["valid"].astype(jnp.float32))
  return {"snli_ve_loss": valid, "snli_ve_accuracy": valid}


def predict_fn(model: SnliVeModel, batch: dict, key: jax.Array) -> dict:
  """Loss, and accuracy overall and per class (recall, in percent, as papers report
  it), as averages over the valid examples."""
  del key
  logits = _logits(model, batch)
  sums, counts = _sums(logits, batch), counts_fn(batch)
  found = {"loss": average_lib.average(sums["snli_ve_loss"], counts["snli_ve_loss"]),
           "accuracy": average_lib.average(100 * sums["snli_ve_accuracy"],
                                           counts["snli_ve_accuracy"])}
  right = jnp.argmax(logits, -1) == batch["label"]
  for index, label in enumerate(LABELS):
    of_label = batch["valid"] & (batch["label"] == index)
    found[f"accuracy_{label}"] = average_lib.average(100 * jnp.sum(right & of_label),
                                                     jnp.sum(of_label))
  return found


@dataclasses.dataclass(frozen=True)
class _Preprocess(preprocess.Task):
  """One image and its hypothesis; `label` int32 (the index into LABELS)."""

  def example(self, record, images, bucket, rng) -> dict:
    del rng
    return {**self.resized_images(images, bucket), **self.text(record.hypothesis),
            "label": np.int32(record.label)}

  def blank(self, bucket) -> dict:
    return {**self.blank_images(bucket), **self.text(""), "label": np.int32(0)}


def _split_files(data_cfg, world: dict | None) -> dict[str, tuple[list[str], str]]:
  """(JSON-lines files, image folder) for train and eval."""
  return common.jsonl_splits(
      data_cfg, world, ("snli_ve_train", "snli_ve_dev", "flickr30k_images"),
      example="--config.data.train_file=.../snli_ve_train.jsonl --config.data."
      "eval_file=.../snli_ve_dev.jsonl --config.data.images=.../flickr30k-images",
      config_file="configs/snli_ve.py")


def _read(files: list[str], images: str, name: str, max_skip_fraction: float) -> list:
  readers = [lambda skips, path=path: snli_ve_reader.read_snli_ve(path, images, skips=skips)
             for path in files]
  return common.read_split(f"snli_ve-{name}", readers, max_skip_fraction)


def _pipeline(examples, tokenizer, cfg, *, seed: int, training: bool):
  task = _Preprocess(preprocess.ImageTransform(cfg.image_short_side, cfg.image_long_side),
                     tokenizer, cfg.max_text_len)
  return pipeline.make_pipeline(task, examples, cfg, seed=seed, training=training,
                                name="snli_ve", **common.process_shard())


# ---- Inference: `predictor.entail(image, hypothesis)`, `predict entail`. ----


def entail_batch(predictor, images, hypotheses) -> list[dict[str, float]]:
  """For each (image, hypothesis), the probability of each label."""
  logits = predictor.pair_logits(images, hypotheses).astype(np.float64)
  probs = np.exp(logits - logits.max(axis=1, keepdims=True))
  probs /= probs.sum(axis=1, keepdims=True)
  return [dict(zip(LABELS, map(float, row))) for row in probs]


def entail(predictor, image, hypothesis: str) -> dict[str, float]:
  """{"entailment", "neutral", "contradiction": probability} for one pair."""
  return entail_batch(predictor, [image], [hypothesis])[0]


def _entail_arguments(parser) -> None:
  parser.add_argument("--image", required=True, help="the premise")
  parser.add_argument("--hypothesis", required=True)


def _entail_command(predictor, args) -> dict:
  probabilities = predictor.entail(args.image, args.hypothesis)
  return {"label": max(probabilities, key=probabilities.get),
          "probabilities": probabilities}


class Task(base.Task):
  """SNLI-VE fine-tuning and evaluation (see the module docstring)."""

  name = "snli_ve"
  checkpoint_kind = "SNLI-VE"
  data_paths = base.DataPaths(required=("train_file", "eval_file", "images"))
  pair_head = "snli_ve_head"
  model_class = SnliVeModel
  fixed_objective = base.Objective(loss_fn, counts_fn, LOSS_WEIGHTS)
  capabilities = (base.Capability(
      {"entail": entail, "entail_batch": entail_batch},
      (base.Command("entail", "does the image entail the hypothesis? (SNLI-VE)",
                    _entail_arguments, _entail_command),)),)

  def make_data(self, workdir: str) -> base.TaskData:
    config, data_cfg = self.config, self.config.data
    world, tokenizer = common.world_and_tokenizer(data_cfg, workdir)
    splits = _split_files(data_cfg, world)
    train = _read(*splits["train"], "train", data_cfg.max_skip_fraction)
    held_out = pipeline.as_source(_read(*splits["eval"], "eval",
                                        data_cfg.max_skip_fraction))
    train_iter = _pipeline(train, tokenizer, common.pipeline_config(config, training=True),
                           seed=config.seed, training=True)
    eval_cfg = common.pipeline_config(config, training=False)
    return base.TaskData(tokenizer, train_iter, {}, dict(
        make_iterator=lambda: _pipeline(held_out, tokenizer, eval_cfg, seed=config.seed,
                                        training=False)))

  def make_evaluators(self, data, context):
    return {"snli_ve": average_lib.AverageEvaluator(
        predict_fn, context, make_iterator=data.evaluation["make_iterator"],
        num_batches=0, seed=self.config.seed)}
