"""Training-time kernels: the elementwise work around BERT's matrix products in single passes.

A BERT training step on CPU spends as much time in elementwise TensorFlow ops as in its
matrix products: the tanh GELU is about ten ops forward and twenty backward, each a full pass
over the [tokens, intermediate] activations (bfloat16 ones converted element by element by
Eigen); each hidden dropout draws a float per element and then multiplies, adds the residual
and normalises in separate passes; BiasAdd's gradient is one more. The functions here compute
the same things with an explicit gradient, forward and backward each compiled by XLA into
one loop (XLA differentiating a compiled function by itself produces a much slower kernel):

* `bias_gelu(y, bias)`: gelu(y + bias), the original's tanh approximation;
* `bias_dropout_add_norm(...)`: LayerNorm(residual + dropout(y + bias)), the end of both
  sublayers of the original's transformer block;
* `attention_probs(scores, bias, scale, rate, seed)`: dropout(softmax(scores · scale + mask));
* `dropout(x, rate, seed)`: the embedding dropout.

Arithmetic is in float32 with one rounding to the compute dtype at the end (bfloat16 and
float16 compute gain precision over the op-by-op versions; float32 is the same math, rounded
differently by a few ulps). Dropout gives every element 16 random bits and drops it when its
bits are below round(rate · 2^16), so the drop probability is `rate` rounded to a multiple of
2^-16 (0.1 → 0.1000061); kept elements are scaled by 1 / (1 − rate). The bits are a hash of
the element's position and the call's seed (`random_bits`), computed inside the forward and
again inside the backward kernel: no mask is drawn by a separate op, stored or read back
(drawing TensorFlow's Philox bits, 16 per element, two per draw, and reading them twice was
~9% of a BERT-Base bfloat16 pretraining step here). Only the training path of bert_tf's
layers uses these; inference is untouched.
"""

import math

import tensorflow as tf

_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715
_BITS = 16


def _xla(fn):
    return tf.function(fn, jit_compile=True, autograph=False, reduce_retracing=True)


# ------------------------------------------------------------------------------------ GELU
@_xla
def _bias_gelu_forward(y, bias):
    x = tf.cast(y, tf.float32) + tf.cast(bias, tf.float32)
    inner = _GELU_C * (x + _GELU_A * x * x * x)
    return tf.cast(0.5 * x * (1.0 + tf.tanh(inner)), y.dtype)


@_xla
def _bias_gelu_backward(y, bias, upstream):
    x = tf.cast(y, tf.float32) + tf.cast(bias, tf.float32)
    t = tf.tanh(_GELU_C * (x + _GELU_A * x * x * x))
    slope = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _GELU_C * (1.0 + 3.0 * _GELU_A * x * x)
    grad = tf.cast(upstream, tf.float32) * slope
    return tf.cast(grad, y.dtype), tf.cast(tf.reduce_sum(grad, axis=0), bias.dtype)


@tf.custom_gradient
def bias_gelu(y, bias):
    """gelu(y + bias) for y [tokens, units], bias [units]: the original's
    0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))."""

    def grad(upstream):
        return _bias_gelu_backward(y, bias, upstream)

    return _bias_gelu_forward(y, bias), grad


# --------------------------------------------------------------------------------- dropout
def keep_threshold(rate):
    """Elements whose 16 random bits are below this are dropped: round(rate · 2^16)."""
    return int(round(float(rate) * (1 << _BITS)))


def seed_from(generator):
    """A fresh int32 [2] stateless seed from a Keras SeedGenerator (advances it by one)."""
    seed = generator.next()
    if seed.dtype != tf.int32:
        # Keras keeps the state as int64; stateless random ops take int32 (as keras does).
        seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
    return seed


# The mixing function's multipliers: odd 32-bit constants with good avalanche found by
# published searches over xorshift-multiply hashes (numbers, not code).
_MIX_A = 0x7FEB352D
_MIX_B = 0x846CA68B


