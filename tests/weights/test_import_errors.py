"""The importer's errors name the offending keys; safetensors needs no torch."""

import json
import subprocess
import sys

import numpy as np
import pytest
import safetensors.numpy
from flax import nnx

from pixelbert_jax.models import resnet, variants
from pixelbert_jax.tools import import_weights
from pixelbert_jax.weights import init_checkpoint
from pixelbert_jax.weights.state_dicts import read_state_dict


def _tiny_resnet_state_dict() -> dict[str, np.ndarray]:
  """A torchvision-named state dict for the tiny backbone, made from our own weights."""
  model = resnet.ResNet(variants.BACKBONES["tiny"], rngs=nnx.Rngs(0))
  names = {"stem_conv.kernel": "conv1.weight", "stem_norm.scale": "bn1.weight"}
  out = {}
  for ours, variable in init_checkpoint.flat_variables(model).items():
    value = np.asarray(variable[...])
    if ours in names:
      out[names[ours]] = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value
  return out


def test_shape_mismatch_and_missing_keys_are_named(tmp_path):
  state = _tiny_resnet_state_dict()
  state["conv1.weight"] = state["conv1.weight"][:8]
  safetensors.numpy.save_file(state, str(tmp_path / "bad.safetensors"))
  with pytest.raises(init_checkpoint.WeightMismatchError) as error:
    import_weights.run(str(tmp_path / "bad.safetensors"), "tiny", None, str(tmp_path / "out"))
  message = str(error.value)
  assert "stem_conv.kernel: file (7, 7, 3, 8) vs model (7, 7, 3, 16)" in message
  assert "missing" in message and "stages.0.layers.0.convs.0.kernel" in message
  assert not (tmp_path / "out").exists()


def test_unexpected_keys_in_a_checkpoint_are_an_error():
  model = resnet.ResNet(variants.BACKBONES["tiny"], rngs=nnx.Rngs(0))
  weights = {k: np.asarray(v[...]) for k, v in init_checkpoint.flat_variables(model).items()}
  weights["stages.9.extra"] = np.zeros(3)
  with pytest.raises(init_checkpoint.WeightMismatchError, match="unexpected.*stages.9.extra"):
    init_checkpoint.assign(model, weights, "backbone")


def test_unsupported_and_missing_files(tmp_path):
  (tmp_path / "w.npz").write_bytes(b"")
  with pytest.raises(ValueError, match="Unsupported weight file"):
    read_state_dict(tmp_path / "w.npz")
  with pytest.raises(FileNotFoundError):
    read_state_dict(tmp_path / "absent.pth")
  with pytest.raises(FileNotFoundError, match="config.json|model.safetensors"):
    import_weights.run(None, "resnet50", str(tmp_path), str(tmp_path / "out"))


def test_refuses_to_overwrite(tmp_path):
  model = resnet.ResNet(variants.BACKBONES["tiny"], rngs=nnx.Rngs(0))
  weights = {k: np.asarray(v[...]) for k, v in init_checkpoint.flat_variables(model).items()}
  init_checkpoint.save(tmp_path / "ckpt", {"backbone": weights}, {})
  with pytest.raises(FileExistsError):
    init_checkpoint.save(tmp_path / "ckpt", {"backbone": weights}, {})


def test_cli_reads_safetensors_without_torch(tmp_path):
  """Runs the real CLI in a process where importing torch fails."""
  import safetensors.torch
  import torchvision
  reference = torchvision.models.resnet18(weights=None).state_dict()
  safetensors.torch.save_file(reference, str(tmp_path / "r18.safetensors"))
  code = ("import sys; sys.modules['torch'] = None; "
          "from pixelbert_jax.tools import import_weights as m; "
          "from absl import app; app.run(m.main)")
  result = subprocess.run(
      [sys.executable, "-c", code, f"--resnet={tmp_path / 'r18.safetensors'}",
       "--resnet_arch=resnet18", f"--out={tmp_path / 'out'}"],
      capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  info = json.loads(result.stdout[result.stdout.index("{"):])
  assert info["components"] == ["backbone"] and info["backbone"] == "resnet18"
  assert "Unused keys from resnet (2): fc.bias, fc.weight" in result.stderr
  components, _ = init_checkpoint.load(tmp_path / "out")
  np.testing.assert_array_equal(components["backbone"]["stem_conv.kernel"],
                                reference["conv1.weight"].numpy().transpose(2, 3, 1, 0))
