"""Checkpoint loading and saving, checked against independent references.

References: keras-hub's BertBackbone loading the MiniLM Hugging Face directory with its own
converter; the NumPy BERT of tests/numpy_reference.py fed with the original-named weights
that this file converts from the safetensors file by hand; checkpoints written here with the
original variable names through tf.raw_ops.SaveV2, whose expected placement in the model is
spelled out below (not taken from bert_tf's name table).
"""

import json
import logging as py_logging
import os
import re

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import load_file, save_file

from bert_tf import checkpoints
from bert_tf.config import BertConfig
from bert_tf.models import BertClassifier, BertEncoder, BertPretrainer, BertTokenClassifier

import numpy_reference  # tests/numpy_reference.py: NumPy BERT written from ORIGINAL_BERT_FACTS.md

# ------------------------------------------------------------------------------------ helpers

TINY = dict(
    vocab_size=40,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=24,
    type_vocab_size=2,
)


def tiny_config(**overrides):
    return BertConfig(**{**TINY, **overrides})


def original_shapes(c, num_labels=None, heads=True):
    """The original TF1 variable names and shapes, written from ORIGINAL_BERT_FACTS.md."""
    H, I = c.hidden_size, c.intermediate_size
    shapes = {
        "bert/embeddings/word_embeddings": [c.vocab_size, H],
        "bert/embeddings/token_type_embeddings": [c.type_vocab_size, H],
        "bert/embeddings/position_embeddings": [c.max_position_embeddings, H],
        "bert/embeddings/LayerNorm/gamma": [H],
        "bert/embeddings/LayerNorm/beta": [H],
        "bert/pooler/dense/kernel": [H, H],
        "bert/pooler/dense/bias": [H],
    }
    for i in range(c.num_hidden_layers):
        p = f"bert/encoder/layer_{i}/"
        for name in ("attention/self/query", "attention/self/key", "attention/self/value",
                     "attention/output/dense"):
            shapes[p + name + "/kernel"] = [H, H]
            shapes[p + name + "/bias"] = [H]
        shapes[p + "intermediate/dense/kernel"] = [H, I]
        shapes[p + "intermediate/dense/bias"] = [I]
        shapes[p + "output/dense/kernel"] = [I, H]
        shapes[p + "output/dense/bias"] = [H]
        for ln in ("attention/output/LayerNorm", "output/LayerNorm"):
            shapes[p + ln + "/gamma"] = [H]
            shapes[p + ln + "/beta"] = [H]
    if heads:
        shapes.update({
            "cls/predictions/transform/dense/kernel": [H, H],
            "cls/predictions/transform/dense/bias": [H],
            "cls/predictions/transform/LayerNorm/gamma": [H],
            "cls/predictions/transform/LayerNorm/beta": [H],
            "cls/predictions/output_bias": [c.vocab_size],
            "cls/seq_relationship/output_weights": [2, H],
            "cls/seq_relationship/output_bias": [2],
        })
    if num_labels:
        shapes["output_weights"] = [num_labels, H]
        shapes["output_bias"] = [num_labels]
    return shapes


def random_original_weights(c, seed, num_labels=None, heads=True):
    rng = np.random.default_rng(seed)
    return {
        name: rng.normal(0.0, 0.2, size=shape).astype(np.float32)
        for name, shape in original_shapes(c, num_labels, heads).items()
    }


def write_tf1_checkpoint(prefix, tensors):
    """A checkpoint the way TF1's Saver lays it out: arbitrary names via SaveV2."""
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    names = sorted(tensors)
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(tensors[n]) for n in names],
    )
    return prefix


