"""bert_tf layers: serialization round trips and each layer's definition against NumPy."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from bert_tf.layers import (
    BertDense,
    BertEmbeddings,
    BertLayerNorm,
    BertMaskedLMHead,
    BertNextSentenceHead,
    BertPooler,
    BertSelfAttention,
    BertTransformerBlock,
    attention_bias,
    gelu,
    gelu_exact,
    get_activation,
)
import numpy_reference  # tests/numpy_reference.py (tests/ is on sys.path under pytest)

H = 16


def _hidden(batch=2, seq=5, seed=0):
    return tf.constant(np.random.default_rng(seed).normal(size=(batch, seq, H)), tf.float32)


LAYER_FACTORIES = {
    "embeddings": lambda: BertEmbeddings(30, H, 8, 2, dropout_rate=0.2, initializer_range=0.05),
    "attention": lambda: BertSelfAttention(H, 4, attention_dropout_rate=0.3, initializer_range=0.05),
    "block": lambda: BertTransformerBlock(H, 4, 32, "gelu_exact", 0.2, 0.3, 0.05),
    "pooler": lambda: BertPooler(H, initializer_range=0.05),
    "masked_lm": lambda: BertMaskedLMHead(30, H, hidden_act="relu", initializer_range=0.05),
    "next_sentence": lambda: BertNextSentenceHead(H, initializer_range=0.05),
}


def _call(name, layer):
    ids = tf.constant([[1, 2, 3, 0, 0], [4, 5, 6, 7, 8]], tf.int32)
    mask = tf.constant([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], tf.int32)
    if name == "embeddings":
        return layer(ids, tf.constant([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1]], tf.int32))
    if name in ("attention", "block"):
        return layer(_hidden(), mask)
    if name == "pooler":
        return layer(_hidden())
    if name == "masked_lm":
        table = tf.constant(np.random.default_rng(1).normal(size=(30, H)), tf.float32)
        return layer(_hidden(), tf.constant([[0, 3], [4, 1]], tf.int32), table)
    return layer(_hidden()[:, 0, :])


@pytest.mark.parametrize("name", sorted(LAYER_FACTORIES))
def test_get_config_round_trip_rebuilds_the_same_layer(name):
    layer = LAYER_FACTORIES[name]()
    layer.build()
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    # Through Keras's registry ("bert_tf>ClassName") as well.
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == f"bert_tf>{type(layer).__name__}"
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is type(layer) and revived.get_config() == config
    clone.build()
    assert [w.shape for w in clone.weights] == [w.shape for w in layer.weights]
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(_call(name, clone), _call(name, layer))


def test_round_trip_keeps_rates_and_activation():
    block = BertTransformerBlock.from_config(LAYER_FACTORIES["block"]().get_config())
    assert block.attention.attention_dropout.rate == 0.3
    assert block.attention_dropout.rate == 0.2 and block.output_dropout.rate == 0.2
    assert block.intermediate.activation is gelu_exact
    assert block.attention_layer_norm.epsilon == 1e-12 and block.output_layer_norm.epsilon == 1e-12


def test_gelu_values_hand_computed():
    x = tf.constant([-1.0, 0.0, 1.0, 2.0])
    # 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))) and 0.5·x·(1 + erf(x/√2)), by hand:
    np.testing.assert_allclose(gelu(x), [-0.158808, 0.0, 0.841192, 1.954598], atol=1e-6)
    np.testing.assert_allclose(gelu_exact(x), [-0.158655, 0.0, 0.841345, 1.954500], atol=1e-6)
    assert get_activation("gelu") is gelu and get_activation("swish")(tf.constant(0.0)) == 0.0
    with pytest.raises(ValueError, match="unknown activation 'gelu_new'"):
        get_activation("gelu_new")


def test_embeddings_sum_slice_and_normalize():
    layer = BertEmbeddings(30, H, 8, 2)
    layer.build()
    rng = np.random.default_rng(0)
    word, pos, typ = rng.normal(size=(30, H)), rng.normal(size=(8, H)), rng.normal(size=(2, H))
    gamma, beta = rng.normal(size=H) + 1, rng.normal(size=H)
    layer.set_weights([word, pos, typ, gamma, beta])
    ids = np.array([[3, 1, 4], [1, 5, 9]])
    segs = np.array([[0, 0, 1], [0, 1, 1]])
    want = numpy_reference.layer_norm(word[ids] + typ[segs] + pos[:3], gamma, beta)
    np.testing.assert_allclose(layer(ids, segs, training=False), want, atol=1e-5)
    with pytest.raises(ValueError, match="sequence length 9 exceeds max_position_embeddings 8"):
        layer(np.zeros((1, 9), np.int32), np.zeros((1, 9), np.int32))


def test_attention_mask_is_additive_minus_10000():
    np.testing.assert_array_equal(
        attention_bias(tf.constant([[1, 0]])), np.array([[[[0.0, -10000.0]]]], np.float32)
    )
    layer = BertSelfAttention(H, 4, attention_dropout_rate=0.0)
    layer.build()
    x = _hidden()
    ones = tf.ones((2, 5), tf.int32)
    # Masking every key adds the same -10000 to every score: softmax unchanged (a boolean or
    # -inf mask would give NaN or zeros instead).
    np.testing.assert_allclose(layer(x, tf.zeros((2, 5), tf.int32)), layer(x, ones), atol=2e-3)
    # Keys at masked positions do not influence any query.
    mask = tf.constant([[1, 1, 1, 0, 0]] * 2, tf.int32)
    changed = x.numpy()
    changed[:, 3:] += 5.0
    a, b = layer(x, mask).numpy(), layer(tf.constant(changed), mask).numpy()
    np.testing.assert_allclose(a[:, :3], b[:, :3], atol=1e-5)
    # A [batch, from, to] mask works like the [batch, to] one when its rows are equal.
    mask3d = tf.tile(mask[:, None, :], [1, 5, 1])
    np.testing.assert_allclose(layer(x, mask3d), a, atol=1e-6)


@pytest.mark.parametrize("form", ["separate_qkv", "concatenated_qkv", "head_major"])
@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_attention_matches_numpy(dtype, form, monkeypatch):
    # Every inference form: three query/key/value products (hidden <= SEPARATE_QKV_MAX_HIDDEN),
    # one over the concatenated kernel (larger models, and training), and the transpose-free
    # head-major form frozen float32 graphs trace (bfloat16 ignores it).
    import contextlib

    from bert_tf.layers import attention

    if form == "concatenated_qkv":
        monkeypatch.setattr(attention, "SEPARATE_QKV_MAX_HIDDEN", 0)
    scope = attention.head_major_inference() if form == "head_major" else contextlib.nullcontext()
    layer = BertSelfAttention(H, 4, attention_dropout_rate=0.0, dtype=dtype)
    layer.build()
    rng = np.random.default_rng(3)
    weights = {}
    for name in ("query", "key", "value", "output_dense"):
        kernel, bias = rng.normal(size=(H, H)) * 0.3, rng.normal(size=H) * 0.1
        getattr(layer, name).set_weights([kernel, bias])
        weights[name] = (kernel, bias)
    x = _hidden(seed=4).numpy().astype(np.float64)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])

    def proj(name, t):
        return t @ weights[name][0] + weights[name][1]

    def heads(t):
        return t.reshape(2, 5, 4, 4).transpose(0, 2, 1, 3)

    q, k, v = heads(proj("query", x)), heads(proj("key", x)), heads(proj("value", x))
    scores = q @ k.transpose(0, 1, 3, 2) / 2.0 + (1 - mask[:, None, None, :]) * -10000.0
    context = (numpy_reference.softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(2, 5, H)
    want = proj("output_dense", context)
    head_major_calls = []
    head_major_call = BertSelfAttention._head_major_call
    monkeypatch.setattr(BertSelfAttention, "_head_major_call", lambda self, *args: (
        head_major_calls.append(1), head_major_call(self, *args))[1])
    with scope:
        got = layer(x.astype(np.float32), mask)
    # The head-major form runs only inside the scope, and only in float32.
    assert len(head_major_calls) == (form == "head_major" and dtype == "float32")
    if form == "head_major" and dtype == "float32":
        # Calls longer than HEAD_MAJOR_MAX_TOKENS (here 10 tokens > 9) take the ordinary form.
        monkeypatch.setattr(attention, "HEAD_MAJOR_MAX_TOKENS", 9)
        with attention.head_major_inference():
            layer(x.astype(np.float32), mask)
        assert len(head_major_calls) == 1
    if dtype == "float32":
        np.testing.assert_allclose(got, want, atol=1e-5)
    else:  # bfloat16 scores and softmax (8-bit mantissa): close, not equal
        assert got.dtype == tf.bfloat16
        np.testing.assert_allclose(tf.cast(got, tf.float32), want, atol=0.05 * np.abs(want).max())
@pytest.mark.parametrize("hidden_rate, attention_rate", [(0.0, 0.5), (0.5, 0.0)])
def test_block_has_separate_dropouts(hidden_rate, attention_rate):
    block = BertTransformerBlock(H, 4, 32, "gelu", hidden_rate, attention_rate)
    x, mask = _hidden(), tf.ones((2, 5), tf.int32)
    inference = block(x, mask, training=False).numpy()
    assert np.abs(block(x, mask, training=True).numpy() - inference).max() > 1e-4
    none = BertTransformerBlock(H, 4, 32, "gelu", 0.0, 0.0)
    # Training runs the fused kernels (bert_tf.layers.fused): the same math, other roundings.
    np.testing.assert_allclose(none(x, mask, training=True), none(x, mask, training=False),
                               rtol=1e-5, atol=1e-5)


def test_pooler_is_tanh_dense_on_first_token():
    pooler = BertPooler(H)
    pooler.build()
    rng = np.random.default_rng(5)
    kernel, bias = rng.normal(size=(H, H)), rng.normal(size=H)
    pooler.set_weights([kernel, bias])
    x = _hidden().numpy()
    assert pooler.kernel.shape == (H, H)
    np.testing.assert_allclose(pooler(x), np.tanh(x[:, 0] @ kernel + bias), atol=1e-5)


def test_masked_lm_head_gathers_and_uses_the_given_table():
    head = BertMaskedLMHead(30, H, hidden_act="gelu")
    head.build()
    rng = np.random.default_rng(6)
    kernel, bias = rng.normal(size=(H, H)) * 0.3, rng.normal(size=H)
    gamma, beta = rng.normal(size=H) + 1, rng.normal(size=H)
    out_bias = rng.normal(size=30)
    head.transform.set_weights([kernel, bias])
    head.layer_norm.set_weights([gamma, beta])
    head.output_bias.assign(out_bias)
    table = rng.normal(size=(30, H)).astype(np.float32)
    x = _hidden().numpy()
    positions = np.array([[0, 4, 2], [3, 3, 0]])
    gathered = np.stack([x[0, positions[0]], x[1, positions[1]]])
    t = numpy_reference.layer_norm(numpy_reference.gelu_tanh(gathered @ kernel + bias), gamma, beta)
    want = t @ table.T + out_bias
    got = head(x, positions, table)
    assert got.shape == (2, 3, 30) and got.dtype == tf.float32
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert [w.name for w in head.weights if w.shape == (30,)] == ["output_bias"]


def test_next_sentence_head_stores_out_by_in():
    head = BertNextSentenceHead(H)
    head.build()
    rng = np.random.default_rng(7)
    weights, bias = rng.normal(size=(2, H)), rng.normal(size=2)
    head.output_weights.assign(weights)
    head.output_bias.assign(bias)
    pooled = rng.normal(size=(3, H)).astype(np.float32)
    assert head.output_weights.shape == (2, H)
    np.testing.assert_allclose(head(pooled), pooled @ weights.T + bias, atol=1e-5)


def test_attention_rejects_indivisible_heads():
    with pytest.raises(ValueError, match=r"hidden_size \(10\) must be divisible by num_heads \(4\)"):
        BertSelfAttention(10, 4)


def test_gelu_constant_is_sqrt_two_over_pi():
    x = 0.7
    expected = 0.5 * x * (1 + math.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    assert float(gelu(tf.constant(x, tf.float64))) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("shape", [(3, 4), (2, 5, 4), (2, 3, 5, 4)])
def test_bert_dense_is_x_times_kernel_plus_bias_on_any_rank(shape):
    rng = np.random.default_rng(7)
    x = rng.normal(size=shape).astype(np.float32)
    layer = BertDense(6, activation=gelu)
    layer.build((None, 4))
    kernel = rng.normal(size=(4, 6)).astype(np.float32)
    bias = rng.normal(size=(6,)).astype(np.float32)
    layer.kernel.assign(kernel)
    layer.bias.assign(bias)
    pre = x @ kernel + bias  # NumPy reference, then the original's tanh GELU by hand
    expected = 0.5 * pre * (1 + np.tanh(math.sqrt(2 / math.pi) * (pre + 0.044715 * pre**3)))
    out = layer(tf.constant(x))
    assert out.shape == shape[:-1] + (6,)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # same variables (names, shapes) as keras.layers.Dense, so checkpoints are unchanged
    assert [v.path.split("/")[-1] for v in layer.weights] == ["kernel", "bias"]
    restored = BertDense.from_config(layer.get_config())
    assert restored.units == 6 and restored.activation is gelu


def _layer_norm_pair(policy, gamma, beta):
    ours = BertLayerNorm(epsilon=1e-12, dtype=policy)
    reference = keras.layers.LayerNormalization(epsilon=1e-12, dtype=policy)
    for layer in (ours, reference):
        layer.build((None, None, H))
        layer.set_weights([gamma, beta])
    return ours, reference


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_layer_norm_is_keras_layer_norm(policy):
    rng = np.random.default_rng(5)
    gamma, beta = rng.normal(size=H) + 1, rng.normal(size=H)
    x = rng.normal(size=(2, 5, H)) * 3 + 1
    ours, reference = _layer_norm_pair(policy, gamma, beta)
    inputs = tf.cast(tf.constant(x, tf.float32), ours.compute_dtype)
    got, want = ours(inputs), reference(inputs)
    assert got.dtype == want.dtype == ours.compute_dtype
    if policy == "float32":  # keras' own computation, bit for bit
        np.testing.assert_array_equal(got, want)
    else:  # the same float32 math fused by XLA: at most one bfloat16 rounding step apart
        np.testing.assert_allclose(tf.cast(got, tf.float32), tf.cast(want, tf.float32), rtol=1e-2, atol=2e-2)
    np.testing.assert_allclose(
        tf.cast(got, tf.float32), numpy_reference.layer_norm(inputs.numpy().astype(np.float64), gamma, beta),
        atol=1e-5 if policy == "float32" else 5e-2)
    # Gradients flow through the fused function to the input and both weights.
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        loss = tf.reduce_sum(tf.cast(ours(inputs), tf.float32) ** 2)
    grads = tape.gradient(loss, [inputs, ours.gamma, ours.beta])
    assert all(g is not None and np.all(np.isfinite(tf.cast(g, tf.float32))) for g in grads)


