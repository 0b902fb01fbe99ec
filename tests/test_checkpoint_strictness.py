"""No silent partial loads: what a checkpoint lacks, has in another shape or cannot read is an
error naming the variables and the file; only heads the checkpoint has none of start new;
allow_partial downgrades to a warning; layer_norm_eps is honoured; the fine-tuning validation
pass checks the checkpoint before any output; fill-mask answers of a pretrainer without its
MLM head say so.

Checkpoints are written here with the original variable names (tf.raw_ops.SaveV2) and
Hugging Face names (safetensors), not through bert_tf's name table.
"""

import io
import json
import logging as py_logging
import os
import random

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from safetensors.numpy import save_file

import numpy_reference
from bert_tf import checkpoints, cli, predict
from bert_tf.checkpoints import CheckpointError, CheckpointMismatchError
from bert_tf.config import BertConfig
from bert_tf.files import DataFormatError
from bert_tf.models import BertClassifier, BertEncoder, BertPretrainer
from conftest import write_model_files

CONFIG = dict(vocab_size=20, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
              intermediate_size=64, max_position_embeddings=16, type_vocab_size=2)
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "capital", "of", "france", "is",
         "paris", "london", "a", "city", ".", "good", "bad", "film", "very", "not"]
QUERY_0 = "bert/encoder/layer_0/attention/self/query/kernel"
INTERMEDIATE_1 = "bert/encoder/layer_1/intermediate/dense/kernel"


def config(**overrides):
    return BertConfig(**{**CONFIG, **overrides})


def encoder_weights(c, seed=0, scale=0.2):
    """Original names and shapes of the encoder (written from ORIGINAL_BERT_FACTS.md)."""
    rng = np.random.default_rng(seed)
    H, I = c.hidden_size, c.intermediate_size
    shapes = {"bert/embeddings/word_embeddings": (c.vocab_size, H),
              "bert/embeddings/token_type_embeddings": (c.type_vocab_size, H),
              "bert/embeddings/position_embeddings": (c.max_position_embeddings, H),
              "bert/embeddings/LayerNorm/gamma": (H,), "bert/embeddings/LayerNorm/beta": (H,),
              "bert/pooler/dense/kernel": (H, H), "bert/pooler/dense/bias": (H,)}
    for i in range(c.num_hidden_layers):
        p = f"bert/encoder/layer_{i}/"
        for name in ("attention/self/query", "attention/self/key", "attention/self/value",
                     "attention/output/dense"):
            shapes[p + name + "/kernel"], shapes[p + name + "/bias"] = (H, H), (H,)
        shapes[p + "intermediate/dense/kernel"], shapes[p + "intermediate/dense/bias"] = (H, I), (I,)
        shapes[p + "output/dense/kernel"], shapes[p + "output/dense/bias"] = (I, H), (H,)
        for ln in ("attention/output/LayerNorm", "output/LayerNorm"):
            shapes[p + ln + "/gamma"], shapes[p + ln + "/beta"] = (H,), (H,)
    return {n: rng.normal(0.0, scale, s).astype(np.float32) for n, s in shapes.items()}


def write_tf1(directory, tensors, c):
    os.makedirs(directory, exist_ok=True)
    prefix = os.path.join(directory, "bert_model.ckpt")
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(tensors[n]) for n in names])
    c.to_json_file(os.path.join(directory, "bert_config.json"))
    with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(VOCAB[:c.vocab_size]) + "\n")
    return prefix


def layer_0_query(model):
    encoder = model if isinstance(model, BertEncoder) else model.encoder
    return encoder.transformer_layers[0].attention.query.kernel.numpy()