def model_value(model, original_name):
    """Where the brief's attribute layout keeps each original variable (hand-written map)."""
    encoder = model if isinstance(model, BertEncoder) else model.encoder
    m = re.match(r"bert/encoder/layer_(\d+)/(.*)", original_name)
    if m:
        block, rest = encoder.transformer_layers[int(m.group(1))], m.group(2)
        layer = {
            "attention/self/query": block.attention.query,
            "attention/self/key": block.attention.key,
            "attention/self/value": block.attention.value,
            "attention/output/dense": block.attention.output_dense,
            "attention/output/LayerNorm": block.attention_layer_norm,
            "intermediate/dense": block.intermediate,
            "output/dense": block.output_dense,
            "output/LayerNorm": block.output_layer_norm,
        }[rest.rsplit("/", 1)[0]]
        return getattr(layer, rest.rsplit("/", 1)[1]).numpy()
    emb = encoder.embeddings
    fixed = {
        "bert/embeddings/word_embeddings": lambda: emb.word_embeddings.embeddings,
        "bert/embeddings/token_type_embeddings": lambda: emb.token_type_embeddings.embeddings,
        "bert/embeddings/position_embeddings": lambda: emb.position_embeddings.embeddings,
        "bert/embeddings/LayerNorm/gamma": lambda: emb.layer_norm.gamma,
        "bert/embeddings/LayerNorm/beta": lambda: emb.layer_norm.beta,
        "bert/pooler/dense/kernel": lambda: encoder.pooler.kernel,
        "bert/pooler/dense/bias": lambda: encoder.pooler.bias,
        "cls/predictions/transform/dense/kernel": lambda: model.masked_lm_head.transform.kernel,
        "cls/predictions/transform/dense/bias": lambda: model.masked_lm_head.transform.bias,
        "cls/predictions/transform/LayerNorm/gamma": lambda: model.masked_lm_head.layer_norm.gamma,
        "cls/predictions/transform/LayerNorm/beta": lambda: model.masked_lm_head.layer_norm.beta,
        "cls/predictions/output_bias": lambda: model.masked_lm_head.output_bias,
        "cls/seq_relationship/output_weights": lambda: model.next_sentence_head.output_weights,
        "cls/seq_relationship/output_bias": lambda: model.next_sentence_head.output_bias,
        # run_classifier stores [num_labels, H]; a Keras Dense kernel is [H, num_labels].
        "output_weights": lambda: np.transpose(model.classifier.kernel.numpy()),
        "output_bias": lambda: model.classifier.bias,
    }
    value = fixed[original_name]()
    return value if isinstance(value, np.ndarray) else value.numpy()


def padded_two_segment_batch(vocab_size, with_positions=False):
    """[CLS] a a [SEP] b b [SEP] [PAD]... : two segments, different lengths, padding."""
    lengths_a, lengths_b, seq = (3, 5), (4, 2), 12
    rng = np.random.default_rng(7)
    ids = np.zeros((2, seq), np.int32)
    mask = np.zeros((2, seq), np.int32)
    segs = np.zeros((2, seq), np.int32)
    for row, (la, lb) in enumerate(zip(lengths_a, lengths_b)):
        n = 1 + la + 1 + lb + 1
        tokens = rng.integers(5, vocab_size, size=n)
        tokens[0], tokens[la + 1], tokens[n - 1] = 2, 3, 3  # tiny vocab: [CLS]=2, [SEP]=3
        if vocab_size > 1000:
            tokens[0], tokens[la + 1], tokens[n - 1] = 101, 102, 102
        ids[row, :n] = tokens
        mask[row, :n] = 1
        segs[row, la + 2:n] = 1
    batch = {"input_ids": ids, "input_mask": mask, "segment_ids": segs}
    if with_positions:
        batch["masked_lm_positions"] = np.array([[1, 2, 6, 0], [3, 5, 9, 10]], np.int32)
    return batch


def outputs_of(model, batch):
    return {k: v.numpy() for k, v in model(batch, training=False).items() if k != "encoder_outputs"}


# ------------------------------------------------------------------------------------ MiniLM

HF_LAYER_PARTS = {
    "attention.self.query": "attention/self/query",
    "attention.self.key": "attention/self/key",
    "attention.self.value": "attention/self/value",
    "attention.output.dense": "attention/output/dense",
    "attention.output.LayerNorm": "attention/output/LayerNorm",
    "intermediate.dense": "intermediate/dense",
    "output.dense": "output/dense",
    "output.LayerNorm": "output/LayerNorm",
}


def hf_to_original(hf):
    """The test's own conversion of a bare Hugging Face BertModel file to original names."""
    out = {}
    for key, value in hf.items():
        if key.endswith("position_ids"):
            continue
        scope, leaf = key.rsplit(".", 1)
        if scope.startswith("embeddings.") and scope.endswith("_embeddings"):
            out["bert/embeddings/" + scope.split(".")[1]] = value
            continue
        m = re.match(r"encoder\.layer\.(\d+)\.(.*)", scope)
        if m:
            name = f"bert/encoder/layer_{m.group(1)}/{HF_LAYER_PARTS[m.group(2)]}"
        elif scope == "embeddings.LayerNorm":
            name = "bert/embeddings/LayerNorm"
        elif scope == "pooler.dense":
            name = "bert/pooler/dense"
        else:
            raise AssertionError(f"unexpected tensor {key}")
        if name.endswith("LayerNorm"):
            out[name + {"weight": "/gamma", "bias": "/beta"}[leaf]] = value
        else:  # torch Linear weight is [out, in]; TF1 kernel is [in, out]
            out[name + {"weight": "/kernel", "bias": "/bias"}[leaf]] = (
                np.ascontiguousarray(value.T) if leaf == "weight" else value
            )
    return out


