"""Loaders for the data sets shipped in `data/`: binarized MNIST (`mnist.py`), CoNLL-U (`conllu.py`), UD English EWT (`ewt.py`)."""
from tinydgm.data.conllu import conllu
from tinydgm.data.ewt import Corpus, load_corpus
from tinydgm.data.mnist import binarized_mnist, data_root

__all__ = ["binarized_mnist", "data_root", "conllu", "Corpus", "load_corpus"]
