"""Every reader on bad input: bert_config.json / config.json, vocab.txt, TSV/CSV, CoNLL, text
corpora, pretraining TFRecords. For each: a ValueError (DataFormatError for bad content, see
docs/troubleshooting.md) whose one-line message names the file (and line, record or field), no
hang, not a bare TensorFlow error, and no partial output. Property-based (hypothesis) where a
space of inputs is meant, fixed cases where one input is. Checkpoints: test_checkpoint_strictness.py.
"""

import csv
import io
import json
import os
import pathlib
import re
import signal
import struct
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bert_tf import tokenization
from bert_tf.classifier import ClassifierSettings, run_classifier
from bert_tf.config import BertConfig
from bert_tf.data import classification, ner, pretraining_records
from bert_tf.data.pretraining_instances import create_pretraining_data
from bert_tf.files import DataFormatError
from bert_tf.ner import NerSettings, run_ner
from bert_tf.pretraining import PretrainingSettings, run_pretraining
from bert_tf.vocab_learning import learn_wordpiece_vocab
from conftest import write_model_files

FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
WORDS = "the cat dog sat on a mat and ran to house".split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(autouse=True)
def no_hang():
    """Every case here ends within a minute (a reader that loops forever fails, not hangs)."""

    def expire(signum, frame):
        raise TimeoutError("the reader did not finish within 60 s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def assert_names(error, path, line=None):
    """`error` is a one-line message naming `path` (and `path:line`), not TensorFlow's."""
    message = str(error)
    assert isinstance(error, ValueError), repr(error)
    assert "\n" not in message.strip(), message
    assert str(path) in message, message
    if line is not None:
        assert f"{path}:{line}:" in message, message
    assert "{{function_node" not in message and "[Op:" not in message, message


def line_of_first_bad_byte(data):
    try:
        data.decode("utf-8")
        return None
    except UnicodeDecodeError as error:
        return data.count(b"\n", 0, error.start) + 1


# ------------------------------------------------------------------------- bert_config.json
JSON_SCALARS = (st.none() | st.booleans() | st.integers(-2**40, 2**40)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8))
JSON_VALUES = (JSON_SCALARS | st.lists(JSON_SCALARS, max_size=3)
               | st.dictionaries(st.text(max_size=5), JSON_SCALARS, max_size=3))
VALID_CONFIG = dict(vocab_size=30, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, hidden_act="gelu", hidden_dropout_prob=0.1,
                    attention_probs_dropout_prob=0.1, max_position_embeddings=64,
                    type_vocab_size=2, initializer_range=0.02)


def assert_valid(config):
    """What every model builder relies on (independent of BertConfig.validate)."""
    for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "max_position_embeddings", "type_vocab_size"):
        value = getattr(config, name)
        assert type(value) is int and 0 < value < 2**31, (name, value)
    assert config.hidden_size % config.num_attention_heads == 0
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        assert 0 <= getattr(config, name) < 1
    assert 0 < config.initializer_range < float("inf")


@FUZZ
@given(field=st.sampled_from(sorted(VALID_CONFIG)), value=JSON_VALUES,
       hugging_face=st.booleans())
def test_a_config_field_of_any_json_value_loads_valid_or_names_the_file(tmp_path, field, value,
                                                                        hugging_face):
    values = dict(VALID_CONFIG, **{field: value})
    if hugging_face:
        values.update(model_type="bert", architectures=["BertModel"])
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values), encoding="utf-8")
    try:
        config = BertConfig.from_json_file(str(path))
    except ValueError as error:
        assert_names(error, path)
        assert isinstance(error, DataFormatError)
    else:
        assert_valid(config)


