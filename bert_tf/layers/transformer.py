"""The original post-LayerNorm transformer block."""

import keras

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
        attention_output = self.attention(hidden_states, attention_mask, training=training)
        attention_output = self.attention_dropout(attention_output, training=training)
        attention_output = self.attention_layer_norm(hidden_states + attention_output)

        layer_output = self.output_dense(self.intermediate(attention_output))
        layer_output = self.output_dropout(layer_output, training=training)
        return self.output_layer_norm(attention_output + layer_output)

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
