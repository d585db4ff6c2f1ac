"""The mathematics of the lecture's three algorithms, one folder each: `vae`, `wake_sleep`, `loglinear`."""