@FUZZ
@given(data=st.binary(max_size=200) | st.builds(
    lambda head, junk: head[:len(head) // 2] + junk, st.just(json.dumps(VALID_CONFIG).encode()),
    st.binary(min_size=1, max_size=8)))
def test_config_bytes_that_are_not_a_config_name_the_file(tmp_path, data):
    path = tmp_path / "bert_config.json"
    path.write_bytes(data)
    with pytest.raises(ValueError) as caught:
        BertConfig.from_json_file(str(path))
    assert_names(caught.value, path, line_of_first_bad_byte(data))


def test_config_nested_too_deeply_or_not_utf8(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataFormatError, match="nested too deeply") as caught:
        BertConfig.from_json_file(str(deep))
    assert_names(caught.value, deep)
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(b'{\n"vocab_size": 30,\n"hidden_act": "g\xe9lu"}')
    with pytest.raises(DataFormatError) as caught:
        BertConfig.from_json_file(str(latin1))
    assert_names(caught.value, latin1, 3)


# -------------------------------------------------------------------------------- vocab.txt
@FUZZ
@given(lines=st.lists(st.binary(max_size=12), max_size=8))
def test_vocab_bytes_load_or_name_file_and_line(tmp_path, lines):
    data = b"\n".join(lines)
    path = tmp_path / "vocab.txt"
    path.write_bytes(data)
    bad_line = line_of_first_bad_byte(data)
    try:
        vocab = tokenization.load_vocab(str(path))
    except DataFormatError as error:
        assert_names(error, path, bad_line)
        assert bad_line is not None or data == b""
    else:
        assert bad_line is None
        # The original's loop: readline() (breaks on b"\n" only), strip, id = line number.
        expected, reader = {}, io.BytesIO(data)
        for index, raw in enumerate(iter(reader.readline, b"")):
            expected[raw.decode("utf-8").strip()] = index
        assert list(vocab.items()) == list(expected.items())


def test_an_empty_vocab_names_the_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_bytes(b"")
    with pytest.raises(DataFormatError, match="empty") as caught:
        tokenization.load_vocab(str(path))
    assert_names(caught.value, path)


# ------------------------------------------------------------------------------- TSV / CSV
CELL = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n\r"), max_size=6)


@FUZZ
@given(extension=st.sampled_from(["tsv", "csv"]),
       rows=st.lists(st.lists(CELL, min_size=1, max_size=3), max_size=5),
       junk=st.sampled_from([b"", b"\xe9", b"\x00", b"\xff\xfe", b'"', b"\r"]),
       junk_row=st.integers(0, 5))
def test_tables_read_or_name_file_and_line(tmp_path, extension, rows, junk, junk_row):
    separator = "\t" if extension == "tsv" else ","
    lines = [f"sentence{separator}label".encode()]
    for row in rows:
        if extension == "csv":
            row = ['"' + cell.replace('"', '""') + '"' for cell in row]
        lines.append(separator.join(row).encode("utf-8"))
    junk_row = min(junk_row, len(lines) - 1) + 1 if len(lines) > 1 else 1
    lines[junk_row - 1] += junk
    data = b"\n".join(lines) + b"\n"
    directory = pathlib.Path(tempfile.mkdtemp(dir=tmp_path))
    path = directory / f"train.{extension}"
    path.write_bytes(data)
    processor = classification.get_processor("generic")
    try:
        examples = processor.get_train_examples(str(directory))
    except (DataFormatError, ValueError) as error:
        assert isinstance(error, DataFormatError), repr(error)
        assert_names(error, path)
        assert re.search(re.escape(str(path)) + r"(:\d+)?: ", str(error)), str(error)
        bad_line = line_of_first_bad_byte(data)
        if bad_line is not None:  # streamed in file order: the bad byte or an earlier problem
            named = re.search(re.escape(str(path)) + r":(\d+): ", str(error))
            assert named and int(named.group(1)) <= bad_line, str(error)
            if int(named.group(1)) == bad_line:
                assert "UTF-8" in str(error) or "utf-8" in str(error), str(error)
    else:
        assert line_of_first_bad_byte(data) is None
        for example in examples:  # each row keeps its file:line for later errors
            assert re.fullmatch(re.escape(str(path)) + r":\d+", example.source)


def test_a_csv_field_longer_than_csv_s_limit_is_read_like_a_tsv_one(tmp_path):
    text = "a" * (csv.field_size_limit() + 10)
    (tmp_path / "train.csv").write_text(f"sentence,label\n{text},pos\n", encoding="utf-8")
    (example,) = classification.get_processor("generic").get_train_examples(str(tmp_path))
    assert example.text_a == text and example.label == "pos"


# ----------------------------------------------------------------------------------- CoNLL
CONLL_LINE = st.one_of(
    st.just(b""), st.just(b"-DOCSTART- -X- O O"),
    st.builds(lambda word, tag: word + b" " + tag,
              st.sampled_from([b"EU", b"rejects", b"caf\xc3\xa9", b"caf\xe9", b"a\x00b"]),
              st.sampled_from([b"O", b"B-ORG", b"I-ORG", b"E-PER", b"S-LOC", b"X-ORG", b"b-org",
                               b"B-"])),
    st.sampled_from([b"EU", b"   ", b"\xff\xfe"]))


@FUZZ
@given(lines=st.lists(CONLL_LINE, max_size=8), newline=st.sampled_from([b"\n", b"\r\n"]))
def test_conll_reads_or_names_file_and_line(tmp_path, lines, newline):
    path = tmp_path / "train.txt"
    data = newline.join(lines)
    path.write_bytes(data)
    try:
        sentences = ner.load_ner_file(str(path)).sentences
    except ValueError as error:
        assert isinstance(error, DataFormatError), repr(error)
        line = re.search(re.escape(str(path)) + r":(\d+): ", str(error))
        assert line and 1 <= int(line.group(1)) <= max(1, len(lines)), str(error)
        assert_names(error, path)
        if "is not UTF-8" in str(error):  # (read in order: an earlier problem comes first)
            assert int(line.group(1)) == line_of_first_bad_byte(data), str(error)
        if "NUL byte" in str(error):  # (checked first: it is a binary or UTF-16 file)
            assert int(line.group(1)) == data[:data.index(b"\0")].count(b"\n") + 1
    else:
        assert sentences and line_of_first_bad_byte(data) is None
        for sentence in sentences:
            assert len(sentence.words) == len(sentence.tags) > 0
            assert all(str(path) in sentence.where(i) for i in range(len(sentence.words)))


# ------------------------------------------------------------- text corpora (pretraining)
@pytest.fixture()
def corpus_vocab(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(SPECIAL + WORDS) + "\n", encoding="utf-8")
    return str(path)


def documents(count=6):
    lines = []
    for d in range(count):
        lines += [" ".join(WORDS[(d + i) % 11:] + WORDS[:(d + i) % 11][:3]) for i in range(3)]
        lines.append("")
    return ("\n".join(lines) + "\n").encode("utf-8")


def make_records(corpus, vocab, output, **options):
    return create_pretraining_data([str(corpus)], [str(output)], vocab, max_seq_length=16,
                                   max_predictions_per_seq=3, dupe_factor=1, random_seed=3,
                                   **options)


@pytest.mark.parametrize("streaming", [False, True])
def test_a_non_utf8_corpus_names_file_and_line_and_writes_nothing(tmp_path, corpus_vocab,
                                                                  streaming):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(documents() + b"un caf\xe9\n")
    bad_line = documents().count(b"\n") + 1
    with pytest.raises(DataFormatError) as caught:
        make_records(corpus, corpus_vocab, tmp_path / "out" / "train.tfrecord",
                     streaming=streaming)
    assert_names(caught.value, corpus, bad_line)
    assert not (tmp_path / "out").exists()


def test_a_corpus_without_any_newline_is_one_document_and_refused(tmp_path, corpus_vocab):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(b"the cat sat on a mat " * 5_000)  # 105 kB, no newline at all
    with pytest.raises(ValueError, match="only one document") as caught:
        make_records(corpus, corpus_vocab, tmp_path / "out" / "train.tfrecord")
    assert_names(caught.value, corpus)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("streaming", [False, True])
def test_a_line_over_max_line_bytes_names_file_and_line_and_writes_nothing(
        tmp_path, corpus_vocab, streaming):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(documents() + b"the cat sat on a mat " * 50_000)  # 1.05 MB line, no newline
    with pytest.raises(DataFormatError, match="line longer than 1,048,576 bytes") as caught:
        make_records(corpus, corpus_vocab, tmp_path / "out" / "train.tfrecord",
                     streaming=streaming)
    assert_names(caught.value, corpus, documents().count(b"\n") + 1)
    assert not (tmp_path / "out").exists()


def test_nul_bytes_are_dropped_as_the_original_tokenizer_drops_them(tmp_path, corpus_vocab):
    # The original BasicTokenizer._clean_text removes U+0000: the records are those of the
    # same corpus without the NUL bytes.
    clean, dirty = tmp_path / "clean.txt", tmp_path / "dirty.txt"
    clean.write_bytes(documents())
    dirty.write_bytes(documents().replace(b"cat ", b"c\x00at \x00").replace(b"dog", b"\x00dog"))
    make_records(clean, corpus_vocab, tmp_path / "clean.tfrecord")
    make_records(dirty, corpus_vocab, tmp_path / "dirty.tfrecord")
    assert (tmp_path / "clean.tfrecord").read_bytes() == (tmp_path / "dirty.tfrecord").read_bytes()


def test_a_long_line_is_one_sentence_truncated_not_a_hang_when_allowed(tmp_path, corpus_vocab):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(documents() + b"the cat " * 150_000 + b"\n\n" + documents(2))  # 1.2 MB
    summary = make_records(corpus, corpus_vocab, tmp_path / "train.tfrecord", max_line_bytes=0)
    assert "instances" in str(summary)
    assert pretraining_records.scan_record_framing(str(tmp_path / "train.tfrecord")) > 0


def test_learn_vocab_on_bad_text_names_the_file_and_writes_nothing(tmp_path):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"a good film\n\x00nul is text\nun caf\xe9\n")
    with pytest.raises(DataFormatError) as caught:
        learn_wordpiece_vocab(str(latin1), 40, str(tmp_path / "out" / "vocab.txt"))
    assert_names(caught.value, latin1, 3)
    blank = tmp_path / "blank.txt"
    blank.write_bytes(b"\n  \n\n")
    with pytest.raises(DataFormatError, match="no words") as caught:
        learn_wordpiece_vocab(str(blank), 40, str(tmp_path / "out" / "vocab.txt"))
    assert_names(caught.value, blank)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------- TFRecords
