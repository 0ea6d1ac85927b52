"""tfladder: hierarchical variational autoencoders in Keras 3.

Families: `VAE`, `HierarchicalVAE` (stacked), `LadderVAE` (Sonderby et al.
2016), `VariationalLadderAutoencoder` (Zhao et al. 2017) and `TopDownVAE`
(NVAE-style delta posteriors). Importing the package registers every layer
and model for Keras serialization under the "tfladder" package;
`tfladder.load_keras(path)` loads a `.keras` file in Keras safe mode.
"""
from tfladder import quiet as _quiet

_quiet.silence_native_logs()   # only when this process is the `tfladder` command

from tfladder import (callbacks, data, distribute, evaluation, export,  # noqa: E402
                      figures, gaussian, keras_files, layers, models, training, zoo)
from tfladder.models import (FAMILIES, VAE, HierarchicalModel, HierarchicalVAE, LadderVAE,
                             TopDownVAE, VariationalLadderAutoencoder)
from tfladder.keras_files import load_keras

__version__ = "0.1.0"

VLAE = VariationalLadderAutoencoder
LVAE = LadderVAE
HVAE = HierarchicalVAE
