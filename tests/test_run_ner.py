"""bert_tf.ner end to end on a tiny random-init model and a trivially learnable tagging task,
called as a Python user would; and bad input found before anything is written."""

import os
import random

import pytest
import tensorflow as tf

from bert_tf.data.classification import DataFormatError
from bert_tf.ner import NerSettings, run_ner
from conftest import write_model_files

FILLER = [f"w{i}" for i in range(24)]
PEOPLE = [["alice"], ["bob", "smith"], ["carol", "jones", "lee"]]
PLACES = [["paris"], ["new", "york"]]
VOCAB = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "alice", "bob", "smith", "carol",
          "jones", "lee", "paris", "new", "york", "##s", "."] + FILLER)


def make_sentence(rng, length):
    """(words, IOB1 tags): names are PER, places LOC, the rest O. In IOB1 a chunk starts with
    I-, and B- only when it directly follows a chunk of the same type."""
    words, tags = [], []
    previous_type = None
    while len(words) < length:
        kind = rng.random()
        if kind < 0.35:
            entity_type, names = ("PER", PEOPLE) if kind < 0.2 else ("LOC", PLACES)
            name = rng.choice(names)
            first = "B" if previous_type == entity_type else "I"
            words += name
            tags += [f"{first}-{entity_type}"] + [f"I-{entity_type}"] * (len(name) - 1)
            previous_type = entity_type
        else:
            words.append(rng.choice(FILLER))
            tags.append("O")
            previous_type = None
    return words, tags


def write_conll(path, sentences, docstart=True):
    with open(path, "w", encoding="utf-8") as f:
        if docstart:
            f.write("-DOCSTART- -X- -X- O\n\n")
        for words, tags in sentences:
            f.writelines(f"{w} NN I-NP {t}\n" for w, t in zip(words, tags))
            f.write("\n")


def write_task(directory, seed=0):
    rng = random.Random(seed)
    os.makedirs(directory)
    splits = {}
    for split, n in (("train", 240), ("dev", 40), ("test", 16)):
        sentences = [make_sentence(rng, rng.randint(3, 12)) for _ in range(n)]
        if split != "train":
            sentences.append(make_sentence(rng, 40))  # longer than max_seq_length: windows
        write_conll(os.path.join(directory, f"{split}.txt"), sentences)
        splits[split] = sentences
    return splits