def test_a_missing_encoder_variable_is_an_error_naming_it_and_the_file(tmp_path):
    c = config()
    weights = encoder_weights(c)
    del weights[QUERY_0], weights["bert/embeddings/LayerNorm/beta"]
    prefix = write_tf1(str(tmp_path / "ckpt"), weights, c)
    model = BertClassifier(c, num_labels=2)
    before = [w.numpy().copy() for w in model.weights]
    with pytest.raises(CheckpointMismatchError) as info:
        checkpoints.load_checkpoint(model, prefix)
    message = str(info.value)
    assert message.startswith(prefix + ":") and "\n" not in message
    assert "lacks 2 variables" in message
    assert QUERY_0 in message and "bert/embeddings/LayerNorm/beta" in message
    assert "--allow_partial_checkpoint" in message
    assert isinstance(info.value, DataFormatError) and isinstance(info.value, ValueError)
    for old, w in zip(before, model.weights):  # nothing was assigned
        np.testing.assert_array_equal(old, w.numpy())
    # The validation pass finds the same without a model.
    with pytest.raises(CheckpointMismatchError, match="lacks 2 variables"):
        checkpoints.check_checkpoint(prefix, c, "classifier", num_labels=2)


def test_every_mis_shaped_variable_is_listed_with_both_shapes(tmp_path):
    c = config()
    weights = encoder_weights(c)
    weights[INTERMEDIATE_1] = np.zeros((32, 48), np.float32)
    weights["bert/embeddings/word_embeddings"] = np.zeros((25, 32), np.float32)
    prefix = write_tf1(str(tmp_path / "ckpt"), weights, c)
    with pytest.raises(CheckpointMismatchError) as info:
        checkpoints.load_checkpoint(BertEncoder(c), prefix)
    message = str(info.value)
    assert "2 shapes differ" in message
    assert f"{INTERMEDIATE_1} checkpoint [32, 48] vs model [32, 64]" in message
    assert "bert/embeddings/word_embeddings checkpoint [25, 32] vs model [20, 32]" in message
    assert "vocab_size differs: checkpoint 25, model 20" in message


def test_more_transformer_layers_than_the_config_is_an_error(tmp_path):
    three = config(num_hidden_layers=3)
    prefix = write_tf1(str(tmp_path / "ckpt"), encoder_weights(three), three)
    with pytest.raises(CheckpointMismatchError, match="more transformer layers than the model's 2 "
                       r"\(e.g. bert/encoder/layer_2/"):
        checkpoints.load_checkpoint(BertEncoder(config()), prefix)


