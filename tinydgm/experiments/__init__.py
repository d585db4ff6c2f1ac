"""The run layer, imported only by the command line: run folders and the training loop (`runs.py`), the
shared options (`options.py`), evaluation with shards (`evaluation.py`), and one command per algorithm
(`vae.py`, `wake_sleep.py`, `pos_hmm.py`)."""
