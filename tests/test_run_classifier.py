"""bert_tf.classifier end to end on a tiny random-init model and a trivially learnable task,
called as a Python user would (no flags); and the script's flags mapping onto its settings."""

import json
import os
import random
import re

import numpy as np
import pytest
from absl import flags

from bert_tf import cli
from bert_tf.classifier import ClassifierSettings, resolve_pooling, run_classifier
from conftest import write_model_files

FILLER = [f"w{i}" for i in range(20)]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad"] + FILLER


def sentence(rng, polarity):
    words = rng.sample(FILLER, rng.randint(2, 6))
    words.insert(rng.randint(0, len(words)), polarity)
    return " ".join(words)


def write_task(directory, seed=0):
    """Sentiment by a keyword: label "pos" iff the sentence contains "good" (else "bad")."""
    rng = random.Random(seed)
    os.makedirs(directory)
    truth = {}
    for split, n in (("train", 320), ("dev", 64), ("test", 24)):
        rows = []
        for _ in range(n):
            label = rng.choice(["pos", "neg"])
            rows.append((sentence(rng, "good" if label == "pos" else "bad"), label))
        truth[split] = rows
        with open(os.path.join(directory, f"{split}.tsv"), "w", encoding="utf-8") as f:
            if split == "test":
                f.write("id\ttext\n" + "".join(f"{i}\t{t}\n" for i, (t, _) in enumerate(rows)))
            else:
                f.write("text\tsentiment\n" + "".join(f"{t}\t{l}\n" for t, l in rows))
    return truth


@pytest.fixture()
def model_files(tmp_path):
    return write_model_files(str(tmp_path), VOCAB)


def run(**settings):
    return run_classifier(ClassifierSettings(**settings))


