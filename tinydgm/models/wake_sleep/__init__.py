"""Wake-sleep and reweighted wake-sleep: `model.py` (the Helmholtz machine: its densities, samplers and phases,
the layered-model interface every discrete estimator of `tinydgm.estimators` trains), `by_hand.py` (the delta rule),
`exact.py` (enumeration of small machines)."""
from tinydgm.models.wake_sleep.model import HelmholtzMachine, reweighted_step, wake_sleep_step

__all__ = ["HelmholtzMachine", "wake_sleep_step", "reweighted_step"]
