"""Hand-derived expectations that define the original BERT tokenizer's semantics.

Every expected value below is worked out by hand from the original algorithm's definition
(clean -> CJK spacing -> whitespace split -> [lower, NFD, drop Mn] -> punctuation split ->
greedy longest-match-first WordPiece), not taken from bert_tf's output.
"""

import subprocess
import sys
import unicodedata

import pytest

from bert_tf import tokenization
from bert_tf.tokenization import BasicTokenizer, FullTokenizer, WordpieceTokenizer

VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "un", "##want", "##ed", "want", "wa", "runn", "##ing", ",", ".", "!", "?", "[", "]",
    "mask", "the", "hello", "a", "##a", "##aff", "##able", "中", "文", "ok",
]


@pytest.fixture()
def vocab_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("".join(token + "\n" for token in VOCAB), encoding="utf-8")
    return str(path)


def test_wordpiece_greedy_longest_match_and_whole_word_unk(vocab_file):
    tokenizer = FullTokenizer(vocab_file, do_lower_case=True)
    # "UNwant\u00e9d" -> lower "unwant\u00e9d" -> NFD + drop U+0301 -> "unwanted";
    # the comma splits off; "un"+"##want"+"##ed", "runn"+"##ing".
    assert tokenizer.tokenize("UNwant\u00e9d,running") == ["un", "##want", "##ed", ",", "runn", "##ing"]
    # "wanted": longest prefix in vocab is "want" (not "wa"), then "##ed".
    assert tokenizer.tokenize("wanted") == ["want", "##ed"]
    # "unwantedx": "un", "##want", "##ed" then "x"/"##x" missing -> the whole word is [UNK].
    assert tokenizer.tokenize("unwantedX runn") == ["[UNK]", "runn"]
    assert tokenizer.tokenize("") == []
    assert tokenizer.tokenize("  \t\n ") == []


def test_basic_tokenizer_lower_and_cased():
    text = " \tHeLLo!how  \n Are yoU?  "
    assert BasicTokenizer(do_lower_case=True).tokenize(text) == ["hello", "!", "how", "are", "you", "?"]
    assert BasicTokenizer(do_lower_case=False).tokenize(text) == ["HeLLo", "!", "how", "Are", "yoU", "?"]


def test_accents_are_stripped_only_when_lower_casing():
    # "H\u00e9llo" NFD = "He\u0301llo"; U+0301 is Mn and is dropped only with lower-casing.
    assert BasicTokenizer(do_lower_case=True).tokenize("H\u00e9llo") == ["hello"]
    assert BasicTokenizer(do_lower_case=False).tokenize("H\u00e9llo") == ["H\u00e9llo"]
    # A combining mark typed separately (e + U+0308) is dropped the same way.
    assert BasicTokenizer(do_lower_case=True).tokenize("Noe\u0308l") == ["noel"]


def test_cjk_ideographs_are_split_but_hangul_and_kana_are_not():
    basic = BasicTokenizer(do_lower_case=False)
    assert basic.tokenize("ah\u535a\u63a8zz") == ["ah", "\u535a", "\u63a8", "zz"]
    # Hangul syllables and Katakana are outside the original's ranges: one word each.
    assert basic.tokenize("\ud55c\uad6d\uc5b4 \u30ab\u30bf\u30ab\u30ca") == ["\ud55c\uad6d\uc5b4", "\u30ab\u30bf\u30ab\u30ca"]
    # Lower-casing NFD-decomposes Hangul syllables into conjoining jamo (category Lo, kept):
    # \ud55c = U+1112 U+1161 U+11AB.
    assert BasicTokenizer(do_lower_case=True).tokenize("\ud55c") == ["\u1112\u1161\u11ab"]
    # A CJK compatibility ideograph (U+F900 block) counts as CJK too.
    assert basic.tokenize("a\uf900b") == ["a", "\uf900", "b"]


