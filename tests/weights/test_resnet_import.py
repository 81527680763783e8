"""torchvision ResNet / ResNeXt -> our backbone, through the import tool and its checkpoint."""

import numpy as np
import pytest
import torch
import torchvision
from flax import nnx

from pixelbert_jax.models import resnet, variants
from pixelbert_jax.tools import import_weights
from pixelbert_jax.weights import init_checkpoint


def _random_torchvision(arch: str) -> torch.nn.Module:
  """Random weights and random batch-norm statistics, in eval mode."""
  torch.manual_seed(0)
  model = getattr(torchvision.models, arch)(weights=None)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.running_mean.uniform_(-0.5, 0.5)
        module.running_var.uniform_(0.5, 2.0)
        module.weight.uniform_(0.5, 1.5)
        module.bias.uniform_(-0.2, 0.2)
  return model.eval()


def _save(model: torch.nn.Module, path) -> None:
  if path.suffix == ".safetensors":
    import safetensors.torch
    safetensors.torch.save_file(model.state_dict(), str(path))
  else:
    torch.save(model.state_dict(), path)


@pytest.mark.parametrize("arch,suffix", [("resnet50", ".pth"),
                                         ("resnext50_32x4d", ".safetensors")])
def test_feature_maps_match_torchvision(tmp_path, arch, suffix):
  reference = _random_torchvision(arch)
  _save(reference, tmp_path / f"weights{suffix}")
  info = import_weights.run(str(tmp_path / f"weights{suffix}"), arch, None,
                            str(tmp_path / "init"))
  assert info["unused"]["resnet"] == ["fc.bias", "fc.weight"]

  components, _ = init_checkpoint.load(tmp_path / "init")
  ours = resnet.ResNet(variants.BACKBONES[arch], rngs=nnx.Rngs(1))
  init_checkpoint.assign(ours, components["backbone"], "backbone")

  images = np.random.default_rng(0).normal(size=(2, 3, 97, 131)).astype(np.float32)
  with torch.no_grad():
    body = torch.nn.Sequential(*list(reference.children())[:-2])
    expected = body(torch.from_numpy(images)).numpy().transpose(0, 2, 3, 1)
  actual = np.asarray(ours(images.transpose(0, 2, 3, 1)))
  assert actual.shape == expected.shape == (2, 4, 5, 2048)
  assert np.linalg.norm(actual - expected) / np.linalg.norm(expected) <= 1e-4