def test_a_truncated_tf1_data_file_is_an_error_naming_the_data_file(tmp_path):
    c = config()
    prefix = write_tf1(str(tmp_path / "ckpt"), encoder_weights(c), c)
    data_file = prefix + ".data-00000-of-00001"
    with open(data_file, "r+b") as f:
        f.truncate(os.path.getsize(data_file) // 2)
    with pytest.raises(CheckpointMismatchError) as info:
        checkpoints.load_checkpoint(BertEncoder(c), prefix)
    message = str(info.value)
    assert f"cannot be read from {data_file}" in message and "damaged or incomplete" in message
    with pytest.raises(CheckpointMismatchError, match="cannot be read from"):
        checkpoints.check_checkpoint(prefix, c)  # the validation pass reads the data too


def test_converting_a_partial_head_is_an_error_unless_allowed(tmp_path, caplog):
    c = config()
    weights = encoder_weights(c)
    weights["cls/predictions/output_bias"] = np.zeros(c.vocab_size, np.float32)  # the rest absent
    prefix = write_tf1(str(tmp_path / "ckpt"), weights, c)
    with pytest.raises(CheckpointMismatchError, match="head masked_lm_head is incomplete: it has "
                       "cls/predictions/output_bias but lacks cls/predictions/transform/dense/kernel"):
        checkpoints.read_weights(prefix)
    with caplog.at_level(py_logging.WARNING):
        read = checkpoints.read_weights(prefix, allow_partial=True)
    assert read.heads == () and "cls/predictions/output_bias" not in read.values
    assert any("masked_lm_head is incomplete" in r.getMessage() for r in caplog.records)


def hugging_face_dir(directory, c, weights, **config_overrides):
    """A Hugging Face BertModel folder: names and [out, in] layout written out here."""
    tensors = {}
    for name, value in weights.items():
        hf = name[len("bert/"):].replace("encoder/layer_", "encoder/layer/").replace("/", ".")
        hf = hf.replace(".gamma", ".weight").replace(".beta", ".bias")
        if hf.endswith(".kernel"):
            hf, value = hf[: -len(".kernel")] + ".weight", np.ascontiguousarray(value.T)
        elif hf.endswith("_embeddings"):
            hf += ".weight"
        tensors[hf] = value
    os.makedirs(directory, exist_ok=True)
    save_file(tensors, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    hf_config = dict(c.to_dict(), model_type="bert", hidden_act="gelu_new", **config_overrides)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(hf_config, f)
    return directory


def test_a_truncated_safetensors_file_is_an_error_naming_the_file(tmp_path):
    c = config()
    directory = hugging_face_dir(str(tmp_path / "hf"), c, encoder_weights(c))
    weights_file = os.path.join(directory, "model.safetensors")
    with open(weights_file, "r+b") as f:
        f.truncate(os.path.getsize(weights_file) - 100)
    for check in (lambda: checkpoints.load_checkpoint(BertEncoder(c), directory),
                  lambda: checkpoints.check_checkpoint(directory, c)):
        with pytest.raises(CheckpointError) as info:
            check()
        assert str(info.value).startswith(weights_file + ": cannot read the safetensors file")


def test_allow_partial_loads_what_fits_and_warns_naming_the_rest(tmp_path, caplog):
    c = config()
    weights = encoder_weights(c, seed=3)
    del weights[QUERY_0]
    weights[INTERMEDIATE_1] = np.zeros((32, 48), np.float32)
    prefix = write_tf1(str(tmp_path / "ckpt"), weights, c)
    model = BertClassifier(c, num_labels=3)
    query_before = layer_0_query(model).copy()
    intermediate_before = model.encoder.transformer_layers[1].intermediate.kernel.numpy().copy()
    with caplog.at_level(py_logging.WARNING):
        report = checkpoints.load_checkpoint(model, prefix, allow_partial=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= py_logging.WARNING]
    assert any("allow_partial" in w and QUERY_0 in w and INTERMEDIATE_1 in w for w in warnings)
    assert sorted(report.new) == sorted([QUERY_0, INTERMEDIATE_1, "output_weights", "output_bias"])
    assert report.new_heads == ["classifier"] and report.mismatched == [INTERMEDIATE_1]
    np.testing.assert_array_equal(layer_0_query(model), query_before)
    np.testing.assert_array_equal(model.encoder.transformer_layers[1].intermediate.kernel.numpy(),
                                  intermediate_before)
    encoder = model.encoder
    np.testing.assert_array_equal(encoder.transformer_layers[0].attention.key.kernel.numpy(),
                                  weights["bert/encoder/layer_0/attention/self/key/kernel"])
    np.testing.assert_array_equal(encoder.embeddings.word_embeddings.embeddings.numpy(),
                                  weights["bert/embeddings/word_embeddings"])
    assert len(report.loaded) == len(weights) - 1


def test_a_new_head_is_logged_by_name_and_an_unused_pooler_may_be_missing(tmp_path, caplog):
    c = config()
    weights = encoder_weights(c)
    del weights["bert/pooler/dense/kernel"], weights["bert/pooler/dense/bias"]
    prefix = write_tf1(str(tmp_path / "ckpt"), weights, c)
    with caplog.at_level(py_logging.INFO, logger="absl"):
        report = checkpoints.load_checkpoint(BertClassifier(c, num_labels=2, pooling="cls"), prefix)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "no classifier head" in messages and "output_weights, output_bias" in messages
    assert "no pooler" in messages and "bert/pooler/dense/kernel" in messages
    assert sorted(report.new) == sorted(["bert/pooler/dense/kernel", "bert/pooler/dense/bias",
                                         "output_weights", "output_bias"])
    # The original head reads the pooler: there it is a missing variable.
    with pytest.raises(CheckpointMismatchError, match="bert/pooler/dense/kernel"):
        checkpoints.load_checkpoint(BertClassifier(c, num_labels=2), prefix)


def test_a_pretrainer_without_heads_in_the_checkpoint_warns_naming_them(tmp_path, caplog):
    c = config()
    prefix = write_tf1(str(tmp_path / "ckpt"), encoder_weights(c), c)
    with caplog.at_level(py_logging.WARNING):
        report = checkpoints.load_checkpoint(BertPretrainer(c), prefix)
    assert report.new_heads == ["masked_lm_head", "next_sentence_head"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= py_logging.WARNING]
    assert any("no masked_lm_head" in w and "cls/predictions/output_bias" in w
               and "fill-mask" in w for w in warnings)
    assert any("no next_sentence_head" in w for w in warnings)


def test_a_tf2_checkpoint_is_checked_without_building_the_model_or_touching_the_seed(tmp_path):
    c = config()
    trained = BertClassifier(c, num_labels=3)
    tf.train.Checkpoint(model=trained).save(str(tmp_path / "run" / "ckpt"))
    c.to_json_file(str(tmp_path / "run" / "bert_config.json"))
    state = random.getstate()
    report = checkpoints.check_checkpoint(str(tmp_path / "run"), c, "classifier", num_labels=3)
    assert random.getstate() == state  # later initialisation is unchanged
    assert report.new == [] and len(report.loaded) == len(trained.weights)
    with pytest.raises(CheckpointMismatchError, match=r"output_weights checkpoint \[3, 32\] vs "
                       r"model \[4, 32\].*num_labels differs"):
        checkpoints.check_checkpoint(str(tmp_path / "run"), c, "classifier", num_labels=4)
    with pytest.raises(CheckpointMismatchError, match="intermediate/dense/kernel checkpoint "
                       r"\[32, 64\] vs model \[32, 128\]"):
        checkpoints.check_checkpoint(str(tmp_path / "run"), config(intermediate_size=128),
                                     "classifier", num_labels=3)


def test_layer_norm_eps_of_a_hugging_face_config_is_honoured(tmp_path):
    c = config()
    # Small activations make the epsilon matter: 1e-5 against variances of about 1e-4.
    weights = encoder_weights(c, seed=5, scale=0.01)
    for name in weights:  # unit LayerNorms: outputs of order 1
        if name.endswith("/gamma"):
            weights[name] = np.ones_like(weights[name])
        elif name.endswith("/beta"):
            weights[name] = np.zeros_like(weights[name])
    directory = hugging_face_dir(str(tmp_path / "hf"), c, weights, layer_norm_eps=1e-5)
    loaded_config = checkpoints.read_config(directory)
    assert loaded_config.layer_norm_eps == 1e-5
    encoder = BertEncoder(loaded_config)
    checkpoints.load_checkpoint(encoder, directory)
    ids = np.array([[2, 5, 6, 7, 8, 3, 0, 0]], np.int32)
    mask = (ids > 0).astype(np.int32)
    segments = np.zeros_like(ids)
    got = encoder({"input_ids": ids, "input_mask": mask, "segment_ids": segments},
                  training=False)["sequence_output"].numpy()

    def reference(epsilon):
        return numpy_reference.bert_forward(weights, dict(c.to_dict(), layer_norm_eps=epsilon),
                                            ids, mask, segments)["sequence_output"]

    np.testing.assert_allclose(got, reference(1e-5), rtol=0, atol=1e-5)  # measured: 5.5e-7
    # The test can tell the two apart: 1e-12 changes the outputs by about 6e-4.
    assert np.abs(reference(1e-12) - reference(1e-5)).max() > 1e-4
    # bert_config.json records it; a file of original numerics keeps the original's keys.
    assert loaded_config.to_dict()["layer_norm_eps"] == 1e-5
    assert "layer_norm_eps" not in c.to_dict()
    assert BertConfig.from_dict(loaded_config.to_dict()) == loaded_config


def test_run_classifier_validation_finds_a_hidden_size_mismatch_before_output_dir(tmp_path):
    from bert_tf.classifier import ClassifierSettings, run_classifier

    checkpoint_dir = str(tmp_path / "ckpt")
    prefix = write_tf1(checkpoint_dir, encoder_weights(config()), config())
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.tsv").write_text("sentence\tlabel\n" + "a good film .\tpos\na bad film .\tneg\n"
                                    * 4, encoding="utf-8")
    _, config_file = write_model_files(str(tmp_path), VOCAB, hidden_size=48, intermediate_size=64,
                                       max_position_embeddings=16)
    output_dir = tmp_path / "out"
    settings = ClassifierSettings(task_name="generic", data_dir=str(data), init_checkpoint=prefix,
                                  bert_config_file=config_file, output_dir=str(output_dir),
                                  do_train=True, max_seq_length=16, train_batch_size=4)
    stderr = io.StringIO()

    def main(argv):
        run_classifier(settings)

    import sys
    saved, sys.stderr = sys.stderr, stderr
    try:
        with pytest.raises(SystemExit) as exit_info:
            cli.report_errors(main, flags.FlagValues())(["run_classifier.py"])
    finally:
        sys.stderr = saved
    assert exit_info.value.code == 1
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --init_checkpoint: {prefix}: ")
    assert "bert/embeddings/word_embeddings checkpoint [20, 32] vs model [20, 48]" in lines[0]
    assert "hidden_size differs: checkpoint 32, model 48" in lines[0]
    assert not output_dir.exists()


def test_fill_mask_answers_of_a_pretrainer_without_its_mlm_head_carry_a_warning(tmp_path, capsys,
                                                                                caplog):
    c = config()
    directory = str(tmp_path / "encoder_only")
    write_tf1(directory, encoder_weights(c), c)
    texts = tmp_path / "texts.txt"
    texts.write_text("the capital of france is [MASK] .\n[MASK] city\n", encoding="utf-8")
    with caplog.at_level(py_logging.WARNING):
        predict.main([directory, "--input_file", str(texts), "--max_seq_length", "16"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [len(row["masks"]) for row in rows] == [1, 1]
    for row in rows:
        assert row["warning"] == ("warning: the masked-LM head is not in the checkpoint; these "
                                  "predictions are random")
    assert any("no masked_lm_head" in r.getMessage() for r in caplog.records)


def test_run_pretraining_checks_init_checkpoint_before_output_dir(tmp_path):
    from bert_tf.data.pretraining_instances import create_pretraining_data
    from bert_tf.pretraining import PretrainingSettings, run_pretraining

    words = "the capital of france is paris london a city good bad film very not".split()
    (tmp_path / "corpus.txt").write_text(
        "\n".join(" ".join(words[i:] + words[:i]) + ("\n" if i % 3 == 2 else "")
                  for i in range(12)) + "\n", encoding="utf-8")
    records = str(tmp_path / "train.tfrecord")
    create_pretraining_data([str(tmp_path / "corpus.txt")], [records],
                            write_model_files(str(tmp_path), VOCAB)[0], max_seq_length=16,
                            max_predictions_per_seq=3, dupe_factor=1, random_seed=1)
    _, config_file = write_model_files(str(tmp_path), VOCAB, max_position_embeddings=16,
                                       intermediate_size=96)
    prefix = write_tf1(str(tmp_path / "ckpt"), encoder_weights(config()), config())
    output_dir = tmp_path / "out"
    settings = PretrainingSettings(bert_config_file=config_file, input_file=records,
                                   output_dir=str(output_dir), init_checkpoint=prefix,
                                   max_seq_length=16, max_predictions_per_seq=3, do_train=True,
                                   train_batch_size=4, num_train_steps=2, num_warmup_steps=0)
    with pytest.raises(CheckpointMismatchError, match=r"^--init_checkpoint: .*bert/encoder/layer_0/"
                       r"intermediate/dense/kernel checkpoint \[32, 64\] vs model \[32, 96\]"):
        run_pretraining(settings)
    assert not output_dir.exists()


@pytest.mark.parametrize("to", ["huggingface", "keras_hub", "original"])
def test_layer_norm_eps_travels_through_conversion(tmp_path, to):
    from bert_tf import convert

    c = config(layer_norm_eps=1e-5)
    weights = checkpoints.BertWeights(config=c, values=encoder_weights(c), source="test")
    result = convert.write_weights(weights, str(tmp_path / to), to)
    assert checkpoints.read_config(result.output_dir).layer_norm_eps == 1e-5
    if to == "keras_hub":  # keras-hub's own loader builds LayerNorms with that epsilon
        backbone = checkpoints._keras_hub_preset(result.output_dir)[1]
        assert backbone.embeddings_layer_norm.epsilon == 1e-5
        assert backbone.transformer_layers[1]._feedforward_layer_norm.epsilon == 1e-5
