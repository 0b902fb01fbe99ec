"""In-graph BertTokenizer / BertPacker against the original algorithm.

The reference for token ids is the Python `FullTokenizer`, whose semantics are pinned by the
hand-derived cases of tests/test_tokenization.py; the reference for packing is a literal
transcription of the original's truncation loop written here.
"""

import json
import os
import random
import subprocess
import sys
import textwrap
import unicodedata

import numpy as np
import pytest
import tensorflow as tf

from bert_tf.preprocessing import BertPacker, BertTokenizer, truncated_lengths
from bert_tf.tokenization import FullTokenizer

# Fragments of each input class where tensorflow-text's own BERT tokenizers, or naive in-graph
# ports, are known to go wrong.
FRAGMENTS = [
    # Latin with accents, precomposed and combining; German sharp s; Turkish dotted I.
    "Café", "naïve", "Ångström", "résumé", "Noe\u0308l", "a\u0301\u0327e", "STRAẞE", "Straße", "İstanbul",
    # Greek with final sigma in several contexts, Cyrillic.
    "ΟΔΥΣΣΕΥΣ", "Σ", "ΑΣ.Β", "ΣΣΣ", "ΑΣ\u0301Σ\u0301", "ΑΣ\u0898", "ΑΣ\u0898Β", "Σ'Σ", "λόγος", "Ἀθῆναι", "Москва", "ЁЛКА", "Україна",
    # CJK ideographs (incl. extension B and compatibility), Hangul, Kana.
    "中文字符", "東京都", "\U00020000\U0002a6d6", "\uf900\ufa0e", "한국어", "\u1100\u1161", "ひらがな", "カタカナ", "ｶﾀｶﾅ",
    # Emoji: plain, ZWJ sequence, skin tone, flags, keycap.
    "😀", "👩\u200d💻", "👍🏽", "🇫🇷", "1\ufe0f\u20e3",
    # Control and format characters, NUL, U+FFFD, zero-width, soft hyphen, BOM, bidi marks.
    "a\x00b", "x\x07y", "\x1b[31m", "re\ufffdsume", "zero\u200bwidth", "join\u200dme", "soft\u00adhyphen",
    "\ufeffbom", "\u200eltr\u200f", "\x85next", "\x0bvt\x0cff", "\x1c\x1d\x1e\x1f",
    # Whitespace of all kinds.
    "nb\u00a0sp", "ideo\u3000space", "line\u2028sep", "para\u2029sep", "tab\there", "cr\r\nlf", "\u2003em\u2009thin",
    # Compatibility characters: ligatures, fractions, roman numerals, full-width, super/subscripts.
    "ﬁnance", "ﬂow", "Œuvre", "½", "¾cup", "⅓", "Ⅻ", "ⅷ", "ＦＵＬＬ", "ｗｉｄｔｈ", "x²", "H₂O", "™", "℃", "㎏", "…",
    # Punctuation: ASCII symbols, Unicode P*, non-punctuation symbols.
    "a$b^c`d~e", "«quoted»", "¿qué?", "—dash–", "‘single’", "“double”", "•bullet", "€5", "§3", "°C",
    # Characters newer than some Unicode tables (lower-casing / NFD disagree between libraries).
    "\u2c2f", "\ua7c0\ua7d0", "\U00010570\U00010594", "\U000105c9\U000105e4", "\U00011383",
    # Private use and unassigned.
    "\ue000pua", "\U000f0000", "\U0001fb00x",
    # URLs, e-mail, numbers, code.
    "https://example.com/path?q=1&r=two#frag", "user@example.org", "3.14159", "1,000,000", "-42", "0x1F",
    "def f(x): return x**2", "<b>bold</b>",
    # Special-token look-alikes.
    "[MASK]", "[CLS]", "the[MASK]is", "[mask]", "[UNK]",
    # Ordinary words.
    "the", "quick", "brown", "fox", "unaffable", "tokenization", "Hello", "WORLD", "isn't",
]


