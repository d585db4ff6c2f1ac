"""The variational autoencoder: `model.py` (densities, ELBO, IWAE bound, score-function ELBO), `by_hand.py` (its gradient by hand)."""
from tinydgm.models.vae.model import VAE

__all__ = ["VAE"]
