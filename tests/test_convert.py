"""bert-convert between original TF1, Hugging Face, keras-hub and bert_tf formats.

References: outputs of the random source model itself (every pair of formats must reproduce
them to 1e-5 for every head both formats hold); keras-hub's own `from_preset` on the written
presets and keras-hub's own `save_to_preset` for presets bert_tf reads; the tensor names and
layouts transformers documents for its BERT classes, written out by hand below.
"""

import json
import logging as py_logging
import os
import subprocess
import sys

import keras_hub
import numpy as np
import pytest
from safetensors.numpy import load_file

from bert_tf import checkpoints, convert
from bert_tf.config import BertConfig
from bert_tf.models import BertClassifier, BertEncoder, BertPretrainer, BertTokenClassifier

TINY = dict(
    vocab_size=40,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=24,
    type_vocab_size=2,
)
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(35)]
MLM, NSP, CLF = "masked_lm_head", "next_sentence_head", "classifier"
HEAD_OUTPUT = {MLM: "masked_lm_logits", NSP: "next_sentence_logits", CLF: "logits"}
KINDS = {
    "pretrainer": (lambda c: BertPretrainer(c), (MLM, NSP)),
    "classifier": (lambda c: BertClassifier(c, num_labels=3), (CLF,)),
    "tagger": (lambda c: BertTokenClassifier(c, num_labels=5), (CLF,)),
}


def held(fmt, kind, heads):
    """Which heads survive being written in `fmt` (what each format's classes can hold)."""
    heads = set(heads)
    if fmt == "keras_hub":  # BertMaskedLM or BertTextClassifier: no NSP, no token classifier
        heads.discard(NSP)
        if kind == "tagger":
            heads.discard(CLF)
    if fmt == "bert_tf" and heads == {MLM}:  # a BertPretrainer needs both pretraining heads
        heads = set()
    return heads


def randomize(model, seed):
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        if "seed_generator" in variable.path:
            continue
        variable.assign(rng.normal(0.0, 0.2, size=variable.shape).astype(np.float32))
    return model