def test_cleaning_drops_nul_fffd_and_control_and_format_characters():
    basic = BasicTokenizer(do_lower_case=False)
    # NUL, U+FFFD, BEL (Cc), zero-width space U+200B (Cf), soft hyphen U+00AD (Cf),
    # zero-width joiner U+200D (Cf) are removed without splitting the word.
    assert basic.tokenize("a\x00b\ufffdc\x07d\u200be\u00adf\u200dg") == ["abcdefg"]
    # Tab, newline, CR, NBSP (Zs), ideographic space U+3000 (Zs) are spaces; U+2028 (Zl) is not
    # cleaned but still separates words because the original splits with str.split().
    assert basic.tokenize("a\tb\nc\rd\u00a0e\u3000f\u2028g") == ["a", "b", "c", "d", "e", "f", "g"]
    # Private-use characters (Co) are not Cc/Cf: the original keeps them.
    assert basic.tokenize("a\ue000b") == ["a\ue000b"]


def test_punctuation_includes_ascii_symbols_and_unicode_p_but_not_other_symbols():
    basic = BasicTokenizer(do_lower_case=False)
    # $ + ^ ` ~ are ASCII non-alphanumerics (symbols, not Unicode P*) but count as punctuation;
    # \u00bf (Po) and \u2014 (Pd) are Unicode punctuation.
    assert basic.tokenize("a$b+c^d`e~f\u00bfg\u2014h") == [
        "a", "$", "b", "+", "c", "^", "d", "`", "e", "~", "f", "\u00bf", "g", "\u2014", "h"]
    # \u20ac (Sc) and \u00b0 (So) are not punctuation: no split.
    assert basic.tokenize("5\u20ac 90\u00b0") == ["5\u20ac", "90\u00b0"]
    # Consecutive punctuation: each character is its own word.
    assert basic.tokenize("...!") == [".", ".", ".", "!"]


def test_lower_casing_is_str_lower_not_case_folding():
    basic = BasicTokenizer(do_lower_case=True)
    # Case folding would give "strasse"; lower-casing keeps \u00df.
    assert basic.tokenize("STRA\u00dfE") == ["stra\u00dfe"]
    # Final sigma: word-final capital sigma lowers to \u03c2, others to \u03c3.
    assert basic.tokenize("\u039f\u0394\u039f\u03a3") == ["\u03bf\u03b4\u03bf\u03c2"]
    # In a run, only the last sigma (preceded by a cased letter, none after it) is final.
    assert basic.tokenize("\u03a3\u03a3\u03a3") == ["\u03c3\u03c3\u03c2"]
    # Lower-casing sees the whole word before punctuation is split off: "." is case-ignorable,
    # so the sigma in "\u0391\u03a3.\u0392" is followed by a cased letter and is not final.
    assert basic.tokenize("\u0391\u03a3.\u0392 \u0391\u03a3. \u0392") == [
        "\u03b1\u03c3", ".", "\u03b2", "\u03b1\u03c2", ".", "\u03b2"]
    # The fi ligature U+FB01 has only a compatibility decomposition: NFD keeps it.
    assert basic.tokenize("\ufb01ne") == ["\ufb01ne"]
    # Full-width Latin capital A (U+FF21) lowers to full-width small a (U+FF41), not to "a".
    assert basic.tokenize("\uff21") == ["\uff41"]
    # Roman numeral \u2167 (Nl, VIII) lowers to \u2177; vulgar fraction \u00bd is kept as is.
    assert basic.tokenize("\u2167 \u00bd") == ["\u2177", "\u00bd"]
    # U+0130 (I with dot) lowers to "i" + U+0307, whose Mn mark is then stripped.
    assert basic.tokenize("\u0130") == ["i"]


