"""Feature-rich log-linear models trained with EM (Berg-Kirkpatrick et al. 2010): `model.py` (the log-linear
categorical, the feature-rich mixture and the featurized HMM, on arrays and on the engine), `by_hand.py` (their
gradients by hand: observed minus expected features, the M-step, the direct gradient), `mixture.py` (EM for the
mixture), `hmm.py` (forward-backward, EM and the direct gradient for the HMM), `features.py` (word feature
templates), `lbfgs.py` (the L-BFGS that direct training resumes)."""
from tinydgm.models.loglinear.model import HMM, Mixture

__all__ = ["HMM", "Mixture"]
