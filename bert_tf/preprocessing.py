"""In-graph BERT preprocessing as Keras layers: raw strings -> WordPiece ids -> model inputs.

`BertTokenizer` gives exactly the ids of the Python `bert_tf.tokenization.FullTokenizer` (the
original BERT tokenizer) using only core TensorFlow and tensorflow-text ops, so it can live
inside a SavedModel served by TF Serving. `BertPacker` adds `[CLS]`/`[SEP]`, truncates like the
original (`run_classifier`'s rule) and pads.

Why not tensorflow-text's `BertTokenizer`/`FastBertTokenizer` or keras-hub's `BertTokenizer`
as they are: they differ from the original on control characters, U+FFFD, words longer than
200 characters (they count bytes), compatibility characters and ß (they case-fold where the
original lower-cases), final sigma, and their character tables are a newer Unicode version than
Python's. This module builds its own pipeline from core TF and tensorflow-text ops instead:

  drop invalid UTF-8 -> drop control characters -> [uncased: lower -> NFD -> drop Mn]
  -> whitespace to " ", spaces around CJK ideographs and punctuation -> split on " "
  -> words over 200 characters to [UNK] -> FastWordpieceTokenizer (greedy longest-match-first,
  the same result as the original's MaxMatch).

Every character class in the regular expressions is generated from the running Python's
`unicodedata` and `str.lower` through the predicates `FullTokenizer` uses, so both paths share
one Unicode version. The two steps that must use library tables (lower-casing: TensorFlow's ICU;
NFD: tensorflow-text's ICU) are compared with Python over every code point once per process,
and the characters where they disagree (and capital sigma, whose final form depends on context)
are handled in the graph with Python's answers. See docs/tokenization.md.
"""

import functools
import sys
import unicodedata

from absl import logging
import keras
import tensorflow as tf
import tensorflow_text as tf_text

from bert_tf import tokenization

_MAX_CHARS = tokenization.MAX_INPUT_CHARS_PER_WORD
# The per-word byte limit of tensorflow-text must never trigger before the original's
# 200-character limit, which is applied separately: 200 characters are at most 800 bytes.
_MAX_BYTES_PER_WORD = 4 * _MAX_CHARS + 4
# Placeholder brackets for characters protected from NFD. Both are control characters, which
# cleaning has already removed from the text, so they cannot collide with user text.
_PROTECT_OPEN = "\x01"
_PROTECT_CLOSE = "\x02"


# ---------------------------------------------------------------------------------------------
# Character tables, built from Python's unicodedata (the original's definitions)
# ---------------------------------------------------------------------------------------------


def _all_chars():
    return (chr(cp) for cp in range(sys.maxunicode + 1) if not 0xD800 <= cp <= 0xDFFF)


def _re2_class(code_points):
    """A RE2 character class matching exactly the given sorted code points."""
    ranges = []
    for cp in code_points:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    parts = [
        f"\\x{{{low:X}}}" if low == high else f"\\x{{{low:X}}}-\\x{{{high:X}}}" for low, high in ranges
    ]
    return "[" + "".join(parts) + "]"


def _final_sigma_role(char):
    """How Python's str.lower treats `char` in the context of a capital sigma.

    Python lowers U+03A3 to final sigma when it follows a cased letter and is not followed by
    one, skipping case-ignorable characters on both sides. Probing `str.lower` itself gives the
    running interpreter's Cased / Case_Ignorable tables exactly.
    """
    if ("A" + char + "\u03a3").lower()[-1] != "\u03c2":
        return None
    if (" " + char + "\u03a3").lower()[-1] == "\u03c2":
        return "cased"  # cased and not case-ignorable
    return "ignorable"


