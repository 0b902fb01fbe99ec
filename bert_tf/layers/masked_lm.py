"""The masked-LM head: transform at the masked positions, then the tied word-embedding decoder."""

import keras
import tensorflow as tf
from keras import ops

from bert_tf.layers.activations import get_activation
from bert_tf.layers.dense import BertDense
from bert_tf.layers.embeddings import LAYER_NORM_EPSILON
from bert_tf.layers.layer_norm import BertLayerNorm
from bert_tf.layers.utils import build_once, truncated_normal


def gather_positions(sequence_output, positions):
    """[batch, seq, hidden] gathered at int [batch, P] positions -> [batch, P, hidden]."""
    return tf.gather(sequence_output, ops.cast(positions, "int32"), axis=1, batch_dims=1)


@keras.saving.register_keras_serializable(package="bert_tf")
class BertMaskedLMHead(keras.layers.Layer):
    """logits = LayerNorm(act(dense(h[positions]))) · word_embeddingsᵀ + output_bias.

    bert_tf's own layer: keras-hub's MaskedLMHead has no activation and LayerNorm epsilon 1e-5 by
    default and names its variables differently from `cls/predictions/*`.
    The decoder matrix is not a weight of this layer: the caller passes the encoder's word
    embedding table [vocab, hidden], which keeps it tied. Logits are float32.
    """

    def __init__(self, vocab_size, hidden_size, hidden_act="gelu", initializer_range=0.02,
                 layer_norm_epsilon=LAYER_NORM_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.hidden_act = hidden_act
        self.initializer_range = initializer_range
        self.layer_norm_epsilon = layer_norm_epsilon
        self.transform = BertDense(
            hidden_size,
            activation=get_activation(hidden_act),
            kernel_initializer=truncated_normal(initializer_range),
            name="transform",
            dtype=self.dtype_policy,
        )
        self.layer_norm = BertLayerNorm(
            epsilon=layer_norm_epsilon, name="layer_norm", dtype=self.dtype_policy
        )

    def build(self, input_shape=None):
        build_once(self.transform, (None, None, self.hidden_size))
        build_once(self.layer_norm, (None, None, self.hidden_size))
        self.output_bias = self.add_weight(
            name="output_bias", shape=(self.vocab_size,), initializer="zeros", autocast=False
        )
        self.built = True

    def call(self, sequence_output, masked_lm_positions, word_embeddings):
        hidden = gather_positions(sequence_output, masked_lm_positions)
        hidden = self.layer_norm(self.transform(hidden))
        table = ops.cast(word_embeddings, hidden.dtype)
        # One 2-D MatMul with the table transposed inside oneDNN: ops.matmul of [batch, P, H]
        # by an explicit [H, vocab] transpose copied the whole table and ran a batched matmul.
        shape = tf.shape(hidden)
        flat = tf.reshape(hidden, [-1, self.hidden_size])
        logits = tf.matmul(flat, table, transpose_b=True)
        logits = tf.reshape(logits, tf.concat([shape[:-1], [self.vocab_size]], axis=0))
        return ops.cast(logits, "float32") + ops.cast(self.output_bias, "float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            hidden_act=self.hidden_act,
            initializer_range=self.initializer_range,
            layer_norm_epsilon=self.layer_norm_epsilon,
        )
        return config
