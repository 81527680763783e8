"""The package's import graph: no cycles, no layer importing a layer above it.

The layers are those of docs/ARCHITECTURE.md. Imports are read from the source with
`ast`, functions' local imports included, so a lazy import cannot hide an upward one.
"""

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "pixelbert_jax"
# docs/ARCHITECTURE.md, "Layers": the first matching prefix gives a module's layer.
LAYERS = (
    (0, ("metrics", "models", "sharding", "flops", "distributed")),
    (1, ("data", "weights", "optim", "train_state", "train_step", "checkpointing",
         "prefetch", "progress", "run_config", "workdir_lock")),
    (2, ("evaluators",)),
    (3, ("tasks",)),
    (4, ("train", "inference", "export", "predict", "attention_maps", "main", "tools",
         "console", "preflight", "compile_cache")),
)


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path, modules=()) -> set[str]:
  """The package modules a file imports (absolute imports; the package uses no others).

  `from package import name` counts as importing the submodule `package.name` where
  there is one (a sibling's package `__init__` is no dependency), else `package`.
  """
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found |= {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module:
      for alias in node.names:
        submodule = f"{node.module}.{alias.name}"
        found.add(submodule if submodule in modules else node.module)
  return {name for name in found if name.startswith("pixelbert_jax.")}


def _graph() -> dict[str, set[str]]:
  modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
  return {name: {m for m in _imports(path, modules) if m in modules and m != name}
          for name, path in modules.items()}


def layer(module: str) -> int:
  top = module.split(".")[1] if "." in module else ""
  for number, prefixes in LAYERS:
    if top in prefixes:
      return number
  raise AssertionError(f"{module} is in no layer of docs/ARCHITECTURE.md")


def test_every_module_has_a_layer():
  for module in _graph():
    if module != "pixelbert_jax":
      layer(module)


def test_no_module_imports_a_layer_above_it():
  upward = [f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
            for module, targets in _graph().items() if module != "pixelbert_jax"
            for target in targets if layer(target) > layer(module)]
  assert not upward, "\n".join(upward)


def test_the_import_graph_has_no_cycle():
  graph = _graph()
  state, stack = {}, []

  def visit(module):
    state[module] = "open"
    stack.append(module)
    for target in sorted(graph[module]):
      if state.get(target) == "open":
        cycle = stack[stack.index(target):] + [target]
        pytest.fail("import cycle: " + " -> ".join(cycle))
      if target not in state:
        visit(target)
    stack.pop()
    state[module] = "done"

  for module in sorted(graph):
    if module not in state:
      visit(module)


def test_the_checker_sees_an_upward_import(tmp_path):
  # A data module importing the trainer would be reported (the walk is not vacuous).
  source = tmp_path / "bad.py"
  source.write_text("def f():\n  from pixelbert_jax import train\n")
  assert "pixelbert_jax.train" in _imports(source, _graph())
  assert layer("pixelbert_jax.train") > layer("pixelbert_jax.data.pipeline")


def test_the_trainer_builds_without_tensorflow():
  # clu's writers import TensorFlow; `train.build` / `build_step` must not, so that
  # benchmarks and an accelerator image without it can use them (and PyTorch's triton,
  # which crashes when loaded after TensorFlow, can sit beside them).
  code = ("import sys; import pixelbert_jax.train, pixelbert_jax.tasks.pretrain; "
          "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'")
  subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
