"""create_pretraining_data: exactness against a reference of the original, statistics, structure,
worker-count invariance, streaming, script and bad input.

The reference below is written from ORIGINAL_BERT_FACTS.md ("Data creation") in the original's
own terms (token strings, `random.Random` methods, list surgery), independently of the
optimised id-based implementation it checks.
"""

import collections
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bert_tf.data import pretraining_instances
from bert_tf.data.pretraining_instances import create_pretraining_data
from bert_tf.data.pretraining_records import feature_spec
from bert_tf.tokenization import FullTokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------------------------------------
# A generated corpus and its vocabulary
# ---------------------------------------------------------------------------------------------

_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "pe", "su", "gra", "dol"]
_SUFFIXES = ["ing", "ed", "s", "er"]


def _make_words(rng, count):
    words = set()
    while len(words) < count:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 3))))
    return sorted(words)


def write_corpus(directory, num_documents, seed=0, name="corpus.txt", max_sentences=12):
    """Documents of 1..max_sentences sentences; words sometimes get a `##` suffix or are unknown."""
    rng = random.Random(seed)
    words = _make_words(rng, 300)
    lines = []
    for _ in range(num_documents):
        for _ in range(rng.randint(1, max_sentences)):
            sentence = []
            for _ in range(rng.randint(2, 18)):
                word = rng.choice(words)
                roll = rng.random()
                if roll < 0.2:
                    word += rng.choice(_SUFFIXES)  # -> word ##suffix
                elif roll < 0.22:
                    word = "qqq" + word  # not in the vocab -> [UNK]
                sentence.append(word.capitalize() if rng.random() < 0.1 else word)
            lines.append(" ".join(sentence) + rng.choice([" .", " ,", "", " !"]))
        lines.append("")
    path = os.path.join(directory, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def write_vocab(directory, seed=0):
    words = _make_words(random.Random(seed), 300)
    tokens = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "!"] + words
              + ["##" + s for s in _SUFFIXES] + ["##" + s for s in _SYLLABLES])
    path = os.path.join(directory, "vocab.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(tokens) + "\n")
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("pretraining_data"))
    write_corpus(directory, 150, seed=1, name="small.txt")
    write_corpus(directory, 1500, seed=2, name="large.txt")
    write_vocab(directory)
    return directory


@pytest.fixture(scope="module")
def vocab_file(data_dir):
    return os.path.join(data_dir, "vocab.txt")


@pytest.fixture(scope="module")
def tokenizer(vocab_file):
    return FullTokenizer(vocab_file, do_lower_case=True)


def read_records(paths, max_seq_length, max_predictions_per_seq, compression_type=""):
    """Parses files with the original feature spec (tf.io), round-robin order restored."""
    spec = feature_spec(max_seq_length, max_predictions_per_seq)
    per_file = []
    for path in paths:
        records = []
        dataset = tf.data.TFRecordDataset(path, compression_type=compression_type).batch(4096)
        for batch in dataset:
            parsed = {k: v.numpy() for k, v in tf.io.parse_example(batch, spec).items()}
            records.extend({k: v[i] for k, v in parsed.items()} for i in range(len(batch)))
        per_file.append(records)
    records = []
    for i in range(max(len(f) for f in per_file)):
        for f in per_file:
            if i < len(f):
                records.append(f[i])
    return records


# ---------------------------------------------------------------------------------------------
# Reference: the original algorithm, transcribed from ORIGINAL_BERT_FACTS.md
# ---------------------------------------------------------------------------------------------


def reference_instances(input_files, tokenizer, max_seq_length, dupe_factor, short_seq_prob,
                        masked_lm_prob, max_predictions_per_seq, rng, do_whole_word_mask):
    all_documents = [[]]
    for input_file in input_files:
        with open(input_file, "rb") as reader:
            while True:
                line = reader.readline().decode("utf-8")
                if not line:
                    break
                line = line.strip()
                if not line:
                    all_documents.append([])
                tokens = tokenizer.tokenize(line)
                if tokens:
                    all_documents[-1].append(tokens)
    all_documents = [x for x in all_documents if x]
    rng.shuffle(all_documents)
    vocab_words = list(tokenizer.vocab.keys())
    instances = []
    short_targets = 0
    for _ in range(dupe_factor):
        for document_index in range(len(all_documents)):
            new, short = reference_document(
                all_documents, document_index, max_seq_length, short_seq_prob, masked_lm_prob,
                max_predictions_per_seq, vocab_words, rng, do_whole_word_mask)
            instances.extend(new)
            short_targets += short
    rng.shuffle(instances)
    return instances, short_targets