@pytest.fixture(scope="module")
def minilm_original(minilm_dir):
    return hf_to_original(load_file(os.path.join(minilm_dir, "model.safetensors")))


@pytest.fixture(scope="module")
def minilm_config(minilm_dir):
    return checkpoints.read_config(minilm_dir)


@pytest.fixture(scope="module")
def minilm_batch():
    return padded_two_segment_batch(30522)


@pytest.fixture(scope="module")
def minilm_encoder(minilm_dir, minilm_config):
    """MiniLM as its config says: exact (erf) GELU. Loaded once for the module."""
    encoder = BertEncoder(minilm_config)
    checkpoints.load_checkpoint(encoder, minilm_dir)
    return encoder


def test_read_config_of_hugging_face_dir(minilm_config):
    c = minilm_config
    assert (c.vocab_size, c.hidden_size, c.num_hidden_layers, c.num_attention_heads) == (30522, 384, 6, 12)
    assert c.intermediate_size == 1536
    assert c.hidden_act == "gelu_exact"  # HF "gelu" is the erf form


def test_hugging_face_dir_config_keeps_hf_gelu_meaning_without_hf_only_keys(tmp_path):
    # An old config.json with only the original keys: in a Hugging Face folder "gelu" is
    # still the erf form, although the same file beside a TF1 checkpoint would mean tanh.
    config = {"vocab_size": 30, "hidden_size": 8, "num_hidden_layers": 1,
              "num_attention_heads": 2, "intermediate_size": 16, "hidden_act": "gelu",
              "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
              "max_position_embeddings": 16, "type_vocab_size": 2, "initializer_range": 0.02}
    save_file({"embeddings.word_embeddings.weight": np.zeros((30, 8), np.float32)},
              str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert checkpoints.read_config(str(tmp_path)).hidden_act == "gelu_exact"


def test_find_vocab_and_casing_of_hugging_face_dir(minilm_dir):
    vocab, lower = checkpoints.find_vocab_and_casing(minilm_dir)
    assert vocab == os.path.join(minilm_dir, "vocab.txt")
    assert lower is True


def test_minilm_matches_keras_hub_backbone(minilm_dir, minilm_config, minilm_batch, caplog):
    reference = keras_hub.models.BertBackbone.from_preset(minilm_dir)
    expected = reference(
        {
            "token_ids": minilm_batch["input_ids"],
            "segment_ids": minilm_batch["segment_ids"],
            "padding_mask": minilm_batch["input_mask"],
        }
    )
    # keras-hub's BERT always uses the tanh GELU.
    encoder = BertEncoder(BertConfig.from_dict({**minilm_config.to_dict(), "hidden_act": "gelu"}))
    with caplog.at_level(py_logging.WARNING):
        report = checkpoints.load_checkpoint(encoder, minilm_dir)
    assert any("hidden_act='gelu_exact'" in r.getMessage() for r in caplog.records)  # deliberate here
    assert report.format == "hugging_face"
    assert len(report.loaded) == 5 + 6 * 16 + 2 and not report.missing and not report.unused
    assert report.ignored == ["embeddings.position_ids"]
    got = outputs_of(encoder, minilm_batch)
    np.testing.assert_allclose(got["sequence_output"], expected["sequence_output"].numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(got["pooled_output"], expected["pooled_output"].numpy(), atol=1e-4, rtol=0)


def test_minilm_matches_numpy_reference_with_exact_gelu(minilm_encoder, minilm_config, minilm_original, minilm_batch):
    got = outputs_of(minilm_encoder, minilm_batch)
    expected = numpy_reference.bert_forward(minilm_original, minilm_config, **minilm_batch)
    np.testing.assert_allclose(got["sequence_output"], expected["sequence_output"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(got["pooled_output"], expected["pooled_output"], atol=1e-4, rtol=0)


def test_minilm_with_heads_from_tf1_checkpoint_matches_numpy_reference(tmp_path, minilm_config, minilm_original):
    """MiniLM is a bare encoder: add random MLM/NSP heads and go through a TF1 checkpoint."""
    heads = {
        name: value
        for name, value in random_original_weights(minilm_config, seed=3).items()
        if name.startswith("cls/")
    }
    weights = {**minilm_original, **heads}
    prefix = write_tf1_checkpoint(str(tmp_path / "minilm_heads" / "bert_model.ckpt"), weights)
    model = BertPretrainer(minilm_config)
    report = checkpoints.load_checkpoint(model, prefix)
    assert not report.missing and not report.unused
    batch = padded_two_segment_batch(30522, with_positions=True)
    got = outputs_of(model, batch)
    expected = numpy_reference.bert_forward(weights, minilm_config, **batch)
    np.testing.assert_allclose(got["sequence_output"], expected["sequence_output"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(got["pooled_output"], expected["pooled_output"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(
        numpy_reference.log_softmax(got["masked_lm_logits"]), expected["masked_lm_log_probs"], atol=1e-4, rtol=0
    )
    np.testing.assert_allclose(
        numpy_reference.log_softmax(got["next_sentence_logits"]), expected["next_sentence_log_probs"], atol=1e-4, rtol=0
    )


def test_exact_gelu_model_saves_with_warning_and_explicit_name(tmp_path, minilm_encoder, minilm_batch, caplog):
    encoder = minilm_encoder
    prefix = str(tmp_path / "converted" / "bert_model.ckpt")
    with caplog.at_level(py_logging.WARNING):
        checkpoints.save_original_checkpoint(encoder, prefix)
    assert any("gelu_exact" in r.getMessage() for r in caplog.records if r.levelno >= py_logging.WARNING)
    with open(tmp_path / "converted" / "bert_config.json") as f:
        written = json.load(f)
    assert written["hidden_act"] == "gelu_exact"
    assert written["hidden_size"] == 384 and written["vocab_size"] == 30522
    assert set(written) == set(TINY) | {"hidden_act", "hidden_dropout_prob",
                                        "attention_probs_dropout_prob", "initializer_range"}
    reloaded_config = checkpoints.read_config(prefix)
    assert reloaded_config.hidden_act == "gelu_exact"
    reloaded = BertEncoder(reloaded_config)
    checkpoints.load_checkpoint(reloaded, str(tmp_path / "converted"))
    before, after = outputs_of(encoder, minilm_batch), outputs_of(reloaded, minilm_batch)
    np.testing.assert_array_equal(before["sequence_output"], after["sequence_output"])
    np.testing.assert_array_equal(before["pooled_output"], after["pooled_output"])


# ------------------------------------------------------------------------------------ TF1


def test_tf1_training_checkpoint_loads_into_classifier(tmp_path):
    c = tiny_config()
    weights = random_original_weights(c, seed=1, num_labels=3)
    extra = {name + "/adam_m": np.ones_like(v) for name, v in weights.items()}
    extra.update({name + "/adam_v": np.ones_like(v) for name, v in weights.items()})
    extra["global_step"] = np.array(1234, np.int64)
    directory = tmp_path / "uncased_L-2_H-32_A-4"
    write_tf1_checkpoint(str(directory / "model.ckpt-1234"), {**weights, **extra})

    model = BertClassifier(c, num_labels=3)
    report = checkpoints.load_checkpoint(model, str(directory))  # directory without `checkpoint` file
    assert report.format == "original_tf1"
    assert sorted(report.loaded) == sorted(n for n in weights if not n.startswith("cls/"))
    assert report.missing == []
    assert sorted(report.unused) == sorted(n for n in weights if n.startswith("cls/"))
    assert sorted(report.ignored) == sorted(extra)
    for name in report.loaded:
        np.testing.assert_array_equal(model_value(model, name), weights[name], err_msg=name)


def test_directory_with_several_tf1_checkpoints(tmp_path):
    c = tiny_config()
    early, late = random_original_weights(c, seed=20), random_original_weights(c, seed=21)
    write_tf1_checkpoint(str(tmp_path / "model.ckpt-100"), early)
    write_tf1_checkpoint(str(tmp_path / "model.ckpt-200"), late)
    name = "bert/encoder/layer_0/output/dense/kernel"
    model = BertEncoder(c)
    # No `checkpoint` file: the highest step.
    assert checkpoints.load_checkpoint(model, str(tmp_path)).path.endswith("model.ckpt-200")
    np.testing.assert_array_equal(model_value(model, name), late[name])
    # A TF1 Saver's `checkpoint` file decides when present.
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-100"\n')
    assert checkpoints.load_checkpoint(model, str(tmp_path)).path.endswith("model.ckpt-100")
    np.testing.assert_array_equal(model_value(model, name), early[name])
    write_tf1_checkpoint(str(tmp_path / "other" / "bert_model.ckpt"), early)
    write_tf1_checkpoint(str(tmp_path / "other" / "best.ckpt"), late)
    with pytest.raises(ValueError, match="several checkpoints"):
        checkpoints.load_checkpoint(model, str(tmp_path / "other"))


def test_tf1_checkpoint_loads_every_variable_of_pretrainer(tmp_path):
    c = tiny_config()
    weights = random_original_weights(c, seed=2)
    prefix = write_tf1_checkpoint(str(tmp_path / "bert_model.ckpt"), weights)
    model = BertPretrainer(c)
    report = checkpoints.load_checkpoint(model, prefix)
    assert sorted(report.loaded) == sorted(weights)
    assert len(report.loaded) == len(model.weights)  # every model variable is in the table
    assert not report.missing and not report.unused and not report.ignored
    for name, value in weights.items():
        np.testing.assert_array_equal(model_value(model, name), value, err_msg=name)


def test_load_and_save_under_mixed_bfloat16_keep_float32_values(tmp_path):
    c = tiny_config()
    weights = random_original_weights(c, seed=13, num_labels=2)
    prefix = write_tf1_checkpoint(str(tmp_path / "in" / "bert_model.ckpt"), weights)
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = BertClassifier(c, num_labels=2)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    checkpoints.load_checkpoint(model, prefix)
    for name in ("bert/encoder/layer_0/intermediate/dense/kernel", "output_weights"):
        np.testing.assert_array_equal(model_value(model, name), weights[name])
    out = checkpoints.save_original_checkpoint(model, str(tmp_path / "out" / "bert_model.ckpt"))
    reader = tf.train.load_checkpoint(out)
    for name in ("bert/encoder/layer_0/intermediate/dense/kernel", "output_weights"):
        assert reader.get_tensor(name).dtype == np.float32
        np.testing.assert_array_equal(reader.get_tensor(name), weights[name])


def test_pretraining_checkpoint_into_new_classifier_reports_new_head(tmp_path, caplog):
    c = tiny_config()
    prefix = write_tf1_checkpoint(str(tmp_path / "bert_model.ckpt"), random_original_weights(c, seed=4))
    model = BertTokenClassifier(c, num_labels=5)
    kernel_before = model.classifier.kernel.numpy().copy()
    with caplog.at_level(py_logging.INFO, logger="absl"):
        report = checkpoints.load_checkpoint(model, prefix + ".index")
    assert sorted(report.missing) == ["output_bias", "output_weights"]
    assert any("classifier" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(model.classifier.kernel.numpy(), kernel_before)


def test_save_original_checkpoint_round_trip(tmp_path):
    c = tiny_config()
    source = BertPretrainer(c)
    checkpoints.load_checkpoint(
        source, write_tf1_checkpoint(str(tmp_path / "src" / "bert_model.ckpt"), random_original_weights(c, seed=5))
    )
    out_prefix = str(tmp_path / "out" / "bert_model.ckpt")
    checkpoints.save_original_checkpoint(source, out_prefix)

    # The written file has exactly the original names and shapes.
    listed = dict(tf.train.list_variables(out_prefix))
    assert listed == original_shapes(c)
    assert sorted(os.listdir(tmp_path / "out")) == [
        "bert_config.json", "bert_model.ckpt.data-00000-of-00001", "bert_model.ckpt.index"
    ]
    config = checkpoints.read_config(str(tmp_path / "out"))
    assert config == c

    reloaded = BertPretrainer(config)
    checkpoints.load_checkpoint(reloaded, out_prefix)
    batch = padded_two_segment_batch(c.vocab_size, with_positions=True)
    before, after = outputs_of(source, batch), outputs_of(reloaded, batch)
    for key in ("sequence_output", "pooled_output", "masked_lm_logits", "next_sentence_logits"):
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)


def test_saved_classifier_uses_top_level_output_weights(tmp_path):
    c = tiny_config()
    model = BertClassifier(c, num_labels=2)
    prefix = checkpoints.save_original_checkpoint(model, str(tmp_path / "model.ckpt"))
    reader = tf.train.load_checkpoint(prefix)
    np.testing.assert_array_equal(reader.get_tensor("output_weights"), model.classifier.kernel.numpy().T)
    np.testing.assert_array_equal(reader.get_tensor("output_bias"), model.classifier.bias.numpy())


# ------------------------------------------------------------------------------------ HF


def write_hf_dir(directory, tensors, config, tokenizer_config=None):
    os.makedirs(directory, exist_ok=True)
    save_file(tensors, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    hf_config = dict(config.to_dict(), model_type="bert", hidden_act="gelu_new")
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(hf_config, f)
    if tokenizer_config is not None:
        with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
            json.dump(tokenizer_config, f)
    return directory


def original_to_hf(weights, encoder_prefix, layer_norm_names=("weight", "bias")):
    """Hugging Face names for original-named weights, written independently of bert_tf."""
    gamma, beta = layer_norm_names
    out = {}
    for name, value in weights.items():
        if name.startswith("bert/"):
            hf = name[len("bert/"):].replace("encoder/layer_", "encoder/layer/").replace("/", ".")
            hf = encoder_prefix + hf
        elif name.startswith("cls/predictions/transform"):
            hf = name.replace("/", ".")
        elif name == "cls/predictions/output_bias":
            hf = "cls.predictions.bias"
        elif name == "cls/seq_relationship/output_weights":
            hf = "cls.seq_relationship.weight"
        elif name == "cls/seq_relationship/output_bias":
            hf = "cls.seq_relationship.bias"
        elif name == "output_weights":
            hf = "classifier.weight"
        elif name == "output_bias":
            hf = "classifier.bias"
        else:
            raise AssertionError(name)
        hf = hf.replace(".gamma", "." + gamma).replace(".beta", "." + beta)
        if hf.endswith((".kernel")):
            hf, value = hf[: -len(".kernel")] + ".weight", np.ascontiguousarray(value.T)
        elif hf.endswith(("_embeddings")):
            hf += ".weight"
        out[hf] = value
    return out


def test_hugging_face_pretraining_file_with_old_layer_norm_names(tmp_path):
    c = tiny_config()
    weights = random_original_weights(c, seed=6)
    tensors = original_to_hf(weights, "bert.", layer_norm_names=("gamma", "beta"))
    tensors["bert.embeddings.position_ids"] = np.arange(c.max_position_embeddings, dtype=np.int64)[None]
    tensors["cls.predictions.decoder.weight"] = weights["bert/embeddings/word_embeddings"]
    directory = write_hf_dir(str(tmp_path / "hf_pretraining"), tensors, c)
    model = BertPretrainer(checkpoints.read_config(directory))
    assert model.config.hidden_act == "gelu"  # HF "gelu_new" is the tanh form
    report = checkpoints.load_checkpoint(model, directory)
    assert sorted(report.loaded) == sorted(weights)
    assert not report.missing and not report.unused
    assert sorted(report.ignored) == ["bert.embeddings.position_ids", "cls.predictions.decoder.weight"]
    for name, value in weights.items():
        np.testing.assert_array_equal(model_value(model, name), value, err_msg=name)


def test_hugging_face_masked_lm_decoder_bias_and_sequence_classifier(tmp_path):
    c = tiny_config()
    weights = random_original_weights(c, seed=8, num_labels=4)
    tensors = original_to_hf(weights, "bert.")
    tensors["cls.predictions.decoder.bias"] = tensors.pop("cls.predictions.bias")
    directory = write_hf_dir(str(tmp_path / "hf_masked_lm"), tensors, c)

    pretrainer = BertPretrainer(c)
    report = checkpoints.load_checkpoint(pretrainer, directory)
    assert "cls/predictions/output_bias" in report.loaded
    np.testing.assert_array_equal(
        pretrainer.masked_lm_head.output_bias.numpy(), weights["cls/predictions/output_bias"]
    )
    assert sorted(report.unused) == ["classifier.bias", "classifier.weight"]

    classifier = BertClassifier(c, num_labels=4)
    checkpoints.load_checkpoint(classifier, directory)
    np.testing.assert_array_equal(model_value(classifier, "output_weights"), weights["output_weights"])
    np.testing.assert_array_equal(classifier.classifier.bias.numpy(), weights["output_bias"])


def test_hugging_face_sharded_safetensors(tmp_path):
    c = tiny_config()
    weights = random_original_weights(c, seed=9, heads=False)
    tensors = original_to_hf(weights, "")
    directory = tmp_path / "sharded"
    os.makedirs(directory)
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for file_name, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(directory / file_name))
        weight_map.update({k: file_name for k in keys})
    with open(directory / "model.safetensors.index.json", "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)
    with open(directory / "config.json", "w") as f:
        json.dump(dict(c.to_dict(), model_type="bert"), f)
    encoder = BertEncoder(c)
    report = checkpoints.load_checkpoint(encoder, str(directory))
    assert sorted(report.loaded) == sorted(weights)
    np.testing.assert_array_equal(
        model_value(encoder, "bert/encoder/layer_1/output/dense/kernel"),
        weights["bert/encoder/layer_1/output/dense/kernel"],
    )


# ------------------------------------------------------------------------------------ TF2


def test_tf2_checkpoint_restores_pretrainer_and_encoder_of_classifier(tmp_path):
    """A training checkpoint: model + Keras optimizer after one step + a step counter.

    The optimizer tracks the model's variables too, so the saver may key them under
    `optimizer/...`; the loader must still find them through the object graph.
    """
    c = tiny_config()
    trained = BertPretrainer(c)
    checkpoints.load_checkpoint(
        trained, write_tf1_checkpoint(str(tmp_path / "src" / "bert_model.ckpt"), random_original_weights(c, seed=10))
    )
    optimizer = keras.optimizers.Adam(learning_rate=0.01)
    batch = padded_two_segment_batch(c.vocab_size, with_positions=True)
    with tf.GradientTape() as tape:
        out = trained(batch, training=True)
        loss = tf.reduce_mean(out["masked_lm_logits"] ** 2) + tf.reduce_mean(out["next_sentence_logits"] ** 2)
    optimizer.apply_gradients(zip(tape.gradient(loss, trained.trainable_variables), trained.trainable_variables))
    step = tf.Variable(7, dtype=tf.int64)
    # Optimizer first: the saver then keys the model's variables `optimizer/_trainable_variables/N`.
    save_path = tf.train.Checkpoint(optimizer=optimizer, model=trained, global_step=step).save(
        str(tmp_path / "run" / "ckpt")
    )
    keys = [name for name, _ in tf.train.list_variables(save_path)]
    assert not any(k.startswith("model/encoder/embeddings/word_embeddings") for k in keys)
    c.to_json_file(str(tmp_path / "run" / "bert_config.json"))

    assert checkpoints.checkpoint_format(str(tmp_path / "run")) == "bert_tf_tf2"
    assert checkpoints.read_config(save_path) == c
    restored = BertPretrainer(c)
    report = checkpoints.load_checkpoint(restored, str(tmp_path / "run"))
    assert report.format == "bert_tf_tf2" and report.path == save_path
    assert len(report.loaded) == len(restored.weights) and not report.missing and not report.unused
    for original, copy in zip(trained.weights, restored.weights):
        np.testing.assert_array_equal(original.numpy(), copy.numpy(), err_msg=original.path)

    classifier = BertClassifier(c, num_labels=2)
    report = checkpoints.load_checkpoint(classifier, save_path)
    assert sorted(report.missing) == ["output_bias", "output_weights"]
    assert len(report.unused) == 7 and all(n.startswith("model/") for n in report.unused)  # the heads
    encoder = BertEncoder(c)
    report = checkpoints.load_checkpoint(encoder, save_path)
    assert len(report.loaded) == len(encoder.weights) and not report.missing
    for name in ("bert/embeddings/word_embeddings", "bert/encoder/layer_1/attention/self/key/kernel",
                 "bert/pooler/dense/kernel"):
        np.testing.assert_array_equal(model_value(classifier, name), model_value(trained, name))
        np.testing.assert_array_equal(model_value(encoder, name), model_value(trained, name))


# ------------------------------------------------------------------------------------ errors


def test_vocab_mismatch_names_variable_and_both_shapes_and_changes_nothing(tmp_path):
    c = tiny_config()
    prefix = write_tf1_checkpoint(str(tmp_path / "bert_model.ckpt"), random_original_weights(c, seed=11))
    model = BertPretrainer(tiny_config(vocab_size=41))
    before = [w.numpy().copy() for w in model.weights]
    with pytest.raises(ValueError) as info:
        checkpoints.load_checkpoint(model, prefix)
    message = str(info.value)
    assert "bert/embeddings/word_embeddings" in message
    assert "[40, 32]" in message and "[41, 32]" in message and "vocab_size" in message
    for old, w in zip(before, model.weights):
        np.testing.assert_array_equal(old, w.numpy())


def test_hidden_size_mismatch_in_hugging_face_dir(tmp_path, minilm_dir):
    with pytest.raises(ValueError, match=r"\[30522, 384\].*\[40, 32\]"):
        checkpoints.load_checkpoint(BertEncoder(tiny_config()), minilm_dir)


def test_pytorch_bin_is_refused_with_conversion_advice(tmp_path):
    directory = tmp_path / "torch_only"
    os.makedirs(directory)
    (directory / "pytorch_model.bin").write_bytes(b"\x80\x02not really a pickle")
    (directory / "config.json").write_text(json.dumps(dict(TINY, model_type="bert")))
    for path in (str(directory), str(directory / "pytorch_model.bin")):
        with pytest.raises(ValueError, match="safetensors") as info:
            checkpoints.load_checkpoint(BertEncoder(tiny_config()), path)
        assert "pytorch_model.bin" in str(info.value) and "save_file" in str(info.value)


@pytest.mark.parametrize("kind", ["missing", "empty_dir", "not_a_checkpoint"])
def test_unrecognised_path_says_what_was_expected(tmp_path, kind):
    if kind == "missing":
        path = str(tmp_path / "nowhere" / "bert_model.ckpt")
    elif kind == "empty_dir":
        path = str(tmp_path)
    else:
        path = str(tmp_path / "notes.txt")
        (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="expected an original TF1 checkpoint prefix") as info:
        checkpoints.load_checkpoint(BertEncoder(tiny_config()), path)
    assert path in str(info.value)
    with pytest.raises(ValueError, match="expected"):
        checkpoints.read_config(path)


def test_checkpoint_sharing_no_variable_is_an_error(tmp_path):
    prefix = write_tf1_checkpoint(str(tmp_path / "other.ckpt"), {"some/other/model": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="none of the model's variables"):
        checkpoints.load_checkpoint(BertEncoder(tiny_config()), prefix)


def test_read_config_without_bert_config_json(tmp_path):
    prefix = write_tf1_checkpoint(str(tmp_path / "bert_model.ckpt"), random_original_weights(tiny_config(), 12))
    with pytest.raises(ValueError, match="bert_config.json"):
        checkpoints.read_config(prefix)


# ------------------------------------------------------------------------------------ casing


@pytest.mark.parametrize(
    "folder, lower",
    [
        ("uncased_L-12_H-768_A-12", True),
        ("cased_L-12_H-768_A-12", False),
        ("multi_cased_L-12_H-768_A-12", False),
        ("wwm_uncased_L-24_H-1024_A-16", True),
        ("multilingual_L-12_H-768_A-12", True),
        ("chinese_L-12_H-768_A-12", True),
        ("my_model", None),
    ],
)
def test_casing_from_original_release_folder_names(tmp_path, folder, lower):
    directory = tmp_path / folder
    os.makedirs(directory)
    (directory / "vocab.txt").write_text("[PAD]\n")
    vocab, do_lower_case = checkpoints.find_vocab_and_casing(str(directory / "bert_model.ckpt"))
    assert vocab == str(directory / "vocab.txt")
    assert do_lower_case is lower


def test_tokenizer_config_overrides_folder_name(tmp_path):
    directory = tmp_path / "uncased_but_not_really"
    os.makedirs(directory)
    (directory / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    assert checkpoints.find_vocab_and_casing(str(directory)) == (None, False)


def test_sentence_pooling_of_the_minilm_package(minilm_dir):
    # all-MiniLM-L6-v2 is trained as a sentence-transformers model with mean pooling.
    with open(os.path.join(minilm_dir, "1_Pooling", "config.json"), encoding="utf-8") as f:
        assert json.load(f)["pooling_mode_mean_tokens"] is True
    assert checkpoints.find_sentence_pooling(minilm_dir) == "mean"
    assert checkpoints.find_sentence_pooling(os.path.join(minilm_dir, "model.safetensors")) == "mean"


def _pooling_config(directory, **modes):
    os.makedirs(directory, exist_ok=True)
    values = {"word_embedding_dimension": 32, "pooling_mode_cls_token": False,
              "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False}
    values.update({f"pooling_mode_{k}": v for k, v in modes.items()})
    (directory / "config.json").write_text(json.dumps(values))


def test_sentence_pooling_follows_modules_json(tmp_path):
    assert checkpoints.find_sentence_pooling(str(tmp_path)) is None  # plain BERT checkpoint
    _pooling_config(tmp_path / "1_Pooling", mean_tokens=True)
    assert checkpoints.find_sentence_pooling(str(tmp_path / "bert_model.ckpt")) == "mean"
    # modules.json names the Pooling module's folder; 1_Pooling is then not read.
    _pooling_config(tmp_path / "2_Pool", cls_token=True)
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "2_Pool", "type": "sentence_transformers.models.Pooling"},
    ]))
    assert checkpoints.find_sentence_pooling(str(tmp_path)) == "cls"


@pytest.mark.parametrize("modes", [dict(max_tokens=True), dict(mean_tokens=True, cls_token=True),
                                   dict(mean_sqrt_len_tokens=True), {}])
def test_sentence_pooling_that_one_vector_cannot_reproduce_is_an_error(tmp_path, modes):
    _pooling_config(tmp_path / "1_Pooling", **modes)
    config_file = str(tmp_path / "1_Pooling" / "config.json")
    with pytest.raises(ValueError, match=re.escape(config_file) + ".*choose the classifier's pooling"):
        checkpoints.find_sentence_pooling(str(tmp_path))


def test_sentence_pooling_config_that_is_not_json_names_the_file(tmp_path):
    os.makedirs(tmp_path / "1_Pooling")
    (tmp_path / "1_Pooling" / "config.json").write_text("{pooling_mode_mean_tokens: true")
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "1_Pooling" / "config.json"))
                       + ": not valid JSON"):
        checkpoints.find_sentence_pooling(str(tmp_path))
