"""The next-sentence-prediction head: 2-way logits from the pooled output."""

import keras
from keras import ops

from bert_tf.layers.utils import truncated_normal


@keras.saving.register_keras_serializable(package="bert_tf")
class BertNextSentenceHead(keras.layers.Layer):
    """logits = pooled · output_weightsᵀ + output_bias, computed in float32.

    `output_weights` is stored [2, hidden] ([out, in], the transpose of a Dense kernel) exactly
    as the original `cls/seq_relationship/output_weights`. Label 0 = real next, 1 = random.
    Input: pooled [batch, hidden]. Output: float32 [batch, 2].
    """

    def __init__(self, hidden_size, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.initializer_range = initializer_range

    def build(self, input_shape=None):
        self.output_weights = self.add_weight(
            name="output_weights",
            shape=(2, self.hidden_size),
            initializer=truncated_normal(self.initializer_range),
            autocast=False,
        )
        self.output_bias = self.add_weight(
            name="output_bias", shape=(2,), initializer="zeros", autocast=False
        )
        self.built = True

    def call(self, pooled_output):
        pooled = ops.cast(pooled_output, "float32")
        weights = ops.cast(self.output_weights, "float32")
        return ops.matmul(pooled, ops.transpose(weights)) + ops.cast(self.output_bias, "float32")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, initializer_range=self.initializer_range)
        return config