@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """A valid pretraining TFRecord file (max_seq_length 16, 3 predictions) and its config."""
    directory = tmp_path_factory.mktemp("records")
    (directory / "vocab.txt").write_text("\n".join(SPECIAL + WORDS) + "\n", encoding="utf-8")
    (directory / "corpus.txt").write_bytes(documents(12))
    make_records(directory / "corpus.txt", str(directory / "vocab.txt"),
                 directory / "train.tfrecord")
    BertConfig(vocab_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
               intermediate_size=64, max_position_embeddings=16).to_json_file(
        str(directory / "bert_config.json"))
    return directory


def record_offsets(data):
    """(start, end) of every record in TFRecord bytes, from the framing's length fields."""
    offsets, offset = [], 0
    while offset < len(data):
        length = struct.unpack("<Q", data[offset:offset + 8])[0]
        offsets.append((offset, offset + 16 + length))
        offset += 16 + length
    return offsets


def example_bytes(**changes):
    import tensorflow as tf

    def ints(n):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[1] * n))

    feature = {name: ints(16) for name in ("input_ids", "input_mask", "segment_ids")}
    feature.update(masked_lm_positions=ints(3), masked_lm_ids=ints(3), next_sentence_labels=ints(1),
                   masked_lm_weights=tf.train.Feature(float_list=tf.train.FloatList(value=[1.0] * 3)))
    feature.update(changes)
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_records(path, payloads):
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for payload in payloads:
            writer.write(payload)
    return path


