"""Every model kind through a SavedModel: exported with `bert_tf.export`, then loaded in a fresh
process that imports only tensorflow and tensorflow_text, where every signature gives the numbers
of the in-process serving functions, and the TF Serving warmup records parse with
tensorflow-serving-api and replay through the signatures they name. The fill-mask and sentence
embedding outputs are also checked against NumPy on the Keras model's outputs for ids from the
Python tokenizer."""

import base64
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bert_tf import export
from bert_tf.config import BertConfig
from bert_tf.models import BertClassifier, BertEncoder, BertPretrainer, BertTokenClassifier
from bert_tf.tokenization import FullTokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "dog",
         "ran", "##s", "a", ",", ".", "!", "big", "small", "paris", "is", "capital", "of",
         "france", "é"]
TEXTS = ["The capital of France is [MASK].", "", "the [MASK] sat on the [MASK] [MASK] !",
         "cat " * 40 + "[MASK]",  # the [MASK] is truncated away
         "Paris, é unknownword big dog"]
TEXTS_B = ["a cat", "the dog ran", "", "mat mat", "small"]
LABELS = ["negative", "neutral", "positive"]
TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
MAX_SEQ_LENGTH = 16

LOADER = """
import base64, json, sys
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry

def ops_of(path):
    graph = saved_model_pb2.SavedModel.FromString(
        open(path + "/saved_model.pb", "rb").read()).meta_graphs[0].graph_def
    functions = {f.signature.name for f in graph.library.function}
    ops = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
    return ops - functions

paths = [path for path, _ in json.loads(open(sys.argv[1]).read()).values()]
not_core = sorted({op for path in paths for op in ops_of(path) if op_def_registry.get(op) is None})
import tensorflow_text  # noqa: F401  (registers the ops the SavedModels use)
assert all(op_def_registry.get(op) is not None for op in not_core), not_core

def encode(value):
    value = value.numpy()
    if value.dtype == object:
        return {"strings": np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(value).tolist()
                if value.size else np.zeros(value.shape).tolist()}
    return {str(value.dtype): value.tolist()}

def decode(value):
    if "b64" in value:
        return tf.constant([base64.b64decode(v) for v in value["b64"]])
    return tf.constant(value["int32"], tf.int32)

results = {}
for kind, (path, calls) in json.loads(open(sys.argv[1]).read()).items():
    model = tf.saved_model.load(path)
    results[kind] = {"calls": {}, "warmup": []}
    for signature, inputs in calls.items():
        out = model.signatures[signature](**{k: decode(v) for k, v in inputs.items()})
        results[kind]["calls"][signature] = {k: encode(v) for k, v in out.items()}
    warmup = path + "/assets.extra/tf_serving_warmup_requests"
    from tensorflow_serving.apis import prediction_log_pb2
    for record in tf.data.TFRecordDataset(warmup):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        out = model.signatures[request.model_spec.signature_name](**inputs)
        results[kind]["warmup"].append([request.model_spec.signature_name, sorted(out)])
assert not any(m.startswith("bert_tf") for m in sys.modules), "the SavedModel needed bert_tf"
results["not_core_ops"] = not_core
print(json.dumps(results))
"""


def tiny_config():
    return BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=64, max_position_embeddings=32)


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return str(path)


def as_input(value):
    value = np.asarray(value)
    if value.dtype.kind in "OSU":
        return {"b64": [base64.b64encode(v if isinstance(v, bytes) else v.encode("utf-8")).decode()
                        for v in value.tolist()]}
    return {"int32": value.astype(np.int32).tolist()}


def as_numpy(encoded):
    (dtype, values), = encoded.items()
    return np.array(values, dtype=object if dtype == "strings" else dtype)


def serialized_examples(columns):
    names = list(columns)
    return [tf.train.Example(features=tf.train.Features(feature={
        name: tf.train.Feature(bytes_list=tf.train.BytesList(value=[columns[name][i].encode()]))
        for name in names})).SerializeToString() for i in range(len(columns[names[0]]))]


