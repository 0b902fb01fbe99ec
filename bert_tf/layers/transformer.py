"""The original post-LayerNorm transformer block."""

import keras
import tensorflow as tf
from keras import ops

from bert_tf.layers import fused
from bert_tf.layers.activations import get_activation
from bert_tf.layers.attention import BertSelfAttention
from bert_tf.layers.dense import BertDense
from bert_tf.layers.embeddings import LAYER_NORM_EPSILON
from bert_tf.layers.layer_norm import BertLayerNorm
from bert_tf.layers.utils import build_once, truncated_normal


@keras.saving.register_keras_serializable(package="bert_tf")
class BertTransformerBlock(keras.layers.Layer):
    """Self-attention and feed-forward sublayers, each: dropout, residual add, LayerNorm.

    bert_tf's own layer: keras-hub's TransformerEncoder uses one dropout rate for attention
    probabilities and hidden states, and LayerNorm epsilon 1e-5; the original has separate
    rates and 1e-12.

    Inputs: `hidden_states` [batch, seq, hidden]; `attention_mask` int [batch, seq].
    Output: [batch, seq, hidden].
    """

    def __init__(
        self,
        hidden_size,
        num_attention_heads,
        intermediate_size,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        initializer_range=0.02,
        layer_norm_epsilon=LAYER_NORM_EPSILON,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.initializer_range = initializer_range
        self.layer_norm_epsilon = layer_norm_epsilon
        policy = self.dtype_policy
        init = truncated_normal(initializer_range)

        self.attention = BertSelfAttention(
            hidden_size,
            num_attention_heads,
            attention_dropout_rate=attention_probs_dropout_prob,
            initializer_range=initializer_range,
            name="attention",
            dtype=policy,
        )
        self.attention_dropout = keras.layers.Dropout(
            hidden_dropout_prob, name="attention_output_dropout", dtype=policy
        )
        self.attention_layer_norm = BertLayerNorm(
            epsilon=layer_norm_epsilon, name="attention_layer_norm", dtype=policy
        )
        self.intermediate = BertDense(
            intermediate_size,
            activation=get_activation(hidden_act),
            kernel_initializer=init,
            name="intermediate",
            dtype=policy,
        )
        self.output_dense = BertDense(
            hidden_size, kernel_initializer=init, name="output_dense", dtype=policy
        )
        self.output_dropout = keras.layers.Dropout(
            hidden_dropout_prob, name="output_dropout", dtype=policy
        )
        self.output_layer_norm = BertLayerNorm(
            epsilon=layer_norm_epsilon, name="output_layer_norm", dtype=policy
        )

    def build(self, input_shape=None):
        hidden_shape = (None, None, self.hidden_size)
        build_once(self.attention, hidden_shape)
        build_once(self.attention_layer_norm, hidden_shape)
        build_once(self.intermediate, hidden_shape)
        build_once(self.output_dense, (None, None, self.intermediate_size))
        build_once(self.output_layer_norm, hidden_shape)
        self.built = True

    def call(self, hidden_states, attention_mask, training=None):
        if training:
            return self._train_call(hidden_states, attention_mask)
        attention_output = self.attention(hidden_states, attention_mask, training=training)
        attention_output = self.attention_dropout(attention_output, training=training)
        attention_output = self.attention_layer_norm(hidden_states + attention_output)

        layer_output = self.output_dense(self.intermediate(attention_output))
        layer_output = self.output_dropout(layer_output, training=training)
        return self.output_layer_norm(attention_output + layer_output)

    def _train_call(self, hidden_states, attention_mask):
        # The same block through bert_tf.layers.fused: the bias, dropout, residual add and
        # LayerNorm after each sublayer's matrix product as one pass forward and one backward,
        # and the intermediate bias + GELU likewise.
        shape = tf.shape(hidden_states)
        dtype = self.compute_dtype
        hidden = tf.reshape(ops.cast(hidden_states, dtype), [-1, self.hidden_size])
        context = self.attention.context(hidden_states, attention_mask, training=True)
        attention_output = self._add_norm(
            self.attention.output_dense, context, hidden, self.attention_dropout,
            self.attention_layer_norm,
        )
        intermediate = self.intermediate.product(attention_output)
        bias = ops.cast(self.intermediate.bias, dtype)
        if self.hidden_act == "gelu":
            intermediate = fused.bias_gelu(intermediate, bias)
        else:
            intermediate = self.intermediate.activation(tf.nn.bias_add(intermediate, bias))
        layer_output = self._add_norm(
            self.output_dense, intermediate, attention_output, self.output_dropout,
            self.output_layer_norm,
        )
        return tf.reshape(layer_output, shape)

    def _add_norm(self, dense, inputs, residual, dropout, layer_norm):
        return fused.bias_dropout_add_norm(
            dense.product(inputs), ops.cast(dense.bias, self.compute_dtype), residual,
            ops.cast(layer_norm.gamma, "float32"), ops.cast(layer_norm.beta, "float32"),
            layer_norm.epsilon, *fused.rate_and_seed(dropout),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_size=self.hidden_size,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            hidden_act=self.hidden_act,
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob,
            initializer_range=self.initializer_range,
            layer_norm_epsilon=self.layer_norm_epsilon,
        )
        return config
