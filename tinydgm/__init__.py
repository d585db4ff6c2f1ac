"""tinydgm: deep generative models from scratch on NumPy/CuPy, on a small reverse-mode autodiff engine."""
from tinydgm import backend
from tinydgm.tensor import Tensor, tensor, no_grad, grad
from tinydgm.ops import (add, subtract, multiply, divide, negative, power, exp, log, tanh, sigmoid,
                         softplus, log_sigmoid, relu, maximum, where, clip, matmul, sum, max,
                         logsumexp, mean, bernoulli_log_prob, reshape, transpose, broadcast_to, concatenate,
                         stack, split)
from tinydgm import check, nn, optim, distributions, estimators

neg = negative

__version__ = "0.1.0"

__all__ = ["backend", "Tensor", "tensor", "no_grad", "grad", "check", "nn", "optim", "distributions",
           "estimators", "add", "subtract", "multiply", "divide", "negative", "neg", "power", "exp", "log",
           "tanh", "sigmoid", "softplus", "log_sigmoid", "relu", "maximum", "where", "clip", "matmul",
           "sum", "max", "logsumexp", "mean", "bernoulli_log_prob", "reshape", "transpose", "broadcast_to",
           "concatenate", "stack", "split"]