def _long_words(rng):
    return [
        "a" * 101,
        "b" * 200,
        "c" * 201,
        "é" * 150,  # 150 characters but 300 UTF-8 bytes: not [UNK] in the original
        "д" * 199,
        "ü" * 199 + "x",
        "中" * 250,  # CJK: each ideograph is its own word, never a long word
        "".join(rng.choice("abcdefghij") for _ in range(230)),
        "pneumonoultramicroscopicsilicovolcanoconiosis" * 3,
    ]


def generate_corpus(seed=1234, lines=400):
    rng = random.Random(seed)
    pool = FRAGMENTS + _long_words(rng)
    separators = [" ", " ", " ", "", "\t", "  ", ",", ". ", "\n"]
    corpus = []
    for _ in range(lines):
        parts = [rng.choice(pool) for _ in range(rng.randint(1, 12))]
        text = ""
        for part in parts:
            text += part + rng.choice(separators)
        if rng.random() < 0.3:
            text = text.upper() if rng.random() < 0.5 else text.title()
        corpus.append(text)
    corpus += ["", " ", "\x00", "\ufffd\ufffd", "[MASK]"] + FRAGMENTS + _long_words(rng)
    return corpus


@pytest.fixture(scope="module")
def vocab_file(minilm_dir):
    return os.path.join(minilm_dir, "vocab.txt")


@pytest.fixture(scope="module", params=[True, False], ids=["uncased", "cased"])
def tokenizers(request, vocab_file):
    lower_case = request.param
    return FullTokenizer(vocab_file, do_lower_case=lower_case), BertTokenizer(vocab_file, lower_case=lower_case)


def _graph_ids(layer, texts, batch_size=4096):
    ids = []
    for start in range(0, len(texts), batch_size):
        ids.extend(layer(tf.constant(texts[start : start + batch_size])).to_list())
    return ids


def _assert_same_ids(full_tokenizer, texts, graph_ids):
    mismatches = [
        (text, full_tokenizer.tokenize(text), full_tokenizer.convert_ids_to_tokens(got))
        for text, got in zip(texts, graph_ids)
        if full_tokenizer.encode(text) != got
    ]
    assert not mismatches, f"{len(mismatches)} lines differ, first: {mismatches[:3]}"


def test_parity_on_varied_multilingual_corpus(tokenizers):
    full_tokenizer, layer = tokenizers
    corpus = generate_corpus()
    graph_ids = _graph_ids(layer, corpus)
    _assert_same_ids(full_tokenizer, corpus, graph_ids)
    # The corpus really exercises the hard cases: long words give [UNK], 300-byte words do not.
    unk = full_tokenizer.vocab["[UNK]"]
    assert layer(tf.constant(["c" * 201])).to_list() == [[unk]]
    assert layer(tf.constant(["д" * 150])).to_list() == [[1184] + [29742] * 149]  # д, ##д


def test_parity_on_every_assigned_code_point(tokenizers):
    """Every assigned code point (and a sample of unassigned and private-use ones) in context."""
    full_tokenizer, layer = tokenizers
    chars = [
        chr(cp)
        for cp in range(sys.maxunicode + 1)
        if not 0xD800 <= cp <= 0xDFFF
        and (unicodedata.category(chr(cp)) not in ("Cn", "Co") or cp % 97 == 0)
    ]
    # Each character inside a word, twice in a row, and after a capital sigma (final-sigma context).
    lines = [" ".join(f"A{c}b{c}{c}Σ{c}" for c in chars[i : i + 64]) for i in range(0, len(chars), 64)]
    _assert_same_ids(full_tokenizer, lines, _graph_ids(layer, lines))