def batch():
    rng = np.random.default_rng(7)
    ids = rng.integers(0, TINY["vocab_size"], size=(2, 9)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    segments = np.zeros_like(ids)
    segments[:, 5:] = 1
    return {"input_ids": ids, "input_mask": mask, "segment_ids": segments,
            "masked_lm_positions": np.array([[1, 3], [2, 4]], np.int32)}


def outputs(model):
    return {k: v.numpy() for k, v in model(batch(), training=False).items() if k != "encoder_outputs"}


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def source_models():
    config = BertConfig(**TINY)
    return {kind: randomize(build(config), seed=i) for i, (kind, (build, _)) in enumerate(KINDS.items())}


@pytest.fixture(scope="module")
def sources(tmp_path_factory, source_models, vocab_file):
    """(kind, format) -> folder holding that model in that format (written once)."""
    root = tmp_path_factory.mktemp("sources")
    cache = {}

    def get(kind, fmt):
        if (kind, fmt) not in cache:
            model = source_models[kind]
            directory = str(root / f"{kind}_{fmt}")
            if fmt == "original":  # the pre-existing writer, independent of bert-convert
                # Released folders record the casing in their name only.
                directory = os.path.join(directory, "uncased_L-2_H-32_A-4")
                os.makedirs(directory)
                checkpoints.save_original_checkpoint(model, os.path.join(directory, "bert_model.ckpt"))
                with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as f:
                    f.write("\n".join(VOCAB) + "\n")
            else:
                weights = checkpoints.weights_of_model(model, vocab_file, do_lower_case=True)
                convert.write_weights(weights, directory, fmt)
            cache[kind, fmt] = directory
        return cache[kind, fmt]

    return get


PAIRS = [(kind, src, dst) for kind in ("pretrainer", "classifier") for src in convert.FORMATS
         for dst in convert.FORMATS]
PAIRS += [("tagger", src, dst) for src in ("original", "huggingface") for dst in convert.FORMATS]


@pytest.mark.parametrize("kind,src,dst", PAIRS)
def test_every_pair_of_formats_reproduces_the_source_outputs(tmp_path, sources, source_models, kind, src, dst):
    build, heads = KINDS[kind]
    source = sources(kind, src)
    token = kind == "tagger" and src in ("original", "bert_tf")  # formats that do not record it
    result = convert.convert(source, str(tmp_path / "out"), dst, classifier_kind="token" if token else None)
    expected_heads = held(dst, kind, held(src, kind, heads))
    assert set(result.heads) == expected_heads
    weights = checkpoints.read_weights(result.output_dir, classifier_kind="token" if kind == "tagger" else None)
    assert set(weights.heads) == expected_heads
    assert weights.vocab_file is not None and weights.do_lower_case is True

    model = build(weights.config)
    report = checkpoints.load_checkpoint(model, result.output_dir)
    assert not [n for n in report.missing if not n.startswith(("cls/", "output_", "bert/pooler/"))]
    got, want = outputs(model), outputs(source_models[kind])
    compared = ["sequence_output", "embedding_output"]
    # transformers' BertForMaskedLM and BertForTokenClassification have no pooler: a model that
    # went through a Hugging Face folder of those classes has none (named in the log).
    src_heads = held(src, kind, heads)
    pooler_dropped = "huggingface" in (src, dst) and (
        src_heads == {MLM} or (kind == "tagger" and CLF in src_heads))
    assert weights.has_pooler == (not pooler_dropped or dst in ("bert_tf", "keras_hub"))
    if not pooler_dropped:
        compared.append("pooled_output")
    compared += [HEAD_OUTPUT[h] for h in expected_heads]
    for key in compared:
        np.testing.assert_allclose(got[key], want[key], atol=1e-5, rtol=0, err_msg=key)


def test_dropped_heads_are_named_in_the_log(tmp_path, sources, caplog):
    with caplog.at_level(py_logging.WARNING):
        result = convert.convert(sources("pretrainer", "original"), str(tmp_path / "kh"), "keras_hub")
    assert result.dropped == (NSP,)
    assert any("next_sentence_head" in r.getMessage() and "not converted" in r.getMessage()
               for r in caplog.records)
    caplog.clear()
    with caplog.at_level(py_logging.WARNING):
        result = convert.convert(sources("tagger", "huggingface"), str(tmp_path / "kh2"), "keras_hub")
    assert result.dropped == (CLF,)
    assert any("classifier" in r.getMessage() and "not converted" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------ keras-hub itself
def keras_hub_inputs():
    b = batch()
    return {"token_ids": b["input_ids"], "segment_ids": b["segment_ids"], "padding_mask": b["input_mask"]}


def test_keras_hub_loads_the_written_backbone_and_classifier(tmp_path, sources, source_models):
    preset = convert.convert(sources("classifier", "original"), str(tmp_path / "kh"), "keras_hub").output_dir
    want = outputs(source_models["classifier"])
    backbone = keras_hub.models.BertBackbone.from_preset(preset)
    assert type(backbone) is keras_hub.models.BertBackbone  # tanh GELU: the stock class
    got = backbone(keras_hub_inputs())
    np.testing.assert_allclose(got["sequence_output"], want["sequence_output"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(got["pooled_output"], want["pooled_output"], atol=1e-5, rtol=0)
    classifier = keras_hub.models.BertTextClassifier.from_preset(preset, preprocessor=None)
    np.testing.assert_allclose(classifier.predict(keras_hub_inputs(), verbose=0), want["logits"],
                               atol=1e-5, rtol=0)


def test_keras_hub_masked_lm_of_the_preset_computes_bert_mlm_logits(tmp_path, sources, source_models):
    preset = convert.convert(sources("pretrainer", "original"), str(tmp_path / "kh"), "keras_hub").output_dir
    masked_lm = keras_hub.models.BertMaskedLM.from_preset(preset, preprocessor=None)
    logits = masked_lm.predict({**keras_hub_inputs(), "mask_positions": batch()["masked_lm_positions"]}, verbose=0)
    np.testing.assert_allclose(logits, outputs(source_models["pretrainer"])["masked_lm_logits"], atol=1e-5, rtol=0)


def test_keras_hub_tokenizer_of_the_preset_matches_full_tokenizer(tmp_path, sources, vocab_file):
    from bert_tf.tokenization import FullTokenizer

    preset = convert.convert(sources("classifier", "original"), str(tmp_path / "kh"), "keras_hub",
                             do_lower_case=True).output_dir
    tokenizer = keras_hub.models.BertTokenizer.from_preset(preset)
    text = "W3 w12 W0w1, w7!"
    expected = FullTokenizer(vocab_file, do_lower_case=True).encode(text)
    assert list(np.asarray(tokenizer(text))) == expected


def test_exact_gelu_travels_to_keras_hub_hugging_face_and_original(tmp_path, vocab_file, caplog):
    config = BertConfig(**TINY, hidden_act="gelu_exact")
    model = randomize(BertPretrainer(config), seed=11)
    weights = checkpoints.weights_of_model(model, vocab_file, do_lower_case=True)
    want = outputs(model)

    preset = str(tmp_path / "kh")
    convert.write_weights(weights, preset, "keras_hub")
    with open(os.path.join(preset, "config.json"), encoding="utf-8") as f:
        saved = json.load(f)
    assert saved["registered_name"] == "bert_tf>BertBackbone" and saved["config"]["hidden_act"] == "gelu_exact"
    backbone = keras_hub.models.BertBackbone.from_preset(preset)
    got = backbone(keras_hub_inputs())
    np.testing.assert_allclose(got["sequence_output"], want["sequence_output"], atol=1e-5, rtol=0)
    # keras-hub's own BertMaskedLM.from_preset finds the registered task subclass.
    task_config = json.load(open(os.path.join(preset, "task.json"), encoding="utf-8"))
    assert task_config["registered_name"] == "bert_tf>BertMaskedLM"
    mlm = keras_hub.models.BertMaskedLM.from_preset(preset, preprocessor=None)
    logits = mlm.predict({**keras_hub_inputs(), "mask_positions": batch()["masked_lm_positions"]}, verbose=0)
    np.testing.assert_allclose(logits, want["masked_lm_logits"], atol=1e-5, rtol=0)

    hf = str(tmp_path / "hf")
    convert.write_weights(weights, hf, "huggingface")
    assert json.load(open(os.path.join(hf, "config.json"), encoding="utf-8"))["hidden_act"] == "gelu"
    original = str(tmp_path / "original")
    convert.write_weights(weights, original, "original")
    assert json.load(open(os.path.join(original, "bert_config.json"), encoding="utf-8"))["hidden_act"] == "gelu_exact"
    for path in (preset, hf, original):
        assert checkpoints.read_config(path).hidden_act == "gelu_exact"


def test_load_checkpoint_reads_a_preset_saved_by_keras_hub(tmp_path, vocab_file):
    backbone = keras_hub.models.BertBackbone(vocabulary_size=40, num_layers=2, num_heads=4, hidden_dim=32,
                                             intermediate_dim=64, max_sequence_length=24, num_segments=2)
    rng = np.random.default_rng(3)
    for variable in backbone.weights:
        variable.assign(rng.normal(0.0, 0.2, size=variable.shape).astype(np.float32))
    preset = str(tmp_path / "preset")
    backbone.save_to_preset(preset)
    keras_hub.models.BertTokenizer(vocabulary=vocab_file, lowercase=False).save_to_preset(preset)
    assert checkpoints.checkpoint_format(preset) == "keras_hub"
    config = checkpoints.read_config(preset)
    assert (config.hidden_size, config.num_hidden_layers, config.hidden_act) == (32, 2, "gelu")
    encoder = BertEncoder(config)
    report = checkpoints.load_checkpoint(encoder, preset)
    assert len(report.loaded) == 5 + 2 * 16 + 2 and not report.missing and not report.unused
    want = backbone(keras_hub_inputs())
    got = encoder(batch(), training=False)
    np.testing.assert_allclose(got["sequence_output"], want["sequence_output"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(got["pooled_output"], want["pooled_output"], atol=1e-5, rtol=0)
    vocab, lower = checkpoints.find_vocab_and_casing(preset)
    assert lower is False and open(vocab, encoding="utf-8").read().split() == VOCAB


# ------------------------------------------------------------------------------ Hugging Face names
def transformers_encoder_names(num_layers):
    """BertModel's state dict keys as transformers names them (LayerNorm weight/bias)."""
    names = {
        "embeddings.word_embeddings.weight": ("V", "H"),
        "embeddings.position_embeddings.weight": ("P", "H"),
        "embeddings.token_type_embeddings.weight": ("T", "H"),
        "embeddings.LayerNorm.weight": ("H",),
        "embeddings.LayerNorm.bias": ("H",),
        "pooler.dense.weight": ("H", "H"),
        "pooler.dense.bias": ("H",),
    }
    for i in range(num_layers):
        p = f"encoder.layer.{i}."
        for linear, (out, inp) in {
            "attention.self.query": ("H", "H"), "attention.self.key": ("H", "H"),
            "attention.self.value": ("H", "H"), "attention.output.dense": ("H", "H"),
            "intermediate.dense": ("I", "H"), "output.dense": ("H", "I"),
        }.items():
            names[p + linear + ".weight"] = (out, inp)  # torch Linear: [out_features, in_features]
            names[p + linear + ".bias"] = (out,)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            names[p + norm + ".weight"] = ("H",)
            names[p + norm + ".bias"] = ("H",)
    return names


HF_HEADS = {
    "BertForPreTraining": {
        "cls.predictions.bias": ("V",),
        "cls.predictions.transform.dense.weight": ("H", "H"),
        "cls.predictions.transform.dense.bias": ("H",),
        "cls.predictions.transform.LayerNorm.weight": ("H",),
        "cls.predictions.transform.LayerNorm.bias": ("H",),
        "cls.seq_relationship.weight": (2, "H"),
        "cls.seq_relationship.bias": (2,),
    },
    "BertForSequenceClassification": {"classifier.weight": ("L", "H"), "classifier.bias": ("L",)},
    "BertForTokenClassification": {"classifier.weight": ("L", "H"), "classifier.bias": ("L",)},
    "BertModel": {},
}


@pytest.mark.parametrize("kind,architecture", [
    ("pretrainer", "BertForPreTraining"),
    ("classifier", "BertForSequenceClassification"),
    ("tagger", "BertForTokenClassification"),
    ("encoder", "BertModel"),
])
def test_hugging_face_output_has_transformers_names_shapes_and_values(tmp_path, source_models, vocab_file,
                                                                      kind, architecture):
    model = source_models[kind] if kind in source_models else source_models["pretrainer"].encoder
    weights = checkpoints.weights_of_model(model, vocab_file, do_lower_case=False)
    out = str(tmp_path / "hf")
    result = convert.write_weights(weights, out, "huggingface")
    assert result.architecture == architecture
    tensors = load_file(os.path.join(out, "model.safetensors"))
    prefix = "" if architecture == "BertModel" else "bert."
    dims = {"V": 40, "H": 32, "I": 64, "P": 24, "T": 2, "L": getattr(model, "num_labels", None)}
    expected = {prefix + k: v for k, v in transformers_encoder_names(2).items()}
    if architecture == "BertForTokenClassification":  # built with add_pooling_layer=False
        expected = {k: v for k, v in expected.items() if ".pooler." not in k}
    expected.update(HF_HEADS[architecture])
    assert sorted(tensors) == sorted(expected)
    for name, shape in expected.items():
        assert tensors[name].shape == tuple(dims.get(d, d) for d in shape), name
        assert tensors[name].dtype == np.float32

    encoder = model if kind == "encoder" else model.encoder
    block = encoder.transformer_layers[1]
    np.testing.assert_array_equal(tensors[prefix + "encoder.layer.1.attention.self.key.weight"],
                                  block.attention.key.kernel.numpy().T)
    np.testing.assert_array_equal(tensors[prefix + "encoder.layer.1.intermediate.dense.weight"],
                                  block.intermediate.kernel.numpy().T)
    np.testing.assert_array_equal(tensors[prefix + "embeddings.word_embeddings.weight"],
                                  encoder.embeddings.word_embeddings.embeddings.numpy())
    if kind == "pretrainer":
        np.testing.assert_array_equal(tensors["cls.seq_relationship.weight"],
                                      model.next_sentence_head.output_weights.numpy())
        np.testing.assert_array_equal(tensors["cls.predictions.bias"],
                                      model.masked_lm_head.output_bias.numpy())
    if kind in ("classifier", "tagger"):
        np.testing.assert_array_equal(tensors["classifier.weight"], model.classifier.kernel.numpy().T)

    config = json.load(open(os.path.join(out, "config.json"), encoding="utf-8"))
    assert config["architectures"] == [architecture] and config["model_type"] == "bert"
    assert config["hidden_act"] == "gelu_new"  # transformers' name of the tanh GELU
    assert config["layer_norm_eps"] == 1e-12
    if kind in ("classifier", "tagger"):
        assert len(config["id2label"]) == model.num_labels
    tokenizer_config = json.load(open(os.path.join(out, "tokenizer_config.json"), encoding="utf-8"))
    assert tokenizer_config["do_lower_case"] is False
    assert open(os.path.join(out, "vocab.txt"), encoding="utf-8").read().split() == VOCAB


# ------------------------------------------------------------------------------ errors, atomicity
def test_existing_output_dir_and_bad_format_are_refused_before_any_work(tmp_path, sources):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "file").write_text("x")
    with pytest.raises(ValueError, match="--output_dir: .*not an empty folder"):
        convert.convert(sources("classifier", "original"), str(taken), "huggingface")
    with pytest.raises(ValueError, match="--to: expected one of original, huggingface, keras_hub, bert_tf"):
        convert.convert(sources("classifier", "original"), str(tmp_path / "new"), "onnx")
    with pytest.raises(ValueError, match="not found or not a checkpoint"):
        convert.convert(str(tmp_path / "nothing"), str(tmp_path / "new"), "bert_tf")
    assert sorted(os.listdir(tmp_path)) == ["taken"]


def test_failed_conversion_leaves_no_output(tmp_path, sources, monkeypatch):
    def failing_writer(weights, directory):
        with open(os.path.join(directory, "model.safetensors"), "w") as f:
            f.write("partial")
        raise OSError("disk full")

    monkeypatch.setitem(convert._WRITERS, "huggingface", failing_writer)
    target = tmp_path / "a" / "b" / "out"
    with pytest.raises(OSError, match="disk full"):
        convert.convert(sources("classifier", "original"), str(target), "huggingface")
    assert os.listdir(tmp_path) == []


def test_command_line(tmp_path, sources):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = tmp_path / "hf"
    ok = subprocess.run([sys.executable, "-m", "bert_tf.convert", f"--init_checkpoint={sources('classifier', 'original')}",
                         f"--output_dir={out}", "--to=huggingface"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors", "special_tokens_map.json",
                                       "tokenizer_config.json", "vocab.txt"]
    bad = subprocess.run([sys.executable, "-m", "bert_tf.convert", f"--init_checkpoint={tmp_path / 'missing'}",
                          f"--output_dir={tmp_path / 'x'}", "--to=bert_tf"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: --init_checkpoint=")
    assert "missing: not found or not a checkpoint" in bad.stderr
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------ real weights
def test_minilm_through_keras_hub_bert_tf_original_and_hugging_face(tmp_path, minilm_dir):
    """The issue's acceptance chain on the real MiniLM-L6 (erf GELU) weights."""
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30000, size=(2, 12)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 8:] = 0
    inputs = {"input_ids": ids, "input_mask": mask, "segment_ids": np.zeros_like(ids)}

    def encoder_outputs(path):
        encoder = BertEncoder(checkpoints.read_config(path))
        assert not checkpoints.load_checkpoint(encoder, path).missing
        out = encoder(inputs, training=False)
        return out["sequence_output"].numpy(), out["pooled_output"].numpy()

    want = encoder_outputs(minilm_dir)
    previous = minilm_dir
    for fmt in ("keras_hub", "bert_tf", "original", "huggingface"):
        previous = convert.convert(previous, str(tmp_path / fmt), fmt).output_dir
        for got, expected in zip(encoder_outputs(previous), want):
            np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0, err_msg=fmt)
        if fmt == "keras_hub":
            out = keras_hub.models.BertBackbone.from_preset(previous)(
                {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask})
            np.testing.assert_allclose(out["sequence_output"], want[0], atol=1e-5, rtol=0)
            np.testing.assert_allclose(out["pooled_output"], want[1], atol=1e-5, rtol=0)
    assert checkpoints.read_config(previous).hidden_act == "gelu_exact"
    assert checkpoints.find_sentence_pooling(previous) == "mean"  # the pooling files travelled
    assert checkpoints.find_vocab_and_casing(previous)[1] is True
