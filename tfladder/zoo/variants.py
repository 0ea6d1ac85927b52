"""The zoo's registry as data: each named variant is a model family with its
constructor arguments, the dataset it trains on and its training recipe.

A low module of the zoo: plain dataclasses and dicts, nothing to run.
"""
import dataclasses

# Variants name datasets (the TFDS names), never places: a local copy is found
# through `--data FILE.npz`, `--data-dir DIR` or $TFLADDER_DATA_DIR (`tfladder.data`).
MNIST = "mnist"
OMNIGLOT = "omniglot"
SVHN = "svhn_cropped"
CELEBA = "celeb_a"
NON_COMMERCIAL = ("Non-commercial research use only: the weights inherit the licence of "
                  "the training data.")


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Which data a variant trains and is evaluated on (see `tfladder.data`).

    `source` names a dataset (`mnist`, `svhn_cropped`, ...), never a place;
    a trained folder also records the local copy it was read from, by file
    name and sha256 (`file`, `sha256`), when it was one.
    """
    source: str
    train_split: str = "train"
    test_split: str = "test"
    binarize: str | None = None
    file: str | None = None
    sha256: str | None = None


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a variant is trained."""
    epochs: int
    batch_size: int
    learning_rate: float = 1e-3
    warmup_epochs: float = 0.0      # KL warm-up, beta 0 -> 1 (LVAE section 2.3)
    seed: int = 0
    # Epochs of a second phase after `epochs` (VLAE with a likelihood head): the
    # generator frozen, the likelihood head, scales and inference rungs trained.
    likelihood_epochs: int = 0


@dataclasses.dataclass(frozen=True)
class Variant:
    """A named zoo entry: model + data + recipe (+ artifacts once trained)."""
    name: str
    family: str
    description: str
    model: dict
    data: DataSpec
    recipe: Recipe
    license: str = "MNIST: CC BY-SA 3.0. Weights: Apache-2.0."

    def to_json(self):
        return dataclasses.asdict(self)


_LVAE_MNIST = dict(image_shape=(28, 28, 1), latent_dims=[64, 32, 16, 8, 4],
                   hidden_units=[512, 256, 128, 64, 32], activation="leaky_relu",
                   batch_norm=True, observation="bernoulli")

# Two-phase colour VLAEs: the hierarchy forms with one scale per channel, then a
# likelihood head (per-pixel scales, coupled colour channels) trains with the
# generator frozen (`VariationalLadderAutoencoder.set_training_phase`).
_REFINED_LOGISTIC = {"name": "discretized_logistic", "pixel_scales": True,
                     "channel_coupling": True}

