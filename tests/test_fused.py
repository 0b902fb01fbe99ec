"""bert_tf.layers.fused against float64 references written from the definitions."""

import math

import numpy as np
import pytest
import tensorflow as tf

from bert_tf.layers import fused


def _gelu64(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _numeric_grad(f, x, eps=1e-6):
    """Central differences of the scalar f at every element of x (float64)."""
    grad = np.zeros_like(x)
    flat, out = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f(x)
        flat[i] = old - eps
        down = f(x)
        flat[i] = old
        out[i] = (up - down) / (2 * eps)
    return grad


def test_bias_gelu_value_and_gradient_match_the_tanh_formula():
    rng = np.random.default_rng(0)
    y, bias = rng.normal(size=(5, 6)) * 2, rng.normal(size=6)
    weights = rng.normal(size=(5, 6))
    y32, b32 = tf.constant(y, tf.float32), tf.constant(bias, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch([y32, b32])
        out = fused.bias_gelu(y32, b32)
        loss = tf.reduce_sum(out * weights)
    grad_y, grad_b = tape.gradient(loss, [y32, b32])
    np.testing.assert_allclose(out, _gelu64(y + bias), rtol=1e-5, atol=1e-6)
    want_y = _numeric_grad(lambda t: np.sum(_gelu64(t + bias) * weights), y.copy())
    np.testing.assert_allclose(grad_y, want_y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grad_b, want_y.sum(axis=0), rtol=1e-4, atol=1e-5)


def test_bias_gelu_in_bfloat16_rounds_once():
    rng = np.random.default_rng(1)
    y, bias = rng.normal(size=(4, 8)), rng.normal(size=8)
    out = fused.bias_gelu(tf.constant(y, tf.bfloat16), tf.constant(bias, tf.bfloat16))
    assert out.dtype == tf.bfloat16
    exact = _gelu64(tf.cast(tf.constant(y, tf.bfloat16), tf.float64).numpy()
                    + tf.cast(tf.constant(bias, tf.bfloat16), tf.float64).numpy())
    # One rounding of the float32 result: within half a bfloat16 ulp (2^-8 relative).
    np.testing.assert_allclose(tf.cast(out, tf.float64), exact, rtol=2**-8, atol=1e-6)


def _layer_norm64(t, gamma, beta, eps):
    mean = t.mean(-1, keepdims=True)
    var = ((t - mean) ** 2).mean(-1, keepdims=True)
    return (t - mean) / np.sqrt(var + eps) * gamma + beta


def test_add_norm_without_dropout_matches_layer_norm_and_its_gradient():
    rng = np.random.default_rng(2)
    y, bias, residual = rng.normal(size=(6, 8)), rng.normal(size=8), rng.normal(size=(6, 8))
    gamma, beta = 1 + 0.3 * rng.normal(size=8), 0.2 * rng.normal(size=8)
    weights = rng.normal(size=(6, 8))
    args = [tf.constant(a, tf.float32) for a in (y, bias, residual, gamma, beta)]
    with tf.GradientTape() as tape:
        tape.watch(args)
        out = fused.bias_dropout_add_norm(*args, 1e-3, 0.0, None)
        loss = tf.reduce_sum(out * weights)
    grads = tape.gradient(loss, args)
    np.testing.assert_allclose(out, _layer_norm64(residual + y + bias, gamma, beta, 1e-3),
                               rtol=1e-5, atol=1e-5)
    # Reference gradients: TensorFlow's own differentiation of the plain float64 ops.
    ref = [tf.constant(a, tf.float64) for a in (y, bias, residual, gamma, beta)]
    with tf.GradientTape() as tape:
        tape.watch(ref)
        total = ref[2] + ref[0] + ref[1]
        mean, var = tf.nn.moments(total, axes=[-1], keepdims=True)
        plain = (total - mean) * tf.math.rsqrt(var + 1e-3) * ref[3] + ref[4]
        ref_loss = tf.reduce_sum(plain * weights)
    for got, want in zip(grads, tape.gradient(ref_loss, ref)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_dropout_rate_scale_and_gradient_mask():
    rate, shape = 0.25, (64, 33, 31)
    x = tf.random.stateless_uniform(shape, [3, 4], minval=1.0, maxval=2.0)
    weights = tf.random.stateless_normal(shape, [5, 6])
    seed = tf.constant([7, 8], tf.int32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = fused.dropout(x, rate, seed)
        loss = tf.reduce_sum(out * weights)
    grad = tape.gradient(loss, x).numpy()
    out, x, weights = out.numpy(), x.numpy(), weights.numpy()
    kept = out != 0
    n = kept.size
    # Binomial(n, 1 - rate): five standard deviations.
    assert abs(kept.mean() - (1 - rate)) < 5 * math.sqrt(rate * (1 - rate) / n)
    np.testing.assert_allclose(out[kept], x[kept] / (1 - rate), rtol=1e-6)
    np.testing.assert_allclose(grad, np.where(kept, weights / (1 - rate), 0.0), rtol=1e-6)
    # The same seed gives the same mask, another seed another one.
    np.testing.assert_array_equal(fused.dropout(tf.constant(x), rate, seed).numpy() != 0, kept)
    other = fused.dropout(tf.constant(x), rate, tf.constant([7, 9], tf.int32)).numpy() != 0
    assert (other != kept).mean() > 0.2


def _mix64(x):
    """The avalanche of uint32 values as its docstring defines it, in numpy's uint32."""
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def test_random_bits_follow_their_definition():
    shape, seed = (3, 5, 7), (-5, 123456789)
    with np.errstate(over="ignore"):
        key0 = _mix64(np.array(seed[0], np.int32).view(np.uint32))
        key1 = _mix64(np.array(seed[1], np.int32).view(np.uint32) ^ np.uint32(0x9E3779B9))
        index = np.arange(np.prod(shape), dtype=np.uint32).reshape(shape)
        want = (_mix64(_mix64(index ^ key0) ^ key1) >> np.uint32(16)).astype(np.uint16)
    got = fused.random_bits(tf.constant(shape), tf.constant(seed, tf.int32)).numpy()
    np.testing.assert_array_equal(got, want)


def test_random_bits_of_neighbours_and_of_neighbouring_seeds_are_independent():
    n = 1 << 18
    keep = fused.random_bits(tf.constant([n]), tf.constant([21, 22], tf.int32)).numpy() >= 32768
    bound = 5 * math.sqrt(0.25 * 0.75 / n)  # five standard deviations of a 1/4 frequency
    # Adjacent elements, and elements one row of 128 apart, are both kept 1/4 of the time.
    assert abs((keep[1:] & keep[:-1]).mean() - 0.25) < bound
    assert abs((keep[128:] & keep[:-128]).mean() - 0.25) < bound
    # Seeds that differ by one in either half give masks that agree half of the time.
    for other in ([21, 23], [20, 22]):
        other_keep = fused.random_bits(tf.constant([n]), tf.constant(other, tf.int32)).numpy()
        assert abs(((other_keep >= 32768) & keep).mean() - 0.25) < bound
    # Every one of the 16 bits is set half of the time.
    bits = fused.random_bits(tf.constant([n]), tf.constant([21, 22], tf.int32)).numpy()
    ones = [((bits >> b) & 1).mean() for b in range(16)]
    assert max(abs(p - 0.5) for p in ones) < 5 * math.sqrt(0.25 / n)


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_random_bits_are_uniform_and_the_threshold_is_the_rate(rate):
    bits = fused.random_bits(tf.constant([200_000]), tf.constant([1, 2], tf.int32)).numpy()
    assert bits.dtype == np.uint16
    counts = np.bincount(bits >> 12, minlength=16)  # 16 bins of the top 4 bits
    expected = bits.size / 16
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 45  # 15 degrees of freedom: p < 1e-4
    assert abs(fused.keep_threshold(rate) / 65536 - rate) <= 0.5 / 65536


def test_add_norm_with_dropout_drops_the_sublayer_not_the_residual():
    rng = np.random.default_rng(4)
    rate, eps = 0.3, 1e-6
    y, bias, residual = rng.normal(size=(40, 16)), rng.normal(size=16), rng.normal(size=(40, 16))
    gamma, beta = np.ones(16), np.zeros(16)
    seed = tf.constant([11, 12], tf.int32)
    out = fused.bias_dropout_add_norm(*[tf.constant(a, tf.float32) for a in
                                        (y, bias, residual, gamma, beta)], eps, rate, seed)
    keep = fused.random_bits(tf.constant([40, 16]), seed).numpy() >= fused.keep_threshold(rate)
    assert 0.5 < keep.mean() < 0.9
    want = _layer_norm64(residual + np.where(keep, (y + bias) / (1 - rate), 0.0), gamma, beta, eps)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


def test_attention_probs_softmax_gradient_and_dropout():
    rng = np.random.default_rng(5)
    scores = rng.normal(size=(2, 3, 4, 6)) * 3
    mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], np.float32)
    bias = ((1.0 - mask) * -10000.0)[:, None, None, :]
    weights = rng.normal(size=scores.shape)
    x = tf.constant(scores, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        probs = fused.attention_probs(x, tf.constant(bias), 0.5, 0.0, None)
        loss = tf.reduce_sum(probs * weights)
    grad = tape.gradient(loss, x)
    logits = scores * 0.5 + bias
    want = np.exp(logits - logits.max(-1, keepdims=True))
    want /= want.sum(-1, keepdims=True)
    np.testing.assert_allclose(probs, want, rtol=1e-5, atol=1e-7)
    assert np.all(probs.numpy()[0, :, :, 4:] == 0)
    ref = tf.constant(scores, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(ref)
        ref_loss = tf.reduce_sum(tf.nn.softmax(ref * 0.5 + bias, axis=-1) * weights)
    np.testing.assert_allclose(grad, tape.gradient(ref_loss, ref), rtol=1e-4, atol=1e-6)

    seed = tf.constant([13, 14], tf.int32)
    dropped = fused.attention_probs(x, tf.constant(bias), 0.5, 0.2, seed).numpy()
    keep = fused.random_bits(tf.constant(scores.shape), seed).numpy() >= fused.keep_threshold(0.2)
    np.testing.assert_allclose(dropped, np.where(keep, want / 0.8, 0.0), rtol=1e-5, atol=1e-7)