def reference_document(all_documents, document_index, max_seq_length, short_seq_prob,
                       masked_lm_prob, max_predictions_per_seq, vocab_words, rng,
                       do_whole_word_mask):
    document = all_documents[document_index]
    max_num_tokens = max_seq_length - 3
    target_seq_length = max_num_tokens
    short = False
    if rng.random() < short_seq_prob:
        target_seq_length = rng.randint(2, max_num_tokens)
        short = True
    instances = []
    current_chunk = []
    current_length = 0
    i = 0
    while i < len(document):
        segment = document[i]
        current_chunk.append(segment)
        current_length += len(segment)
        if i == len(document) - 1 or current_length >= target_seq_length:
            if current_chunk:
                a_end = 1
                if len(current_chunk) >= 2:
                    a_end = rng.randint(1, len(current_chunk) - 1)
                tokens_a = []
                for j in range(a_end):
                    tokens_a.extend(current_chunk[j])
                tokens_b = []
                if len(current_chunk) == 1 or rng.random() < 0.5:
                    is_random_next = True
                    target_b_length = target_seq_length - len(tokens_a)
                    for _ in range(10):
                        random_document_index = rng.randint(0, len(all_documents) - 1)
                        if random_document_index != document_index:
                            break
                    random_document = all_documents[random_document_index]
                    random_start = rng.randint(0, len(random_document) - 1)
                    for j in range(random_start, len(random_document)):
                        tokens_b.extend(random_document[j])
                        if len(tokens_b) >= target_b_length:
                            break
                    num_unused_segments = len(current_chunk) - a_end
                    i -= num_unused_segments
                else:
                    is_random_next = False
                    for j in range(a_end, len(current_chunk)):
                        tokens_b.extend(current_chunk[j])
                while len(tokens_a) + len(tokens_b) > max_num_tokens:
                    trunc = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
                    if rng.random() < 0.5:
                        del trunc[0]
                    else:
                        trunc.pop()
                tokens = ["[CLS]"] + tokens_a + ["[SEP]"] + tokens_b + ["[SEP]"]
                segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
                output, positions, labels = reference_masking(
                    tokens, masked_lm_prob, max_predictions_per_seq, vocab_words, rng,
                    do_whole_word_mask)
                instances.append((output, segment_ids, is_random_next, positions, labels))
            current_chunk = []
            current_length = 0
        i += 1
    return instances, short


def reference_masking(tokens, masked_lm_prob, max_predictions_per_seq, vocab_words, rng,
                      do_whole_word_mask):
    cand_indexes = []
    for i, token in enumerate(tokens):
        if token in ("[CLS]", "[SEP]"):
            continue
        if do_whole_word_mask and cand_indexes and token.startswith("##"):
            cand_indexes[-1].append(i)
        else:
            cand_indexes.append([i])
    rng.shuffle(cand_indexes)
    output_tokens = list(tokens)
    num_to_predict = min(max_predictions_per_seq,
                         max(1, int(round(len(tokens) * masked_lm_prob))))
    masked = []
    covered = set()
    for index_set in cand_indexes:
        if len(masked) >= num_to_predict:
            break
        if len(masked) + len(index_set) > num_to_predict:
            continue
        if any(index in covered for index in index_set):
            continue
        for index in index_set:
            covered.add(index)
            if rng.random() < 0.8:
                masked_token = "[MASK]"
            elif rng.random() < 0.5:
                masked_token = tokens[index]
            else:
                masked_token = vocab_words[rng.randint(0, len(vocab_words) - 1)]
            output_tokens[index] = masked_token
            masked.append((index, tokens[index]))
    masked.sort()
    return output_tokens, [p for p, _ in masked], [label for _, label in masked]


def reference_features(instance, tokenizer, max_seq_length, max_predictions_per_seq):
    tokens, segment_ids, is_random_next, positions, labels = instance
    ids = tokenizer.convert_tokens_to_ids(tokens)
    pad = max_seq_length - len(ids)
    lm_pad = max_predictions_per_seq - len(positions)
    return {
        "input_ids": ids + [0] * pad,
        "input_mask": [1] * len(ids) + [0] * pad,
        "segment_ids": segment_ids + [0] * pad,
        "masked_lm_positions": positions + [0] * lm_pad,
        "masked_lm_ids": tokenizer.convert_tokens_to_ids(labels) + [0] * lm_pad,
        "masked_lm_weights": [1.0] * len(positions) + [0.0] * lm_pad,
        "next_sentence_labels": [1 if is_random_next else 0],
    }


# ---------------------------------------------------------------------------------------------
# Random draws
# ---------------------------------------------------------------------------------------------


