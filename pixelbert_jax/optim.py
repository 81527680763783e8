"""Optimisers by parameter group: SGD for the CNN, AdamW for the Transformer (the paper).

Groups are chosen by regexes over parameter paths ("pixel_encoder/backbone/stages/0/...")
in config. Where several match, a `frozen` group wins and a catch-all (`.*`) loses;
any other overlap is an error, so the outcome never depends on the groups' order
(ml_collections lists keys sorted, not as written). A frozen group gets no updates.
Schedules count optimiser updates (never micro-batches), so gradient accumulation leaves
the recipe's epochs-based decay points where the paper put them.

Gradients are clipped by their global norm before the groups' optimisers. A group with
`clip_separately` is left out of that norm and clipped by its own: an auxiliary part
trained beside the recipe (retrieval's first stage) then cannot shrink the recipe's
updates. A frozen group's parameters are not differentiated at all (`frozen_mask`, read
by the train step): their gradients are zeros, so they count in no norm.
"""

import re
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

Schedule = Callable[[jax.Array], jax.Array]


def path_name(path) -> str:
  """A tree path as "a/b/0/c"."""
  parts = []
  for key in path:
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
  return "/".join(p for p in parts if p != "value")


CATCH_ALL = ".*"


def _rank(spec: Mapping) -> int:
  """Which of several matching groups takes a parameter: lowest rank first."""
  if spec["optimizer"] == "frozen":
    return 0
  return 2 if spec["pattern"] == CATCH_ALL else 1


def param_labels(params, groups: Mapping[str, Mapping]) -> object:
  """Each parameter's group: the matching group of lowest `_rank`; ties are an error."""
  unmatched, ambiguous = [], []

  def label(path, _):
    name = path_name(path)
    matches = sorted((_rank(spec), g) for g, spec in groups.items()
                     if re.search(spec["pattern"], name))
    if not matches:
      unmatched.append(name)
      return "unmatched"
    if len(matches) > 1 and matches[0][0] == matches[1][0]:
      ambiguous.append(f"{name} ({', '.join(g for _, g in matches)})")
    return matches[0][1]

  labels = jax.tree_util.tree_map_with_path(label, params)
  if unmatched:
    raise ValueError(f"Parameters match no optimizer group: {unmatched[:10]}")
  if ambiguous:
    raise ValueError("Parameters match several optimizer groups; make their patterns "
                     f"disjoint: {ambiguous[:10]}")
  return labels


def frozen_mask(config, params) -> object:
  """True for each parameter of a `frozen` group (a tree shaped like `params`)."""
  groups = {name: dict(spec) for name, spec in config.optimizer.groups.items()}
  labels = param_labels(params, groups)
  return jax.tree.map(lambda label: groups[label]["optimizer"] == "frozen", labels)


def make_schedule(lr: float, total_steps: int, warmup_steps: int, kind: str,
                  decay_fractions=(), decay_factor: float = 0.1) -> Schedule:
  """Linear warm-up, then "step" (x factor at fractions of training), "linear" or "constant"."""
  warmup = optax.linear_schedule(0.0, lr, max(warmup_steps, 1))
  if kind == "step":
    boundaries = {int(f * total_steps) - warmup_steps: decay_factor for f in decay_fractions}
    after = optax.piecewise_constant_schedule(lr, boundaries)
  elif kind == "linear":
    after = optax.linear_schedule(lr, 0.0, max(total_steps - warmup_steps, 1))
  elif kind == "constant":
    after = optax.constant_schedule(lr)
  else:
    raise ValueError(f"Unknown schedule {kind!r}: use step, linear or constant")
  if warmup_steps <= 0:
    return after
  return optax.join_schedules([warmup, after], [warmup_steps])


def _decay_mask(no_decay: str):
  """A mask function (applied to each group's own sub-tree): decay all but `no_decay`."""
  return lambda params: jax.tree_util.tree_map_with_path(
      lambda path, _: not re.search(no_decay, path_name(path)), params)


def _group_transform(spec: Mapping, schedule: Schedule, mask) -> optax.GradientTransformation:
  kind = spec["optimizer"]
  if kind == "frozen":
    return optax.set_to_zero()
  if spec.get("clip_separately"):
    own_clip = optax.clip_by_global_norm(spec["clip_separately"])
    return optax.chain(own_clip, _group_transform(dict(spec, clip_separately=0),
                                                  schedule, mask))
  if kind == "sgd":
    # PyTorch's SGD adds weight decay to the gradient before momentum; so do we.
    return optax.chain(optax.add_decayed_weights(spec["weight_decay"], mask),
                       optax.sgd(schedule, momentum=spec.get("momentum", 0.9)))
  if kind == "adamw":
    return optax.adamw(schedule, b1=spec.get("b1", 0.9), b2=spec.get("b2", 0.999),
                       eps=spec.get("eps", 1e-8), weight_decay=spec["weight_decay"],
                       mask=mask)
  raise ValueError(f"Unknown optimizer {kind!r}: use sgd, adamw or frozen")


def make_optimizer(config, params, total_steps: int
                   ) -> tuple[optax.GradientTransformation, dict[str, Schedule]]:
  """The full transform (clipping, then per-group optimisers) and each group's schedule."""
  opt = config.optimizer
  groups = {name: dict(spec) for name, spec in opt.groups.items()}
  warmup = int(opt.warmup_fraction * total_steps) if opt.warmup_steps < 0 else opt.warmup_steps
  schedules = {name: make_schedule(spec.get("lr", 0.0), total_steps, warmup, opt.schedule,
                                   tuple(opt.decay_fractions), opt.decay_factor)
               for name, spec in groups.items()}
  mask = _decay_mask(opt.no_decay_pattern)
  transforms = {name: _group_transform(spec, schedules[name], mask)
                for name, spec in groups.items()}
  labels = param_labels(params, groups)
  tx = optax.multi_transform(transforms, labels)
  if opt.clip_grad_norm > 0:
    clip = optax.clip_by_global_norm(opt.clip_grad_norm)
    apart = {name for name, spec in groups.items() if spec.get("clip_separately")}
    if apart:
      clip = optax.masked(clip, jax.tree.map(lambda label: label not in apart, labels))
    tx = optax.chain(clip, tx)
  return tx, {n: s for n, s in schedules.items() if groups[n]["optimizer"] != "frozen"}


def learning_rates(schedules: Mapping[str, Schedule], step: jax.Array) -> dict:
  """Each group's learning rate at `step`, for the measurements dict."""
  return {f"lr_{name}": jnp.asarray(s(step), jnp.float32) for name, s in schedules.items()}