@functools.lru_cache(maxsize=None)
def character_classes():
    """RE2 classes (as pattern strings) for the original tokenizer's character categories."""
    removed, spaces, nonspacing_marks, punctuation, cased, ignorable = [], [], [], [], [], []
    for char in _all_chars():
        cp = ord(char)
        category = unicodedata.category(char)
        if category in ("Cn", "Co"):
            continue  # unassigned and private use: in none of the classes below
        role = _final_sigma_role(char)
        if role == "cased":
            cased.append(cp)
        elif role == "ignorable":
            ignorable.append(cp)
        if tokenization.is_removed_by_cleaning(char):
            removed.append(cp)
        elif char != " " and (tokenization.is_whitespace(char) or char.isspace()):
            # isspace(): what survives cleaning and still separates words in str.split()
            # (U+2028, U+2029) is a space too.
            spaces.append(cp)
        if category == "Mn":
            nonspacing_marks.append(cp)
        if tokenization.is_punctuation(char):
            punctuation.append(cp)
    cjk = "[" + "".join(f"\\x{{{lo:X}}}-\\x{{{hi:X}}}" for lo, hi in tokenization.CJK_RANGES) + "]"
    return {
        "removed": _re2_class(removed),
        "spaces": _re2_class(spaces),
        "cjk": cjk,
        "nonspacing_marks": _re2_class(nonspacing_marks),
        "punctuation": _re2_class(punctuation),
        "cased": _re2_class(cased),
        "case_ignorable": _re2_class(ignorable),
        "neither_cased_nor_ignorable": "[^" + _re2_class(cased)[1:-1] + _re2_class(ignorable)[1:-1] + "]",
    }


def _chunks(items, size):
    return [items[i : i + size] for i in range(0, len(items), size)]


@functools.lru_cache(maxsize=None)
def library_disagreements():
    """Characters where TensorFlow's lower-casing / tensorflow-text's NFD disagree with Python.

    Returns (lower_fixes, nfd_fixes, unfixable): `lower_fixes` maps a character to Python's
    lower-case form, to be substituted before `tf.strings.lower` (only entries that
    `tf.strings.lower` then leaves alone); `nfd_fixes` maps a character to Python's NFD form, to
    be protected from tensorflow-text's NFD; `unfixable` lists characters neither patch covers.
    Computed once per process by comparing every code point (about a second).
    """
    with tf.init_scope():
        chars = [c for c in _all_chars() if not tokenization.is_removed_by_cleaning(c)]
        encoded = [c.encode("utf-8") for c in chars]
        lowered, decomposed = [], []
        for chunk in _chunks(encoded, 200_000):
            lowered.extend(tf.strings.lower(chunk, encoding="utf-8").numpy())
            decomposed.extend(tf_text.normalize_utf8(chunk, "NFD").numpy())
        lower_fixes, nfd_fixes, unfixable = {}, {}, []
        candidates = []
        for char, tf_lower, tf_nfd in zip(chars, lowered, decomposed):
            if tf_lower.decode("utf-8") != char.lower():
                candidates.append(char)
            if tf_nfd.decode("utf-8") != unicodedata.normalize("NFD", char):
                nfd_fixes[char] = unicodedata.normalize("NFD", char)
        if candidates:
            targets = [c.lower() for c in candidates]
            relowered = tf.strings.lower([t.encode("utf-8") for t in targets], encoding="utf-8").numpy()
            for char, target, again in zip(candidates, targets, relowered):
                if again.decode("utf-8") == target:
                    lower_fixes[char] = target
                else:
                    unfixable.append(char)
    if unfixable:
        logging.warning(
            "tf.strings.lower disagrees with Python's str.lower on %d characters that bert_tf "
            "cannot patch (%s); text containing them may tokenize differently in graph",
            len(unfixable), ", ".join(f"U+{ord(c):04X}" for c in unfixable[:10]))
    return lower_fixes, nfd_fixes, unfixable


def _replace_literals(text, mapping):
    """Replaces every key (one character or a placeholder) of `mapping` by its value."""
    for key, value in mapping.items():
        text = tf.strings.regex_replace(text, _re2_literal(key), value.replace("\\", "\\\\"))
    return text