def test_inlined_draws_match_python_random():
    for n in [0, 1, 2, 3, 4, 7, 8, 9, 64, 65, 127, 128, 129, 511, 4100]:
        for seed in range(3):
            expected, actual = random.Random(seed), random.Random(seed)
            skipped = random.Random(seed)
            items_expected, items_actual = list(range(n)), list(range(n))
            expected.shuffle(items_expected)
            pretraining_instances.shuffle_like_random(items_actual, actual.getrandbits)
            pretraining_instances.skip_shuffle_draws(n, skipped.getrandbits)
            assert items_actual == items_expected
            assert skipped.getstate() == expected.getstate()
            if n:
                assert (pretraining_instances.randbelow_like_random(n, actual.getrandbits)
                        == expected.randrange(n))
            assert actual.random() == expected.random()


def test_c_accelerator_is_built():
    # setup.py builds it whenever a C compiler is present (as on CI); without it the parallel
    # mode silently falls back to the slower Python walk, which the tests below compare with.
    assert pretraining_instances._pretraining_accel is not None


@pytest.mark.parametrize("max_seq_length, max_predictions, masked_lm_prob, short_seq_prob", [
    (128, 20, 0.15, 0.1), (16, 3, 0.15, 0.9), (40, 7, 0.5, 0.0), (9, 20, 0.15, 1.0)])
def test_c_draw_accounting_matches_the_python_walk(max_seq_length, max_predictions,
                                                   masked_lm_prob, short_seq_prob):
    if pretraining_instances._pretraining_accel is None:
        pytest.fail("bert_tf.data._pretraining_accel is not built")
    rng = random.Random(max_seq_length)
    # One-sentence documents (always a random next), sentences longer than max_seq_length
    # (truncation), short targets: every branch of the walk.
    documents = [[[0] * rng.choice([1, 2, 5, 9, 30, 150]) for _ in range(rng.randint(1, 9))]
                 for _ in range(300)]
    lengths = pretraining_instances.SentenceLengths(documents)

    class Vocabulary:
        word_ids = list(range(30522))

    results = []
    for accelerated in (False, True):
        sampler = pretraining_instances.InstanceSampler(
            Vocabulary(), random.Random(5), max_seq_length, max_predictions, masked_lm_prob,
            short_seq_prob, do_whole_word_mask=False, documents_have_special_ids=False)
        ends = []
        for _ in range(2):
            first = 0
            while first < len(documents):
                first = sampler.account_documents(lengths, first, 37, accelerated=accelerated)
                ends.append(first)
        results.append((sampler.rng.getstate(), vars(sampler.stats), ends))
    assert results[0] == results[1]
    assert results[0][1]["instances"] > 600  # the walk did count instances
    assert len(results[0][2]) > 20  # and stopped at many batch boundaries


def test_c_draw_accounting_refuses_a_document_without_sentences():
    import array

    accel = pretraining_instances._pretraining_accel
    if accel is None:
        pytest.fail("bert_tf.data._pretraining_accel is not built")
    state = random.Random(0).getstate()[1]
    lengths = array.array("i", [5, 7])
    args = (125, 20, 0.15, 0.1, 30522)
    # Documents 0 and 2 have a sentence each, document 1 none: an error, not a hang or a crash.
    with pytest.raises(ValueError, match="every document needs a sentence"):
        accel.account(state, lengths, array.array("q", [0, 1, 1, 2]), 0, 10 ** 6, *args)
    # The well-formed corpus walks through.
    result = accel.account(state, lengths, array.array("q", [0, 1, 2]), 0, 10 ** 6, *args)
    assert result[1] == 2 and result[2] >= 2  # next document, instances


def test_c_shuffle_matches_random_shuffle():
    for n in [0, 1, 2, 3, 255, 256, 257, 100003]:
        expected, actual = random.Random(n), random.Random(n)
        items_expected, items_actual = list(range(n)), list(range(n))
        expected.shuffle(items_expected)
        pretraining_instances.shuffle_list(actual, items_actual)
        assert items_actual == items_expected
        assert actual.getstate() == expected.getstate()