def test_invalid_utf8_bytes_are_dropped_like_the_python_tokenizer(tokenizers):
    full_tokenizer, layer = tokenizers
    samples = [
        b"caf\xc3\xa9 \xff ok", b"\xed\xa0\x80surrogate", b"\xc0\x80overlong", b"trunc\xe4\xb8",
        b"\xf4\x90\x80\x80big", b"\x80\x80cont", b"mid\xe4\xb8dle", b"\xf0\x9f\x98\x80smile",
    ]
    graph_ids = layer(tf.constant(samples)).to_list()
    for sample, got in zip(samples, graph_ids):
        assert got == full_tokenizer.encode(sample), sample


def test_scalar_input_special_tokens_and_config_round_trip(vocab_file):
    full_tokenizer = FullTokenizer(vocab_file, special_tokens=["[MASK]", "[SEP]"])
    layer = BertTokenizer(vocab_file, special_tokens=["[MASK]", "[SEP]"])
    texts = ["The capital of France is [MASK].", "a[MASK]b [SEP] ΟΔΟΣ[MASK]", "[mask] [MASK][MASK]", "", "no specials"]
    assert layer(tf.constant(texts)).to_list() == [full_tokenizer.encode(t) for t in texts]
    assert layer(tf.constant("the [MASK]")).numpy().tolist() == [1996, 103]
    clone = BertTokenizer.from_config(layer.get_config())
    assert clone(tf.constant(texts)).to_list() == layer(tf.constant(texts)).to_list()


def test_vocabulary_with_repeated_and_blank_lines(tmp_path):
    # ids are line numbers, a repeated token keeps its last line: "ab" is id 5, not 2.
    lines = ["[PAD]", "[UNK]", "ab", "", "##c", "ab", "x y", "##", "A"]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for lower_case in (True, False):
        full_tokenizer = FullTokenizer(str(path), do_lower_case=lower_case)
        layer = BertTokenizer(str(path), lower_case=lower_case)
        texts = ["ab abc abcc A a ## x y"]
        assert layer(tf.constant(texts)).to_list() == [full_tokenizer.encode(t) for t in texts]
    assert BertTokenizer(str(path), lower_case=False)(tf.constant(["abc A"])).to_list() == [[5, 4, 8]]


def test_tokenizer_runs_inside_tf_data(vocab_file):
    full_tokenizer = FullTokenizer(vocab_file)
    layer = BertTokenizer(vocab_file)
    packer = BertPacker(16, cls_id=101, sep_id=102)
    texts = ["Hello there!", "ΟΔΟΣ and ﬁne print", "中文 text"]
    dataset = tf.data.Dataset.from_tensor_slices(texts).batch(2).map(lambda t: packer(layer(t)))
    rows = np.concatenate([batch["input_ids"].numpy() for batch in dataset])
    for text, row in zip(texts, rows):
        ids = [101] + full_tokenizer.encode(text) + [102]
        assert row.tolist() == ids + [0] * (16 - len(ids))