def test_words_over_200_characters_become_unk(vocab_file):
    tokenizer = FullTokenizer(vocab_file, do_lower_case=True)
    assert tokenizer.tokenize("a" * 200) == ["a"] + ["##a"] * 199
    assert tokenizer.tokenize("a" * 201 + " ok") == ["[UNK]", "ok"]
    # The limit counts characters, not UTF-8 bytes: 200 two-byte characters are fine.
    wordpiece = WordpieceTokenizer({"\u00e9": 0, "##\u00e9": 1})
    assert wordpiece.tokenize("\u00e9" * 200) == ["\u00e9"] + ["##\u00e9"] * 199


def test_bytes_are_decoded_as_utf8_and_invalid_bytes_dropped(vocab_file):
    tokenizer = FullTokenizer(vocab_file, do_lower_case=True)
    assert tokenizer.tokenize("un\u00e4ff".encode("utf-8")) == ["un", "##aff"]
    # \xff and a truncated 3-byte sequence are invalid UTF-8: dropped, the word is joined.
    assert tokenizer.tokenize(b"un\xffaff \xe4\xb8ok") == ["un", "##aff", "ok"]
    with pytest.raises(TypeError, match="expected str or bytes"):
        tokenizer.tokenize(12)


def test_special_tokens_split_by_default_and_kept_whole_on_request(vocab_file):
    original = FullTokenizer(vocab_file, do_lower_case=True)
    assert original.tokenize("the [MASK].") == ["the", "[", "mask", "]", "."]
    fill_mask = FullTokenizer(vocab_file, do_lower_case=True, special_tokens=["[MASK]"])
    assert fill_mask.tokenize("the [MASK].") == ["the", "[MASK]", "."]
    assert fill_mask.tokenize("The[MASK]ok") == ["the", "[MASK]", "ok"]
    # Matching is exact (case-sensitive): "[mask]" is ordinary text.
    assert fill_mask.tokenize("[mask]") == ["[", "mask", "]"]
    with pytest.raises(ValueError, match=r"\[NOPE\]"):
        FullTokenizer(vocab_file, special_tokens=["[NOPE]"])


def test_ids_round_trip_and_vocab_file_rules(tmp_path, vocab_file):
    tokenizer = FullTokenizer(vocab_file)
    assert tokenizer.convert_tokens_to_ids(["[CLS]", "un", "##want", "[SEP]"]) == [2, 5, 6, 3]
    assert tokenizer.convert_ids_to_tokens([2, 5, 6, 3]) == ["[CLS]", "un", "##want", "[SEP]"]
    assert tokenizer.vocab["ok"] == len(VOCAB) - 1 and tokenizer.inv_vocab[0] == "[PAD]"
    with pytest.raises(KeyError, match="zzz"):
        tokenizer.convert_tokens_to_ids(["zzz"])
    # Lines are stripped (CRLF files work), ids are line numbers, a repeated token keeps its
    # last line number.
    path = tmp_path / "dup.txt"
    path.write_bytes(b"[PAD]\r\nx\r\n y \r\nx\r\n")
    vocab = tokenization.load_vocab(str(path))
    assert dict(vocab) == {"[PAD]": 0, "x": 3, "y": 2}
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        tokenization.load_vocab(str(tmp_path / "missing.txt"))


def test_validate_case_matches_checkpoint():
    validate = tokenization.validate_case_matches_checkpoint
    validate(True, "/models/uncased_L-12_H-768_A-12/bert_model.ckpt")
    validate(False, "gs://bucket/cased_L-24_H-1024_A-16/bert_model.ckpt")
    validate(True, "/models/uncased_L-4_H-256_A-4/bert_model.ckpt")
    validate(False, "/my/own_model/bert_model.ckpt")  # unknown name: not checked
    validate(False, None)
    with pytest.raises(ValueError, match="do_lower_case=True"):
        validate(False, "/models/uncased_L-12_H-768_A-12/bert_model.ckpt")
    with pytest.raises(ValueError, match="cased model"):
        validate(True, "/models/multi_cased_L-12_H-768_A-12/bert_model.ckpt")