# ---------------------------------------------------------------------------------------------
# Exactly the original
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("whole_word, num_workers", [(False, 1), (True, 1), (False, 2)])
def test_matches_reference_of_original(data_dir, vocab_file, tokenizer, tmp_path, whole_word,
                                       num_workers):
    corpus = os.path.join(data_dir, "small.txt")
    seq, preds, seed = 48, 7, 7
    outputs = [str(tmp_path / "a.tfrecord"), str(tmp_path / "b.tfrecord")]
    summary = create_pretraining_data(
        corpus, ",".join(outputs), vocab_file, max_seq_length=seq, max_predictions_per_seq=preds,
        random_seed=seed, dupe_factor=2, masked_lm_prob=0.15, short_seq_prob=0.3,
        do_whole_word_mask=whole_word, num_workers=num_workers)
    expected, short_targets = reference_instances(
        [corpus], tokenizer, seq, 2, 0.3, 0.15, preds, random.Random(seed), whole_word)
    actual = read_records(outputs, seq, preds)
    assert len(actual) == len(expected) == summary.instances
    for got, want in zip(actual, expected):
        want = reference_features(want, tokenizer, seq, preds)
        for name, values in want.items():
            np.testing.assert_array_equal(got[name], values, err_msg=name)
    assert summary.short_target_fraction == pytest.approx(short_targets / (2 * summary.documents))
    # Round-robin: file a has the even records, file b the odd ones.
    assert summary.records_per_file[outputs[0]] == (len(expected) + 1) // 2


@pytest.mark.parametrize("corpus_name, whole_word", [("large.txt", False), ("small.txt", True)])
def test_one_and_two_workers_write_identical_bytes(data_dir, vocab_file, tmp_path, corpus_name,
                                                   whole_word):
    corpus = os.path.join(data_dir, corpus_name)
    contents = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}.tfrecord"
        create_pretraining_data(corpus, str(out), vocab_file, dupe_factor=2,
                                max_seq_length=64, num_workers=workers,
                                do_whole_word_mask=whole_word)
        contents.append(out.read_bytes())
    assert contents[0] == contents[1]
    assert sorted(os.listdir(tmp_path)) == ["w1.tfrecord", "w2.tfrecord"]  # no scratch left


def test_two_workers_gzip_and_three_files_and_no_c_module_write_the_same_records(
        data_dir, vocab_file, tmp_path, monkeypatch):
    # The parallel mode writes through several paths: workers copying the records they hold
    # into shared mappings of the outputs (plain files) or of scratch files that the main
    # process compresses (GZIP is one stream), with the C helpers or the Python fallbacks.
    # All must give the 1-worker bytes.
    import gzip

    corpus = os.path.join(data_dir, "large.txt")
    options = dict(dupe_factor=2, max_seq_length=64)

    def run(name, **kwargs):
        outputs = [str(tmp_path / f"{name}{k}.tfrecord") for k in range(3)]
        create_pretraining_data(corpus, outputs, vocab_file, **options, **kwargs)
        return outputs

    def contents(paths, compressed=False):
        return [(gzip.open if compressed else open)(p, "rb").read() for p in paths]

    expected = contents(run("one", num_workers=1))
    assert all(expected) and len(set(expected)) == 3
    assert contents(run("two", num_workers=2)) == expected
    assert contents(run("gz", num_workers=2, gzip=True), compressed=True) == expected
    monkeypatch.setattr(pretraining_instances, "_pretraining_accel", None)
    monkeypatch.setenv("BERT_TF_NO_C_ACCEL", "1")  # worker processes import it afresh
    assert contents(run("py", num_workers=2)) == expected
    assert contents(run("pygz", num_workers=2, gzip=True), compressed=True) == expected
    leftovers = [n for n in os.listdir(tmp_path) if not n.endswith(".tfrecord")]
    assert leftovers == []  # scratch files are gone


def test_same_seed_same_bytes_other_seed_differs(data_dir, vocab_file, tmp_path):
    corpus = os.path.join(data_dir, "small.txt")
    contents = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        out = tmp_path / f"{name}.tfrecord"
        create_pretraining_data(corpus, str(out), vocab_file, dupe_factor=1, random_seed=seed,
                                max_seq_length=32)
        contents.append(out.read_bytes())
    assert contents[0] == contents[1]
    assert contents[0] != contents[2]


def test_streaming_is_worker_invariant_and_one_window_is_the_default_mode(data_dir, vocab_file,
                                                                       tmp_path):
    corpus = os.path.join(data_dir, "small.txt")
    kwargs = dict(dupe_factor=2, max_seq_length=40, random_seed=11)
    default = tmp_path / "default.tfrecord"
    create_pretraining_data(corpus, str(default), vocab_file, **kwargs)
    whole = tmp_path / "whole.tfrecord"
    create_pretraining_data(corpus, str(whole), vocab_file, streaming=True,
                            streaming_window_documents=10 ** 6, **kwargs)
    assert whole.read_bytes() == default.read_bytes()

    outputs = []
    for workers in (1, 2):
        out = tmp_path / f"s{workers}.tfrecord"
        summary = create_pretraining_data(corpus, str(out), vocab_file, streaming=True,
                                          streaming_window_documents=30, num_workers=workers,
                                          gzip=True, **kwargs)
        outputs.append(out.read_bytes())
        assert summary.windows == 5  # 150 documents / 30
    assert outputs[0] == outputs[1]
    records = read_records([str(tmp_path / "s1.tfrecord")], 40, 20, "GZIP")
    assert len(records) == summary.instances
    # Windowed pairing: a different, but equally sized, set of instances.
    assert len(read_records([str(default)], 40, 20)) > 0