def python_ids(vocab_file, texts, special_tokens=()):
    """[CLS] pieces [SEP] of each text by the Python tokenizer, unpadded."""
    tokenizer = FullTokenizer(vocab_file, do_lower_case=True, special_tokens=special_tokens)
    ids = []
    for text in texts:
        tokens = ["[CLS]"] + tokenizer.tokenize(text)[:MAX_SEQ_LENGTH - 2] + ["[SEP]"]
        ids.append(tokenizer.convert_tokens_to_ids(tokens))
    return ids


def test_every_kind_round_trips_through_a_fresh_process(tmp_path, vocab_file):
    tf.keras.utils.set_random_seed(3)
    config = tiny_config()
    models = {
        "classifier": (BertClassifier(config, num_labels=3),
                       dict(label_list=LABELS, pair=True)),
        "regression": (BertClassifier(config, num_labels=1, pooling="mean"), {}),
        "ner": (BertTokenClassifier(config, num_labels=len(TAGS)), dict(label_list=TAGS)),
        "pretrainer": (BertPretrainer(config), dict(top_k=3)),
        "encoder": (BertEncoder(config), dict(sentence_pooling="mean", normalize=True)),
    }
    calls, expected, functions_of = {}, {}, {}
    for kind, (model, options) in models.items():
        functions = export.serving_functions(model, kind, vocab_file,
                                             max_seq_length=MAX_SEQ_LENGTH, **options)
        functions_of[kind] = functions
        path = export.write_serving_model(str(tmp_path / kind), functions)
        assert path == str(tmp_path / kind / "1")
        assert os.path.isfile(os.path.join(path, "assets", "vocab.txt"))
        columns = {name: (TEXTS if name != "text_b" else TEXTS_B)
                   for name in functions.text_inputs}
        ids = functions.preprocessor([tf.constant(c) for c in columns.values()])
        signature_inputs = {
            "serving_default": {name: tf.constant(c) for name, c in columns.items()},
            "serve_ids": {name: ids[name] for name in export.ID_INPUTS},
            "serve_examples": {"examples": tf.constant(serialized_examples(columns))},
        }
        empty = functions.serve_text(*[tf.constant([], tf.string)] * len(functions.text_inputs))
        assert all(value.shape[0] == 0 for value in empty.values()), kind  # any batch size
        calls[kind] = [path, {sig: {k: as_input(v.numpy()) for k, v in inputs.items()}
                              for sig, inputs in signature_inputs.items()}]
        # In process, eagerly (tracing would cost more than the one call).
        expected[kind] = {
            "serving_default": functions.serve_text(*signature_inputs["serving_default"].values()),
            "serve_ids": functions.serve_ids(signature_inputs["serve_ids"])}
        expected[kind]["serve_examples"] = expected[kind]["serving_default"]

    spec = tmp_path / "calls.json"
    spec.write_text(json.dumps(calls))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", LOADER, str(spec)], env=env,
                            capture_output=True, text=True, cwd=str(tmp_path), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])

    # Every op is core TensorFlow or registered by importing tensorflow_text.
    assert served.pop("not_core_ops") == ["FastWordpieceTokenizeWithOffsets", "NormalizeUTF8",
                                          "RegexSplitWithOffsets"]
    for kind, signatures in expected.items():
        for signature, outputs in signatures.items():
            got = served[kind]["calls"][signature]
            assert sorted(got) == sorted(outputs), (kind, signature)
            for name, value in outputs.items():
                value = value.numpy()
                if value.dtype == object:
                    value = np.vectorize(lambda b: b.decode(), otypes=[object])(value)
                    np.testing.assert_array_equal(as_numpy(got[name]).reshape(value.shape), value)
                else:
                    np.testing.assert_allclose(as_numpy(got[name]), value, atol=1e-5,
                                               err_msg=f"{kind} {signature} {name}")
        assert served[kind]["warmup"] == [[sig, sorted(signatures[sig])] for sig in
                                          ("serving_default", "serve_ids", "serve_examples")]

    # The text signatures pack like the Python tokenizer; serve_ids on those ids gives the same
    # outputs as on raw text (padding trimmed or not).
    ids = python_ids(vocab_file, TEXTS, special_tokens=["[MASK]"])
    pretrainer = expected["pretrainer"]["serving_default"]
    for name in ("top_token_ids", "top_probabilities", "num_masks", "mask_positions"):
        np.testing.assert_allclose(pretrainer[name].numpy(),
                                   expected["pretrainer"]["serve_ids"][name].numpy(), atol=1e-6)

    # Fill-mask against NumPy on the Keras model's masked-LM logits.
    model = models["pretrainer"][0]
    assert pretrainer["num_masks"].numpy().tolist() == [1, 0, 3, 0, 0]
    for row, text_ids in enumerate(ids):
        positions = [i for i, t in enumerate(text_ids) if t == VOCAB.index("[MASK]")]
        if not positions:
            continue
        logits = model({"input_ids": np.array([text_ids], np.int32),
                        "input_mask": np.ones((1, len(text_ids)), np.int32),
                        "segment_ids": np.zeros((1, len(text_ids)), np.int32),
                        "masked_lm_positions": np.array([positions], np.int32)},
                       training=False)["masked_lm_logits"].numpy()[0].astype(np.float64)
        probabilities = np.exp(logits - logits.max(-1, keepdims=True))
        probabilities /= probabilities.sum(-1, keepdims=True)
        top = np.argsort(-probabilities, axis=-1)[:, :3]
        count = len(positions)
        assert pretrainer["mask_positions"].numpy()[row, :count].tolist() == positions
        assert pretrainer["top_token_ids"].numpy()[row, :count].tolist() == top.tolist()
        np.testing.assert_allclose(pretrainer["top_probabilities"].numpy()[row, :count],
                                   np.take_along_axis(probabilities, top, -1), atol=1e-5)
        assert [[t.decode() for t in r] for r in pretrainer["top_tokens"].numpy()[row, :count]] \
            == [[VOCAB[i] for i in r] for r in top]
    assert (pretrainer["top_token_ids"].numpy()[1] == -1).all()

    # Sentence embedding: mean over the mask, then L2 normalisation, in NumPy.
    encoder = models["encoder"][0]
    embedding = expected["encoder"]["serving_default"]["sentence_embedding"].numpy()
    for row, text_ids in enumerate(python_ids(vocab_file, TEXTS)):  # "[MASK]" is plain text here
        sequence = encoder({"input_ids": np.array([text_ids], np.int32)},
                           training=False)["sequence_output"].numpy()[0]
        mean = sequence.mean(axis=0)
        np.testing.assert_allclose(embedding[row], mean / np.linalg.norm(mean), atol=1e-5)

    # saved_model_cli lists every signature with the documented dtypes and shapes.
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--all", "--dir", calls["pretrainer"][0]], env=env,
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-3000:]
    text = shown.stdout
    for signature in ("serving_default", "serve_ids", "serve_examples"):
        assert f"signature_def['{signature}']" in text
    assert "inputs['text'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)" in text
    assert "inputs['input_ids'] tensor_info:\n        dtype: DT_INT32\n        shape: (-1, -1)" in text
    assert "inputs['examples'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)" in text
    assert "outputs['top_tokens'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1, -1, 3)" in text


