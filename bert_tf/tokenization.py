"""The original BERT WordPiece tokenizer in pure Python (no TensorFlow import).

`FullTokenizer` reproduces google-research/bert's `tokenization.py` exactly:

1. Bytes are decoded as UTF-8; invalid byte sequences are dropped (the original's
   `decode("utf-8", "ignore")`; because U+FFFD is removed in step 2 anyway, replacing them
   would give the same tokens).
2. Cleaning: NUL, U+FFFD and control characters (Unicode categories Cc and Cf, except tab,
   newline and carriage return) are removed; every whitespace character (space, tab, newline,
   carriage return and category Zs) becomes a space.
3. A space is put on both sides of every CJK ideograph (the original's code-point ranges,
   which leave Hangul, Hiragana and Katakana alone).
4. The text is split on whitespace (`str.split()`, so U+2028/U+2029 separate words too).
5. Only when lower-casing: each word is lower-cased (`str.lower()`), NFD-normalised and its
   non-spacing marks (category Mn) are dropped.
6. Every punctuation character (ASCII 33-47, 58-64, 91-96, 123-126 and categories P*) becomes
   a word of its own.
7. WordPiece: greedy longest-match-first against the vocabulary, continuation pieces prefixed
   with `##`; a word that cannot be covered, or is longer than 200 characters, is `[UNK]`.

Character classes come from the running interpreter's `unicodedata`, as in the original;
`bert_tf.preprocessing` builds its in-graph regular expressions from the same functions so both
paths agree on the same Unicode version.
"""

import collections
import os
import re
import unicodedata

DEFAULT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_INPUT_CHARS_PER_WORD = 200

# The original's "Chinese character" ranges (CJK Unified Ideographs and extensions A-E plus the
# compatibility ideographs). Hangul and Kana are deliberately absent.
CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


# ---------------------------------------------------------------------------------------------
# Character classes (the original's definitions)
# ---------------------------------------------------------------------------------------------


def is_whitespace(char):
    """Space, tab, newline, carriage return, or Unicode category Zs."""
    if char in (" ", "\t", "\n", "\r"):
        return True
    return unicodedata.category(char) == "Zs"


def is_control(char):
    """Categories Cc and Cf, except tab, newline and carriage return (they are whitespace)."""
    if char in ("\t", "\n", "\r"):
        return False
    return unicodedata.category(char) in ("Cc", "Cf")


def is_punctuation(char):
    """Every non-alphanumeric printable ASCII character, or any Unicode category P*."""
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


# The original module's private names, for scripts written against it.
_is_whitespace = is_whitespace
_is_control = is_control
_is_punctuation = is_punctuation


def is_cjk_ideograph(cp):
    """True if code point `cp` is in one of the original's CJK ideograph ranges."""
    return any(low <= cp <= high for low, high in CJK_RANGES)


def is_removed_by_cleaning(char):
    """True for the characters the original's `_clean_text` drops."""
    return char == "\x00" or char == "\ufffd" or is_control(char)


# ---------------------------------------------------------------------------------------------
# Text and vocabulary I/O
# ---------------------------------------------------------------------------------------------


def convert_to_unicode(text):
    """Returns `text` as `str`; bytes are decoded as UTF-8 and invalid byte sequences dropped."""
    if isinstance(text, str):
        return text
    if isinstance(text, (bytes, bytearray)):
        return bytes(text).decode("utf-8", "ignore")
    raise TypeError(f"expected str or bytes, got {type(text).__name__}: {text!r:.80}")


def printable_text(text):
    """`text` as a `str` suitable for print or logging (bytes decoded as UTF-8, invalid dropped).

    In Python 3 that is the same as `convert_to_unicode`; the original kept both names.
    """
    return convert_to_unicode(text)


def _open_text(path):
    # Remote paths (gs://, hdfs://, ...) need TensorFlow's file system; local files do not, so the
    # Python tokenizer stays importable and fast in data-creation worker processes.
    if "://" in str(path):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        return tf.io.gfile.GFile(path, "rb")
    return open(path, "rb")


def load_vocab(vocab_file):
    """Reads a vocab.txt (one token a line) into an ordered dict token -> id.

    As the original: each line is stripped of surrounding whitespace and its id is its line
    number (0-based); if a token is repeated, the last line wins.
    """
    vocab = collections.OrderedDict()
    try:
        with _open_text(vocab_file) as reader:
            data = reader.read()
    except (OSError, IOError) as error:
        raise FileNotFoundError(f"cannot read vocab file {vocab_file!r}: {error}") from error
    from bert_tf.files import DataFormatError, decode_utf8

    # (file:line of the first invalid byte; a byte-order mark stays part of the first token,
    # as in the original.)
    text = decode_utf8(data, os.fspath(vocab_file), byte_order_mark=False)
    # The original reads with readline(), which breaks lines on "\n" only.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for index, line in enumerate(lines):
        vocab[line.strip()] = index
    if not vocab:
        raise DataFormatError(f"{vocab_file}: the vocab file is empty; expected one token a line")
    return vocab


