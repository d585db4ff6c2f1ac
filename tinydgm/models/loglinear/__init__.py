"""Feature-rich log-linear models trained with EM (Berg-Kirkpatrick et al. 2010): `categorical.py` (the
log-linear p(x|z, w)), `by_hand.py` (its M-step gradient, observed minus expected features), `mixture.py`
(the slides' mixture), `hmm.py` (the featurized HMM, EM and the direct gradient), `features.py`
(word feature templates), `lbfgs.py` (the L-BFGS that direct training resumes)."""
