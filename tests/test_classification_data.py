"""Processors on small files written in each task's real layout; truncation; cache; tf.data."""

import logging
import os

import numpy as np
import pytest

from bert_tf.data import classification as cls_data
from bert_tf.tokenization import FullTokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "dog", "ran", "a",
         "b", "c", "d", "e", "f", ".", "##s"]


def write(path, lines, bom=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        if bom:
            f.write("\ufeff")
        f.write("".join(line + "\n" for line in lines))


@pytest.fixture()
def tokenizer(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return str(vocab), FullTokenizer(str(vocab), do_lower_case=True)


def texts(examples):
    return [(e.text_a, e.text_b, e.label) for e in examples]


def test_mrpc_layout_bom_and_unbalanced_quotes(tmp_path):
    d = str(tmp_path)
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
    write(f"{d}/train.tsv", [header, '1\t1\t2\tHe said "yes.\tHe said yes.',
                             "0\t3\t4\tA cat.\tA dog."], bom=True)
    write(f"{d}/dev.tsv", [header, "1\t5\t6\tx\ty"])
    write(f"{d}/test.tsv", ["index\t#1 ID\t#2 ID\t#1 String\t#2 String", "0\t7\t8\tp\tq"])
    p = cls_data.get_processor("MRPC")
    assert texts(p.get_train_examples(d)) == [('He said "yes.', "He said yes.", "1"),
                                              ("A cat.", "A dog.", "0")]
    assert texts(p.get_dev_examples(d)) == [("x", "y", "1")]
    assert texts(p.get_test_examples(d)) == [("p", "q", None)]
    assert p.get_labels() == ["0", "1"] and p.metric == "accuracy_and_f1"


def test_cola_sst2_layouts(tmp_path):
    cola, sst = str(tmp_path / "cola"), str(tmp_path / "sst")
    write(f"{cola}/train.tsv", ["gj04\t1\t\tThe cat sat.", "gj04\t0\t*\tCat the sat."])
    write(f"{cola}/dev.tsv", ["gj04\t1\t\tA dog ran."])
    write(f"{cola}/test.tsv", ["index\tsentence", "0\tDogs ran."])
    p = cls_data.get_processor("cola")
    assert texts(p.get_train_examples(cola)) == [("The cat sat.", None, "1"), ("Cat the sat.", None, "0")]
    assert texts(p.get_dev_examples(cola)) == [("A dog ran.", None, "1")]
    assert texts(p.get_test_examples(cola)) == [("Dogs ran.", None, None)]
    write(f"{sst}/train.tsv", ["sentence\tlabel", "good film\t1", "bad film\t0"])
    write(f"{sst}/dev.tsv", ["sentence\tlabel", "fine\t1"])
    write(f"{sst}/test.tsv", ["index\tsentence", "0\tmeh"])
    p = cls_data.get_processor("SST-2")
    assert texts(p.get_train_examples(sst)) == [("good film", None, "1"), ("bad film", None, "0")]
    assert texts(p.get_test_examples(sst)) == [("meh", None, None)]


def test_stsb_qqp_qnli_rte_wnli_layouts(tmp_path):
    d = str(tmp_path / "stsb")
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    write(f"{d}/train.tsv", [head, "0\tmain\tf\t2012\t1\tnone\tnone\tA man.\tA person.\t4.250"])
    write(f"{d}/test.tsv", [head.rsplit("\t", 1)[0], "0\tmain\tf\t2012\t1\tnone\tnone\tX.\tY."])
    p = cls_data.get_processor("sts-b")
    assert p.is_regression and p.get_labels() == []
    assert texts(p.get_train_examples(d)) == [("A man.", "A person.", "4.250")]
    assert texts(p.get_test_examples(d)) == [("X.", "Y.", None)]

    d = str(tmp_path / "qqp")
    write(f"{d}/train.tsv", ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", "1\t2\t3\tq1?\tq2?\t1"])
    write(f"{d}/test.tsv", ["id\tquestion1\tquestion2", "0\ttq1?\ttq2?"])
    p = cls_data.get_processor("qqp")
    assert texts(p.get_train_examples(d)) == [("q1?", "q2?", "1")]
    assert texts(p.get_test_examples(d)) == [("tq1?", "tq2?", None)]

    for task, labels in (("qnli", ("entailment", "not_entailment")),
                         ("rte", ("not_entailment", "entailment")), ("wnli", ("0", "1"))):
        d = str(tmp_path / task)
        write(f"{d}/train.tsv", ["index\tsentence1\tsentence2\tlabel", f"0\ts1\ts2\t{labels[0]}",
                                 f"1\tt1\tt2\t{labels[1]}"])
        write(f"{d}/test.tsv", ["index\tsentence1\tsentence2", "0\tu1\tu2"])
        p = cls_data.get_processor(task)
        assert texts(p.get_train_examples(d)) == [("s1", "s2", labels[0]), ("t1", "t2", labels[1])]
        assert texts(p.get_test_examples(d)) == [("u1", "u2", None)]


def test_mnli_matched_and_mismatched(tmp_path):
    d = str(tmp_path)
    cols = ["index", "promptID", "pairID", "genre", "s1bp", "s2bp", "s1p", "s2p", "sentence1",
            "sentence2"]
    row = ["0", "1", "2", "fiction", "(", "(", "(", "("]
    write(f"{d}/train.tsv", ["\t".join(cols + ["label1", "gold_label"]),
                             "\t".join(row + ["P.", "H.", "neutral", "neutral"])])
    write(f"{d}/dev_matched.tsv", ["\t".join(cols + ["label1", "label2", "gold_label"]),
                                   "\t".join(row + ["M.", "N.", "entailment", "neutral", "entailment"])])
    write(f"{d}/dev_mismatched.tsv", ["\t".join(cols + ["label1", "gold_label"]),
                                      "\t".join(row + ["X.", "Y.", "contradiction", "contradiction"])])
    write(f"{d}/test_matched.tsv", ["\t".join(cols), "\t".join(row + ["T.", "U."])])
    p = cls_data.get_processor("mnli")
    assert texts(p.get_train_examples(d)) == [("P.", "H.", "neutral")]
    assert texts(p.get_dev_examples(d)) == [("M.", "N.", "entailment")]
    assert texts(p.get_dev_examples(d, "mismatched")) == [("X.", "Y.", "contradiction")]
    assert texts(p.get_test_examples(d)) == [("T.", "U.", None)]


def test_xnli_as_the_original(tmp_path):
    d = str(tmp_path)
    write(f"{d}/multinli/multinli.train.zh.tsv", ["premise\thypo\tlabel", "前提\t假设\tcontradictory",
                                                  "p\th\tneutral"])
    dev_row = lambda lang, label, a, b: "\t".join([lang, label, "x", "x", "x", "x", a, b])
    write(f"{d}/xnli.dev.tsv", ["language\tgold_label\t2\t3\t4\t5\tsentence1\tsentence2",
                                dev_row("en", "neutral", "e1", "e2"),
                                dev_row("zh", "entailment", "z1", "z2")])
    p = cls_data.get_processor("xnli")
    assert texts(p.get_train_examples(d)) == [("前提", "假设", "contradiction"), ("p", "h", "neutral")]
    assert texts(p.get_dev_examples(d)) == [("z1", "z2", "entailment")]


def test_generic_tsv_and_csv(tmp_path):
    d = str(tmp_path / "tsv")
    write(f"{d}/train.tsv", ["id\ttext\tpos\tother", '1\ta "quoted\tspam\tz', "2\tb\tham\tz",
                             "3\tc\tspam\tz"])
    write(f"{d}/dev.tsv", ["text\tpos\tid", "d\tham\t4"])  # Columns found by name, any order.
    write(f"{d}/test.tsv", ["text\tid", "e\t5"])  # A test file may omit the label.
    p = cls_data.get_processor("generic", text_a_column="text", label_column="pos")
    assert texts(p.get_train_examples(d)) == [('a "quoted', None, "spam"), ("b", None, "ham"),
                                              ("c", None, "spam")]
    assert p.get_labels() == ["ham", "spam"]  # Discovered from train, sorted.
    assert texts(p.get_dev_examples(d)) == [("d", None, "ham")]
    assert texts(p.get_test_examples(d)) == [("e", None, None)]

    d = str(tmp_path / "csv")
    write(f"{d}/train.csv", ["q,a,y", '"x, with comma","multi\nline",10', "p,r,2"])
    p = cls_data.get_processor("generic", text_a_column="q", text_b_column="a", label_column="y")
    assert texts(p.get_train_examples(d)) == [("x, with comma", "multi\nline", "10"), ("p", "r", "2")]
    assert p.get_labels(d) == ["2", "10"]  # Integer labels sorted numerically.


def test_bad_input_names_file_and_line(tmp_path, caplog):
    d = str(tmp_path)
    write(f"{d}/train.tsv", ["text\tlabel", "a\tx", "b\ty"])
    write(f"{d}/dev.tsv", ["text\tlabel", "c\tx", "d\tz"])
    p = cls_data.get_processor("generic", text_a_column="text")
    with pytest.raises(cls_data.DataFormatError, match=r"dev\.tsv:3: label 'z' does not occur"):
        p.get_dev_examples(d)
    p2 = cls_data.get_processor("generic", text_a_column="sentence")
    with pytest.raises(cls_data.DataFormatError, match=r"train\.tsv:1: no column 'sentence'"):
        p2.get_train_examples(d)

    write(f"{d}/mrpc/train.tsv", ["h", "1\t1\t2\tonly four"])
    with pytest.raises(cls_data.DataFormatError, match=r"train\.tsv:2: expected at least 5"):
        cls_data.get_processor("mrpc").get_train_examples(f"{d}/mrpc")
    write(f"{d}/sst/train.tsv", ["sentence\tlabel", "ok\t1", "", "also ok\t0", "bad\t2"])
    with pytest.raises(cls_data.DataFormatError, match=r"train\.tsv:5: label '2' is not one of"):
        cls_data.get_processor("sst-2").get_train_examples(f"{d}/sst")
    write(f"{d}/sst/train.tsv", ["sentence\tlabel", "ok\t1", "", "also ok\t0", "\r"])
    with caplog.at_level(logging.WARNING):
        examples = cls_data.get_processor("sst-2").get_train_examples(f"{d}/sst")
    assert len(examples) == 2
    assert "skipped 2 empty line(s): line 3, 5" in caplog.text
    write(f"{d}/stsb/train.tsv", ["h", "\t".join(["0"] * 9 + ["high"])])
    with pytest.raises(cls_data.DataFormatError, match="expected a numeric score"):
        cls_data.get_processor("stsb").get_train_examples(f"{d}/stsb")
    with pytest.raises(ValueError, match="unknown task_name 'nope'"):
        cls_data.get_processor("nope")


def test_truncation_follows_the_original(tokenizer):
    _, tok = tokenizer
    ids = {t: i for i, t in enumerate(VOCAB)}
    examples = [
        cls_data.InputExample("0", "a b c d e", "f", "1"),  # Pair: a pops its tail to fit 8-3.
        cls_data.InputExample("1", "a b", "c d e f", "0"),  # b is longer: b loses its last.
        cls_data.InputExample("2", "a b", "c d", "0"),  # Fits: untouched.
        cls_data.InputExample("3", "a b c d e f the cat", None, "1"),  # Single: cut to 8-2.
    ]
    features = cls_data.convert_examples_to_features(examples, ["0", "1"], 8, tok)
    got = features.as_lists()
    seq = lambda *toks: [ids[t] for t in toks]
    assert got[0] == (seq("[CLS]", "a", "b", "c", "d", "[SEP]", "f", "[SEP]"), [0] * 6 + [1] * 2)
    assert got[1] == (seq("[CLS]", "a", "b", "[SEP]", "c", "d", "e", "[SEP]"), [0] * 4 + [1] * 4)
    assert got[2] == (seq("[CLS]", "a", "b", "[SEP]", "c", "d", "[SEP]"), [0] * 4 + [1] * 3)
    assert got[3] == (seq("[CLS]", "a", "b", "c", "d", "e", "f", "[SEP]"), [0] * 8)
    assert features.num_truncated == 3
    assert features.label_ids.tolist() == [1, 0, 0, 1]


def test_cache_reuses_and_invalidates(tmp_path, tokenizer, monkeypatch):
    vocab, tok = tokenizer
    d = str(tmp_path / "data")
    write(f"{d}/train.tsv", ["sentence\tlabel", "the cat sat\t1", "a dog ran\t0"])
    p = cls_data.get_processor("sst-2")
    cache = str(tmp_path / "cache")
    first = cls_data.load_features(p, d, "train", tok, vocab, True, 16, ["0", "1"], cache)
    assert len(os.listdir(cache)) == 1
    calls = []
    real = cls_data.convert_examples_to_features
    monkeypatch.setattr(cls_data, "convert_examples_to_features",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    second = cls_data.load_features(p, d, "train", tok, vocab, True, 16, ["0", "1"], cache)
    assert calls == [] and second.as_lists() == first.as_lists()
    cls_data.load_features(p, d, "train", tok, vocab, True, 32, ["0", "1"], cache)  # New length.
    write(f"{d}/train.tsv", ["sentence\tlabel", "the cat ran\t1"])  # New content.
    third = cls_data.load_features(p, d, "train", tok, vocab, True, 16, ["0", "1"], cache)
    assert calls == [1, 1] and len(third) == 1 and len(os.listdir(cache)) == 3


def test_dataset_pads_each_batch_to_its_longest(tokenizer):
    _, tok = tokenizer
    examples = [cls_data.InputExample(str(i), " ".join(["cat"] * n), "dog" if i % 2 else None, "1")
                for i, n in enumerate([1, 9, 2, 3, 20])]
    features = cls_data.convert_examples_to_features(examples, ["0", "1"], 64, tok)
    order = cls_data.length_sorted_order(features)
    dataset = cls_data.classification_dataset(features, 2, is_training=False, order=order,
                                              pad_to_multiple_of=4)
    batches = list(dataset.as_numpy_iterator())
    # Lengths 3, 13, 4, 7, 22 sorted: [3, 4] -> 4; [7, 13] -> 16 (next multiple of 4); [22] -> 24.
    assert features.row_lengths[order].tolist() == [3, 4, 7, 13, 22]
    assert [b["input_ids"].shape for b in batches] == [(2, 4), (2, 16), (1, 24)]
    expected = features.as_lists()
    for row, index in zip(np.concatenate([b["input_ids"][:, :3] for b in batches]), order):
        assert row.tolist() == (expected[index][0] + [0, 0, 0])[:3]
    first_inputs = batches[0]
    i = order[0]
    n = features.row_lengths[i]
    assert first_inputs["input_mask"][0].tolist() == [1] * n + [0] * (4 - n)
    longest = batches[2]  # The 20-token single text: segment ids all 0, mask 22 ones.
    assert longest["segment_ids"].sum() == 0 and longest["input_mask"].sum() == 22
    pair = [b for b in batches if b["segment_ids"].sum() > 0][0]
    assert pair["segment_ids"].max() == 1

    train = cls_data.classification_dataset(features, 2, is_training=True, seed=3)
    seen = [b["label_ids"].shape[0] for b in train.take(7).as_numpy_iterator()]
    assert seen == [2] * 7  # Repeats forever, full batches only.


def test_length_grouped_order_keeps_epochs_and_groups_lengths():
    rng = np.random.RandomState(0)
    lengths = rng.randint(5, 100, size=64).astype(np.int32)
    features = cls_data.ClassificationFeatures(
        token_ids=np.zeros(lengths.sum(), np.int32), row_lengths=lengths,
        first_segment_lengths=lengths, label_ids=np.zeros(64, np.int32), guids=[""] * 64,
        num_truncated=0, max_seq_length=128)
    order = cls_data.length_grouped_order(features, batch_size=8, num_batches=16, seed=1,
                                          batches_per_group=4)
    # 16 batches of 8 = two epochs of 64; groups of 32 never straddle an epoch here, so each
    # epoch visits every example exactly once.
    assert sorted(order[:64].tolist()) == list(range(64))
    assert sorted(order[64:].tolist()) == list(range(64))
    batches = lengths[order].reshape(16, 8)
    spread = (batches.max(axis=1) - batches.min(axis=1)).mean()
    random_batches = lengths[rng.permutation(64)].reshape(8, 8)
    assert spread < 0.5 * (random_batches.max(axis=1) - random_batches.min(axis=1)).mean()
    again = cls_data.length_grouped_order(features, batch_size=8, num_batches=16, seed=1,
                                          batches_per_group=4)
    assert again.tolist() == order.tolist()  # Seeded: a resumed run sees the same batches.


# ---------------------------------------------------------------------------------------------
# Features streamed through the disk cache
# ---------------------------------------------------------------------------------------------


def _expected_features(rows, tok, max_seq_length, labels):
    """Independent: WordPiece via the tokenizer, then the original's truncation written out."""
    vocab = dict((t, i) for i, t in enumerate(VOCAB))
    out = []
    for text_a, text_b, label in rows:
        a, b = tok.tokenize(text_a), tok.tokenize(text_b)
        while len(a) + len(b) > max_seq_length - 3:
            (a if len(a) > len(b) else b).pop()
        tokens = ["[CLS]"] + a + ["[SEP]"] + b + ["[SEP]"]
        segments = [0] * (len(a) + 2) + [1] * (len(b) + 1)
        out.append(([vocab[t] for t in tokens], segments, labels.index(label)))
    return out


def test_disk_cache_gives_the_features_and_batches_of_an_independent_computation(
        tmp_path, tokenizer, monkeypatch):
    vocab, tok = tokenizer
    rng = np.random.RandomState(0)
    words = ["the", "cat", "sat", "dog", "ran", "a", "cats", "."]
    rows = [(" ".join(rng.choice(words, rng.randint(1, 9))),
             " ".join(rng.choice(words, rng.randint(1, 6))), str(i % 3)) for i in range(23)]
    d = str(tmp_path / "data")
    write(f"{d}/dev.tsv", ["sentence\tother\tlabel"] + ["\t".join(r) for r in rows])
    processor = cls_data.get_processor("generic", text_b_column="other", labels=["0", "1", "2"])
    monkeypatch.setattr(cls_data, "_CONVERT_CHUNK", 5)  # several chunks
    features = cls_data.load_features(processor, d, "dev", tok, vocab, True, 10,
                                      ["0", "1", "2"], str(tmp_path / "cache"))
    assert isinstance(features.token_ids, np.memmap)
    expected = _expected_features(rows, tok, 10, ["0", "1", "2"])
    assert features.as_lists() == [(ids, segments) for ids, segments, _ in expected]
    assert features.label_ids.tolist() == [label for _, _, label in expected]
    assert features.num_truncated == sum(len(tok.tokenize(a)) + len(tok.tokenize(b)) > 7
                                         for a, b, _ in rows)

    for order in (None, cls_data.length_sorted_order(features)):
        batches = list(cls_data.classification_dataset(features, 4, is_training=False,
                                                       order=order).as_numpy_iterator())
        got = [(b["input_ids"][i], b["segment_ids"][i], b["input_mask"][i], b["label_ids"][i])
               for b in batches for i in range(len(b["label_ids"]))]
        sequence = range(len(rows)) if order is None else order
        assert len(got) == len(rows)
        for (ids, segments, mask, label), index in zip(got, sequence):
            want_ids, want_segments, want_label = expected[index]
            n = len(want_ids)
            assert ids.tolist() == want_ids + [0] * (len(ids) - n) and len(ids) % 8 == 0
            assert segments.tolist() == want_segments + [0] * (len(ids) - n)
            assert mask.tolist() == [1] * n + [0] * (len(ids) - n) and label == want_label


def test_cache_key_follows_vocab_and_length_and_a_failed_write_leaves_nothing(tmp_path,
                                                                              tokenizer):
    vocab, tok = tokenizer
    d = str(tmp_path / "data")
    write(f"{d}/train.tsv", ["sentence\tlabel", "the cat sat\t1", "a dog ran\t0"])
    p = cls_data.get_processor("sst-2")
    cache = str(tmp_path / "cache")
    cls_data.load_features(p, d, "train", tok, vocab, True, 16, ["0", "1"], cache)
    cls_data.load_features(p, d, "train", tok, vocab, True, 16, ["0", "1"], cache)
    assert len(os.listdir(cache)) == 1
    cls_data.load_features(p, d, "train", tok, vocab, True, 12, ["0", "1"], cache)
    assert len(os.listdir(cache)) == 2
    with open(vocab, "a", encoding="utf-8") as f:
        f.write("zebra\n")
    cls_data.load_features(p, d, "train", tok, vocab, True, 16, ["0", "1"], cache)
    assert len(os.listdir(cache)) == 3

    def interrupted():
        yield from p.iter_examples(d, "train")
        raise KeyboardInterrupt

    target = str(tmp_path / "cache2" / "train-x")
    with pytest.raises(KeyboardInterrupt):
        cls_data.write_features(interrupted(), target, ["0", "1"], 16, tok)
    assert os.listdir(tmp_path / "cache2") == []


def _eager_length_grouped_order(lengths, batch_size, num_batches, seed, batches_per_group):
    """The order as first defined: all epoch permutations, then each group's batch shuffle."""
    n = len(lengths)
    rng = np.random.RandomState(seed)
    group, needed = batch_size * batches_per_group, batch_size * num_batches
    stream = np.concatenate([rng.permutation(n) for _ in range(-(-needed // n))])[:needed]
    pieces = []
    for start in range(0, needed, group):
        chunk = stream[start:start + group]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches = [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
        pieces += [batches[b] for b in rng.permutation(len(batches))]
    return np.concatenate(pieces)


@pytest.mark.parametrize("n, batch, steps, per_group", [(37, 4, 30, 3), (200, 8, 7, 50),
                                                         (5, 2, 41, 4)])
def test_lazy_length_grouped_batches_are_the_eager_order(n, batch, steps, per_group):
    lengths = np.random.RandomState(n).randint(3, 60, size=n).astype(np.int32)
    features = cls_data.ClassificationFeatures(
        token_ids=np.ones(lengths.sum(), np.int32), row_lengths=lengths,
        first_segment_lengths=lengths, label_ids=np.zeros(n, np.int32), guids=None,
        num_truncated=0, max_seq_length=64)
    batches = list(cls_data.length_grouped_batches(features, batch, steps, 9, per_group))
    assert all(len(b) == batch for b in batches) and len(batches) == steps
    expected = _eager_length_grouped_order(lengths, batch, steps, 9, per_group)
    assert np.concatenate(batches).tolist() == expected.tolist()
    if n == 37:  # the dataset reads the lazy order exactly as the array
        import functools

        lazy = functools.partial(cls_data.length_grouped_batches, features, batch, steps, 9,
                                 per_group)
        dataset = cls_data.classification_dataset(features, batch, True, order=lazy,
                                                  pad_to_multiple_of=1)
        seen = [b["input_mask"].sum(axis=1) for b in dataset.take(steps + 3).as_numpy_iterator()]
        order = np.concatenate([expected, expected[:3 * batch]])
        assert np.concatenate(seen).tolist() == lengths[order].tolist()


def test_a_damaged_cache_is_rebuilt(tmp_path, tokenizer, caplog):
    vocab, tok = tokenizer
    d = str(tmp_path / "data")
    write(f"{d}/train.tsv", ["sentence\tlabel", "the cat sat\t1", "a dog ran\t0"])
    p = cls_data.get_processor("sst-2")
    cache = tmp_path / "cache"
    expected = cls_data.load_features(p, d, "train", tok, vocab, True, 16, ["0", "1"],
                                      str(cache)).as_lists()
    (directory,) = cache.iterdir()
    with open(directory / "token_ids.bin", "r+b") as f:
        f.truncate(8)  # cut short, as by a full disk while copying an output_dir
    with pytest.raises(cls_data.DataFormatError, match="token_ids.bin: expected 40 bytes"):
        cls_data.open_features(str(directory))
    with caplog.at_level("WARNING"):
        again = cls_data.load_features(p, d, "train", tok, vocab, True, 16, ["0", "1"],
                                       str(cache))
    assert again.as_lists() == expected
    assert any("damaged" in r.getMessage() for r in caplog.records)