# ---------------------------------------------------------------------------------------------
# Statistics and structure on a large corpus
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def large_run(data_dir, vocab_file, tmp_path_factory, tokenizer):
    out = str(tmp_path_factory.mktemp("large") / "large.tfrecord")
    summary = create_pretraining_data(os.path.join(data_dir, "large.txt"), out, vocab_file,
                                      max_seq_length=64, max_predictions_per_seq=10,
                                      dupe_factor=3, num_workers=2)
    return summary, read_records([out], 64, 10)


def test_statistics(large_run, tokenizer):
    summary, records = large_run
    mask_id = tokenizer.vocab["[MASK]"]
    lengths = np.array([r["input_mask"].sum() for r in records])
    masked = np.array([r["masked_lm_weights"].sum() for r in records])
    # Exactly min(max_predictions, max(1, round(len * 0.15))) per instance (ties to even).
    expected = np.array([min(10, max(1, round(n * 0.15))) for n in lengths])
    np.testing.assert_array_equal(masked, expected)
    assert summary.masked_fraction == pytest.approx(masked.sum() / lengths.sum())
    assert 0.12 < summary.masked_fraction < 0.16

    kinds = collections.Counter()
    for r in records:
        k = int(r["masked_lm_weights"].sum())
        current = r["input_ids"][r["masked_lm_positions"][:k]]
        original = r["masked_lm_ids"][:k]
        kinds["mask"] += int((current == mask_id).sum())
        kinds["kept"] += int(((current == original) & (current != mask_id)).sum())
        kinds["random"] += int(((current != original) & (current != mask_id)).sum())
    total = sum(kinds.values())
    sigma = lambda p: 4 * (p * (1 - p) / total) ** 0.5  # noqa: E731
    assert abs(kinds["mask"] / total - 0.8) < sigma(0.8)
    # A random draw hits the original token with probability ~1/|vocab|.
    assert abs(kinds["kept"] / total - 0.1) < sigma(0.1) + 0.001
    assert abs(kinds["random"] / total - 0.1) < sigma(0.1) + 0.001

    random_next = np.mean([r["next_sentence_labels"][0] for r in records])
    assert random_next == pytest.approx(summary.random_next_fraction)
    assert 0.5 < random_next < 0.7  # one-sentence chunks always take a random next
    passes = 3 * summary.documents
    assert abs(summary.short_target_fraction - 0.1) < 4 * (0.09 / passes) ** 0.5


def test_structure(large_run, tokenizer):
    _, records = large_run
    cls_id, sep_id = tokenizer.vocab["[CLS]"], tokenizer.vocab["[SEP]"]
    for r in records:
        n = int(r["input_mask"].sum())
        np.testing.assert_array_equal(r["input_mask"], [1] * n + [0] * (64 - n))
        assert r["input_ids"][0] == cls_id and r["input_ids"][n - 1] == sep_id
        assert not r["input_ids"][n:].any() and not r["segment_ids"][n:].any()
        segments = r["segment_ids"][:n]
        first_b = int(np.argmax(segments))
        assert first_b >= 3 and segments[first_b:].all() and not segments[:first_b].any()
        k = int(r["masked_lm_weights"].sum())
        positions = r["masked_lm_positions"][:k]
        assert list(positions) == sorted(set(positions))
        assert not set(positions) & {0, first_b - 1, n - 1}  # never [CLS] or a [SEP]
        assert positions.max() < n
        # [SEP] ends A; the masked slots are weighted 1, the padding 0.
        original = r["input_ids"].copy()
        original[positions] = r["masked_lm_ids"][:k]
        assert original[first_b - 1] == sep_id
        assert sep_id not in original[1:first_b - 1] and cls_id not in original[1:n]
        np.testing.assert_array_equal(r["masked_lm_weights"], [1.0] * k + [0.0] * (10 - k))
        assert not r["masked_lm_positions"][k:].any() and not r["masked_lm_ids"][k:].any()


