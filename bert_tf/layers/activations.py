"""Activation functions by bert_tf name ("gelu" is the original's tanh approximation)."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="bert_tf")
def gelu(x):
    """The original BERT GELU: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))."""
    return 0.5 * x * (1.0 + ops.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


@keras.saving.register_keras_serializable(package="bert_tf")
def gelu_exact(x):
    """The erf GELU that Hugging Face calls "gelu": 0.5·x·(1 + erf(x/√2))."""
    return 0.5 * x * (1.0 + ops.erf(x / math.sqrt(2.0)))


_ACTIVATIONS = {
    "gelu": gelu,
    "gelu_exact": gelu_exact,
    "relu": keras.activations.relu,
    "tanh": keras.activations.tanh,
    "silu": keras.activations.silu,
    "swish": keras.activations.silu,
    "linear": keras.activations.linear,
}


def get_activation(name):
    """The function for a bert_tf activation name (see bert_tf.config for the naming)."""
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; expected one of {', '.join(_ACTIVATIONS)}"
        ) from None