def read_results(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert lines == sorted(lines)
    return {k: v for k, v in (line.split(" = ") for line in lines)}


def test_train_eval_predict_export_and_reload(tmp_path, model_files):
    vocab, config = model_files
    data, out, export = str(tmp_path / "data"), str(tmp_path / "out"), str(tmp_path / "export")
    truth = write_task(data)
    common = dict(task_name="generic", data_dir=data, vocab_file=vocab, bert_config_file=config,
                  output_dir=out, text_a_column="text", label_column="sentiment",
                  max_seq_length=16, seed=1)
    returned = run(**common, do_train=True, do_eval=True, do_predict=True, train_batch_size=16,
                   num_train_epochs=4, learning_rate=2e-3, eval_batch_size=16,
                   predict_batch_size=8, export_dir=export)

    results = read_results(os.path.join(out, "eval_results.txt"))
    assert set(results) == {"eval_accuracy", "eval_loss", "global_step", "loss"}
    assert int(results["global_step"]) == int(320 / 16 * 4)  # num_train_steps of the original.
    assert float(results["eval_accuracy"]) >= 0.95, results
    assert float(results["eval_loss"]) < 0.3
    # The returned metrics are the ones written.
    assert returned["eval"]["eval_accuracy"] == pytest.approx(float(results["eval_accuracy"]))
    assert returned["global_step"] == 80
    assert returned["export_path"] == os.path.join(export, "1")

    with open(os.path.join(out, "test_results.tsv"), encoding="utf-8") as f:
        probabilities = np.array([[float(x) for x in line.split("\t")] for line in f])
    assert probabilities.shape == (24, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    with open(os.path.join(out, "predictions.tsv"), encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    assert rows[0] == ["index", "prediction"]
    predicted = [label for _, label in rows[1:]]
    labels = ["neg", "pos"]  # Discovered from train, sorted; column order of test_results.tsv.
    assert predicted == [labels[i] for i in probabilities.argmax(axis=1)]
    correct = sum(p == t for p, (_, t) in zip(predicted, truth["test"]))
    assert correct >= 22, (correct, predicted)
    assert os.listdir(export) == ["1"]
    assert os.path.isfile(os.path.join(export, "1", "saved_model.pb"))

    # Predict-only in the same output_dir: restores the fine-tuned checkpoint and the label
    # list (train.tsv is gone), reuses the cached features; the probabilities are the same.
    cache_files = sorted(os.listdir(os.path.join(out, "feature_cache")))
    os.remove(os.path.join(out, "test_results.tsv"))
    os.remove(os.path.join(data, "train.tsv"))
    run(**common, do_predict=True, predict_batch_size=5)
    with open(os.path.join(out, "test_results.tsv"), encoding="utf-8") as f:
        again = np.array([[float(x) for x in line.split("\t")] for line in f])
    np.testing.assert_allclose(again, probabilities, atol=1e-5)
    assert sorted(os.listdir(os.path.join(out, "feature_cache"))) == cache_files


def test_regression_task_with_stsb_layout(tmp_path, model_files):
    vocab, config = model_files
    data, out = str(tmp_path / "stsb"), str(tmp_path / "out")
    os.makedirs(data)
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    rng = random.Random(3)
    for split, n in (("train", 64), ("dev", 16)):
        with open(os.path.join(data, f"{split}.tsv"), "w", encoding="utf-8") as f:
            f.write(head + "\n")
            for i in range(n):
                a, b = sentence(rng, "good"), sentence(rng, "bad")
                f.write(f"{i}\tmain\tx\t2012\t{i}\tnone\tnone\t{a}\t{b}\t{rng.uniform(0, 5):.2f}\n")
    run(task_name="STS-B", data_dir=data, vocab_file=vocab, bert_config_file=config,
        output_dir=out, max_seq_length=24, do_train=True, do_eval=True, train_batch_size=16,
        num_train_epochs=1)
    results = read_results(os.path.join(out, "eval_results.txt"))
    assert set(results) == {"eval_corr", "eval_loss", "eval_pearson", "eval_spearmanr",
                            "global_step", "loss"}
    assert int(results["global_step"]) == 4


def test_usage_errors(tmp_path, model_files):
    vocab, config = model_files
    with pytest.raises(ValueError, match="At least one of --do_train"):
        run(task_name="mrpc", data_dir=str(tmp_path), output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="--task_name=generic only"):
        run(task_name="mrpc", data_dir=str(tmp_path), output_dir=str(tmp_path), do_train=True,
            text_a_column="x", vocab_file=vocab, bert_config_file=config)
    with pytest.raises(FileNotFoundError, match="train.tsv does not exist"):
        run(task_name="mrpc", data_dir=str(tmp_path), output_dir=str(tmp_path / "o"),
            vocab_file=vocab, bert_config_file=config, do_train=True, max_seq_length=16)


def pooling_settings(output_dir, init_checkpoint="", classifier_pooling="auto", pair=False):
    return ClassifierSettings(output_dir=str(output_dir), init_checkpoint=str(init_checkpoint),
                              classifier_pooling=classifier_pooling, task_name="generic",
                              text_b_column="b" if pair else None)


def write_sentence_pooling(directory, mode):
    os.makedirs(os.path.join(directory, "1_Pooling"))
    with open(os.path.join(directory, "1_Pooling", "config.json"), "w", encoding="utf-8") as f:
        json.dump({f"pooling_mode_{m}": m == mode for m in ("cls_token", "mean_tokens", "max_tokens")}, f)


def test_classifier_pooling_resolution(tmp_path):
    def resolve(*args, pair=False):
        return resolve_pooling(pooling_settings(*args, pair=pair))[0]

    out, ckpt = tmp_path / "out", tmp_path / "sentence_model"
    os.makedirs(out)
    assert resolve(out) == "pooler"  # no checkpoint: the original's head
    write_sentence_pooling(str(ckpt), "mean_tokens")
    assert resolve(out, ckpt) == "mean"  # single texts: the checkpoint's declared pooling
    assert resolve(out, ckpt, pair=True) == "pooler"  # pairs: the original's head
    assert resolve(out, ckpt, "pooler") == "pooler"
    assert resolve(out, ckpt, "cls", pair=True) == "cls"
    # A fine-tuning run's record wins over the sentence-transformers config: OUTPUT_DIR's
    # checkpoint (resumed or restored) was trained with that head.
    (out / "classifier_config.json").write_text('{"pooling": "cls"}\n')
    assert resolve(out, ckpt) == "cls"
    assert resolve(out, ckpt, pair=True) == "cls"
    (out / "classifier_config.json").write_text('{"pooling": "max"}\n')
    with pytest.raises(Exception, match=re.escape(str(out / "classifier_config.json"))):
        resolve(out, ckpt)

    max_model = tmp_path / "max_model"
    write_sentence_pooling(str(max_model), "max_tokens")
    with pytest.raises(Exception, match=r"--init_checkpoint=.*max_model.*--classifier_pooling"):
        resolve(tmp_path / "new", max_model)


def test_pooling_is_recorded_and_reused_from_the_fine_tuned_dir(tmp_path, model_files):
    vocab, config = model_files
    data = str(tmp_path / "data")
    write_task(data)
    common = dict(task_name="generic", data_dir=data, vocab_file=vocab, bert_config_file=config,
                  text_a_column="text", label_column="sentiment", max_seq_length=16, seed=1,
                  eval_batch_size=16)
    first = str(tmp_path / "first")
    run(**common, output_dir=first, do_train=True, do_eval=True, train_batch_size=16,
        num_train_epochs=1, learning_rate=2e-3, classifier_pooling="mean")
    with open(os.path.join(first, "classifier_config.json"), encoding="utf-8") as f:
        assert json.load(f) == {"pooling": "mean"}
    trained = read_results(os.path.join(first, "eval_results.txt"))

    def eval_from_first(name, **extra):
        out = str(tmp_path / name)
        run(**common, output_dir=out, init_checkpoint=first, do_eval=True, **extra)
        return read_results(os.path.join(out, "eval_results.txt"))

    # A later run from the fine-tuned dir, without the flag, uses the same head: same loss.
    again = eval_from_first("again")
    assert float(again["eval_loss"]) == pytest.approx(float(trained["eval_loss"]), abs=1e-5)
    # The original's pooler head on the same weights gives another loss (the check can fail).
    pooler = eval_from_first("pooler", classifier_pooling="pooler")
    assert abs(float(pooler["eval_loss"]) - float(trained["eval_loss"])) > 1e-3


def test_script_flags_map_onto_the_settings():
    """run_classifier.py's flags (shared fine-tuning flags defined once in bert_tf.cli, plus the
    task's own) fill ClassifierSettings; --do_lower_case given or not is kept apart."""
    import run_classifier  # noqa: F401  (defines its flags on the global FLAGS)

    values = flags.FlagValues()
    cli.define_finetuning_flags("data", values)
    flags.DEFINE_string("task_name", None, "", flag_values=values)
    flags.DEFINE_string("text_b_column", None, "", flag_values=values)
    values(["prog", "--task_name=mrpc", "--data_dir=d", "--output_dir=o", "--do_train",
            "--learning_rate=2e-5", "--num_train_epochs=2", "--seed=7", "--text_b_column=b"])
    settings = cli.settings_from_flags(ClassifierSettings, values)
    assert (settings.task_name, settings.data_dir, settings.output_dir) == ("mrpc", "d", "o")
    assert settings.do_train and not settings.do_eval
    assert (settings.learning_rate, settings.num_train_epochs, settings.seed) == (2e-5, 2.0, 7)
    assert settings.text_b_column == "b"
    assert settings.do_lower_case is None  # not given: detected from the checkpoint
    assert settings.label_column == "label"  # no such flag here: the dataclass default
    values.unparse_flags()
    values(["prog", "--nodo_lower_case"])
    assert cli.settings_from_flags(ClassifierSettings, values).do_lower_case is False
    # The real script defines every field of its settings as a flag.
    missing = [f for f in ClassifierSettings.__dataclass_fields__ if f not in flags.FLAGS]
    assert missing == []