def _batch_contains_any(text, chars):
    """Scalar bool: does any string of the batch contain one of `chars`? (one scan of the batch)"""
    pattern = "(?s).*" + _re2_class(sorted({ord(c) for c in chars})) + ".*"
    return tf.strings.regex_full_match(tf.strings.reduce_join(text), pattern)


# ---------------------------------------------------------------------------------------------
# Tokenizer layer
# ---------------------------------------------------------------------------------------------


def _vocab_as_dict(vocab):
    if isinstance(vocab, str) or hasattr(vocab, "__fspath__"):
        return tokenization.load_vocab(vocab)
    if isinstance(vocab, dict):
        return dict(vocab)
    tokens = list(vocab)
    if not tokens:
        raise ValueError("vocab is empty")
    mapping = {}
    for index, token in enumerate(tokens):
        mapping[token] = index  # like load_vocab: a repeated token keeps its last index
    return mapping


@keras.saving.register_keras_serializable(package="bert_tf")
class BertTokenizer(keras.layers.Layer):
    """Raw text -> WordPiece ids, identical to `bert_tf.tokenization.FullTokenizer`.

    Input: a tf.string tensor [batch] (or a scalar) of UTF-8 text; invalid byte sequences are
    dropped like the Python tokenizer does. Output: an int32 `tf.RaggedTensor` [batch, (pieces)]
    of ids without special tokens (a 1-D int32 tensor for a scalar input).

    Args:
      vocab: a vocab.txt path, a list of tokens (id = position), or a dict token -> id.
      lower_case: True for uncased models (lower-case, NFD, strip accents).
      special_tokens: strings kept whole where they appear in raw text (e.g. ["[MASK]"]);
        empty by default, as in the original. Same semantics as `FullTokenizer`'s argument.
      unk_token: the vocabulary's unknown token.
    """

    def __init__(self, vocab, lower_case=True, special_tokens=(), unk_token="[UNK]", **kwargs):
        super().__init__(**kwargs)
        self._convert_input_args = False  # keep tf.string tensors as they are
        self._allow_non_tensor_positional_args = True
        self.lower_case = bool(lower_case)
        self.special_tokens = tuple(special_tokens)
        self.unk_token = unk_token
        self.vocabulary = _vocab_as_dict(vocab)
        if unk_token not in self.vocabulary:
            raise ValueError(f"unk_token {unk_token!r} is not in the vocabulary")
        missing = [t for t in self.special_tokens if t not in self.vocabulary]
        if missing:
            raise ValueError(f"special_tokens {missing} are not in the vocabulary")

        # FastWordpieceTokenizer numbers tokens by position; the original's ids are line numbers
        # with "last line wins" for repeats, so keep only tokens that can ever match a word
        # (non-empty, no whitespace, not the bare suffix marker) and map positions to ids.
        usable = [
            token
            for token in self.vocabulary
            if token and token != "##" and not any(c.isspace() for c in token)
        ]
        ids = [self.vocabulary[token] for token in usable]
        self._position_to_id = None if ids == list(range(len(ids))) else tf.constant(ids, tf.int32)
        self._wordpiece = tf_text.FastWordpieceTokenizer(
            vocab=usable,
            suffix_indicator="##",
            max_bytes_per_word=_MAX_BYTES_PER_WORD,
            token_out_type=tf.int32,
            unknown_token=unk_token,
            no_pretokenization=True,
            support_detokenization=False,
        )
        self._classes = character_classes()
        if self.lower_case:
            self._lower_fixes, self._nfd_fixes, _ = library_disagreements()
        if self.special_tokens:
            ordered = sorted(self.special_tokens, key=len, reverse=True)
            self._special_pattern = "(" + "|".join(_re2_literal(t) for t in ordered) + ")"
        self.built = True

    # -- the original's steps, in graph -------------------------------------------------------

    def _normalize(self, text):
        """Cleaning, CJK spacing and (uncased) lower-casing + accent stripping of [N] strings."""
        classes = self._classes
        text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="ignore")
        text = tf.strings.regex_replace(text, classes["removed"], "")
        if self.lower_case:
            # Characters that ICU's lower-casing or NFD would treat differently from Python are
            # rare; the batch is scanned once and the patches run only when one is present.
            protect = {
                char: f"{_PROTECT_OPEN}{index}{_PROTECT_CLOSE}" for index, char in enumerate(self._nfd_fixes)
            }
            rare = _batch_contains_any(text, {_CAPITAL_SIGMA, *self._lower_fixes, *protect})

            def before_library_calls(text):
                text = _lower_capital_sigma(text, classes)
                text = _replace_literals(text, self._lower_fixes)
                return _replace_literals(text, protect)

            text = tf.cond(rare, lambda: before_library_calls(text), lambda: tf.identity(text))
            text = tf.strings.lower(text, encoding="utf-8")
            text = tf_text.normalize_utf8(text, "NFD")
            if protect:
                restore = {placeholder: self._nfd_fixes[char] for char, placeholder in protect.items()}
                text = tf.cond(rare, lambda: _replace_literals(text, restore), lambda: tf.identity(text))
            text = tf.strings.regex_replace(text, classes["nonspacing_marks"], "")
        # Whitespace and CJK spacing come after lower-casing and NFD here (the original does them
        # before): whitespace characters and CJK ideographs are neither cased nor case-ignorable,
        # so they end a final-sigma context exactly like the original's word boundaries, and NFD
        # maps spaces to spaces and CJK compatibility ideographs to CJK ideographs.
        # Separate passes: one RE2 pattern with all classes is several times slower.
        text = tf.strings.regex_replace(text, classes["spaces"], " ")
        text = tf.strings.regex_replace(text, classes["cjk"], " \\0 ")
        return tf.strings.regex_replace(text, classes["punctuation"], " \\0 ")

    def _words(self, text):
        """Normalized [N] strings -> ragged [N, (words)]."""
        # After normalization " " is the only whitespace left, so ASCII splitting is exact.
        return tf.strings.split(text)

    def _wordpiece_ids(self, words):
        """Ragged [N, (words)] -> ragged int32 [N, (pieces)]."""
        too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > _MAX_CHARS
        # The unknown token is in the vocabulary, so as a word it maps to its own id: one [UNK].
        flat_words = tf.where(too_long, tf.constant(self.unk_token), words.flat_values)
        pieces = self._wordpiece.tokenize(flat_words)  # [words, (pieces)]
        ids = pieces.values
        if self._position_to_id is not None:
            ids = tf.gather(self._position_to_id, ids)
        pieces = pieces.with_values(ids)
        return words.with_flat_values(pieces).merge_dims(1, 2)

    def _tokenize_plain(self, text):
        return self._wordpiece_ids(self._words(self._normalize(text)))

    def _tokenize_with_special_tokens(self, text):
        text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="ignore")
        parts = tf_text.regex_split(text, self._special_pattern, self._special_pattern)  # [N, (parts)]
        flat_parts = parts.flat_values
        special_id = tf.zeros_like(flat_parts, dtype=tf.int32)
        is_special = tf.zeros_like(flat_parts, dtype=tf.bool)
        for token in self.special_tokens:
            match = tf.equal(flat_parts, token)
            is_special = tf.logical_or(is_special, match)
            special_id = tf.where(match, self.vocabulary[token], special_id)
        ordinary = self._tokenize_plain(tf.where(is_special, "", flat_parts))  # special rows empty
        special = tf.RaggedTensor.from_row_lengths(
            tf.boolean_mask(special_id, is_special), tf.cast(is_special, tf.int64)
        )
        per_part = tf.concat([ordinary, special], axis=1)  # each row is one or the other
        return parts.with_flat_values(per_part).merge_dims(1, 2)

    def call(self, inputs):
        text = tf.convert_to_tensor(inputs, dtype=tf.string)
        scalar = text.shape.rank == 0
        if scalar:
            text = tf.expand_dims(text, 0)
        elif text.shape.rank != 1:
            raise ValueError(f"BertTokenizer expects a tf.string tensor [batch] or a scalar, got shape {text.shape}")
        if self.special_tokens:
            ids = self._tokenize_with_special_tokens(text)
        else:
            ids = self._tokenize_plain(text)
        return ids[0] if scalar else ids

    # -- vocabulary helpers and Keras plumbing ------------------------------------------------

    def token_to_id(self, token):
        return self.vocabulary[token]

    def compute_output_spec(self, inputs):
        return keras.KerasTensor((None, None), dtype="int32", ragged=True)

    def get_config(self):
        config = super().get_config()
        size = max(self.vocabulary.values()) + 1
        inverse = {index: token for token, index in self.vocabulary.items()}
        config.update(
            vocab=[inverse.get(i, "") for i in range(size)],
            lower_case=self.lower_case,
            special_tokens=list(self.special_tokens),
            unk_token=self.unk_token,
        )
        return config


