"""NLVR2 fine-tuning: the "pair" setting of LXMERT and UNITER on the Pixel-BERT body.

An NLVR2 example is a statement about a pair of images. Each (image, statement) pair
goes through the cross-modal Transformer on its own; the two pooled [CLS] vectors,
left then right, are concatenated and a two-layer MLP gives two logits (false, true),
trained with softmax cross-entropy. The CNN sees the two images of every example as
one batch of 2B images, so each image is encoded once per step.

Data come from the official NLVR2 files named in `config.data` (kind "nlvr2":
JSON-lines files plus the folder that holds the `train/`, `dev/`, `test1/` image
folders) or from the embedded synthetic world (kind "synthetic": train to train, dev
to evaluate). Several training files may be listed (train + dev for a test-P
submission).

Loss normalisation: the cross-entropy is averaged over the labelled valid examples of
the global batch. Padding, skipped examples (`valid` False) and examples without a
label (`label` -1, the hidden test set) count in neither the sum nor the count.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from etils import epath
from flax import nnx

from pixelbert_jax.data import pipeline
from pixelbert_jax.data.readers import nlvr2 as nlvr2_reader
from pixelbert_jax.evaluators import nlvr2_evaluator
from pixelbert_jax.models import heads, layers
from pixelbert_jax.models.pixelbert import PixelBert
from pixelbert_jax.models.variants import ModelConfig
from pixelbert_jax.tasks import base, common

# The objective: the one loss term, at weight 1.
LOSS_WEIGHTS = {"nlvr2_loss": 1.0}


class Nlvr2Model(nnx.Module):
  """The Pixel-BERT body with the NLVR2 pair classifier."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    dtype = layers.compute_dtype(config.dtype)
    self.pixelbert = PixelBert(config, rngs=rngs)
    self.nlvr2_head = heads.nlvr2_pair_head(config.transformer.hidden, dtype=dtype,
                                            rngs=rngs)

  def __call__(self, token_ids: jax.Array, text_mask: jax.Array, images: jax.Array,
               image_sizes: jax.Array) -> jax.Array:
    """(B, T) statements, (B, 2, H, W, 3) uint8 images and (B, 2, 2) sizes -> (B, 2)
    float32 logits (false, true)."""
    batch, pair = images.shape[:2]
    # (B, 2, ...) -> (2B, ...): rows 2i and 2i + 1 are example i's left and right image.
    pixels, pixel_mask = self.pixelbert.encode_pixels(
        images.reshape((batch * pair,) + images.shape[2:]),
        image_sizes.reshape(batch * pair, image_sizes.shape[-1]))
    _, aux = self.pixelbert(jnp.repeat(token_ids, pair, axis=0),
                            jnp.repeat(text_mask, pair, axis=0), pixels, pixel_mask)
    pooled = aux["pooled"]
    return self.nlvr2_head(pooled.reshape(batch, pair * pooled.shape[-1]))


def logits(model: Nlvr2Model, batch: dict) -> jax.Array:
  return model(batch["token_ids"], batch["text_mask"], batch["images"],
               batch["image_sizes"])


def labelled(batch: dict) -> jax.Array:
  """(B,) float32: 1 on valid examples that carry a label."""
  return (batch["valid"] & (batch["label"] >= 0)).astype(jnp.float32)


def example_losses(pair_logits: jax.Array, labels: jax.Array) -> jax.Array:
  """(B,) cross-entropy; hidden labels (-1) are read as 0 and must be masked out."""
  return optax.softmax_cross_entropy_with_integer_labels(pair_logits,
                                                         jnp.maximum(labels, 0))