def good_payloads(records):
    import tensorflow as tf

    return [r.numpy() for r in tf.data.TFRecordDataset(str(records / "train.tfrecord"))]


def wrong_records():
    import tensorflow as tf

    floats = tf.train.Feature(float_list=tf.train.FloatList(value=[1.0] * 16))
    return {
        "short input_ids": (example_bytes(input_ids=tf.train.Feature(
            int64_list=tf.train.Int64List(value=[1] * 12))), r"'input_ids' has length 12, "
                                                             r"expected 16: .*max_seq_length=12"),
        "float input_ids": (example_bytes(input_ids=floats), r"'input_ids' is a float_list; "
                                                             r"expected an int64_list"),
        "bytes weights": (example_bytes(masked_lm_weights=tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[b"x"] * 3))),
            r"'masked_lm_weights' is a bytes_list; expected a float_list"),
        "not an Example": (b"\xff\xfe not a protocol buffer", r"not a tf\.train\.Example"),
        "no features": (b"", r"record has no feature 'input_ids'"),
    }


@pytest.mark.parametrize("case", ["short input_ids", "float input_ids", "bytes weights",
                                  "not an Example", "no features"])
def test_a_wrong_first_record_is_refused_naming_file_and_feature(records, tmp_path, case):
    payload, message = wrong_records()[case]
    path = write_records(tmp_path / "bad.tfrecord", [payload] + good_payloads(records))
    with pytest.raises(DataFormatError, match=message) as caught:
        pretraining_records.check_record_files(str(path), 16, 3, vocab_size=16)
    assert_names(caught.value, path)
    with pytest.raises(DataFormatError, match=message):  # the Python user's entry point too
        pretraining_records.pretraining_dataset(str(path), 2, 16, 3, is_training=False)