_CAPITAL_SIGMA, _SMALL_SIGMA, _FINAL_SIGMA = "\u03a3", "\u03c3", "\u03c2"


def _lower_capital_sigma(text, classes):
    """Lower-cases every capital sigma with Python's Final_Sigma rule and Python's tables.

    ICU's `tf.strings.lower` applies the same rule but with its own (older) Cased and
    Case_Ignorable tables; after this no capital sigma is left for it to decide.
    """
    ignorable, cased = classes["case_ignorable"], classes["cased"]
    neither = classes["neither_cased_nor_ignorable"]

    # Not preceded by a cased character (skipping case-ignorable ones): small sigma.
    text = tf.strings.regex_replace(text, f"(^|{neither})({ignorable}*){_CAPITAL_SIGMA}", f"\\1\\2{_SMALL_SIGMA}")
    # Preceded by a cased character and followed by another capital sigma: small sigma.
    # Matches cannot overlap, so a run of n sigmas needs n passes.
    pair = f"{_CAPITAL_SIGMA}({ignorable}*){_CAPITAL_SIGMA}"
    has_pair = lambda t: tf.reduce_any(tf.strings.regex_full_match(t, f"(?s).*{pair}.*"))
    text = tf.while_loop(
        has_pair, lambda t: [tf.strings.regex_replace(t, pair, f"{_SMALL_SIGMA}\\1{_CAPITAL_SIGMA}")], [text]
    )[0]
    # Followed by a cased character: small sigma; otherwise final sigma.
    text = tf.strings.regex_replace(text, f"{_CAPITAL_SIGMA}({ignorable}*{cased})", f"{_SMALL_SIGMA}\\1")
    return tf.strings.regex_replace(text, _CAPITAL_SIGMA, _FINAL_SIGMA)