def predict(pair_logits: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(B,) int32 prediction (1 true, 0 false) and the probability of "true"."""
  return (jnp.argmax(pair_logits, axis=-1).astype(jnp.int32),
          jax.nn.softmax(pair_logits, axis=-1)[:, 1])


def loss_fn(model: Nlvr2Model, batch: dict, key: jax.Array) -> dict:
  """{"nlvr2_loss", "nlvr2_accuracy"} summed over the labelled examples; `key` is
  unused (no pixel sampling; dropout draws from the model's own stream)."""
  del key
  pair_logits = logits(model, batch)
  weight = labelled(batch)
  prediction, _ = predict(pair_logits)
  right = (prediction == batch["label"]).astype(jnp.float32)
  return {"nlvr2_loss": jnp.sum(example_losses(pair_logits, batch["label"]) * weight),
          "nlvr2_accuracy": jnp.sum(right * weight)}


def counts_fn(batch: dict) -> dict:
  """Both sums are per labelled valid example of the global batch."""
  count = jnp.sum(labelled(batch))
  return {"nlvr2_loss": count, "nlvr2_accuracy": count}


def predict_fn(model: Nlvr2Model, batch: dict) -> dict:
  """Per example: the prediction (1 true) and the loss (the evaluator's input)."""
  pair_logits = logits(model, batch)
  prediction, _ = predict(pair_logits)
  return {"prediction": prediction, "loss": example_losses(pair_logits, batch["label"])}


def _split_files(data_cfg, world: dict | None) -> dict[str, tuple[list[str], str]]:
  """(JSON-lines files, image folder) for train and eval."""
  return common.jsonl_splits(
      data_cfg, world, ("nlvr2_train", "nlvr2_dev", "nlvr2_images"),
      example="--config.data.train_file=.../nlvr2/data/train.json --config.data."
      "eval_file=.../nlvr2/data/dev.json --config.data.images=.../images (holding "
      "train/, dev/, test1/)", config_file="configs/nlvr2.py")


def read_split(files: list[str], image_dir: str, name: str,
               max_skip_fraction: float) -> list:
  """The examples of every JSON-lines file, in order; bounded skips."""
  readers = [lambda skips, path=path: nlvr2_reader.read_nlvr2(epath.Path(path), image_dir,
                                                              skips=skips)
             for path in files]
  return common.read_split(f"nlvr2-{name}", readers, max_skip_fraction)


# ---- Inference: what an NLVR2 run judges (Predictor methods, `predict judge`). ----


def _pair_logits(model: Nlvr2Model, left_pooled, right_pooled):
  """(B, 2) false/true logits from the two images' pooled vectors, left first."""
  return model.nlvr2_head(jnp.concatenate([left_pooled, right_pooled], axis=-1))


def judge_batch(predictor, lefts, rights, statements) -> list[float]:
  """For each (left, right, statement), the probability that the statement is true of
  the image pair: each image's pooled vector (the run's pair piece stops there), then
  the pair head on both, left first, as in training."""
  if len(lefts) != len(rights):
    raise ValueError(f"{len(lefts)} left images but {len(rights)} right ones")
  left = predictor.pair_logits(lefts, statements)
  right = predictor.pair_logits(rights, statements)
  pair_logits = np.asarray(predictor.call(_pair_logits, left, right))
  return [float(p) for p in common.sigmoid(pair_logits[:, 1] - pair_logits[:, 0])]


def judge(predictor, left, right, statement: str) -> float:
  """The probability that `statement` is true of the pair (left, right)."""
  return judge_batch(predictor, [left], [right], [statement])[0]


def _judge_arguments(parser) -> None:
  parser.add_argument("--left", required=True, help="the left image")
  parser.add_argument("--right", required=True, help="the right image")
  parser.add_argument("--statement", required=True)


def _judge_command(predictor, args) -> dict:
  score = predictor.judge(args.left, args.right, args.statement)
  return {"true_probability": score, "label": score > 0.5}


class Task(base.Task):
  """NLVR2 fine-tuning and evaluation in the pair setting (see the module docstring)."""

  name = "nlvr2"
  checkpoint_kind = "NLVR2"
  data_paths = base.DataPaths(required=("train_file", "eval_file", "images"))
  pair_head = None  # the head takes two pairs' pooled vectors
  model_class = Nlvr2Model
  fixed_objective = base.Objective(loss_fn, counts_fn, LOSS_WEIGHTS)
  capabilities = (base.Capability(
      {"judge": judge, "judge_batch": judge_batch},
      (base.Command("judge", "is the statement true of the pair? (NLVR2)",
                    _judge_arguments, _judge_command),)),)

  def make_data(self, workdir: str) -> base.TaskData:
    config, data_cfg = self.config, self.config.data
    world, tokenizer = common.world_and_tokenizer(data_cfg, workdir)
    splits = _split_files(data_cfg, world)
    train = read_split(*splits["train"], "train", data_cfg.max_skip_fraction)
    held_out = read_split(*splits["eval"], "eval", data_cfg.max_skip_fraction)
    # The prediction file covers every line of the eval files, skipped ones included.
    identifiers = list(dict.fromkeys(i for path in splits["eval"][0]
                                     for i in nlvr2_reader.identifiers(path)))
    train_iter = pipeline.nlvr2_pipeline(
        train, tokenizer, common.pipeline_config(config, training=True),
        seed=config.seed, **common.process_shard())
    eval_cfg = common.pipeline_config(config, training=False)
    eval_source = pipeline.as_source(held_out)  # image sizes read once, not per eval
    make_eval_iter = lambda: pipeline.nlvr2_pipeline(
        eval_source, tokenizer, eval_cfg, seed=config.seed, training=False,
        **common.process_shard())
    return base.TaskData(tokenizer, train_iter, {},
                         dict(make_iterator=make_eval_iter, examples=held_out,
                              identifiers=identifiers))

  def make_evaluators(self, data, context):
    return {"nlvr2": nlvr2_evaluator.Nlvr2Evaluator(context.jit(predict_fn), context,
                                                    **data.evaluation)}