def _mix(x):
    """A bijective avalanche of uint32 x: xor-shift 16, ×A, xor-shift 15, ×B, xor-shift 16."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))
    x = x * tf.constant(_MIX_A, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(15, tf.uint32)))
    x = x * tf.constant(_MIX_B, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))


def _hash_bits(shape, seed):
    """The uint16 bits of every element of `shape`: the top half of
    mix(mix(index ^ mix(seed[0])) ^ mix(seed[1] ^ 0x9E3779B9)), index = the element's row-major
    position (uint32, wrapping above 2^32 elements). Computed where they are used, inside the
    XLA kernels, so no mask is drawn, stored or read back."""
    seed = tf.bitcast(tf.cast(seed, tf.int32), tf.uint32)
    key0 = _mix(seed[0])
    key1 = _mix(tf.bitwise.bitwise_xor(seed[1], tf.constant(0x9E3779B9, tf.uint32)))
    index = tf.bitcast(tf.reshape(tf.range(tf.reduce_prod(shape), dtype=tf.int32), shape),
                       tf.uint32)
    x = _mix(tf.bitwise.bitwise_xor(_mix(tf.bitwise.bitwise_xor(index, key0)), key1))
    return tf.cast(tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)), tf.uint16)


@_xla
def _random_bits(shape, seed):
    return _hash_bits(shape, seed)


def random_bits(shape, seed):
    """The uint16 dropout bits the kernels draw for a tensor of `shape` (a 1-D int tensor)
    with `seed` (int32 [2]); see _hash_bits."""
    return _random_bits(tf.convert_to_tensor(shape, tf.int32), seed)


def _drop(values, seed, threshold, scale):
    """float32 `values` with the elements whose bits are below `threshold` zeroed and the rest
    scaled (inside the XLA functions; seed None: unchanged)."""
    if seed is None:
        return values
    bits = _hash_bits(tf.shape(values), seed)
    return tf.where(bits >= tf.constant(threshold, tf.uint16), values * scale, 0.0)


def _dropout_mask(rate, seed):
    """(seed, threshold, scale) that `_drop` applies; seed None when rate is 0."""
    if not rate:
        return None, 0, 1.0
    return tf.convert_to_tensor(seed, tf.int32), keep_threshold(rate), 1.0 / (1.0 - float(rate))


@_xla
def _masked_scale(x, seed, threshold, scale):
    return tf.cast(_drop(tf.cast(x, tf.float32), seed, threshold, scale), x.dtype)


def dropout(x, rate, seed):
    """Inverted dropout of `x` with probability `rate` (see the module docstring)."""
    if not rate:
        return x
    seed, threshold, scale = _dropout_mask(rate, seed)

    @tf.custom_gradient
    def apply(x):
        def grad(upstream):
            return _masked_scale(upstream, seed, threshold, scale)

        return _masked_scale(x, seed, threshold, scale), grad

    return apply(x)


def rate_and_seed(layer):
    """A keras Dropout layer's rate and a fresh seed from its generator (None at rate 0, where
    keras creates no generator)."""
    return layer.rate, (seed_from(layer.seed_generator) if layer.rate else None)


def dropout_like(layer, x):
    """`dropout` with a keras Dropout layer's rate and seed generator (its training call)."""
    return dropout(x, *rate_and_seed(layer))


# ------------------------------------------------------------- attention probabilities
@_xla
def _attention_forward(scores, bias, mask_seed, scale, threshold, keep_scale):
    logits = tf.cast(scores, tf.float32) * scale + bias
    probs = tf.nn.softmax(logits, axis=-1)
    dropped = _drop(probs, mask_seed, threshold, keep_scale)
    return tf.cast(dropped, scores.dtype), tf.cast(probs, scores.dtype)


@_xla
def _attention_backward(probs, mask_seed, upstream, scale, threshold, keep_scale):
    dtype = probs.dtype
    probs = tf.cast(probs, tf.float32)
    grad_probs = _drop(tf.cast(upstream, tf.float32), mask_seed, threshold, keep_scale)
    grad_logits = probs * (grad_probs - tf.reduce_sum(grad_probs * probs, axis=-1, keepdims=True))
    return tf.cast(grad_logits * scale, dtype)


