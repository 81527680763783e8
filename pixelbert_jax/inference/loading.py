"""A trained run, rebuilt for inference: its config, tokenizer, answers, model, weights.

`load_run(path)` takes what a training run left behind, without reading any of its
training data: `WORKDIR/config.json` (the config the run was started with),
`WORKDIR/checkpoints/<step>/state` (its weights, read by `tasks.init_from`), the
tokenizer the run copied into `WORKDIR/tokenizer/` (or the one its config names) and,
for VQA, `WORKDIR/answer_vocab.json`. `path` may be the workdir, its checkpoints
folder or one step folder (`WORKDIR/checkpoints/12`).
"""

import dataclasses
import json

import jax
import ml_collections
from etils import epath
from flax import nnx

from pixelbert_jax.data import answers as answers_lib
from pixelbert_jax.data import tokenizer as tokenizer_lib
from pixelbert_jax.tasks import init_from, pretrain_data, registry
from pixelbert_jax.weights import init_checkpoint

CONFIG_FILE = "config.json"
VOCAB_FILE = "answer_vocab.json"  # as `tasks.vqa_setup` writes it
# How far above `path` config.json may be: a step folder is WORKDIR/checkpoints/<step>.
_MAX_LEVELS_UP = 2


@dataclasses.dataclass
class Run:
  """Everything inference needs from one trained run."""
  workdir: epath.Path
  checkpoint: epath.Path  # the `state` folder the weights came from
  config: ml_collections.ConfigDict
  tokenizer: tokenizer_lib.Tokenizer
  answer_vocab: answers_lib.AnswerVocab | None
  model: nnx.Module  # in evaluation mode (no dropout)

  @property
  def task(self) -> str:
    return self.config.task


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
  reads the fields converts them back)."""
  return ml_collections.ConfigDict(json.loads((workdir / CONFIG_FILE).read_text()))


def make_tokenizer(config, workdir: epath.Path,
                   spec: str | None = None) -> tokenizer_lib.Tokenizer:
  """The run's tokenizer: `spec` if given, else the run's own copy in its workdir,
  else what the config names, else the synthetic world's vocabulary (which must still
  be where the run generated it; runs from before the copy existed need this)."""
  if spec:
    return tokenizer_lib.from_config(spec)
  saved = tokenizer_lib.load_copy(workdir / pretrain_data.TOKENIZER_DIR)
  if saved is not None:
    return saved
  data_cfg = config.data
  if data_cfg.tokenizer or data_cfg.kind != "synthetic":
    return pretrain_data.make_tokenizer(data_cfg, None)
  root = pretrain_data.world_root(data_cfg, str(workdir))
  if not (root / pretrain_data.WORLD_MARKER).exists():
    # Regenerating the whole world just for its vocabulary would be a surprise.
    raise FileNotFoundError(
        f"The run was trained on the synthetic world at {root}, which is gone; its "
        "vocabulary is needed. Regenerate it there or pass the tokenizer explicitly "
        "(e.g. wordpiece:/path/vocab.txt)")
  return pretrain_data.make_tokenizer(data_cfg,
                                      pretrain_data.synthetic_world(data_cfg, str(workdir)))


def read_answer_vocab(workdir: epath.Path) -> answers_lib.AnswerVocab:
  path = workdir / VOCAB_FILE
  if not path.exists():
    raise FileNotFoundError(f"{path} is missing: a VQA run writes its answer list there")
  return answers_lib.AnswerVocab.load(path)


def build_model(config, vocab_size: int, num_answers: int | None) -> nnx.Module:
  """The task's model, abstract: shapes only, no initialisation (the checkpoint
  provides every weight, and initialising a big model would cost seconds)."""
  # Imported here so that each task's model code loads only when it is used.
  from pixelbert_jax.tasks import nlvr2, pretrain, retrieval, vqa  # pylint: disable=g-import-not-at-top
  model_config = registry.model_config(config, vocab_size)
  first_stage = config.get("first_stage") or {}  # absent in runs from before it
  builders = {
      "pretrain": lambda rngs: pretrain.PretrainModel(model_config, rngs=rngs),
      "vqa": lambda rngs: vqa.VqaModel(model_config, num_answers, rngs=rngs),
      "nlvr2": lambda rngs: nlvr2.Nlvr2Model(model_config, rngs=rngs),
      "retrieval": lambda rngs: retrieval.RetrievalModel(
          model_config, rngs=rngs, first_stage_dim=first_stage.get("dim")),
  }
  if config.task not in builders:
    raise ValueError(f"Unknown task {config.task!r} in the run's config")
  model = nnx.eval_shape(lambda: builders[config.task](nnx.Rngs(params=0, dropout=1)))
  # The dropout streams are not weights: give them real keys (unused in eval mode).
  nnx.reseed(model, dropout=1)
  return model


def checkpoint_dir(path: epath.Path, workdir: epath.Path) -> epath.Path:
  """The `state` folder of `path` (a step folder) or of the workdir's latest step."""
  try:
    return init_from.state_dir(path)
  except FileNotFoundError:
    raise FileNotFoundError(
        f"{path}: no checkpoint found (expected {workdir}/checkpoints/<step>/state)"
    ) from None


def load_weights(model: nnx.Module, state: epath.Path) -> None:
  """Copies every top-level module's weights from the checkpoint, checking each fits."""
  names = sorted({path[0] for path, _ in nnx.to_flat_state(
      nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat)))})
  # A step folder (the parent of `state`) is one of the names `init_from` accepts.
  init_from.load(state.parent, {name: getattr(model, name) for name in names})
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
      the answer vocabulary or the synthetic world's vocabulary).
  """
  path = epath.Path(path)
  workdir = find_workdir(path)
  config = read_config(workdir)
  state = checkpoint_dir(path, workdir)
  tokens = make_tokenizer(config, workdir, tokenizer)
  answer_vocab = read_answer_vocab(workdir) if config.task == "vqa" else None
  model = build_model(config, tokens.vocab_size,
                      len(answer_vocab) if answer_vocab else None)
  load_weights(model, state)
  model.eval()
  return Run(workdir, state, config, tokens, answer_vocab, model)