def test_warmup_is_skipped_with_a_log_line_without_tensorflow_serving_api(
        tmp_path, vocab_file, monkeypatch):
    for module in ("tensorflow_serving", "tensorflow_serving.apis"):
        monkeypatch.setitem(sys.modules, module, None)  # makes its import fail
    logged = []
    monkeypatch.setattr(export.logging, "info", lambda message, *args: logged.append(
        message % args))
    preprocessor = export.TextPreprocessor(vocab_file, seq_length=MAX_SEQ_LENGTH)
    assert export.write_warmup_requests(str(tmp_path), ("text",), preprocessor) is None
    assert len(logged) == 1 and "tensorflow-serving-api is not installed" in logged[0]
    assert not (tmp_path / "assets.extra").exists()


def test_an_export_with_variables_stores_each_weight_once(tmp_path, vocab_file):
    """The checkpoint inside an unfrozen SavedModel holds exactly the model's trained weights,
    once each (Keras' ExportArchive stored a tracked model's variables twice)."""
    tf.keras.utils.set_random_seed(6)
    config = tiny_config()
    for kind, model, options in (
            ("classifier", BertClassifier(config, num_labels=3), dict(label_list=LABELS)),
            ("ner", BertTokenClassifier(config, num_labels=len(TAGS)), dict(label_list=TAGS))):
        functions = export.serving_functions(model, kind, vocab_file,
                                             max_seq_length=MAX_SEQ_LENGTH, **options)
        path = export.write_serving_model(str(tmp_path / kind), functions, warmup=False,
                                          freeze=False)
        stored = [(name, shape) for name, shape in
                  tf.train.list_variables(os.path.join(path, "variables", "variables"))
                  if name != "_CHECKPOINTABLE_OBJECT_GRAPH"]
        assert sorted(int(np.prod(shape)) for _, shape in stored) == sorted(
            int(np.prod(w.shape)) for w in model.trainable_weights), kind
        loaded = tf.saved_model.load(path)
        served = loaded.signatures["serving_default"](text=tf.constant(TEXTS))
        expected = functions.serve_text(tf.constant(TEXTS))
        np.testing.assert_allclose(served["probabilities"], expected["probabilities"], atol=1e-6)