def _re2_literal(text):
    return "".join(_re2_class([ord(c)]) for c in text)


# ---------------------------------------------------------------------------------------------
# Packer layer
# ---------------------------------------------------------------------------------------------


def truncated_lengths(length_a, length_b, max_total):
    """The original's pair truncation in closed form, vectorised over the batch.

    The original pops one token at a time from the longer segment (from B when they are equal)
    until len(A) + len(B) <= max_total. The result: if the pair fits, nothing changes; otherwise
    A keeps min(len(A), max(max_total - len(B), ceil(max_total / 2))) and B the rest.
    """
    fits = length_a + length_b <= max_total
    half_up = max_total - max_total // 2
    kept_a = tf.minimum(length_a, tf.maximum(max_total - length_b, half_up))
    kept_b = max_total - kept_a
    return tf.where(fits, length_a, kept_a), tf.where(fits, length_b, kept_b)


def _keep_first(segment, lengths):
    positions = tf.ragged.range(segment.row_lengths())
    return tf.ragged.boolean_mask(segment, positions < tf.expand_dims(lengths, 1))


def _as_ragged_ids(segment):
    if isinstance(segment, tf.RaggedTensor):
        if segment.ragged_rank > 1:
            segment = segment.merge_dims(1, -1)
    else:
        segment = tf.convert_to_tensor(segment)
        if segment.shape.rank != 2:
            raise ValueError(f"BertPacker expects [batch, (tokens)] ids, got shape {segment.shape}")
        segment = tf.RaggedTensor.from_tensor(segment)
    return tf.cast(segment, tf.int32)


