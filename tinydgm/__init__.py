"""tinydgm: deep generative models from scratch on NumPy/CuPy, on a small reverse-mode autodiff engine."""
from tinydgm import backend
from tinydgm.tensor import Tensor, tensor, no_grad, grad, is_grad_enabled
from tinydgm.ops import (add, subtract, multiply, divide, negative, power, exp, log, tanh, sigmoid,
                         softplus, log_sigmoid, relu, maximum, where, clip, matmul, linear, sum, max,
                         logsumexp, mean, bernoulli_log_prob, reshape, transpose, broadcast_to, getitem, concatenate,
                         stack, split, unbroadcast)
from tinydgm import check, nn, optim, distributions, estimators

neg = negative

__version__ = "0.1.0"