VARIANTS = {v.name: v for v in [
    Variant(
        name="vae_mnist", family="vae",
        description="One-layer Gaussian VAE (64 latents, MLP 512-512), the baseline.",
        model=dict(image_shape=(28, 28, 1), latent_dims=[64], hidden_units=512,
                   observation="bernoulli"),
        data=DataSpec(MNIST, binarize="dynamic"),
        recipe=Recipe(epochs=100, batch_size=256, warmup_epochs=10)),
    Variant(
        name="hvae_mnist", family="hvae",
        description="Stacked (Markov) hierarchical VAE, 3 layers 64-32-16, bottom-up inference.",
        model=dict(_LVAE_MNIST, latent_dims=[64, 32, 16], hidden_units=[512, 256, 128]),
        data=DataSpec(MNIST, binarize="dynamic"),
        # A third of lvae_mnist's 300 epochs (the CPU budget); compare it with
        # lvae_mnist's own test ELBO at epoch 100 (its history.csv) for equal budgets.
        recipe=Recipe(epochs=100, batch_size=256, warmup_epochs=10)),
    Variant(
        name="lvae_mnist", family="lvae",
        description="The Ladder VAE paper's MNIST model: 5 layers 64-32-16-8-4, MLPs "
                    "512/256/128/64/32, leaky ReLU, batch norm, warm-up.",
        model=_LVAE_MNIST,
        data=DataSpec(MNIST, binarize="dynamic"),
        # The paper warms up over the first 200 of 2000 epochs; scaled down
        # proportionally (10%) to the 300 epochs affordable on 2 CPU cores.
        recipe=Recipe(epochs=300, batch_size=256, warmup_epochs=30)),
    Variant(
        name="vlae_mnist", family="vlae",
        description="VLAE, 3 layers of 2-D latents; conv inference path (32-32 filters, "
                    "28 -> 14 -> 7) and dense ladder connections, Bernoulli likelihood; "
                    "trained progressively (top layer first, pro-VLAE).",
        model=dict(image_shape=(28, 28, 1), latent_dims=[2, 2, 2], hidden_units=256,
                   conv_filters=[[32, 32], [], []], observation="bernoulli",
                   # Without free bits the top (deepest) layer collapsed to KL ~ 0
                   # in a 20-epoch run; 1 nat per layer keeps every layer in use.
                   free_bits=1.0,
                   # Trained jointly, the shallow paths took digit identity and the
                   # top layer stroke width (the reverse of the paper). pro-VLAE's
                   # schedule: the top layer alone for 5 epochs (600 steps each),
                   # then each lower layer fades in over one epoch.
                   progressive_steps=3000, fade_in_steps=600),
        data=DataSpec(MNIST, binarize="dynamic"),
        recipe=Recipe(epochs=18, batch_size=100, warmup_epochs=2)),
    Variant(
        name="topdown_mnist", family="topdown",
        description="Top-down VAE with delta posteriors, 2 levels (16 latents at the "
                    "bottom, 8 at the top).",
        model=dict(image_shape=(28, 28, 1), latent_dims=[16, 8], hidden_units=[512, 256],
                   observation="bernoulli",
                   # NVAE's form: the deltas see r_l and the top-down state, and the
                   # KL is balanced across levels during warm-up. With the bottom-up
                   # form, and with the top-down context alone, the top level
                   # collapsed (KL < 0.01 nats; benchmarks/results/topdown_vs_lvae.md).
                   posterior_context="top_down", kl_balancing=True),
        data=DataSpec(MNIST, binarize="dynamic"),
        # 100 epochs, as vae_mnist (40 epochs left it 0.6 nats behind vae_mnist).
        recipe=Recipe(epochs=100, batch_size=256, warmup_epochs=10)),
    Variant(
        name="lvae_omniglot", family="lvae",
        description="The Ladder VAE paper's OMNIGLOT model (lvae_mnist's architecture: 5 "
                    "layers 64-32-16-8-4, MLPs 512/256/128/64/32, batch norm, warm-up) on "
                    "Lake's background (train) / evaluation (test) alphabets.",
        model=_LVAE_MNIST,
        data=DataSpec(OMNIGLOT, binarize="dynamic"),
        # The paper trains 1,500 epochs (warm-up 200); 100 epochs with a 20-epoch
        # warm-up is what the session that trained it could afford on 2 shared cores.
        recipe=Recipe(epochs=100, batch_size=256, warmup_epochs=20),
        license="OMNIGLOT: MIT. Weights: Apache-2.0."),
    Variant(
        name="vlae_svhn", family="vlae",
        description="VLAE, 4 layers of 4-D latents; conv rungs 32/64/128 (32 -> 16 -> 8 "
                    "-> 4), dense top rung, ladder features pooled to 4x4; spatial "
                    "generator (each conv latent enters the decoder at its rung's "
                    "resolution, the bottom one as a spatially constant map); discretized "
                    "logistic likelihood; the bottom and top layers train first, then "
                    "layer 3, then layer 2, with one learned scale per channel; then, "
                    "the generator frozen, a likelihood head adds per-pixel scales and "
                    "a coupling of the colour channels.",
        # Issue 12 (benchmarks/results/vlae_colour_recipes.md, try s4): the dense
        # generator and the per-pixel-scale mixture left the bottom layer with the
        # structure and the top unused; top-first progressive training gave the
        # colour to the top layer.
        # The likelihood head (second phase, issue 12): 6.20 -> 5.08 bits/dim (test
        # ELBO) in 7 epochs on the first phase's weights, the means unchanged.
        model=dict(image_shape=(32, 32, 3), latent_dims=[4, 4, 4, 4], hidden_units=256,
                   conv_filters=[[32], [64], [128], []], ladder_resolution=4,
                   observation=_REFINED_LOGISTIC, free_bits=1.0,
                   generator="spatial", broadcast_latents=1,
                   progressive_stages=[0, 2, 1, 0], progressive_steps=180,
                   fade_in_steps=90),
        data=DataSpec(SVHN),
        recipe=Recipe(epochs=60, batch_size=100, warmup_epochs=3, likelihood_epochs=20),
        license=f"SVHN: non-commercial use only. {NON_COMMERCIAL}"),
    Variant(
        name="vlae_celeba", family="vlae",
        description="VLAE, 4 layers of 8-D latents at 64x64; conv rungs 16-32/64/128 "
                    "(64 -> 16 -> 8 -> 4), dense top rung, ladder features pooled to "
                    "4x4; spatial generator (the bottom latent as a spatially constant "
                    "map); discretized logistic likelihood; the bottom and top layers "
                    "train first, then layer 3, then layer 2, with one learned scale per "
                    "channel; then, the generator frozen, a likelihood head adds "
                    "per-pixel scales and a coupling of the colour channels.",
        # Issue 12 (benchmarks/results/vlae_colour_recipes.md, try c4).
        model=dict(image_shape=(64, 64, 3), latent_dims=[8, 8, 8, 8], hidden_units=256,
                   conv_filters=[[16, 32], [64], [128], []], ladder_resolution=4,
                   observation=_REFINED_LOGISTIC, free_bits=1.0,
                   generator="spatial", broadcast_latents=1,
                   progressive_stages=[0, 2, 1, 0], progressive_steps=180,
                   fade_in_steps=90),
        data=DataSpec(CELEBA),
        # 30 epochs: the CPU budget of the session that trained it.
        recipe=Recipe(epochs=30, batch_size=100, warmup_epochs=2, likelihood_epochs=10),
        license=f"CelebA: non-commercial research use only. {NON_COMMERCIAL}"),
]}