def test_whole_word_masking_never_splits_a_word(data_dir, vocab_file, tokenizer, tmp_path):
    out = str(tmp_path / "wwm.tfrecord")
    create_pretraining_data(os.path.join(data_dir, "large.txt"), out, vocab_file,
                            max_seq_length=64, dupe_factor=1, do_whole_word_mask=True)
    inv = {i: t for t, i in tokenizer.vocab.items()}
    checked_subwords = 0
    for r in read_records([out], 64, 20):
        n = int(r["input_mask"].sum())
        k = int(r["masked_lm_weights"].sum())
        positions = set(r["masked_lm_positions"][:k].tolist())
        original = r["input_ids"].copy()
        original[r["masked_lm_positions"][:k]] = r["masked_lm_ids"][:k]
        tokens = [inv[int(i)] for i in original[:n]]
        words = []  # the original's candidate groups: a ## piece joins the previous group
        for i, token in enumerate(tokens):
            if token in ("[CLS]", "[SEP]"):
                continue
            if words and token.startswith("##"):
                words[-1].append(i)
            else:
                words.append([i])
        for word in words:
            hit = positions.intersection(word)
            assert not hit or hit == set(word), (tokens, word, positions)
            checked_subwords += len(word) > 1 and bool(hit)
    assert checked_subwords > 50


# ---------------------------------------------------------------------------------------------
# Script and bad input
# ---------------------------------------------------------------------------------------------


def test_script_with_original_flags(data_dir, vocab_file, tmp_path):
    out = tmp_path / "script.tfrecord"
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "create_pretraining_data.py"),
         f"--input_file={os.path.join(data_dir, 'small*.txt')}", f"--output_file={out}",
         f"--vocab_file={vocab_file}", "--max_seq_length=32", "--max_predictions_per_seq=5",
         "--dupe_factor=1", "--random_seed=5", "--masked_lm_prob=0.2", "--short_seq_prob=0.2",
         "--do_whole_word_mask=true", "--do_lower_case=true"],
        capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "random-next fraction" in result.stderr
    library = tmp_path / "library.tfrecord"
    create_pretraining_data(os.path.join(data_dir, "small.txt"), str(library), vocab_file,
                            max_seq_length=32, max_predictions_per_seq=5, dupe_factor=1,
                            random_seed=5, masked_lm_prob=0.2, short_seq_prob=0.2,
                            do_whole_word_mask=True)
    assert out.read_bytes() == library.read_bytes()

    bad = subprocess.run(
        [sys.executable, os.path.join(REPO, "create_pretraining_data.py"),
         f"--input_file={tmp_path / 'missing.txt'}", f"--output_file={tmp_path / 'x.tfrecord'}",
         f"--vocab_file={vocab_file}"],
        capture_output=True, text=True, cwd=REPO, timeout=120)
    assert bad.returncode != 0 and "missing.txt" in bad.stderr
    assert "Traceback" not in bad.stderr


def _assert_no_output(directory):
    assert [name for name in os.listdir(directory) if "tfrecord" in name] == []


def test_invalid_utf8_names_file_and_line_and_leaves_no_output(vocab_file, tmp_path):
    corpus = tmp_path / "bad.txt"
    corpus.write_bytes(b"ka lo mi .\nne ru\n\nta vo \xff\xfe zi\n\nlo lo\nmi mi\n")
    out = tmp_path / "out"
    out.mkdir()
    for workers in (1, 2):
        with pytest.raises(ValueError, match=r"bad\.txt:4: invalid UTF-8"):
            create_pretraining_data(str(corpus), str(out / "a.tfrecord"), vocab_file,
                                    num_workers=workers, dupe_factor=1)
        _assert_no_output(out)
    summary = create_pretraining_data(str(corpus), str(out / "a.tfrecord"), vocab_file,
                                      unicode_errors="replace", dupe_factor=1)
    assert summary.documents == 3


def test_missing_empty_and_unmatched_inputs(vocab_file, tmp_path):
    out = str(tmp_path / "a.tfrecord")
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        create_pretraining_data(str(tmp_path / "nope.txt"), out, vocab_file)
    with pytest.raises(FileNotFoundError, match=r"no file matches .*\*\.none"):
        create_pretraining_data(str(tmp_path / "*.none"), out, vocab_file)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.txt.* is empty"):
        create_pretraining_data(str(empty), out, vocab_file)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n\n")
    with pytest.raises(ValueError, match="no usable documents"):
        create_pretraining_data(str(blank), out, vocab_file)
    single = tmp_path / "single.txt"
    single.write_text("ka lo .\nmi ne .\n")
    with pytest.raises(ValueError, match="only one document"):
        create_pretraining_data(str(single), out, vocab_file)
    with pytest.raises(FileNotFoundError, match="vocab_file"):
        create_pretraining_data(str(single), out, str(tmp_path / "novocab.txt"))
    _assert_no_output(tmp_path)