def convert_by_vocab(vocab, items):
    """Maps each item through `vocab` (token->id or id->token); unknown items raise KeyError."""
    output = []
    for item in items:
        try:
            output.append(vocab[item])
        except KeyError:
            raise KeyError(f"{item!r} is not in the vocabulary") from None
    return output


def convert_tokens_to_ids(vocab, tokens):
    """Tokens -> ids through `vocab` (token -> id), as the original module-level function."""
    return convert_by_vocab(vocab, tokens)


def convert_ids_to_tokens(inv_vocab, ids):
    """Ids -> tokens through `inv_vocab` (id -> token), as the original module-level function."""
    return convert_by_vocab(inv_vocab, ids)


def whitespace_tokenize(text):
    """Splits on any whitespace (`str.split()`)."""
    return text.split()


# ---------------------------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------------------------


class _LazyCharTable(dict):
    """A `str.translate` table filled on first use of each character from a predicate-based rule.

    `rule(char)` returns the replacement (a string, "" to delete). Characters are classified
    once per process, so the tables stay exactly the predicates above without scanning all of
    Unicode up front.
    """

    def __init__(self, rule):
        super().__init__()
        self._rule = rule

    def __missing__(self, code_point):
        value = self._rule(chr(code_point))
        self[code_point] = value
        return value


_CLEANING_TABLE = _LazyCharTable(
    lambda c: "" if is_removed_by_cleaning(c) else (" " if is_whitespace(c) else c)
)
_DROP_NONSPACING_MARKS_TABLE = _LazyCharTable(lambda c: "" if unicodedata.category(c) == "Mn" else c)
_PUNCTUATION_MEMO = _LazyCharTable(is_punctuation)
_CJK_RE = re.compile("([" + "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in CJK_RANGES) + "])")


class BasicTokenizer:
    """Cleaning, CJK spacing, whitespace split, optional lower-casing/accent stripping, punctuation split.

    Args:
      do_lower_case: lower-case and strip accents (the "uncased" models).
      never_split: strings kept whole (and not lower-cased) wherever they occur in the raw text;
        see `FullTokenizer`'s `special_tokens`.
    """

    def __init__(self, do_lower_case=True, never_split=()):
        self.do_lower_case = do_lower_case
        self.never_split = tuple(never_split)
        longest_first = sorted(self.never_split, key=len, reverse=True)
        self._never_split_re = (
            re.compile("(" + "|".join(re.escape(t) for t in longest_first) + ")") if self.never_split else None
        )

    def tokenize(self, text):
        """Text (str or UTF-8 bytes) -> list of words."""
        text = convert_to_unicode(text)
        if self._never_split_re is None:
            return self._tokenize_plain(text)
        output = []
        for i, part in enumerate(self._never_split_re.split(text)):
            if i % 2:
                output.append(part)
            elif part:
                output.extend(self._tokenize_plain(part))
        return output

    def _tokenize_plain(self, text):
        text = text.translate(_CLEANING_TABLE)
        text = _CJK_RE.sub(r" \1 ", text)
        words = []
        for word in text.split():
            if self.do_lower_case:
                word = word.lower()
                if not word.isascii():  # NFD of ASCII is itself and has no marks
                    word = unicodedata.normalize("NFD", word).translate(_DROP_NONSPACING_MARKS_TABLE)
                    if not word:
                        continue
            if word.isalnum():  # letters and digits (L*, N*) are never punctuation
                words.append(word)
            else:
                words.extend(self._split_on_punctuation(word))
        return words

    def tokenize_with_offsets(self, text):
        """Like `tokenize`, with each word's characters traced back to `text`.

        Returns a list of (word, spans): `spans[k]` is the (start, end) character range of
        `convert_to_unicode(text)` that word character k came from. Lower-casing and accent
        stripping can change a word's length; characters a normalisation adds keep the range of
        the character they came from.
        """
        text = convert_to_unicode(text)
        words = []
        if self._never_split_re is None:
            segments = [(0, text, False)]
        else:
            segments, position = [], 0
            for match in self._never_split_re.finditer(text):
                segments.append((position, text[position:match.start()], False))
                segments.append((match.start(), match.group(0), True))
                position = match.end()
            segments.append((position, text[position:], False))
        for start, segment, special in segments:
            if special:
                words.append((segment, [(start + k, start + k + 1) for k in range(len(segment))]))
            elif segment:
                words.extend(self._words_with_offsets(segment, start))
        return words

    def _words_with_offsets(self, text, base):
        raw_words, current = [], []
        for index, char in enumerate(text):
            cleaned = char.translate(_CLEANING_TABLE)
            if not cleaned:
                continue
            if cleaned.isspace() or _CJK_RE.fullmatch(cleaned):
                if current:
                    raw_words.append(current)
                current = []
                if not cleaned.isspace():
                    raw_words.append([(cleaned, base + index)])
                continue
            current.append((cleaned, base + index))
        if current:
            raw_words.append(current)

        words = []
        for raw in raw_words:
            word, spans = self._normalize_with_spans(raw)
            if not word:
                continue
            piece, piece_spans = [], []
            for char, span in zip(word, spans):
                if _PUNCTUATION_MEMO[ord(char)]:
                    if piece:
                        words.append(("".join(piece), piece_spans))
                        piece, piece_spans = [], []
                    words.append((char, [span]))
                else:
                    piece.append(char)
                    piece_spans.append(span)
            if piece:
                words.append(("".join(piece), piece_spans))
        return words

    def _normalize_with_spans(self, raw):
        """(normalised word, one raw span per character) for a list of (char, index)."""
        word = "".join(char for char, _ in raw)
        if not self.do_lower_case:
            return word, [(index, index + 1) for _, index in raw]
        normalized = self._normalize(word)
        chars, spans = [], []
        for char, index in raw:
            part = self._normalize(char)
            chars.append(part)
            spans.extend([(index, index + 1)] * len(part))
        if len(spans) != len(normalized):
            # Context-dependent lower-casing changed the length: the word's whole range.
            whole = (raw[0][1], raw[-1][1] + 1)
            spans = [whole] * len(normalized)
        return normalized, spans

    @staticmethod
    def _normalize(word):
        word = word.lower()
        if not word.isascii():
            word = unicodedata.normalize("NFD", word).translate(_DROP_NONSPACING_MARKS_TABLE)
        return word

    @staticmethod
    def _split_on_punctuation(word):
        pieces = []
        current = []
        for char in word:
            if _PUNCTUATION_MEMO[ord(char)]:
                if current:
                    pieces.append("".join(current))
                    current = []
                pieces.append(char)
            else:
                current.append(char)
        if current:
            pieces.append("".join(current))
        return pieces


