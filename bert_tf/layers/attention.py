"""Multi-head self-attention with the original BERT mask semantics."""

import math

import keras
from keras import ops

from bert_tf.layers.dense import BertDense
from bert_tf.layers.utils import build_once, truncated_normal

MASK_ADDER = -10000.0


def attention_bias(attention_mask):
    """(1 - mask) · -10000 in float32, shaped to broadcast over heads and query positions.

    Args:
      attention_mask: 1 = attend, 0 = do not; [batch, to_seq] (padding mask, same for every
        query position) or [batch, from_seq, to_seq].
    Returns:
      float32 [batch, 1, 1, to_seq] or [batch, 1, from_seq, to_seq].
    """
    mask = ops.cast(attention_mask, "float32")
    if len(mask.shape) == 2:
        mask = mask[:, None, None, :]
    elif len(mask.shape) == 3:
        mask = mask[:, None, :, :]
    else:
        raise ValueError(f"attention_mask must be [batch, seq] or [batch, seq, seq], got {mask.shape}")
    return (1.0 - mask) * MASK_ADDER


@keras.saving.register_keras_serializable(package="bert_tf")
class BertSelfAttention(keras.layers.Layer):
    """Scaled dot-product self-attention over `num_heads` heads, then the output projection.

    bert_tf's own layer: keras's MultiHeadAttention stores per-head [H, heads, d] kernels and
    a -1e9-style boolean mask; the original has [H, H] query/key/value/output kernels and adds
    (1 - mask)·-10000 to the scores. Scores, mask and softmax are float32 under mixed precision.

    The hidden dropout, residual and LayerNorm that follow belong to the transformer block.
    Inputs: `hidden_states` [batch, seq, hidden]; `attention_mask` int [batch, seq] or
    [batch, seq, seq]. Output: [batch, seq, hidden].
    """

    def __init__(
        self,
        hidden_size,
        num_heads,
        attention_dropout_rate=0.1,
        initializer_range=0.02,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if hidden_size % num_heads:
            raise ValueError(
                f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})"
            )
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_size = hidden_size // num_heads
        self.attention_dropout_rate = attention_dropout_rate
        self.initializer_range = initializer_range

        def dense(name):
            return BertDense(
                hidden_size,
                kernel_initializer=truncated_normal(initializer_range),
                name=name,
                dtype=self.dtype_policy,
            )

        self.query = dense("query")
        self.key = dense("key")
        self.value = dense("value")
        self.output_dense = dense("output_dense")
        self.attention_dropout = keras.layers.Dropout(
            attention_dropout_rate, name="attention_probs_dropout", dtype=self.dtype_policy
        )

    def build(self, input_shape=None):
        for dense in (self.query, self.key, self.value, self.output_dense):
            build_once(dense, (None, None, self.hidden_size))
        self.built = True

    def _split_heads(self, x):
        # [batch, seq, hidden] -> [batch, heads, seq, head_size]
        batch, seq = ops.shape(x)[0], ops.shape(x)[1]
        x = ops.reshape(x, (batch, seq, self.num_heads, self.head_size))
        return ops.transpose(x, (0, 2, 1, 3))

    def call(self, hidden_states, attention_mask, training=None):
        query = self._split_heads(self.query(hidden_states))
        key = self._split_heads(self.key(hidden_states))
        value = self._split_heads(self.value(hidden_states))

        scores = ops.matmul(query, ops.transpose(key, (0, 1, 3, 2)))
        scores = ops.cast(scores, "float32") * (1.0 / math.sqrt(self.head_size))
        scores = scores + attention_bias(attention_mask)
        probs = ops.softmax(scores, axis=-1)
        probs = ops.cast(probs, self.compute_dtype)
        probs = self.attention_dropout(probs, training=training)

        context = ops.matmul(probs, value)  # [batch, heads, seq, head_size]
        context = ops.transpose(context, (0, 2, 1, 3))
        batch, seq = ops.shape(context)[0], ops.shape(context)[1]
        context = ops.reshape(context, (batch, seq, self.hidden_size))
        return self.output_dense(context)

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_size=self.hidden_size,
            num_heads=self.num_heads,
            attention_dropout_rate=self.attention_dropout_rate,
            initializer_range=self.initializer_range,
        )
        return config
