"""Raw text -> words with character offsets, for taggers (NER) that label words, not pieces.

A word is a maximal run of non-whitespace characters, further split so that every punctuation
character and every CJK ideograph is a word of its own: the word boundaries of the original
`BasicTokenizer`, kept as (start, end) offsets into the text instead of being normalised away.
Offsets count Unicode code points (Python `str` indices), end exclusive, so
`text[start:end] == word`.

The character classes are the original tokenizer's predicates (`bert_tf.tokenization`):
whitespace is `is_whitespace` or `str.isspace()` among the characters cleaning keeps (so a
control character such as U+000C stays inside its word, where WordPiece later drops it, exactly
as the original joins "a\\x0cb" into one word); punctuation is `is_punctuation`; CJK is
`CJK_RANGES`. Nothing else is normalised here: lower-casing, accent stripping and control
characters are WordPiece's business (`BertTokenizer` / `FullTokenizer` applied to each word).

`split_words_with_offsets` is the plain-Python splitter; `split_words_with_offsets_in_graph`
does the same with core TensorFlow and tensorflow-text ops, for SavedModels.
"""

import functools
from typing import List, Tuple

from bert_tf import tokenization


def _is_word_separator(char: str) -> bool:
    if tokenization.is_removed_by_cleaning(char):
        return False
    return tokenization.is_whitespace(char) or char.isspace()


def _is_single_char_word(char: str) -> bool:
    return tokenization.is_punctuation(char) or tokenization.is_cjk_ideograph(ord(char))


def split_words_with_offsets(text) -> List[Tuple[str, int, int]]:
    """`text` (str, or UTF-8 bytes: invalid sequences become U+FFFD) -> [(word, start, end)].

    E.g. "Hi, 東京!" -> [("Hi", 0, 2), (",", 2, 3), ("東", 4, 5), ("京", 5, 6), ("!", 6, 7)].
    """
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    words = []
    start = None
    for index, char in enumerate(text):
        if _is_word_separator(char):
            if start is not None:
                words.append((text[start:index], start, index))
                start = None
        elif _is_single_char_word(char):
            if start is not None:
                words.append((text[start:index], start, index))
                start = None
            words.append((char, index, index + 1))
        elif start is None:
            start = index
    if start is not None:
        words.append((text[start:], start, len(text)))
    return words


@functools.lru_cache(maxsize=None)
def _graph_patterns():
    """(separator-or-single-char pattern, single-char pattern) as RE2 strings."""
    from bert_tf import preprocessing  # pylint: disable=import-outside-toplevel (imports TF)

    classes = preprocessing.character_classes()
    # classes["spaces"]: the separators except " " (which the tokenizer never has to replace).
    separators = "[ " + classes["spaces"][1:]
    single = f"{classes['punctuation']}|{classes['cjk']}"
    return f"{separators}|{single}", single


def split_words_with_offsets_in_graph(text):
    """tf.string [batch] -> (words, starts, ends): ragged [batch, (words)] string, int32, int32.

    The same words and code-point offsets as `split_words_with_offsets`, from core TensorFlow
    and tensorflow-text ops only. Invalid UTF-8 is first replaced by U+FFFD; the offsets refer
    to that valid text (the same text for valid input).
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import tensorflow_text as tf_text  # pylint: disable=import-outside-toplevel

    text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace",
                                        replacement_char=0xFFFD)
    delimiters, kept = _graph_patterns()
    words, byte_starts, byte_ends = tf_text.regex_split_with_offsets(text, delimiters, kept)
    # Byte offsets -> code points: the number of characters that begin before the byte offset.
    _, char_byte_starts = tf.strings.unicode_decode_with_offsets(text, "UTF-8")
    beyond_any_offset = tf.int64.max
    char_starts = char_byte_starts.to_tensor(default_value=beyond_any_offset)
    # searchsorted needs at least one column on both sides (an empty batch included); an extra
    # column of padding changes no count.
    char_starts = tf.pad(char_starts, [[0, 0], [0, 1]], constant_values=beyond_any_offset)

    def to_code_points(byte_offsets):
        dense = tf.pad(byte_offsets.to_tensor(default_value=0), [[0, 0], [0, 1]])
        counts = tf.searchsorted(char_starts, tf.cast(dense, tf.int64), side="left",
                                 out_type=tf.int32)
        return tf.RaggedTensor.from_tensor(counts, lengths=byte_offsets.row_lengths())

    return words, to_code_points(byte_starts), to_code_points(byte_ends)