@keras.saving.register_keras_serializable(package="bert_tf")
class BertPacker(keras.layers.Layer):
    """WordPiece ids of one or two segments -> `input_ids`, `input_mask`, `segment_ids`.

    Builds `[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]` (segment ids 0 for `[CLS] A [SEP]`, 1 for
    `B [SEP]`), truncating as the original run_classifier: a single segment keeps its first
    seq_length - 2 ids; a pair pops the last id of the longer segment (B on ties) until it fits
    seq_length - 3.

    Args:
      seq_length: the fixed output length, or None to pad to the longest sequence in the batch
        (no truncation).
      cls_id, sep_id, pad_id: ids of [CLS], [SEP] and the padding id (0 in BERT vocabularies).
    Input: a ragged (or dense) int tensor [batch, (tokens)], or a tuple/list of two.
    Output: dict of int32 [batch, seq_length] tensors.
    """

    def __init__(self, seq_length, cls_id, sep_id, pad_id=0, **kwargs):
        super().__init__(**kwargs)
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        if seq_length is not None and int(seq_length) < 3:
            raise ValueError(f"seq_length must be at least 3 (or None), got {seq_length}")
        self.seq_length = None if seq_length is None else int(seq_length)
        self.cls_id, self.sep_id, self.pad_id = int(cls_id), int(sep_id), int(pad_id)
        self.built = True

    def _truncate(self, segments):
        lengths = [s.row_lengths() for s in segments]
        if len(segments) == 1:
            keep = [tf.minimum(lengths[0], self.seq_length - 2)]
        else:
            keep = truncated_lengths(lengths[0], lengths[1], self.seq_length - 3)
        return [_keep_first(s, k) for s, k in zip(segments, keep)]

    def call(self, inputs):
        segments = list(inputs) if isinstance(inputs, (tuple, list)) else [inputs]
        if not 1 <= len(segments) <= 2:
            raise ValueError(f"BertPacker takes one or two segments, got {len(segments)}")
        segments = [_as_ragged_ids(s) for s in segments]
        if self.seq_length is not None:
            segments = self._truncate(segments)
        batch_size = segments[0].nrows()
        column = lambda value: tf.RaggedTensor.from_tensor(tf.fill([batch_size, 1], tf.constant(value, tf.int32)))
        ids, types = [column(self.cls_id)], [column(0)]
        for index, segment in enumerate(segments):
            ids += [segment, column(self.sep_id)]
            types += [tf.ones_like(segment) * index, column(index)]
        ids = tf.concat(ids, axis=1)
        types = tf.concat(types, axis=1)
        shape = [None, self.seq_length]
        return {
            "input_ids": ids.to_tensor(default_value=self.pad_id, shape=shape),
            "input_mask": tf.ones_like(ids).to_tensor(default_value=0, shape=shape),
            "segment_ids": types.to_tensor(default_value=0, shape=shape),
        }

    def compute_output_spec(self, inputs):
        shape = (None, self.seq_length)
        return {name: keras.KerasTensor(shape, dtype="int32") for name in ("input_ids", "input_mask", "segment_ids")}

    def get_config(self):
        config = super().get_config()
        config.update(seq_length=self.seq_length, cls_id=self.cls_id, sep_id=self.sep_id, pad_id=self.pad_id)
        return config
