"""bert_tf models against the independent NumPy reference, plus loss, precision, saving, tracking."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from bert_tf.config import BertConfig
from bert_tf.models import (
    BertClassifier,
    BertEncoder,
    BertPretrainer,
    BertTokenClassifier,
    PretrainingMetrics,
    dummy_inputs,
    pretraining_loss,
)
import numpy_reference  # tests/numpy_reference.py (tests/ is on sys.path under pytest)


def tiny_config(**overrides):
    values = dict(
        vocab_size=60,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=16,
        type_vocab_size=2,
        initializer_range=0.02,
    )
    values.update(overrides)
    return BertConfig(**values)


def padded_two_segment_batch(seq_length=8, seed=0):
    """3 examples: [CLS] A [SEP] B [SEP] with different lengths, zero padding, 3 MLM positions."""
    rng = np.random.default_rng(seed)
    lengths_a_b = [(2, 2), (1, 2), (1, 1)]
    ids = np.zeros((3, seq_length), np.int32)
    mask = np.zeros_like(ids)
    segments = np.zeros_like(ids)
    positions = np.zeros((3, 3), np.int32)
    for row, (len_a, len_b) in enumerate(lengths_a_b):
        total = len_a + len_b + 3
        assert total <= seq_length
        ids[row, :total] = rng.integers(5, 60, size=total)
        ids[row, 0], ids[row, len_a + 1], ids[row, total - 1] = 1, 2, 2  # [CLS], [SEP], [SEP]
        mask[row, :total] = 1
        segments[row, len_a + 2 : total] = 1
        positions[row, :2] = rng.choice(np.arange(1, total - 1), size=2, replace=False)
        # third prediction is padding, like the original's zero-filled masked_lm_positions
    return {
        "input_ids": tf.constant(ids),
        "input_mask": tf.constant(mask),
        "segment_ids": tf.constant(segments),
        "masked_lm_positions": tf.constant(positions),
    }


def assign_original_weights(model, weights):
    """Copies original-named weights into a bert_tf model through its documented attributes."""
    encoder = model if isinstance(model, BertEncoder) else model.encoder
    emb = encoder.embeddings
    emb.word_embeddings.embeddings.assign(weights["bert/embeddings/word_embeddings"])
    emb.position_embeddings.embeddings.assign(weights["bert/embeddings/position_embeddings"])
    emb.token_type_embeddings.embeddings.assign(weights["bert/embeddings/token_type_embeddings"])
    _assign_norm(emb.layer_norm, weights, "bert/embeddings/LayerNorm")
    for i, block in enumerate(encoder.transformer_layers):
        p = f"bert/encoder/layer_{i}/"
        for name in ("query", "key", "value"):
            _assign_dense(getattr(block.attention, name), weights, p + f"attention/self/{name}")
        _assign_dense(block.attention.output_dense, weights, p + "attention/output/dense")
        _assign_norm(block.attention_layer_norm, weights, p + "attention/output/LayerNorm")
        _assign_dense(block.intermediate, weights, p + "intermediate/dense")
        _assign_dense(block.output_dense, weights, p + "output/dense")
        _assign_norm(block.output_layer_norm, weights, p + "output/LayerNorm")
    _assign_dense(encoder.pooler, weights, "bert/pooler/dense")
    if isinstance(model, BertPretrainer):
        head = model.masked_lm_head
        _assign_dense(head.transform, weights, "cls/predictions/transform/dense")
        _assign_norm(head.layer_norm, weights, "cls/predictions/transform/LayerNorm")
        head.output_bias.assign(weights["cls/predictions/output_bias"])
        nsp = model.next_sentence_head
        nsp.output_weights.assign(weights["cls/seq_relationship/output_weights"])  # [2, H] as is
        nsp.output_bias.assign(weights["cls/seq_relationship/output_bias"])


def _assign_dense(dense, weights, prefix):
    dense.kernel.assign(weights[prefix + "/kernel"])
    dense.bias.assign(weights[prefix + "/bias"])


def _assign_norm(norm, weights, prefix):
    norm.gamma.assign(weights[prefix + "/gamma"])
    norm.beta.assign(weights[prefix + "/beta"])


def _reference(config, weights, inputs):
    return numpy_reference.bert_forward(
        weights,
        config,
        inputs["input_ids"].numpy(),
        inputs["input_mask"].numpy(),
        inputs["segment_ids"].numpy(),
        inputs["masked_lm_positions"].numpy(),
    )


def _log_softmax(logits):
    return tf.nn.log_softmax(logits).numpy()


@pytest.fixture
def float32_policy():
    yield
    keras.mixed_precision.set_dtype_policy("float32")


# --------------------------------------------------------------------------- numerics
@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_exact"])
def test_pretrainer_matches_numpy_reference(hidden_act):
    config = tiny_config(hidden_act=hidden_act)
    weights = numpy_reference.random_original_weights(config, seed=1)
    model = BertPretrainer(config)
    assign_original_weights(model, weights)
    inputs = padded_two_segment_batch()
    outputs = model(inputs, training=False)
    ref = _reference(config, weights, inputs)

    tol = dict(atol=1e-4, rtol=0)
    np.testing.assert_allclose(outputs["embedding_output"], ref["embedding_output"], **tol)
    assert len(outputs["encoder_outputs"]) == config.num_hidden_layers
    for got, want in zip(outputs["encoder_outputs"], ref["encoder_outputs"]):
        np.testing.assert_allclose(got, want, **tol)
    np.testing.assert_allclose(outputs["sequence_output"], ref["sequence_output"], **tol)
    np.testing.assert_allclose(outputs["pooled_output"], ref["pooled_output"], **tol)
    np.testing.assert_allclose(
        _log_softmax(outputs["masked_lm_logits"]), ref["masked_lm_log_probs"], **tol
    )
    np.testing.assert_allclose(
        _log_softmax(outputs["next_sentence_logits"]), ref["next_sentence_log_probs"], **tol
    )
    for name, value in outputs.items():
        for tensor in value if isinstance(value, list) else [value]:
            assert tensor.dtype == tf.float32, name


def test_activations_differ_so_the_parity_test_can_tell_them_apart():
    config = tiny_config()
    weights = numpy_reference.random_original_weights(config, seed=1)
    inputs = padded_two_segment_batch()
    tanh_ref = _reference(config, weights, inputs)["sequence_output"]
    erf_ref = _reference(tiny_config(hidden_act="gelu_exact"), weights, inputs)["sequence_output"]
    assert np.abs(tanh_ref - erf_ref).max() > 1e-4


def test_padding_tokens_do_not_change_real_positions():
    config = tiny_config()
    model = BertEncoder(config)
    inputs = padded_two_segment_batch()
    changed = dict(inputs)
    ids = inputs["input_ids"].numpy()
    ids[inputs["input_mask"].numpy() == 0] = 7
    changed["input_ids"] = tf.constant(ids)
    a = model(inputs, training=False)["sequence_output"].numpy()
    b = model(changed, training=False)["sequence_output"].numpy()
    real = inputs["input_mask"].numpy() == 1
    np.testing.assert_allclose(a[real], b[real], atol=1e-5)
    assert np.abs(a[~real] - b[~real]).max() > 1e-3


def test_dynamic_sequence_length_and_limit():
    config = tiny_config()
    weights = numpy_reference.random_original_weights(config, seed=2)
    model = BertEncoder(config)
    assign_original_weights(model, weights)
    traced = tf.function(
        lambda x: model(x, training=False)["sequence_output"],
        input_signature=[
            {
                name: tf.TensorSpec([None, None], tf.int32)
                for name in ("input_ids", "input_mask", "segment_ids")
            }
        ],
    )
    for seq_length in (7, 11, 16):
        inputs = padded_two_segment_batch(seq_length=seq_length, seed=seq_length)
        ref = _reference(config, weights, inputs)["sequence_output"]
        encoder_inputs = {k: v for k, v in inputs.items() if k != "masked_lm_positions"}
        np.testing.assert_allclose(model(encoder_inputs)["sequence_output"], ref, atol=1e-4)
        np.testing.assert_allclose(traced(encoder_inputs), ref, atol=1e-4)
    too_long = {"input_ids": tf.zeros((1, 17), tf.int32)}
    with pytest.raises(ValueError, match="exceeds max_position_embeddings 16"):
        model(too_long)


def test_missing_mask_and_segments_default_to_all_attended_segment_zero():
    model = BertEncoder(tiny_config())
    ids = tf.constant([[1, 9, 8, 2]], tf.int32)
    full = {"input_ids": ids, "input_mask": tf.ones_like(ids), "segment_ids": tf.zeros_like(ids)}
    np.testing.assert_array_equal(
        model({"input_ids": ids})["sequence_output"], model(full)["sequence_output"]
    )


def test_dummy_inputs_trace_every_output_shape():
    config = tiny_config()
    outputs = BertPretrainer(config)(dummy_inputs(config, batch_size=2, seq_length=4, num_predictions=3))
    assert outputs["sequence_output"].shape == (2, 4, 32)
    assert outputs["embedding_output"].shape == (2, 4, 32)
    assert outputs["pooled_output"].shape == (2, 32)
    assert outputs["masked_lm_logits"].shape == (2, 3, 60)
    assert outputs["next_sentence_logits"].shape == (2, 2)


def test_classifiers_on_reference_encoder():
    config = tiny_config()
    weights = numpy_reference.random_original_weights(config, seed=3)
    inputs = padded_two_segment_batch()
    ref = _reference(config, weights, inputs)
    rng = np.random.default_rng(0)

    classifier = BertClassifier(config, num_labels=3)
    assign_original_weights(classifier, weights)
    output_weights = rng.normal(size=(3, 32)).astype(np.float32)  # original [num_labels, H]
    output_bias = rng.normal(size=(3,)).astype(np.float32)
    classifier.classifier.kernel.assign(output_weights.T)
    classifier.classifier.bias.assign(output_bias)
    logits = classifier(inputs, training=False)["logits"]
    assert logits.shape == (3, 3) and logits.dtype == tf.float32
    np.testing.assert_allclose(logits, ref["pooled_output"] @ output_weights.T + output_bias, atol=1e-4)

    regression = BertClassifier(config, num_labels=1)
    assert regression(inputs)["logits"].shape == (3, 1)

    tagger = BertTokenClassifier(config, num_labels=5)
    assign_original_weights(tagger, weights)
    kernel = rng.normal(size=(32, 5)).astype(np.float32)
    tagger.classifier.kernel.assign(kernel)
    token_logits = tagger(inputs, training=False)["logits"]
    assert token_logits.shape == (3, 8, 5)
    np.testing.assert_allclose(token_logits, ref["sequence_output"] @ kernel, atol=1e-4)

    with pytest.raises(ValueError, match="num_labels must be a positive integer"):
        BertClassifier(config, num_labels=0)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_classifier_pooling_on_reference_encoder(pooling):
    """cls = [CLS]'s last hidden state; mean = the mean over the unmasked positions only
    (sentence-transformers' mean pooling), both from the NumPy reference's sequence output."""
    config = tiny_config()
    weights = numpy_reference.random_original_weights(config, seed=5)
    inputs = padded_two_segment_batch()
    sequence = _reference(config, weights, inputs)["sequence_output"]  # [3, 8, 32]
    mask = inputs["input_mask"].numpy().astype(np.float64)
    if pooling == "cls":
        pooled = sequence[:, 0]
    else:
        pooled = np.stack([sequence[i, mask[i] == 1].mean(axis=0) for i in range(3)])
    classifier = BertClassifier(config, num_labels=2, pooling=pooling)
    assign_original_weights(classifier, weights)
    kernel = np.random.default_rng(1).normal(size=(32, 2)).astype(np.float32)
    classifier.classifier.kernel.assign(kernel)
    logits = classifier(inputs, training=False)["logits"].numpy()
    np.testing.assert_allclose(logits, pooled @ kernel, atol=1e-4)
    # Not what the original head gives on the same weights: the test can tell them apart.
    pooler = BertClassifier(config, num_labels=2)
    assign_original_weights(pooler, weights)
    pooler.classifier.kernel.assign(kernel)
    assert np.abs(pooler(inputs, training=False)["logits"].numpy() - logits).max() > 1e-2

    with pytest.raises(ValueError, match="pooling must be one of"):
        BertClassifier(config, num_labels=2, pooling="max")


def test_classifier_dropout_only_in_training():
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertClassifier(config, num_labels=2, classifier_dropout=0.5)
    inputs = padded_two_segment_batch()
    assert model.dropout.rate == 0.5
    a = model(inputs, training=False)["logits"].numpy()
    np.testing.assert_array_equal(a, model(inputs, training=False)["logits"])
    assert np.abs(a - model(inputs, training=True)["logits"].numpy()).max() > 1e-6


def test_attribute_shapes_and_initialization():
    config = tiny_config(initializer_range=0.05)
    model = BertPretrainer(config)
    enc = model.encoder
    assert enc.embeddings.word_embeddings.embeddings.shape == (60, 32)
    assert enc.embeddings.position_embeddings.embeddings.shape == (16, 32)
    assert enc.embeddings.token_type_embeddings.embeddings.shape == (2, 32)
    assert len(enc.transformer_layers) == 2
    block = enc.transformer_layers[1]
    for dense in (block.attention.query, block.attention.key, block.attention.value,
                  block.attention.output_dense):
        assert dense.kernel.shape == (32, 32)
    assert block.intermediate.kernel.shape == (32, 64)
    assert block.output_dense.kernel.shape == (64, 32)
    assert enc.pooler.kernel.shape == (32, 32)
    assert model.masked_lm_head.transform.kernel.shape == (32, 32)
    assert model.masked_lm_head.output_bias.shape == (60,)
    assert model.next_sentence_head.output_weights.shape == (2, 32)
    assert model.next_sentence_head.output_bias.shape == (2,)
    # Truncated normal (|w| <= 2 stddev, std of the truncated law = 0.88 stddev), zero biases,
    # LayerNorm gamma one / beta zero.
    kernels = np.concatenate(
        [block.intermediate.kernel.numpy().ravel(), enc.embeddings.word_embeddings.embeddings.numpy().ravel()]
    )
    assert np.abs(kernels).max() <= 2 * 0.05 + 1e-7
    assert 0.8 * 0.05 < kernels.std() < 0.95 * 0.05
    assert np.all(block.intermediate.bias.numpy() == 0)
    assert np.all(model.masked_lm_head.output_bias.numpy() == 0)
    assert np.all(block.output_layer_norm.gamma.numpy() == 1)
    assert np.all(block.output_layer_norm.beta.numpy() == 0)
    # Weight decay excludes names containing "layer_norm"/"bias": the paths must say so.
    paths = [v.path for v in model.weights]
    assert sum("layer_norm" in p for p in paths) == 2 * (1 + 2 * 2 + 1)
    assert f"{model.name}/masked_lm_head/output_bias" in paths
    assert f"{model.name}/next_sentence_head/output_bias" in paths
    assert f"{model.name}/encoder/transformer_layer_1/attention/query/kernel" in paths


# --------------------------------------------------------------------------- loss and metrics
def _hand_made_pretraining_batch():
    ln2, ln3 = math.log(2.0), math.log(3.0)
    outputs = {
        # example 0: position 0 uniform over 2 (label 0: nll ln2); position 1 [ln3, 0] with
        # label 1 (p = 1/4: nll ln4); example 1: a padding prediction (weight 0) that is wrong.
        "masked_lm_logits": tf.constant(
            [[[0.0, 0.0], [ln3, 0.0]], [[5.0, 0.0], [0.0, 0.0]]], tf.float32
        ),
        # example 0 label 0 with logits [0, ln3] (p0 = 1/4); example 1 label 1 with [0, 0].
        "next_sentence_logits": tf.constant([[0.0, ln3], [0.0, 0.0]], tf.float32),
    }
    features = {
        "masked_lm_ids": tf.constant([[0, 1], [1, 0]], tf.int32),
        "masked_lm_weights": tf.constant([[1.0, 0.5], [0.0, 0.0]], tf.float32),
        "next_sentence_labels": tf.constant([[0], [1]], tf.int32),
    }
    return features, outputs, ln2


def test_pretraining_loss_hand_computed():
    features, outputs, ln2 = _hand_made_pretraining_batch()
    losses = pretraining_loss(features, outputs)
    expected_mlm = (ln2 + 0.5 * 2 * ln2) / (1.5 + 1e-5)
    expected_nsp = (2 * ln2 + ln2) / 2
    assert losses["masked_lm_loss"].dtype == tf.float32
    np.testing.assert_allclose(losses["masked_lm_loss"], expected_mlm, rtol=1e-6)
    np.testing.assert_allclose(losses["next_sentence_loss"], expected_nsp, rtol=1e-6)
    np.testing.assert_allclose(losses["loss"], expected_mlm + expected_nsp, rtol=1e-6)
    # Labels as [B] give the same; bfloat16 logits are computed in float32.
    flat = dict(features, next_sentence_labels=tf.constant([0, 1], tf.int64))
    half = {k: tf.cast(v, tf.bfloat16) for k, v in outputs.items()}
    np.testing.assert_allclose(pretraining_loss(flat, outputs)["loss"], losses["loss"], rtol=1e-6)
    assert pretraining_loss(features, half)["loss"].dtype == tf.float32


def test_pretraining_loss_all_weights_zero_is_finite():
    features, outputs, _ = _hand_made_pretraining_batch()
    features = dict(features, masked_lm_weights=tf.zeros((2, 2)))
    assert pretraining_loss(features, outputs)["masked_lm_loss"].numpy() == 0.0


def test_pretraining_metrics_hand_computed():
    features, outputs, ln2 = _hand_made_pretraining_batch()
    metrics = PretrainingMetrics()
    metrics.update_state(features, outputs)
    result = {k: float(v) for k, v in metrics.result().items()}
    # argmax: ex0 pos0 ties -> 0 (label 0: right), pos1 -> 0 (label 1: wrong), ex1 weight 0.
    assert result["masked_lm_accuracy"] == pytest.approx(1.0 / 1.5)
    assert result["masked_lm_loss"] == pytest.approx((ln2 + 0.5 * 2 * ln2) / 1.5)
    # NSP argmax: ex0 -> 1 (label 0: wrong), ex1 tie -> 0 (label 1: wrong).
    assert result["next_sentence_accuracy"] == 0.0
    assert result["next_sentence_loss"] == pytest.approx(1.5 * ln2)
    # A second batch: running means over both.
    second = dict(features, masked_lm_weights=tf.constant([[0.0, 0.0], [1.0, 0.0]]))
    metrics.update_state(second, outputs)
    assert float(metrics.result()["masked_lm_accuracy"]) == pytest.approx(1.0 / 2.5)
    metrics.reset_state()
    assert float(metrics.result()["next_sentence_loss"]) == 0.0


def test_gradients_reach_every_variable():
    model = BertPretrainer(tiny_config())
    inputs = padded_two_segment_batch()
    features = {
        "masked_lm_ids": tf.constant([[5, 6, 0]] * 3, tf.int32),
        "masked_lm_weights": tf.constant([[1.0, 1.0, 0.0]] * 3),
        "next_sentence_labels": tf.constant([[0], [1], [0]], tf.int32),
    }
    with tf.GradientTape() as tape:
        loss = pretraining_loss(features, model(inputs, training=True))["loss"]
    grads = tape.gradient(loss, model.trainable_variables)
    missing = [v.path for v, g in zip(model.trainable_variables, grads) if g is None]
    assert not missing
    assert len(model.trainable_variables) == 5 + 16 * 2 + 2 + 5 + 2


# --------------------------------------------------------------------------- precision, jit
@pytest.mark.parametrize("policy, atol", [("mixed_bfloat16", 0.15), ("mixed_float16", 0.03)])
def test_mixed_precision_close_to_float32(float32_policy, policy, atol):
    config = tiny_config()
    weights = numpy_reference.random_original_weights(config, seed=4)
    inputs = padded_two_segment_batch()
    ref = _reference(config, weights, inputs)
    keras.mixed_precision.set_dtype_policy(policy)
    model = BertPretrainer(config)
    keras.mixed_precision.set_dtype_policy("float32")
    block = model.encoder.transformer_layers[0]
    assert block.attention.query.compute_dtype == policy.split("_")[1]
    assert all(v.dtype == "float32" for v in model.weights)
    assign_original_weights(model, weights)
    for jit in (False, True):
        outputs = tf.function(lambda x: model(x, training=False), jit_compile=jit)(inputs)
        for name in ("sequence_output", "pooled_output", "masked_lm_logits", "next_sentence_logits"):
            assert outputs[name].dtype == tf.float32
            assert np.all(np.isfinite(outputs[name].numpy()))
        np.testing.assert_allclose(outputs["sequence_output"], ref["sequence_output"], atol=atol)
        np.testing.assert_allclose(outputs["pooled_output"], ref["pooled_output"], atol=atol)
        np.testing.assert_allclose(
            _log_softmax(outputs["masked_lm_logits"]), ref["masked_lm_log_probs"], atol=4 * atol
        )


def test_float16_layer_norm_statistics_do_not_underflow(float32_policy):
    # Constant hidden states have variance 0: only an epsilon kept in float32 (1e-12 is 0 in
    # float16) avoids 0 * inf = NaN.
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    model = BertEncoder(tiny_config())
    keras.mixed_precision.set_dtype_policy("float32")
    emb = model.embeddings
    for table in (emb.word_embeddings, emb.position_embeddings, emb.token_type_embeddings):
        table.embeddings.assign(tf.zeros_like(table.embeddings))
    emb.layer_norm.beta.assign(tf.fill([32], 0.25))
    outputs = model({"input_ids": tf.constant([[1, 2, 3]], tf.int32)}, training=False)
    np.testing.assert_allclose(outputs["embedding_output"], np.full((1, 3, 32), 0.25))
    assert np.all(np.isfinite(outputs["sequence_output"].numpy()))


def test_jit_compile_matches_eager_and_trains():
    config = tiny_config()
    model = BertPretrainer(config)
    inputs = padded_two_segment_batch()
    eager = model(inputs, training=False)
    jitted = tf.function(lambda x: model(x, training=False), jit_compile=True)(inputs)
    for name in ("sequence_output", "pooled_output", "masked_lm_logits", "next_sentence_logits"):
        np.testing.assert_allclose(jitted[name], eager[name], atol=1e-5)
    features = {
        "masked_lm_ids": tf.constant([[5, 6, 0]] * 3, tf.int32),
        "masked_lm_weights": tf.constant([[1.0, 1.0, 0.0]] * 3),
        "next_sentence_labels": tf.constant([[0], [1], [0]], tf.int32),
    }
    optimizer = keras.optimizers.SGD(0.1)

    @tf.function(jit_compile=True)
    def train_step(x):
        with tf.GradientTape() as tape:
            loss = pretraining_loss(features, model(x, training=True))["loss"]
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                      model.trainable_variables))
        return loss

    first = float(train_step(inputs))
    for _ in range(3):
        last = float(train_step(inputs))
    assert math.isfinite(first) and last < first


# --------------------------------------------------------------------------- saving, tracking
@pytest.mark.parametrize(
    "make",
    [
        lambda c: BertEncoder(c),
        lambda c: BertPretrainer(c),
        lambda c: BertClassifier(c, num_labels=3, classifier_dropout=0.2),
        lambda c: BertClassifier(c, num_labels=3, classifier_dropout=0.2, pooling="mean"),
        lambda c: BertTokenClassifier(c, num_labels=4),
    ],
    ids=["encoder", "pretrainer", "classifier", "classifier_mean", "token_classifier"],
)
def test_keras_save_and_load_gives_identical_outputs(tmp_path, make):
    config = tiny_config(hidden_act="gelu_exact")
    model = make(config)
    inputs = padded_two_segment_batch()
    if not isinstance(model, BertPretrainer):
        inputs.pop("masked_lm_positions")
    expected = model(inputs, training=False)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model)
    assert loaded.config == config and loaded.config.hidden_act == "gelu_exact"
    got = loaded(inputs, training=False)
    for name, value in expected.items():
        np.testing.assert_array_equal(
            np.asarray(got[name] if name != "encoder_outputs" else got[name][-1]),
            np.asarray(value if name != "encoder_outputs" else value[-1]),
        )
    if isinstance(model, BertClassifier):
        assert loaded.num_labels == 3 and loaded.classifier_dropout == 0.2
        assert loaded.pooling == model.pooling


def test_tf_train_checkpoint_tracks_every_block_and_restore_changes_weights(tmp_path):
    config = tiny_config(num_hidden_layers=3)
    model = BertPretrainer(config)
    saved = [v.numpy().copy() for v in model.weights]
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    names = [name for name, _ in tf.train.list_variables(path)]
    for i in range(3):
        assert any(f"encoder/transformer_layers/{i}/attention/query/" in n for n in names), i
    assert len([n for n in names if "VARIABLE_VALUE" in n and "save_counter" not in n]) == len(
        model.weights
    )

    for variable in model.weights:
        variable.assign(tf.fill(variable.shape, 3.0))
    tf.train.Checkpoint(model=model).restore(path).assert_consumed()
    for variable, value in zip(model.weights, saved):
        np.testing.assert_array_equal(variable.numpy(), value)

    # A fresh model (built on construction, never called) restores too.
    fresh = BertPretrainer(config)
    tf.train.Checkpoint(model=fresh).restore(path).assert_consumed()
    for variable, value in zip(fresh.weights, saved):
        np.testing.assert_array_equal(variable.numpy(), value)
