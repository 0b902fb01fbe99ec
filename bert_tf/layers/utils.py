"""Small helpers shared by bert_tf's layers: the original initializer and explicit building."""

import keras


def truncated_normal(stddev):
    """The original's weight initializer: normal truncated at two standard deviations."""
    return keras.initializers.TruncatedNormal(stddev=stddev)


def build_once(layer, input_shape=None):
    """Builds `layer` unless it is built (a second build would try to add its weights again)."""
    if not layer.built:
        layer.build(input_shape)
