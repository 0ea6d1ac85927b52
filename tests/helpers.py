"""Small model configurations shared by the model tests: one per family, and
the in-process runner of the `tfladder` command."""
from absl import flags

import tfladder
from tfladder import cli

IMAGE_SHAPE = (28, 28, 1)

# family -> keyword arguments of a tiny but complete configuration,
# covering MLP and convolutional encoders/decoders.
SMALL_CONFIGS = {
    "vae": dict(latent_dims=[8], hidden_units=32),
    "hvae": dict(latent_dims=[8, 4], hidden_units=[32, 16], batch_norm=True),
    "lvae": dict(latent_dims=[8, 4, 2], hidden_units=[32, 16, 8], batch_norm=True),
    "vlae": dict(latent_dims=[2, 2, 2], hidden_units=32, conv_filters=[[8, 16], [], []]),
    "topdown": dict(latent_dims=[8, 4], hidden_units=32),
}

CONV_CONFIGS = {
    "vae": dict(latent_dims=[8], hidden_units=32, conv_filters=[8, 16]),
    "hvae": dict(latent_dims=[8, 4], hidden_units=32, conv_filters=[8]),
    "lvae": dict(latent_dims=[8, 4], hidden_units=32, conv_filters=[8, 16]),
    "vlae": dict(latent_dims=[2, 2], hidden_units=32, conv_filters=[[8], [16]]),
    "topdown": dict(latent_dims=[8, 4], hidden_units=32, conv_filters=[8, 16]),
}


def small_model(family, conv=False, **overrides):
    config = {**(CONV_CONFIGS if conv else SMALL_CONFIGS)[family], "seed": 1, **overrides}
    return tfladder.FAMILIES[family](IMAGE_SHAPE, **config)


def main_in_process(*argv):
    """Parses the flags like `app.run` (with the CLI's own flag parser) and calls
    `cli.main`; returns the exit code."""
    flags.FLAGS.unparse_flags()
    try:
        remaining = cli.parse_flags(["tfladder", *map(str, argv)])
        cli.main(remaining)
        return 0
    except SystemExit as exit_:
        return exit_.code
    finally:
        flags.FLAGS.unparse_flags()
