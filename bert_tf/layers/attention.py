"""Multi-head self-attention with the original BERT mask semantics."""

import contextlib
import math
import threading

import keras
import tensorflow as tf
from keras import ops

from bert_tf.layers import fused
from bert_tf.layers.dense import BertDense
from bert_tf.layers.utils import build_once, truncated_normal

MASK_ADDER = -10000.0
# Inference on models up to this hidden size projects query, key and value with three matrix
# products instead of one over the concatenated [H, 3H] kernel (see BertSelfAttention).
SEPARATE_QKV_MAX_HIDDEN = 512
# ... and, in frozen float32 graphs, calls of up to this many tokens (batch x seq) attend
# without transposes (head_major_inference).
HEAD_MAJOR_MAX_TOKENS = 256
_HEAD_MAJOR = threading.local()  # .active: inside head_major_inference() on this thread


@contextlib.contextmanager
def head_major_inference():
    """Float32 inference traced inside, on models up to SEPARATE_QKV_MAX_HIDDEN, runs calls of
    up to HEAD_MAJOR_MAX_TOKENS tokens without transposes (BertSelfAttention._head_major_call;
    a tf.cond on the call's shape picks it, longer calls take the ordinary form). For graphs
    frozen into constants (bert_tf.inference.FrozenFunction: fast_forward's frozen calls,
    make_predict_fn, exports), where the weight reshapes fold away and oneDNN's transposes of
    small tensors cost ~75 us each: a frozen batch-1 call took 0.94x (tiny) and 0.88x (small)
    of the transposing form's time, but an exported small classifier's batch of 32 served
    0.92x of HF's rate instead of 1.08x (per-head broadcast products and a [batch, heads,
    seq, hidden] sum). Not for XLA (1.12x: XLA fuses the transposes) nor bfloat16 (1.02x) nor
    BERT-Base (1.03x), which keep the ordinary form."""
    previous = getattr(_HEAD_MAJOR, "active", False)
    _HEAD_MAJOR.active = True
    try:
        yield
    finally:
        _HEAD_MAJOR.active = previous


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
    (1 - mask)·-10000 to the scores.

    Speed (same weights, same float32 result): in training, and in inference for hidden sizes
    above SEPARATE_QKV_MAX_HIDDEN, the query, key and value projections run as one [H, 3H]
    matrix product whose kernel is concatenated from the three [H, H] kernels at call time
    (checkpoints keep the three), so the heads are split with one transpose and one oneDNN
    call replaces three. Inference on smaller models runs the three products: without the
    per-call concatenation and the [batch, seq, 3, heads, d] transpose a call took 0.90x
    (small bfloat16 frozen, batch 1 and 32) and 0.95x (tiny and small float32 XLA, batch 1)
    of the concatenated form's time; for BERT-Base they were within noise (0.98-1.04x).
    Frozen float32 graphs of those smaller models trace `_head_major_call` instead (see
    `head_major_inference`). Under mixed_bfloat16 the scores, their scaling, the mask and
    the softmax stay in bfloat16 (oneDNN's softmax accumulates in float32): the scores come
    out of a bfloat16 matmul either way, and without the float32 round trip oneDNN fuses the
    scaling and the mask into that matmul. Under mixed_float16 they are float32, as the
    narrow float16 range needs.

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

    def _scores_dtype(self):
        return "float32" if self.compute_dtype == "float16" else self.compute_dtype

    def _inference_probs(self, scores, attention_mask):
        """softmax(scores / sqrt(head_size) + mask bias), in the compute dtype."""
        scores_dtype = self._scores_dtype()
        scores = ops.cast(scores, scores_dtype) * tf.constant(
            1.0 / math.sqrt(self.head_size), scores_dtype
        )
        scores = scores + ops.cast(attention_bias(attention_mask), scores_dtype)
        return ops.cast(tf.nn.softmax(scores, axis=-1), self.compute_dtype)

    def _head_major_weights(self):
        """The projections' weights in the head-major form: query, key and value kernels as
        [heads, H, head_size] and biases as [heads, 1, head_size], the output kernel as [heads,
        head_size, H] and its bias. Computed outside `call`'s tf.cond, so that freezing folds
        the reshapes and transposes into constants: freezing lowers the cond to Switch/Merge,
        and inside the branch the weights sit behind a Switch that constant folding cannot see
        through (each call of a frozen tiny model then ran six transposes of the kernels)."""
        dtype = self.compute_dtype
        heads, size, hidden = self.num_heads, self.head_size, self.hidden_size
        projections = tuple(
            (tf.transpose(tf.reshape(ops.cast(dense.kernel, dtype), [hidden, heads, size]),
                          [1, 0, 2]),
             tf.reshape(ops.cast(dense.bias, dtype), [heads, 1, size]))
            for dense in (self.query, self.key, self.value))
        output = (tf.reshape(ops.cast(self.output_dense.kernel, dtype), [heads, size, hidden]),
                  ops.cast(self.output_dense.bias, dtype))
        return projections, output

    def _head_major_call(self, hidden_states, attention_mask, weights):
        """Inference without a transpose: each projection multiplies the [batch, 1, seq, H]
        input by its kernel viewed as [heads, H, head_size] (one broadcast batch product straight
        into [batch, heads, seq, head_size]), and the output projection multiplies each head's
        context by its [head_size, H] rows of the output kernel and sums over heads. Same
        products as `call`, summed in another order (float32 outputs differ by rounding, ~1e-6).
        `weights`: `_head_major_weights()`."""
        projections, (output_kernel, output_bias) = weights
        inputs = ops.cast(hidden_states, self.compute_dtype)[:, None]  # [batch, 1, seq, hidden]
        query, key, value = (tf.matmul(inputs, kernel) + bias for kernel, bias in projections)
        probs = self._inference_probs(tf.matmul(query, key, transpose_b=True), attention_mask)
        context = tf.matmul(probs, value)  # [batch, heads, seq, head_size]
        per_head = tf.matmul(context, output_kernel)
        return tf.reduce_sum(per_head, axis=1) + output_bias

    def call(self, hidden_states, attention_mask, training=None):
        if (not training and getattr(_HEAD_MAJOR, "active", False)
                and self.compute_dtype == "float32"
                and self.hidden_size <= SEPARATE_QKV_MAX_HIDDEN):
            shape = tf.shape(hidden_states)
            weights = self._head_major_weights()
            return tf.cond(shape[0] * shape[1] <= HEAD_MAJOR_MAX_TOKENS,
                           lambda: self._head_major_call(hidden_states, attention_mask, weights),
                           lambda: self._ordinary_call(hidden_states, attention_mask))
        return self._ordinary_call(hidden_states, attention_mask, training)

    def _ordinary_call(self, hidden_states, attention_mask, training=None):
        context = self.context(hidden_states, attention_mask, training=training)
        shape = tf.shape(hidden_states)
        return self.output_dense(tf.reshape(context, [shape[0], shape[1], self.hidden_size]))

    def context(self, hidden_states, attention_mask, training=None):
        """The heads' attention-weighted values, [batch·seq, hidden], before `output_dense`."""
        shape = tf.shape(hidden_states)
        batch, seq = shape[0], shape[1]
        dtype = self.compute_dtype
        flat = tf.reshape(ops.cast(hidden_states, dtype), [-1, self.hidden_size])
        projections = (self.query, self.key, self.value)
        if training or self.hidden_size > SEPARATE_QKV_MAX_HIDDEN:
            kernel = tf.concat([ops.cast(dense.kernel, dtype) for dense in projections], axis=1)
            bias = tf.concat([ops.cast(dense.bias, dtype) for dense in projections], axis=0)
            qkv = tf.nn.bias_add(tf.matmul(flat, kernel), bias)
            # [batch·seq, 3·hidden] -> [3, batch, heads, seq, head_size]
            qkv = tf.reshape(qkv, [batch, seq, 3, self.num_heads, self.head_size])
            query, key, value = tf.unstack(tf.transpose(qkv, [2, 0, 3, 1, 4]), num=3)
        else:
            query, key, value = (
                tf.transpose(tf.reshape(
                    tf.nn.bias_add(tf.matmul(flat, ops.cast(dense.kernel, dtype)),
                                   ops.cast(dense.bias, dtype)),
                    [batch, seq, self.num_heads, self.head_size]), [0, 2, 1, 3])
                for dense in projections)

        scores = tf.matmul(query, key, transpose_b=True)  # [batch, heads, seq, seq]
        if training:
            # Scale, mask, softmax and dropout as one pass each way (bert_tf.layers.fused).
            probs = fused.attention_probs(scores, attention_bias(attention_mask),
                                          1.0 / math.sqrt(self.head_size),
                                          *fused.rate_and_seed(self.attention_dropout))
        else:
            probs = self._inference_probs(scores, attention_mask)

        context = tf.matmul(probs, value)  # [batch, heads, seq, head_size]
        context = tf.transpose(context, [0, 2, 1, 3])
        return tf.reshape(context, [batch * seq, self.hidden_size])

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_size=self.hidden_size,
            num_heads=self.num_heads,
            attention_dropout_rate=self.attention_dropout_rate,
            initializer_range=self.initializer_range,
        )
        return config
