"""The five tfladder families, one module each, sharing `HierarchicalModel`."""
from tfladder.models.base import ElboTerms, HierarchicalModel, InferencePass, LayerTerms
from tfladder.models.hvae import HierarchicalVAE
from tfladder.models.lvae import LadderVAE
from tfladder.models.topdown import TopDownVAE
from tfladder.models.vae import VAE
from tfladder.models.vlae import VariationalLadderAutoencoder

# Family name -> class: the registry the zoo and the CLI look models up in.
FAMILIES = {
    "vae": VAE,
    "hvae": HierarchicalVAE,
    "lvae": LadderVAE,
    "vlae": VariationalLadderAutoencoder,
    "topdown": TopDownVAE,
}