def test_bad_vocab_and_flags(data_dir, tmp_path):
    corpus = os.path.join(data_dir, "small.txt")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\nka\nlo\n")
    out = str(tmp_path / "a.tfrecord")
    with pytest.raises(ValueError, match=r"lacks the special token\(s\) \[SEP\], \[MASK\]"):
        create_pretraining_data(corpus, out, str(vocab))
    good_vocab = os.path.join(data_dir, "vocab.txt")
    with pytest.raises(ValueError, match="max_seq_length=4 is too small"):
        create_pretraining_data(corpus, out, good_vocab, max_seq_length=4)
    with pytest.raises(ValueError, match="masked_lm_prob"):
        create_pretraining_data(corpus, out, good_vocab, masked_lm_prob=0.0)
    # A path below a file cannot be written; found before any instance is made.
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ValueError, match="a_file' is a file, not a directory"):
        create_pretraining_data(corpus, str(tmp_path / "a_file" / "a.tfrecord"), good_vocab)
    os.remove(tmp_path / "a_file")
    _assert_no_output(tmp_path)


def test_smallest_max_seq_length_works(data_dir, vocab_file, tmp_path):
    out = str(tmp_path / "tiny.tfrecord")
    summary = create_pretraining_data(os.path.join(data_dir, "small.txt"), out, vocab_file,
                                      max_seq_length=5, max_predictions_per_seq=1, dupe_factor=1)
    records = read_records([out], 5, 1)
    assert len(records) == summary.instances > 0
    assert all(r["input_mask"].sum() == 5 for r in records)


def test_special_tokens_inside_text_are_never_masked_like_the_original(vocab_file, tmp_path):
    """A tokenizer that keeps "[SEP]"/"[CLS]" whole puts them inside sentences; the original
    skips such tokens as mask candidates. Checked against the reference, with 2 workers."""
    tokenizer = FullTokenizer(vocab_file, special_tokens=("[SEP]", "[CLS]"))
    rng = random.Random(3)
    lines = []
    for _ in range(40):
        for _ in range(rng.randint(1, 5)):
            words = [rng.choice(["ka", "lo", "mi", "[SEP]", "ne", "[CLS]", "ruing"])
                     for _ in range(rng.randint(2, 9))]
            lines.append(" ".join(words))
        lines.append("")
    corpus = tmp_path / "special.txt"
    corpus.write_text("\n".join(lines))
    out = str(tmp_path / "special.tfrecord")
    summary = create_pretraining_data(str(corpus), out, tokenizer, max_seq_length=24,
                                      max_predictions_per_seq=5, dupe_factor=2, random_seed=9,
                                      num_workers=2)
    expected, _ = reference_instances([str(corpus)], tokenizer, 24, 2, 0.1, 0.15, 5,
                                      random.Random(9), False)
    actual = read_records([out], 24, 5)
    assert len(actual) == len(expected) == summary.instances
    for got, want in zip(actual, expected):
        for name, values in reference_features(want, tokenizer, 24, 5).items():
            np.testing.assert_array_equal(got[name], values, err_msg=name)


# ---------------------------------------------------------------------------------------------
# Bounded memory: corpora without blank lines, huge lines
# ---------------------------------------------------------------------------------------------


def _cut_points(lines, document_bytes):
    """Indices of the lines after which a streaming document is cut: its non-blank lines'
    bytes (with their newline) reach `document_bytes`; a blank line restarts the count."""
    cuts, size = [], 0
    for index, line in enumerate(lines):
        if not line.strip():
            size = 0
            continue
        size += len(line)
        if size >= document_bytes:
            cuts.append(index)
            size = 0
    return cuts


def test_streaming_reader_cuts_a_corpus_without_blank_lines(tmp_path):
    # Hand-checked: lines of 10 bytes, documents cut at 25 bytes -> after the 3rd line (30),
    # then after the 6th (30 again); the 7th is the start of a third piece.
    path = tmp_path / "tiny.txt"
    path.write_bytes(b"aaaa bbbb\n" * 7)
    assert _cut_points([b"aaaa bbbb\n"] * 7, 25) == [2, 5]
    reader = pretraining_instances._StreamingReader([str(path)], 100, 1 << 20, 25, 1 << 20)
    (window,) = list(reader)
    lines = [(first + i, line) for _, first, chunk in window for i, line in enumerate(chunk)]
    assert [line for _, line in lines] == ([b"aaaa bbbb\n"] * 3 + [b"\n"] + [b"aaaa bbbb\n"] * 3
                                           + [b"\n"] + [b"aaaa bbbb\n"])
    # The inserted breaks carry the number of the line they follow; real lines keep theirs.
    assert [n for n, line in lines if line != b"\n"] == [1, 2, 3, 4, 5, 6, 7]
    assert reader.cut_documents == 2 and reader.bytes == 70 and reader.lines == 7

    # A window ends at the first document break after window_bytes (here every piece).
    reader = pretraining_instances._StreamingReader([str(path)], 100, 20, 25, 1 << 20)
    assert len(list(reader)) == 3