class WordpieceTokenizer:
    """Greedy longest-match-first WordPiece over already basic-tokenized words.

    A word that cannot be covered by vocabulary pieces, or is longer than
    `max_input_chars_per_word` characters, becomes `unk_token` as a whole.
    """

    def __init__(self, vocab, unk_token="[UNK]", max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD,
                 cache_size=1 << 18):
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word
        # No candidate longer than the longest vocabulary entry can match: start there.
        self._longest_piece = max((len(t) for t in vocab), default=0)
        self._cache = {}
        self._cache_size = cache_size

    def tokenize(self, text):
        """E.g. "unaffable" -> ["un", "##aff", "##able"] with a suitable vocabulary."""
        output_tokens = []
        for word in whitespace_tokenize(convert_to_unicode(text)):
            output_tokens.extend(self.tokenize_word(word))
        return output_tokens

    def tokenize_word(self, word):
        """One word (no whitespace) -> tuple of pieces."""
        pieces = self._cache.get(word)
        if pieces is None:
            pieces = self._tokenize_word_uncached(word)
            if len(self._cache) < self._cache_size:
                self._cache[word] = pieces
        return pieces

    def _tokenize_word_uncached(self, word):
        if len(word) > self.max_input_chars_per_word:
            return (self.unk_token,)
        vocab = self.vocab
        pieces = []
        start = 0
        while start < len(word):
            prefix = "##" if start else ""
            end = min(len(word), start + self._longest_piece)
            while start < end:
                candidate = prefix + word[start:end]
                if candidate in vocab:
                    break
                end -= 1
            else:
                return (self.unk_token,)
            pieces.append(candidate)
            start = end
        return tuple(pieces)