def test_importing_the_python_tokenizer_does_not_import_tensorflow():
    code = "import sys, bert_tf.tokenization; assert 'tensorflow' not in sys.modules, 'tf imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_real_uncased_vocab(minilm_dir):
    tokenizer = FullTokenizer(f"{minilm_dir}/vocab.txt", do_lower_case=True)
    # Ids of the published bert-base-uncased vocab (which MiniLM uses): [CLS]=101, [SEP]=102,
    # [MASK]=103, "the"=1996, "."=1012.
    assert tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]", "[MASK]", "the", "."]) == [101, 102, 103, 1996, 1012]
    assert tokenizer.tokenize("The cat.") == ["the", "cat", "."]


# ---------------------------------------------------------------------------------------------
# The optimised implementation against a literal, character-by-character transcription of the
# original algorithm (written from its definition, sharing no code with bert_tf.tokenization).
# ---------------------------------------------------------------------------------------------


def _reference_tokenize(text, vocab, do_lower_case):
    def is_whitespace(c):
        return c in " \t\n\r" or unicodedata.category(c) == "Zs"

    def is_control(c):
        return c not in "\t\n\r" and unicodedata.category(c) in ("Cc", "Cf")

    def is_punctuation(c):
        cp = ord(c)
        return 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 or unicodedata.category(c).startswith("P")

    def is_cjk(cp):
        return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
                or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
                or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)

    cleaned = ""
    for c in text:
        if ord(c) == 0 or ord(c) == 0xFFFD or is_control(c):
            continue
        cleaned += " " if is_whitespace(c) else c
    spaced = "".join(f" {c} " if is_cjk(ord(c)) else c for c in cleaned)
    split_tokens = []
    for token in spaced.strip().split():
        if do_lower_case:
            token = token.lower()
            token = "".join(c for c in unicodedata.normalize("NFD", token) if unicodedata.category(c) != "Mn")
        words, start_new = [], True
        for c in token:
            if is_punctuation(c):
                words.append([c])
                start_new = True
            else:
                if start_new:
                    words.append([])
                start_new = False
                words[-1].append(c)
        split_tokens.extend("".join(w) for w in words)
    output = []
    for word in " ".join(split_tokens).strip().split():
        chars = list(word)
        if len(chars) > 200:
            output.append("[UNK]")
            continue
        start, pieces, bad = 0, [], False
        while start < len(chars):
            end, found = len(chars), None
            while start < end:
                candidate = "".join(chars[start:end])
                if start > 0:
                    candidate = "##" + candidate
                if candidate in vocab:
                    found = candidate
                    break
                end -= 1
            if found is None:
                bad = True
                break
            pieces.append(found)
            start = end
        output.extend(["[UNK]"] if bad else pieces)
    return output


@pytest.mark.parametrize("do_lower_case", [True, False], ids=["uncased", "cased"])
def test_matches_literal_transcription_on_every_assigned_code_point(minilm_dir, do_lower_case):
    tokenizer = FullTokenizer(f"{minilm_dir}/vocab.txt", do_lower_case=do_lower_case)
    # Cased tokenization is a subset of the uncased steps: every third character is enough there.
    stride = 1 if do_lower_case else 3
    chars = [
        chr(cp)
        for cp in range(sys.maxunicode + 1)
        if not 0xD800 <= cp <= 0xDFFF and (unicodedata.category(chr(cp)) not in ("Cn", "Co") or cp % 89 == 0)
    ][::stride]
    lines = [" ".join(f"A{c}b{c}Σ" for c in chars[i : i + 64]) for i in range(0, len(chars), 64)]
    lines += ["Ünïcödé\u00a0ΟΔΟΣ\u2028x\u200by ﬁ½Ⅻ İ " + "é" * 201, "a" * 150 + "." + "ab" * 120]
    for line in lines:
        assert tokenizer.tokenize(line) == _reference_tokenize(line, tokenizer.vocab, do_lower_case), line
