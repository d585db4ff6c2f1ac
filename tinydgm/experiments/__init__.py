"""The run layer, imported only by the command line and the scripts: run folders and the training loop (`runs.py`),
the shared options (`options.py`), evaluation with shards (`evaluation.py`), the run-time policy for BLAS threads and
the allocator (`runtime.py`), and one command per algorithm (`vae.py`, `wake_sleep.py`, `loglinear.py`)."""