def test_functional_keras_model_and_keras_file_round_trip(tmp_path, vocab_file):
    import keras  # pylint: disable=import-outside-toplevel

    text_a = keras.Input(shape=(), dtype="string")
    text_b = keras.Input(shape=(), dtype="string")
    tokenizer = BertTokenizer(vocab_file)
    features = BertPacker(12, cls_id=101, sep_id=102)((tokenizer(text_a), tokenizer(text_b)))
    model = keras.Model([text_a, text_b], features)
    path = str(tmp_path / "preprocessor.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    full_tokenizer = FullTokenizer(vocab_file)
    texts_a, texts_b = ["Hello, World!", "ΟΔΟΣ ﬁne"], ["Straße", ""]
    for candidate in (model, restored):
        outputs = candidate([tf.constant(texts_a), tf.constant(texts_b)])
        for index, (a, b) in enumerate(zip(texts_a, texts_b)):
            ids, mask, types = expected_features(full_tokenizer.encode(a), full_tokenizer.encode(b), 12)
            assert outputs["input_ids"][index].numpy().tolist() == ids
            assert outputs["input_mask"][index].numpy().tolist() == mask
            assert outputs["segment_ids"][index].numpy().tolist() == types


# ---------------------------------------------------------------------------------------------
# Packer
# ---------------------------------------------------------------------------------------------


def original_truncate_pair(tokens_a, tokens_b, max_length):
    """The original run_classifier loop, transcribed: pop from the longer, B on ties."""
    tokens_a, tokens_b = list(tokens_a), list(tokens_b)
    while len(tokens_a) + len(tokens_b) > max_length:
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()
    return tokens_a, tokens_b


def expected_features(tokens_a, tokens_b, seq_length, cls_id=101, sep_id=102, pad_id=0):
    if tokens_b is None:
        tokens_a = tokens_a[: seq_length - 2]
        ids, types = [cls_id] + tokens_a + [sep_id], [0] * (len(tokens_a) + 2)
    else:
        tokens_a, tokens_b = original_truncate_pair(tokens_a, tokens_b, seq_length - 3)
        ids = [cls_id] + tokens_a + [sep_id] + tokens_b + [sep_id]
        types = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
    pad = seq_length - len(ids)
    return ids + [pad_id] * pad, [1] * len(ids) + [0] * pad, types + [0] * pad


def test_pair_truncation_matches_the_original_loop():
    rng = random.Random(7)
    for _ in range(300):
        length_a, length_b, total = rng.randint(0, 40), rng.randint(0, 40), rng.randint(0, 45)
        want_a, want_b = original_truncate_pair(range(length_a), range(length_b), total)
        got_a, got_b = truncated_lengths(tf.constant(length_a), tf.constant(length_b), total)
        assert (int(got_a), int(got_b)) == (len(want_a), len(want_b)), (length_a, length_b, total)


@pytest.mark.parametrize("seq_length", [3, 8, 16])
def test_packer_fixed_length_one_and_two_segments(seq_length):
    rng = random.Random(seq_length)
    rows_a = [[rng.randint(1000, 2000) for _ in range(rng.randint(0, 20))] for _ in range(40)]
    rows_b = [[rng.randint(1000, 2000) for _ in range(rng.randint(0, 20))] for _ in range(40)]
    rows_a[:3], rows_b[:3] = [[1, 2, 3], [], [4] * 9], [[5, 6, 7], [8], [9] * 9]  # ties, empty
    packer = BertPacker(seq_length, cls_id=101, sep_id=102)
    single = packer(tf.ragged.constant(rows_a, dtype=tf.int32, row_splits_dtype=tf.int64))
    pair = packer((tf.ragged.constant(rows_a, dtype=tf.int32), tf.ragged.constant(rows_b, dtype=tf.int64)))
    for index, (row_a, row_b) in enumerate(zip(rows_a, rows_b)):
        for features, tokens_b in ((single, None), (pair, row_b)):
            ids, mask, types = expected_features(row_a, tokens_b, seq_length)
            assert features["input_ids"][index].numpy().tolist() == ids
            assert features["input_mask"][index].numpy().tolist() == mask
            assert features["segment_ids"][index].numpy().tolist() == types
    assert all(v.dtype == tf.int32 and v.shape == (40, seq_length) for v in pair.values())


def test_packer_dynamic_length_pads_to_longest_without_truncation():
    packer = BertPacker(None, cls_id=2, sep_id=3, pad_id=0)
    features = packer((tf.ragged.constant([[7, 7, 7, 7, 7], [8]]), tf.ragged.constant([[9], [9, 9]])))
    assert features["input_ids"].numpy().tolist() == [[2, 7, 7, 7, 7, 7, 3, 9, 3], [2, 8, 3, 9, 9, 3, 0, 0, 0]]
    assert features["input_mask"].numpy().tolist() == [[1] * 9, [1] * 6 + [0] * 3]
    assert features["segment_ids"].numpy().tolist() == [[0] * 7 + [1] * 2, [0, 0, 0, 1, 1, 1, 0, 0, 0]]
    clone = BertPacker.from_config(packer.get_config())
    assert clone.seq_length is None and clone.cls_id == 2
    with pytest.raises(ValueError, match="seq_length"):
        BertPacker(2, cls_id=2, sep_id=3)


# ---------------------------------------------------------------------------------------------
# Serving: only core TensorFlow and tensorflow-text ops; SavedModel in a fresh process
# ---------------------------------------------------------------------------------------------


class _Preprocessor(tf.Module):
    def __init__(self, vocab_file, seq_length):
        super().__init__()
        self.tokenizer = BertTokenizer(vocab_file, lower_case=True, special_tokens=["[MASK]"])
        self.packer = BertPacker(seq_length, cls_id=101, sep_id=102)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.string)])
    def __call__(self, text_a, text_b):
        return self.packer((self.tokenizer(text_a), self.tokenizer(text_b)))