def test_a_truncated_file_is_refused_by_the_dataset_too(records, tmp_path):
    data = (records / "train.tfrecord").read_bytes()
    cut = tmp_path / "cut.tfrecord"
    cut.write_bytes(data[:len(data) // 2 + 5])
    with pytest.raises(ValueError, match="truncated") as caught:
        pretraining_records.pretraining_dataset(str(cut), 2, 16, 3, is_training=False)
    assert_names(caught.value, cut)


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7),
       truncate=st.booleans())
def test_every_flipped_bit_and_every_cut_is_found_naming_the_file(records, tmp_path, position,
                                                                  bit, truncate):
    data = bytearray((records / "train.tfrecord").read_bytes())
    index = int(position * len(data))
    path = tmp_path / "damaged.tfrecord"
    if truncate:
        boundaries = {end for _, end in record_offsets(bytes(data))}
        if index == 0 or index in boundaries:
            index += 1  # a cut on a record boundary leaves a valid, shorter file
        path.write_bytes(bytes(data[:index]))
    else:
        data[index] ^= 1 << bit
        path.write_bytes(bytes(data))
    try:
        pretraining_records.check_record_files(str(path), 16, 3, vocab_size=16)
    except ValueError as error:
        assert_names(error, path)
        return
    # The validation pass reads framing and the first record; a later record's data is
    # CRC-checked while reading, and the file is then named by find_corrupt_record_file.
    assert not truncate
    found, error = pretraining_records.find_corrupt_record_file([str(path)], [""])
    assert found == str(path) and "corrupted record" in str(error)


@pytest.fixture()
def bad_later_record(records, tmp_path):
    """A first record that passes the validation pass, then only records that do not parse
    (so the first training batch meets one)."""
    payload, _ = wrong_records()["float input_ids"]
    return write_records(tmp_path / "later.tfrecord", good_payloads(records)[:1] + [payload] * 8)


def test_a_wrong_later_record_stops_pretraining_naming_file_and_record(records, tmp_path,
                                                                       bad_later_record):
    out = tmp_path / "out"
    settings_ = PretrainingSettings(
        bert_config_file=str(records / "bert_config.json"), input_file=str(bad_later_record),
        output_dir=str(out), max_seq_length=16, max_predictions_per_seq=3, do_train=True,
        train_batch_size=4, num_train_steps=1, num_warmup_steps=0, iterations_per_loop=1,
        save_checkpoints_steps=1000)
    with pytest.raises(DataFormatError, match=r"later\.tfrecord: record 1: feature 'input_ids' "
                                              r"is a float_list") as caught:
        run_pretraining(settings_)
    assert_names(caught.value, bad_later_record)
    # No checkpoint and no temporary file (the config copy and the training summaries stay).
    left = [name for _, _, names in os.walk(out) for name in names]
    assert not [name for name in left if "ckpt" in name or "tmp" in name], left


# ----------------------------------------------------- fine-tuning scripts on bad input
def test_fine_tuning_on_bad_data_leaves_no_output_dir(tmp_path):
    vocab, config = write_model_files(str(tmp_path), SPECIAL + WORDS)
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_bytes(b'sentence,label\n"the cat,pos\nthe dog,neg\n')
    out = tmp_path / "out"
    with pytest.raises(DataFormatError) as caught:
        run_classifier(ClassifierSettings(task_name="generic", data_dir=str(data),
                                          vocab_file=vocab, bert_config_file=config,
                                          output_dir=str(out), do_train=True, max_seq_length=16))
    assert_names(caught.value, data / "train.csv", 2)
    (data / "train.txt").write_bytes(b"the O\ncat B-ANIMAL\n\nthe O\ndog X-ANIMAL\n")
    with pytest.raises(DataFormatError) as caught:
        run_ner(NerSettings(train_file=str(data / "train.txt"), vocab_file=vocab,
                            bert_config_file=config, output_dir=str(out), do_train=True,
                            max_seq_length=16))
    assert_names(caught.value, data / "train.txt", 5)
    assert not out.exists()