def test_the_default_freezes_only_models_of_up_to_freeze_max_bytes(tmp_path, vocab_file,
                                                                   monkeypatch):
    model = BertClassifier(tiny_config(), num_labels=3)
    functions = export.serving_functions(model, "classifier", vocab_file,
                                         max_seq_length=MAX_SEQ_LENGTH, label_list=LABELS)
    weight_bytes = 4 * sum(int(np.prod(w.shape)) for w in model.weights)
    monkeypatch.setattr(export, "FREEZE_MAX_BYTES", weight_bytes)
    assert export.should_freeze(functions)
    monkeypatch.setattr(export, "FREEZE_MAX_BYTES", weight_bytes - 1)
    assert not export.should_freeze(functions)
    path = export.write_serving_model(str(tmp_path / "default"), functions, warmup=False)
    assert len(tf.train.list_variables(os.path.join(path, "variables", "variables"))) > 1
    # Asked to freeze past saved_model.pb's limit: refused before anything is written.
    monkeypatch.setattr(export, "FREEZE_LIMIT_BYTES", weight_bytes - 1)
    with pytest.raises(ValueError, match="cannot be frozen"):
        export.write_serving_model(str(tmp_path / "frozen"), functions, warmup=False,
                                   freeze=True)
    assert not (tmp_path / "frozen").exists()


def test_a_frozen_export_serves_the_same_answers_without_variables(tmp_path, vocab_file):
    import keras

    tf.keras.utils.set_random_seed(5)
    model = BertClassifier(tiny_config(), num_labels=3)
    for weight in model.weights:  # non-zero biases: nothing folds away
        weight.assign(weight + tf.random.stateless_normal(weight.shape, [1, 2]) * 0.05)
    functions = export.serving_functions(model, "classifier", vocab_file,
                                         max_seq_length=MAX_SEQ_LENGTH, label_list=LABELS)
    expected = functions.serve_text(tf.constant(TEXTS))
    path = export.write_serving_model(str(tmp_path / "frozen"), functions, warmup=False,
                                      freeze=True)
    loaded = tf.saved_model.load(path)
    assert not loaded.variables  # the weights are graph constants now
    served = loaded.signatures["serving_default"](text=tf.constant(TEXTS))
    np.testing.assert_allclose(served["probabilities"], expected["probabilities"], atol=1e-6)
    np.testing.assert_array_equal(served["label"], expected["label"])
    ids = functions.preprocessor([tf.constant(TEXTS)])
    by_ids = loaded.signatures["serve_ids"](**{k: ids[k] for k in export.ID_INPUTS})
    np.testing.assert_allclose(by_ids["probabilities"], expected["probabilities"], atol=1e-6)

    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        bfloat16_model = BertClassifier(tiny_config(), num_labels=3)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    bfloat16_functions = export.serving_functions(
        bfloat16_model, "classifier", vocab_file, max_seq_length=MAX_SEQ_LENGTH,
        label_list=LABELS)
    assert export.should_freeze(bfloat16_functions)
    # The NER tagger's serving function is not packed ids -> model: never frozen.
    tagger = export.serving_functions(BertTokenClassifier(tiny_config(), num_labels=len(TAGS)),
                                      "ner", vocab_file, max_seq_length=MAX_SEQ_LENGTH,
                                      label_list=TAGS)
    assert not export.should_freeze(tagger)
    with pytest.raises(ValueError, match="packed kinds"):
        export.frozen_serving_functions(tagger)