class FullTokenizer:
    """The original end-to-end tokenizer: `BasicTokenizer` then `WordpieceTokenizer`.

    Args:
      vocab_file: path of a vocab.txt.
      do_lower_case: True for uncased models.
      special_tokens: strings kept whole (and not lower-cased) wherever they appear in raw text,
        e.g. `["[MASK]"]` for fill-mask prediction, or `bert_tf.tokenization.DEFAULT_SPECIAL_TOKENS`.
        Empty by default, as in the original, which splits "[MASK]" into "[", "mask", "]".
    """

    def __init__(self, vocab_file, do_lower_case=True, special_tokens=()):
        self.vocab = load_vocab(vocab_file)
        self.inv_vocab = {index: token for token, index in self.vocab.items()}
        self.do_lower_case = do_lower_case
        special_tokens = tuple(special_tokens)
        missing = [t for t in special_tokens if t not in self.vocab]
        if missing:
            raise ValueError(f"special_tokens {missing} are not in the vocab file {vocab_file!r}")
        self.special_tokens = special_tokens
        self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case, never_split=special_tokens)
        self.wordpiece_tokenizer = WordpieceTokenizer(vocab=self.vocab)

    def tokenize(self, text):
        """Text (str or UTF-8 bytes) -> list of WordPiece strings."""
        pieces = []
        for word in self.basic_tokenizer.tokenize(text):
            if word in self.special_tokens:
                pieces.append(word)
            else:
                pieces.extend(self.wordpiece_tokenizer.tokenize_word(word))
        return pieces

    def tokenize_with_offsets(self, text):
        """(tokens, offsets): the tokens of `tokenize(text)` and, for each, the (start, end)
        character range of `convert_to_unicode(text)` it covers (end exclusive), e.g. for a
        QA answer span or an NER entity. A `##` piece covers only its own characters; an
        `[UNK]` word covers the whole word.
        """
        tokens, offsets = [], []
        for word, spans in self.basic_tokenizer.tokenize_with_offsets(text):
            if word in self.special_tokens:
                pieces = (word,)
            else:
                pieces = self.wordpiece_tokenizer.tokenize_word(word)
            if len(pieces) == 1 and (pieces[0] == word or pieces[0] == self.wordpiece_tokenizer.unk_token):
                tokens.append(pieces[0])
                offsets.append((spans[0][0], spans[-1][1]))
                continue
            position = 0
            for piece in pieces:
                length = len(piece) - (2 if position else 0)
                covered = spans[position:position + length]
                tokens.append(piece)
                offsets.append((min(s for s, _ in covered), max(e for _, e in covered)))
                position += length
        return tokens, offsets

    def convert_tokens_to_ids(self, tokens):
        return convert_by_vocab(self.vocab, tokens)

    def convert_ids_to_tokens(self, ids):
        return convert_by_vocab(self.inv_vocab, ids)

    def encode(self, text):
        """Text -> list of ids (tokenize + convert_tokens_to_ids)."""
        return self.convert_tokens_to_ids(self.tokenize(text))


# ---------------------------------------------------------------------------------------------
# Checkpoint casing check
# ---------------------------------------------------------------------------------------------

_LOWER_CASED_MODELS = (
    "uncased_L-24_H-1024_A-16",
    "uncased_L-12_H-768_A-12",
    "multilingual_L-12_H-768_A-12",
    "chinese_L-12_H-768_A-12",
    "wwm_uncased_L-24_H-1024_A-16",
)
_CASED_MODELS = (
    "cased_L-12_H-768_A-12",
    "cased_L-24_H-1024_A-16",
    "multi_cased_L-12_H-768_A-12",
    "wwm_cased_L-24_H-1024_A-16",
)
# The 24 small BERTs (uncased_L-{2..12}_H-{128..768}_A-{H/64}) are all uncased.
_SMALL_BERT_RE = re.compile(r"^uncased_L-(2|4|6|8|10|12)_H-(128|256|512|768)_A-(2|4|8|12)$")


def validate_case_matches_checkpoint(do_lower_case, init_checkpoint):
    """Raises ValueError if `do_lower_case` contradicts a published checkpoint's name.

    Only checkpoints under a folder named like Google's releases
    (`.../uncased_L-12_H-768_A-12/bert_model.ckpt`) are checked; anything else passes.
    """
    if not init_checkpoint:
        return
    match = re.match(r"^.*?([A-Za-z0-9_-]+)/bert_model\.ckpt", str(init_checkpoint).replace(os.sep, "/"))
    if match is None:
        return
    model_name = match.group(1)
    if model_name in _LOWER_CASED_MODELS or _SMALL_BERT_RE.match(model_name):
        expected, actual_flag, case_name, opposite_flag = True, "False", "uncased", "True"
    elif model_name in _CASED_MODELS:
        expected, actual_flag, case_name, opposite_flag = False, "True", "cased", "False"
    else:
        return
    if bool(do_lower_case) != expected:
        raise ValueError(
            f"You passed in `--do_lower_case={actual_flag}` with `--init_checkpoint` "
            f"{init_checkpoint!r}. However, `{model_name}` is a {case_name} model, so it should be "
            f"`--do_lower_case={opposite_flag}`: the vocabulary and the checkpoint were built "
            f"that way, and other casing silently degrades accuracy."
        )
