#!/bin/bash
# Downloads into .whl/ the wheels that benchmarks/accelerator.py needs beyond the lent
# device's image (Python 3.12 with jax, flax, optax, orbax-checkpoint, numpy, Pillow,
# sentencepiece and absl, but no grain, ml-collections or clu; .library/device/KINDS.md).
# The image has no network: the wheels travel with the command (`carry: [".whl"]`), and
# the device command begins:
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
#     --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:. &&
#   PYTHONUNBUFFERED=1 python3 benchmarks/accelerator.py --out=$OUT
#
# The versions are the ones setup.py's environment resolves here.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude || echo '/.whl/' >>.git/info/exclude
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
  manylinux2014_x86_64; do
  platforms+=(--platform "${p}")
done
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${platforms[@]}" -d .whl \
  grain==0.2.18 array-record==0.8.6 portpicker==1.6.0 clu==0.0.12 ml-collections==1.1.0
du -sh .whl
