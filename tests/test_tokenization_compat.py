"""bert_tf.tokenization as a drop-in for the original tokenization.py, and token offsets.

References: the original module's public names and the behaviour its own unit tests spell
out (written here by hand); for offsets, the characters of the input text, which every
token must reproduce after the tokenizer's documented normalisation.
"""

import random
import unicodedata

import pytest

from bert_tf import tokenization

ORIGINAL_PUBLIC_NAMES = (
    "validate_case_matches_checkpoint", "convert_to_unicode", "printable_text", "load_vocab",
    "convert_by_vocab", "convert_tokens_to_ids", "convert_ids_to_tokens", "whitespace_tokenize",
    "FullTokenizer", "BasicTokenizer", "WordpieceTokenizer", "_is_whitespace", "_is_control",
    "_is_punctuation",
)
VOCAB = ["[UNK]", "[CLS]", "[SEP]", "want", "##want", "##ed", "wa", "un", "runn", "##ing", ",",
         "low", "lowest", "straße", "new", "york", "##er"]


@pytest.fixture
def vocab_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("".join(t + "\n" for t in VOCAB), encoding="utf-8")
    return str(path)


def test_every_public_name_of_the_original_module_exists():
    missing = [name for name in ORIGINAL_PUBLIC_NAMES if not hasattr(tokenization, name)]
    assert not missing


def test_original_style_script_runs_unchanged(vocab_file):
    tokenizer = tokenization.FullTokenizer(vocab_file=vocab_file, do_lower_case=True)
    tokens = tokenizer.tokenize(u"UNwant\u00E9d,running")
    assert tokens == ["un", "##want", "##ed", ",", "runn", "##ing"]
    assert tokenizer.convert_tokens_to_ids(tokens) == [7, 4, 5, 10, 8, 9]

    vocab = tokenization.load_vocab(vocab_file)
    inv_vocab = {v: k for k, v in vocab.items()}
    assert tokenization.convert_tokens_to_ids(vocab, ["un", "##want", "##ed", "runn", "##ing"]) == [7, 4, 5, 8, 9]
    assert tokenization.convert_ids_to_tokens(inv_vocab, [7, 4, 5]) == ["un", "##want", "##ed"]

    wordpiece = tokenization.WordpieceTokenizer(vocab=vocab)
    assert wordpiece.tokenize("") == []
    assert wordpiece.tokenize("unwanted running") == ["un", "##want", "##ed", "runn", "##ing"]
    assert wordpiece.tokenize("unwantedX running") == ["[UNK]", "runn", "##ing"]

    basic = tokenization.BasicTokenizer(do_lower_case=False)
    assert basic.tokenize(u" \tHeLLo!how  \n Are yoU?  ") == ["HeLLo", "!", "how", "Are", "yoU", "?"]
    assert tokenization.BasicTokenizer(do_lower_case=True).tokenize(u"ah\u535A\u63A8zz") == \
        ["ah", "\u535A", "\u63A8", "zz"]

    assert tokenization.printable_text(b"caf\xc3\xa9") == "café"
    assert tokenization.printable_text("café") == "café"
    assert tokenization.convert_to_unicode(b"\xff ok") == " ok"
    assert tokenization.whitespace_tokenize("  a b\tc ") == ["a", "b", "c"]
    tokenization.validate_case_matches_checkpoint(True, "x/uncased_L-12_H-768_A-12/bert_model.ckpt")


def test_character_class_helpers_keep_their_original_names():
    assert tokenization._is_whitespace(u" ") and tokenization._is_whitespace(u"\t")
    assert tokenization._is_whitespace(u"\u00A0") and not tokenization._is_whitespace(u"A")
    assert tokenization._is_control(u"\u0005") and not tokenization._is_control(u"\t")
    assert not tokenization._is_control(u" ") and tokenization._is_control(u"\u200b")  # Cf
    assert tokenization._is_punctuation(u"-") and tokenization._is_punctuation(u"$")
    assert tokenization._is_punctuation(u"`") and tokenization._is_punctuation(u".")
    assert not tokenization._is_punctuation(u"A") and not tokenization._is_punctuation(u" ")


def test_offsets_of_a_mixed_sentence(vocab_file):
    tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case=True)
    text = "  Ünwanted,  NEW-Yorker\x00s straße"
    tokens, offsets = tokenizer.tokenize_with_offsets(text)
    assert tokens == tokenizer.tokenize(text)
    pairs = list(zip(tokens, [text[a:b] for a, b in offsets]))
    assert pairs[:5] == [("un", "Ün"), ("##want", "want"), ("##ed", "ed"), (",", ","), ("new", "NEW")]
    # "Yorker\x00s" is one word "yorkers" after cleaning; "##s" is not in VOCAB: all [UNK].
    assert pairs[5:] == [("[UNK]", "-"), ("[UNK]", "Yorker\x00s"), ("straße", "straße")]


def _normalized(text, lower):
    text = "".join(c for c in text if not tokenization.is_removed_by_cleaning(c))
    if lower:
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    return text


@pytest.mark.parametrize("lower", [True, False])
def test_offsets_cover_exactly_the_characters_of_each_token(minilm_dir, lower):
    tokenizer = tokenization.FullTokenizer(f"{minilm_dir}/vocab.txt", do_lower_case=lower)
    rng = random.Random(5)
    alphabet = "abcdefXYZ ,.'-ÄöüßéÉ中文한글\t\n\x00\u200b\u0301naïveRunning"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        tokens, offsets = tokenizer.tokenize_with_offsets(text)
        assert tokens == tokenizer.tokenize(text), repr(text)
        previous_start = 0
        for token, (start, end) in zip(tokens, offsets):
            assert 0 <= start < end <= len(text) and start >= previous_start, (repr(text), token)
            previous_start = start
            if token != "[UNK]":
                piece = token[2:] if token.startswith("##") else token
                # A piece may cover part of a character that normalisation decomposes (Hangul).
                assert piece in _normalized(text[start:end], lower), (repr(text), token, text[start:end])


def test_offsets_with_special_tokens_kept_whole(vocab_file):
    with open(vocab_file, "a", encoding="utf-8") as f:
        f.write("[MASK]\n")
    tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case=True, special_tokens=["[MASK]"])
    text = "want [MASK]ed"
    tokens, offsets = tokenizer.tokenize_with_offsets(text)
    assert tokens == ["want", "[MASK]", "[UNK]"]
    assert [text[a:b] for a, b in offsets] == ["want", "[MASK]", "ed"]
