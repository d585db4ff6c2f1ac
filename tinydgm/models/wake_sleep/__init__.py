"""Wake-sleep and reweighted wake-sleep: `model.py` (the Helmholtz machine, the two phases, the steps),
`by_hand.py` (the delta rule), `exact.py` (enumeration of small machines), and `variational.py` (the same nets
trained on the ELBO or L_K by REINFORCE, NVIL, VIMCO, the relaxed Bernoulli and straight-through)."""
from tinydgm.models.wake_sleep.model import HelmholtzMachine, reweighted_step, wake_sleep_step
from tinydgm.models.wake_sleep.variational import (nvil_step, reinforce_step, relaxed_step, straight_through_step,
                                                   vimco_step)

__all__ = ["HelmholtzMachine", "wake_sleep_step", "reweighted_step", "reinforce_step", "nvil_step", "vimco_step",
           "relaxed_step", "straight_through_step"]
