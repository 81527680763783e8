"""A trained run, rebuilt for inference: its config, tokenizer, answers, model, weights.

`load_run(path)` takes what a training run left behind, without reading any of its
training data: `WORKDIR/config.json` (the config the run was started with),
`WORKDIR/checkpoints/<step>/state` (its weights, read by `weights.from_run`), the
tokenizer the run copied into `WORKDIR/tokenizer/` (or the one its config names) and
what its task needs besides (`Task.run_meta`, e.g. VQA's `answer_vocab.json`). `path`
may be the workdir, its checkpoints folder or one step folder
(`WORKDIR/checkpoints/12`). The task builds the model, as in training.
"""

import dataclasses
import json

import jax
import ml_collections
from etils import epath
from flax import nnx

from pixelbert_jax.data import tokenizer as tokenizer_lib
from pixelbert_jax.data.synthetic import cache
from pixelbert_jax.tasks import base as tasks
from pixelbert_jax.tasks import common
from pixelbert_jax.weights import from_run, init_checkpoint

CONFIG_FILE = "config.json"
# Fields of older runs' configs that are no longer read: `model.vocab_size` (the
# tokenizer fixes the vocabulary).
_RETIRED_MODEL_FIELDS = ("vocab_size",)
# Data fields that older runs' configs (before 2026-11-30) held as comma-separated
# strings and that are lists now.
_LISTED_DATA_FIELDS = ("train_splits", "train_file", "eval_file", *(
    f"{split}_{kind}" for split in ("train", "eval")
    for kind in ("questions", "annotations", "images")))
# How far above `path` config.json may be: a step folder is WORKDIR/checkpoints/<step>.
_MAX_LEVELS_UP = 2


@dataclasses.dataclass
class Run:
  """Everything inference needs from one trained run."""
  workdir: epath.Path
  checkpoint: epath.Path  # the `state` folder the weights came from
  config: ml_collections.ConfigDict
  task: tasks.Task
  tokenizer: tokenizer_lib.Tokenizer
  meta: dict  # what the task read from the workdir (`Task.run_meta`)
  model: nnx.Module  # in evaluation mode (no dropout)


def find_workdir(path: str | epath.PathLike) -> epath.Path:
  """The run's workdir: `path` or the nearest folder above it holding config.json."""
  path = epath.Path(path)
  if not path.exists():
    raise FileNotFoundError(f"No such workdir or checkpoint: {path}")
  folder = path
  for _ in range(_MAX_LEVELS_UP + 1):
    if (folder / CONFIG_FILE).exists():
      return folder
    folder = folder.parent
  raise FileNotFoundError(
      f"{path}: no {CONFIG_FILE} in it or up to {_MAX_LEVELS_UP} folders above; expected "
      "a training workdir, its checkpoints folder or one step folder")


def read_config(workdir: epath.Path) -> ml_collections.ConfigDict:
  """The config the run was started with (JSON turns tuples into lists; the code that
  reads the fields converts them back), in today's form: retired fields dropped and
  comma-separated path lists split (a stated migration of older runs' configs)."""
  fields = json.loads((workdir / CONFIG_FILE).read_text())
  model, data = fields.get("model", {}), fields.get("data", {})
  for name in _RETIRED_MODEL_FIELDS:
    model.pop(name, None)
  for name in _LISTED_DATA_FIELDS:
    if isinstance(data.get(name), str):
      data[name] = [p.strip() for p in data[name].split(",") if p.strip()]
  return ml_collections.ConfigDict(fields)


def make_tokenizer(config, workdir: epath.Path,
                   spec: str | None = None) -> tokenizer_lib.Tokenizer:
  """The run's tokenizer: `spec` if given, else the run's own copy in its workdir,
  else what the config names, else the synthetic world's vocabulary (which must still
  be where the run generated it; runs from before the copy existed need this)."""
  if spec:
    return tokenizer_lib.from_config(spec)
  saved = tokenizer_lib.load_copy(workdir / common.TOKENIZER_DIR)
  if saved is not None:
    return saved
  data_cfg = config.data
  if data_cfg.tokenizer or data_cfg.kind != "synthetic":
    return common.make_tokenizer(data_cfg, None)
  # Runs from before the copy kept their world in the data root or the workdir.
  root = epath.Path(data_cfg.root or workdir / "synthetic_world")
  if not (root / cache.WORLD_MARKER).exists():
    # Regenerating the whole world just for its vocabulary would be a surprise.
    raise FileNotFoundError(
        f"The run was trained on the synthetic world at {root}, which is gone; its "
        "vocabulary is needed. Regenerate it there or pass the tokenizer explicitly "
        "(e.g. wordpiece:/path/vocab.txt)")
  return common.make_tokenizer(data_cfg, cache.read_marker(root))


def build_model(task: tasks.Task, vocab_size: int, meta: dict) -> nnx.Module:
  """The task's model, abstract: shapes only, no initialisation (the checkpoint
  provides every weight, and initialising a big model would cost seconds)."""
  model_config = task.model_config(vocab_size)
  model = nnx.eval_shape(lambda: task.make_model(model_config, meta,
                                                 rngs=nnx.Rngs(params=0, dropout=1)))
  # The dropout streams are not weights: give them real keys (unused in eval mode).
  nnx.reseed(model, dropout=1)
  return model


def checkpoint_dir(path: epath.Path, workdir: epath.Path) -> epath.Path:
  """The `state` folder of `path` (a step folder) or of the workdir's latest step."""
  try:
    return from_run.state_dir(path)
  except FileNotFoundError:
    raise FileNotFoundError(
        f"{path}: no checkpoint found (expected {workdir}/checkpoints/<step>/state)"
    ) from None


def load_weights(model: nnx.Module, state: epath.Path) -> None:
  """Copies every top-level module's weights from the checkpoint, checking each fits."""
  names = sorted({path[0] for path, _ in nnx.to_flat_state(
      nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat)))})
  # A step folder (the parent of `state`) is one of the names `from_run` accepts.
  from_run.load(state.parent, {name: getattr(model, name) for name in names})
  unset = [path for path, leaf in jax.tree_util.tree_flatten_with_path(nnx.state(model))[0]
           if isinstance(leaf, jax.ShapeDtypeStruct)]
  if unset:
    raise init_checkpoint.WeightMismatchError(
        f"{state} left {len(unset)} variables unset, e.g. {jax.tree_util.keystr(unset[0])}")


def load_run(path: str | epath.PathLike, tokenizer: str | None = None) -> Run:
  """Rebuilds the run at `path` (workdir, checkpoints folder or step folder).

  Args:
    path: where the run is.
    tokenizer: a tokenizer spec (`tokenizer.from_config`) replacing the config's.

  Raises:
    FileNotFoundError: naming what is missing (the path, config.json, a checkpoint,
      a file the task needs, e.g. the answer vocabulary, or the synthetic world's
      vocabulary).
  """
  path = epath.Path(path)
  workdir = find_workdir(path)
  config = read_config(workdir)
  task = tasks.get(config)
  state = checkpoint_dir(path, workdir)
  tokens = make_tokenizer(config, workdir, tokenizer)
  meta = task.run_meta(workdir)
  model = build_model(task, tokens.vocab_size, meta)
  load_weights(model, state)
  model.eval()
  return Run(workdir, state, config, task, tokens, meta, model)
