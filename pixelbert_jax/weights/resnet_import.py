"""torchvision / timm ResNet and ResNeXt state dicts -> our backbone's parameter names.

Both libraries name layers the same way (conv1, bn1, layerN.M.convK, downsample.0/1).
"""

import numpy as np

from pixelbert_jax.weights.renaming import conv_kernel, identity, rename

_BN = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
_BN_FIELD = "(weight|bias|running_mean|running_var)"


def _block(match, *rest: str) -> str:
  return f"stages.{int(match[1]) - 1}.layers.{match[2]}." + ".".join(rest)


RULES = (
    (r"conv1\.weight", "stem_conv.kernel", conv_kernel),
    (rf"bn1\.{_BN_FIELD}", lambda m: f"stem_norm.{_BN[m[1]]}", identity),
    (r"layer(\d+)\.(\d+)\.conv(\d)\.weight",
     lambda m: _block(m, "convs", str(int(m[3]) - 1), "kernel"), conv_kernel),
    (rf"layer(\d+)\.(\d+)\.bn(\d)\.{_BN_FIELD}",
     lambda m: _block(m, "norms", str(int(m[3]) - 1), _BN[m[4]]), identity),
    (r"layer(\d+)\.(\d+)\.downsample\.0\.weight",
     lambda m: _block(m, "downsample.layers.0.kernel"), conv_kernel),
    (rf"layer(\d+)\.(\d+)\.downsample\.1\.{_BN_FIELD}",
     lambda m: _block(m, "downsample.layers.1", _BN[m[3]]), identity),
)
IGNORED = (r".*num_batches_tracked",)


def convert_resnet(state_dict: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray],
                                                               list[str]]:
  """Returns the backbone's weights under our names and the unused source names (fc.*)."""
  return rename(state_dict, RULES, IGNORED)