@pytest.fixture()
def model_files(tmp_path):
    return write_model_files(str(tmp_path), VOCAB, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def read_predictions(path):
    """[[(token, gold, predicted)]] per sentence."""
    sentences, current = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                current.append(tuple(line.split()))
            else:
                sentences.append(current)
                current = []
    assert not current, "the file must end with a blank line"
    return sentences


def spans(tags):
    """Entity spans of IOB1 tags by its definition (written here independently of bert_tf)."""
    found, start, current = [], None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, entity = tag.partition("-")
        continues = start is not None and prefix == "I" and entity == current
        if start is not None and not continues:
            found.append((current, start, i))
            start = None
        if tag != "O" and not continues:
            start, current = i, entity
    return found


def test_train_eval_predict_and_reload(tmp_path, model_files):
    vocab, config = model_files
    data, out = str(tmp_path / "data"), str(tmp_path / "out")
    truth = write_task(data)
    common = dict(data_dir=data, vocab_file=vocab, bert_config_file=config, output_dir=out,
                  max_seq_length=16, seed=1, eval_batch_size=8, predict_batch_size=8)
    export_dir = str(tmp_path / "export")
    result = run_ner(NerSettings(**common, do_train=True, do_eval=True, do_predict=True,
                                 train_batch_size=16, num_train_epochs=6, learning_rate=3e-3,
                                 warmup_proportion=0.1, export_dir=export_dir))
    # The model scheme is BIO for IOB1 input; labels come from the training file.
    assert result["label_list"] == ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]
    with open(os.path.join(out, "label_list.txt"), encoding="utf-8") as f:
        assert f.read().split() == result["label_list"]
    with open(os.path.join(out, "eval_results.txt"), encoding="utf-8") as f:
        written = dict(line.rstrip("\n").split(" = ") for line in f)
    assert float(written["eval_f1"]) == pytest.approx(result["eval"]["eval_f1"], abs=1e-6)
    for key in ("eval_precision", "eval_recall", "eval_accuracy", "eval_loss", "global_step",
                "eval_PER_f1", "eval_LOC_f1"):
        assert key in written

    # dev_predictions.txt: the dev file's tokens and gold tags (IOB1, as written), one
    # prediction per word; the F1 recomputed here from it with IOB1's own span definition
    # equals the reported one.
    dev = read_predictions(os.path.join(out, "dev_predictions.txt"))
    assert [[(w, g) for w, g, _ in s] for s in dev] == [list(zip(*s)) for s in truth["dev"]]
    true_spans = {(n,) + s for n, s_ in enumerate(dev) for s in spans([g for _, g, _ in s_])}
    guessed = {(n,) + s for n, s_ in enumerate(dev) for s in spans([p for _, _, p in s_])}
    correct = len(true_spans & guessed)
    precision, recall = correct / max(len(guessed), 1), correct / len(true_spans)
    f1 = 2 * precision * recall / (precision + recall) if correct else 0.0
    assert result["eval"]["eval_f1"] == pytest.approx(f1, abs=1e-6)
    assert f1 >= 0.9, (f1, result["eval"])
    # The long sentence (40 words, windows of 14 pieces) is predicted word by word too.
    assert len(dev[-1]) == 40
    assert sum(p == g for _, g, p in dev[-1]) >= 36

    test = read_predictions(os.path.join(out, "test_predictions.txt"))
    assert [len(s) for s in test] == [len(words) for words, _ in truth["test"]]

    # The raw-text SavedModel finds the entities run_ner predicted, on the sentences as text
    # (the long one included: the export windows it by the same rule).
    assert result["export_path"] == os.path.join(export_dir, "1")
    served = tf.saved_model.load(result["export_path"]).signatures["serving_default"]
    texts = [" ".join(words) for words, _ in truth["test"]]
    outputs = {k: v.numpy() for k, v in served(text=tf.constant(texts)).items()}
    for n, sentence in enumerate(test):
        assert outputs["num_words"][n] == len(sentence)
        starts = outputs["word_start"][n][:len(sentence)].tolist()
        entities = {(outputs["entity_type"][n][e].decode(),
                     starts.index(outputs["entity_start"][n][e]))
                    for e in range(outputs["num_entities"][n])}
        assert entities == {(t, start) for t, start, _ in spans([p for _, _, p in sentence])}

    # Predict-only from output_dir (train.txt gone): the saved labels and the fine-tuned
    # checkpoint give the same predictions with another batch size.
    os.remove(os.path.join(data, "train.txt"))
    first = open(os.path.join(out, "test_predictions.txt"), encoding="utf-8").read()
    os.remove(os.path.join(out, "test_predictions.txt"))
    again = run_ner(NerSettings(**dict(common, predict_batch_size=3), do_predict=True))
    assert again["global_step"] == result["global_step"]
    assert open(os.path.join(out, "test_predictions.txt"), encoding="utf-8").read() == first


def test_bad_input_fails_before_anything_is_written(tmp_path, model_files):
    vocab, config = model_files
    data = str(tmp_path / "data")
    write_task(data)
    with open(os.path.join(data, "dev.txt"), "a", encoding="utf-8") as f:
        f.write("zurich NN I-NP I-CITY\n\n")
    dev_lines = sum(1 for _ in open(os.path.join(data, "dev.txt"), encoding="utf-8"))
    out = str(tmp_path / "out")
    settings = NerSettings(data_dir=data, vocab_file=vocab, bert_config_file=config,
                           output_dir=out, max_seq_length=16, do_train=True, do_eval=True)
    with pytest.raises(DataFormatError, match=f"dev.txt:{dev_lines - 1}: .*-CITY"):
        run_ner(settings)
    assert not os.path.exists(out)

    with open(os.path.join(data, "train.txt"), "ab") as f:
        f.write(b"caf\xe9 NN I-NP O\n")
    with pytest.raises(DataFormatError, match="train.txt:[0-9]+: .*UTF-8"):
        run_ner(settings)
    assert not os.path.exists(out)

    with pytest.raises(ValueError, match="--dev_file or --data_dir is required with --do_eval"):
        NerSettings(output_dir=out, vocab_file=vocab, bert_config_file=config,
                    do_eval=True).validate()
    with pytest.raises(ValueError, match="no label_list.txt"):
        run_ner(NerSettings(data_dir=data, vocab_file=vocab, bert_config_file=config,
                            output_dir=str(tmp_path / "fresh"), max_seq_length=16,
                            do_predict=True))
    assert not os.path.exists(tmp_path / "fresh")