def test_streaming_without_blank_lines_is_the_original_on_the_pieces(data_dir, vocab_file,
                                                                      tokenizer, tmp_path,
                                                                      caplog):
    with open(os.path.join(data_dir, "small.txt"), "rb") as f:
        lines = [line for line in f if line.strip()]
    corpus = tmp_path / "no_blank_lines.txt"
    corpus.write_bytes(b"".join(lines))
    document_bytes = 3000
    cuts = set(_cut_points(lines, document_bytes))
    assert len(cuts) > 10
    pieces = tmp_path / "pieces.txt"  # the same text with a blank line at each cut
    pieces.write_bytes(b"".join(line + (b"\n" if i in cuts else b"")
                                for i, line in enumerate(lines)))
    seq, preds, seed = 40, 6, 5
    out = tmp_path / "stream.tfrecord"
    with caplog.at_level("WARNING"):
        summary = create_pretraining_data(
            str(corpus), str(out), vocab_file, max_seq_length=seq, max_predictions_per_seq=preds,
            random_seed=seed, dupe_factor=2, streaming=True,
            streaming_max_document_bytes=document_bytes)
    warnings = [r.getMessage() for r in caplog.records if "lack blank lines" in r.getMessage()]
    assert len(warnings) == 1 and "no_blank_lines.txt:" in warnings[0]
    assert summary.windows == 1 and summary.documents == len(cuts) + (max(cuts) < len(lines) - 1)
    expected, _ = reference_instances([str(pieces)], tokenizer, seq, 2, 0.1, 0.15, preds,
                                      random.Random(seed), False)
    actual = read_records([str(out)], seq, preds)
    assert len(actual) == len(expected) == summary.instances
    for got, want in zip(actual, expected):
        want = reference_features(want, tokenizer, seq, preds)
        for name, values in want.items():
            np.testing.assert_array_equal(got[name], values, err_msg=name)


def test_streaming_windows_are_bounded_in_bytes(data_dir, vocab_file, tmp_path):
    corpus = tmp_path / "no_blank_lines.txt"
    with open(os.path.join(data_dir, "large.txt"), "rb") as f:
        corpus.write_bytes(b"".join(line for line in f if line.strip()))
    reader = pretraining_instances._StreamingReader([str(corpus)], 10 ** 6, 20000, 4000, 1 << 20)
    sizes = [sum(len(line) for _, _, chunk in window for line in chunk) for window in reader]
    longest_line = max(len(line) for line in corpus.read_bytes().splitlines(True))
    assert len(sizes) > 5
    # At most window_bytes plus the rest of the current piece (one piece + one line).
    assert max(sizes) < 20000 + 4000 + 2 * longest_line
    assert sum(sizes) == corpus.stat().st_size + reader.cut_documents  # + the inserted breaks
    summary = create_pretraining_data(str(corpus), str(tmp_path / "o.tfrecord"), vocab_file,
                                      max_seq_length=32, dupe_factor=1, streaming=True,
                                      streaming_window_bytes=20000,
                                      streaming_max_document_bytes=4000, num_workers=2)
    assert summary.windows == len(sizes)


@pytest.mark.parametrize("streaming", [False, True])
def test_a_line_over_max_line_bytes_is_an_error_naming_file_and_line(vocab_file, tmp_path,
                                                                      streaming):
    corpus = tmp_path / "one_line.txt"
    long_line = b"word " * 1000  # 5,000 bytes, no newline at all at the end
    corpus.write_bytes(b"a b\n\nc d\n" + long_line)
    out = tmp_path / "out" / "o.tfrecord"
    with pytest.raises(ValueError, match=r"one_line\.txt:4: line longer than 4,096 bytes "
                                         r"\(--max_line_bytes\)"):
        create_pretraining_data(str(corpus), str(out), vocab_file, streaming=streaming,
                                max_line_bytes=4096)
    assert not out.parent.exists() or not os.listdir(out.parent)
    # A line of exactly max_line_bytes is accepted.
    lines = list(pretraining_instances.read_lines(str(corpus), 5000))
    assert lines[-1] == long_line and len(lines) == 4


def test_default_mode_points_to_streaming_for_inputs_near_the_ram_size(caplog):
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    with caplog.at_level("WARNING"):
        pretraining_instances._warn_if_too_large_for_memory(1000, 10, 128)
        assert not caplog.records
        pretraining_instances._warn_if_too_large_for_memory(ram // 10, 10, 128)
    assert len(caplog.records) == 1 and "--streaming" in caplog.records[0].getMessage()