def attention_probs(scores, bias, scale, rate, seed):
    """dropout(softmax(scores · scale + bias)) over the last axis, one pass each way.

    Args:
      scores: [batch, heads, from, to] query·key products in the compute dtype.
      bias: float32 additive mask broadcasting to scores (not differentiated).
      scale: 1/√head_size; rate: the attention dropout rate (0: none); seed: int32 [2].
    Returns the dropped-out probabilities in the scores' dtype.
    """
    mask_seed, threshold, keep_scale = _dropout_mask(rate, seed)
    scale = float(scale)

    @tf.custom_gradient
    def apply(scores):
        dropped, probs = _attention_forward(
            scores, bias, mask_seed, scale, threshold, keep_scale
        )

        def grad(upstream):
            return _attention_backward(
                probs, mask_seed, upstream, scale, threshold, keep_scale
            )

        return dropped, grad

    return apply(scores)


# ------------------------------------------------- bias + dropout + residual + LayerNorm
def _moments(total):
    mean = tf.reduce_mean(total, axis=-1, keepdims=True)
    variance = tf.reduce_mean(tf.math.squared_difference(total, mean), axis=-1, keepdims=True)
    return mean, variance


@_xla
def _add_norm_forward(y, bias, residual, mask_seed, gamma, beta, epsilon, threshold, scale):
    hidden = _drop(
        tf.cast(y, tf.float32) + tf.cast(bias, tf.float32), mask_seed, threshold, scale
    )
    # The sum rounded to the compute dtype, as the unfused block's add is; forward and backward
    # both normalise this rounded value.
    total = tf.cast(tf.cast(residual, tf.float32) + hidden, y.dtype)
    total32 = tf.cast(total, tf.float32)
    mean, variance = _moments(total32)
    factor = tf.math.rsqrt(variance + epsilon) * gamma
    return tf.cast(total32 * factor + (beta - mean * factor), y.dtype), total


@_xla
def _add_norm_backward(total, mask_seed, gamma, upstream, epsilon, threshold, scale):
    dtype = total.dtype
    total = tf.cast(total, tf.float32)
    upstream = tf.cast(upstream, tf.float32)
    mean, variance = _moments(total)
    inverse_std = tf.math.rsqrt(variance + epsilon)
    normalized = (total - mean) * inverse_std
    grad_gamma = tf.reduce_sum(upstream * normalized, axis=0)
    grad_beta = tf.reduce_sum(upstream, axis=0)
    grad_normalized = upstream * gamma
    grad_total = inverse_std * (
        grad_normalized
        - tf.reduce_mean(grad_normalized, axis=-1, keepdims=True)
        - normalized * tf.reduce_mean(grad_normalized * normalized, axis=-1, keepdims=True)
    )
    grad_hidden = _drop(grad_total, mask_seed, threshold, scale)
    return (tf.cast(grad_hidden, dtype), tf.cast(tf.reduce_sum(grad_hidden, axis=0), dtype),
            tf.cast(grad_total, dtype), grad_gamma, grad_beta)


def bias_dropout_add_norm(y, bias, residual, gamma, beta, epsilon, rate, seed):
    """LayerNorm(residual + dropout(y + bias)) over the last axis, in one pass each way.

    Args:
      y: [tokens, hidden] matrix product without its bias, in the compute dtype.
      bias: [hidden]; residual: [tokens, hidden]; gamma, beta: float32 [hidden].
      epsilon: the LayerNorm epsilon; rate: the dropout rate (0: none); seed: int32 [2].
    Returns [tokens, hidden] in y's dtype.
    """
    mask_seed, threshold, scale = _dropout_mask(rate, seed)
    epsilon = float(epsilon)

    @tf.custom_gradient
    def apply(y, bias, residual, gamma, beta):
        output, total = _add_norm_forward(
            y, bias, residual, mask_seed, gamma, beta, epsilon, threshold, scale
        )

        def grad(upstream):
            return _add_norm_backward(
                total, mask_seed, gamma, upstream, epsilon, threshold, scale
            )

        return output, grad

    return apply(y, bias, residual, gamma, beta)
