"""bert_tf.inference: a frozen forward computes what the model computes, for any batch shape."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bert_tf import inference
from bert_tf.config import BertConfig
from bert_tf.finetuning import make_predict_fn
from bert_tf.models import BertClassifier, BertEncoder

CONFIG = BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=32)


def trained_like(model, seed=0):
    # Non-zero biases and betas, non-unit gammas: a frozen graph must not lose them.
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        weight.assign(rng.normal(1.0 if "gamma" in weight.path else 0.0, 0.1, tuple(weight.shape))
                      .astype(weight.dtype))
    return model


def batch(batch_size, seq, seed=1):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, CONFIG.vocab_size, (batch_size, seq)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[0, seq // 2:] = 0  # one padded row
    return {"input_ids": ids, "input_mask": mask,
            "segment_ids": (np.arange(seq) >= seq // 2).astype(np.int32)[None].repeat(batch_size, 0)}


@pytest.fixture(autouse=True)
def float32_policy():
    yield
    keras.mixed_precision.set_dtype_policy("float32")


def test_frozen_encoder_equals_the_model_in_float32_for_any_shape():
    keras.utils.set_random_seed(0)
    model = trained_like(BertEncoder(CONFIG))
    frozen = inference.frozen_forward(model)
    assert not frozen.concrete_function.graph.variables  # weights are constants now
    # One trace serves every batch and sequence length; calls up to HEAD_MAJOR_MAX_TOKENS
    # tokens take the transpose-free attention, the 300-token one the ordinary form.
    for shape in ((3, 8), (2, 13), (10, 30)):
        inputs = batch(*shape)
        expected = model(inputs, training=False)
        got = frozen(inputs)
        tf.nest.assert_same_structure(got, expected)
        for a, b in zip(tf.nest.flatten(got), tf.nest.flatten(expected)):
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_frozen_head_major_attention_transposes_its_kernels_outside_the_cond():
    # The frozen graph's control flow is lowered: the head-major branch of each attention's
    # tf.cond receives its inputs through Switch ops. Its kernels, reshaped and transposed to
    # [heads, hidden, head_size], must be computed before the Switch, from the constants alone,
    # where grappler folds them into constants; after the Switch they would be transposed on
    # every call (six transposes per call of a frozen two-layer model).
    keras.utils.set_random_seed(0)
    frozen = inference.frozen_forward(trained_like(BertEncoder(CONFIG)))
    nodes = {node.name: node for node in frozen.concrete_function.graph.as_graph_def().node}

    def ancestors(name, seen=None):
        seen = set() if seen is None else seen
        for source in nodes[name].input:
            source = source.lstrip("^").split(":")[0]
            if source not in seen:
                seen.add(source)
                ancestors(source, seen)
        return seen

    weight_transposes = []
    for name, node in nodes.items():
        if node.op == "Transpose":
            upstream = {nodes[a].op for a in ancestors(name)}
            if "Placeholder" not in upstream:  # computed from constants only: a weight
                weight_transposes.append(name)
                assert "Switch" not in upstream, name
    # query, key and value of each layer
    assert len(weight_transposes) == 3 * CONFIG.num_hidden_layers


def test_frozen_encoder_is_close_under_mixed_bfloat16():
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    model = trained_like(BertEncoder(CONFIG))
    keras.mixed_precision.set_dtype_policy("float32")
    inputs = batch(4, 16)
    expected = model(inputs, training=False)["sequence_output"].numpy().astype(np.float32)
    got = inference.frozen_forward(model, outputs=["sequence_output"])(inputs)
    assert list(got) == ["sequence_output"]
    got = got["sequence_output"].numpy().astype(np.float32)
    # bfloat16 keeps 8 bits of mantissa: different fusions may round differently.
    np.testing.assert_allclose(got, expected, atol=0.1, rtol=0.05)
    assert np.abs(got - expected).mean() < 0.01


def test_predict_fn_freezes_a_bfloat16_model_after_its_calls_and_keeps_the_logits():
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    model = trained_like(BertClassifier(CONFIG, num_labels=3))
    keras.mixed_precision.set_dtype_policy("float32")
    assert not hasattr(make_predict_fn(trained_like(BertClassifier(CONFIG, num_labels=3)),
                                       freeze_after=0), "is_frozen")  # float32: never frozen
    inputs = batch(3, 10)
    predict = make_predict_fn(model, freeze_after=2)
    expected = model(inputs, training=False)["logits"].numpy().astype(np.float32)
    for call in range(3):
        logits = predict({k: tf.constant(v) for k, v in inputs.items()})
        assert predict.is_frozen() == (call == 2)
        assert logits.dtype == tf.float32 and logits.shape == (3, 3)
        np.testing.assert_allclose(logits.numpy(), expected, atol=0.05)
    # A snapshot: weights changed after freezing do not reach it (documented behaviour).
    model.weights[-1].assign(model.weights[-1] + 1.0)
    np.testing.assert_array_equal(predict(inputs).numpy(), logits.numpy())
    unfrozen = make_predict_fn(model, freeze_after=None)
    assert not np.allclose(unfrozen(inputs).numpy(), expected)


def test_frozen_function_rejects_inputs_of_another_structure():
    keras.utils.set_random_seed(0)
    frozen = inference.frozen_forward(BertEncoder(CONFIG))
    with pytest.raises((ValueError, TypeError)):
        frozen({"input_ids": np.zeros((1, 4), np.int32)})


def test_flat_call_equals_the_function_and_keeps_gradients_under_a_tape():
    """FlatCall skips argument binding: same outputs, and the weights' current values (not a
    snapshot); under a GradientTape it calls the ordinary way, so gradients still flow."""
    keras.utils.set_random_seed(0)
    model = trained_like(BertEncoder(CONFIG))
    fast = inference.fast_forward(model, outputs=["pooled_output"])
    inputs = batch(10, 30)  # 300 tokens: the plain graph, which reads the variables
    assert inference.execution_for(model, inference.input_tokens(inputs)) == "graph"
    np.testing.assert_allclose(fast(inputs)["pooled_output"].numpy(),
                               model(inputs, training=False)["pooled_output"].numpy(), atol=1e-5)
    trained_like(model, seed=5)
    np.testing.assert_allclose(fast(inputs)["pooled_output"].numpy(),
                               model(inputs, training=False)["pooled_output"].numpy(), atol=1e-5)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(fast(inputs)["pooled_output"])
    gradients = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None for g in gradients)
    assert any(float(tf.reduce_max(tf.abs(tf.convert_to_tensor(g)))) > 0 for g in gradients)


def test_fast_forward_compiles_short_float32_calls_and_equals_the_model():
    keras.utils.set_random_seed(0)
    model = trained_like(BertEncoder(CONFIG))
    # hidden 32 <= XLA_MAX_HIDDEN: calls up to XLA_MAX_TOKENS tokens go through XLA.
    assert inference.execution_for(model, tokens=inference.XLA_MAX_TOKENS) == "xla"
    assert inference.execution_for(model, tokens=inference.XLA_MAX_TOKENS + 1) == "graph"
    fast = inference.fast_forward(model, outputs=["sequence_output", "pooled_output"])
    for shape in ((3, 8), (1, 13), (10, 30)):  # two short calls (XLA), a long one (graph)
        inputs = batch(*shape)
        expected = model(inputs, training=False)
        got = fast(inputs)
        assert set(got) == {"sequence_output", "pooled_output"}
        for name in got:
            np.testing.assert_allclose(got[name].numpy(), expected[name].numpy(), atol=1e-5)
    assert set(fast._functions) == {"xla", "graph"}
    big = BertConfig(vocab_size=40, hidden_size=inference.XLA_MAX_HIDDEN + 64,
                     num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=32)
    assert inference.execution_for(BertEncoder(big), tokens=1) == "frozen"
    assert inference.execution_for(BertEncoder(big), tokens=4096) == "graph"
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    small_bfloat16 = BertEncoder(CONFIG)
    assert inference.execution_for(small_bfloat16, tokens=128) == "frozen"
    assert inference.execution_for(small_bfloat16, tokens=4096) == "frozen"