def _op_types(concrete_function):
    graph_def = concrete_function.graph.as_graph_def()
    op_types = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        op_types |= {node.op for node in function.node_def}
    function_names = {function.signature.name for function in graph_def.library.function}
    return op_types - function_names


TEXTS_A = ["The capital of France is [MASK].", "ΟΔΟΣ ﬁne ½ Ⅻ Straße", "a" * 201 + " 中文"]
TEXTS_B = ["Hello, World!", "Ünïcödé zero\u200bwidth", ""]


@pytest.fixture(scope="module")
def fresh_process_result(tmp_path_factory, vocab_file):
    """Saves tokenizer + packer, then in a process that imports only tensorflow and
    tensorflow_text: classifies the traced graph's ops (before and after importing tensorflow_text)
    and runs the loaded SavedModel."""
    module = _Preprocessor(vocab_file, seq_length=24)
    op_types = sorted(_op_types(module.__call__.get_concrete_function()))
    path = str(tmp_path_factory.mktemp("preprocessor") / "1")
    tf.saved_model.save(module, path)
    code = f"""
        import json, sys
        import tensorflow as tf
        from tensorflow.python.framework import op_def_registry
        ops = {op_types!r}
        core = [op for op in ops if op_def_registry.get(op) is not None]
        import tensorflow_text  # registers the tf-text ops the graph needs
        text = [op for op in ops if op not in core and op_def_registry.get(op) is not None]
        model = tf.saved_model.load({path!r})
        out = model(tf.constant({TEXTS_A!r}), tf.constant({TEXTS_B!r}))
        assert not any(name.startswith(("bert_tf", "keras_hub", "keras_nlp")) for name in sys.modules)
        features = {{k: v.numpy().tolist() for k, v in out.items()}}
        print(json.dumps({{"core": core, "text": text, "features": features}}))
        """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH="")
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, cwd="/", timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return op_types, json.loads(result.stdout.strip().splitlines()[-1])


def test_graph_uses_only_core_tensorflow_and_tensorflow_text_ops(fresh_process_result):
    op_types, result = fresh_process_result
    assert "FastWordpieceTokenizeWithOffsets" in op_types  # the walk does see tf-text ops
    allowed = set(result["core"]) | set(result["text"])
    assert set(op_types) == allowed, f"ops outside core TF and tensorflow-text: {set(op_types) - allowed}"
    assert "RegexSplitWithOffsets" in result["text"] and "NormalizeUTF8" in result["text"]


def test_saved_model_runs_in_fresh_process_with_only_tensorflow_and_tensorflow_text(fresh_process_result, vocab_file):
    features = fresh_process_result[1]["features"]
    full_tokenizer = FullTokenizer(vocab_file, do_lower_case=True, special_tokens=["[MASK]"])
    for index, (text_a, text_b) in enumerate(zip(TEXTS_A, TEXTS_B)):
        ids, mask, types = expected_features(full_tokenizer.encode(text_a), full_tokenizer.encode(text_b), 24)
        assert features["input_ids"][index] == ids
        assert features["input_mask"][index] == mask
        assert features["segment_ids"][index] == types
