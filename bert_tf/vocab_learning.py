"""Learn a WordPiece vocab.txt from text files (`bert-learn-vocab`).

Words are produced by bert_tf's own `BasicTokenizer` (the original BERT pre-tokenization:
cleaning, CJK spacing, optional lower-casing and accent stripping, punctuation split), so the
vocabulary is learned on exactly the words `FullTokenizer` and the in-graph `BertTokenizer` will
look up. The WordPiece learning itself is tensorflow-text's learner
(`wordpiece_tokenizer_learner_lib.learn`: a frequency-threshold search that keeps every
character of the alphabet both as a word start and as a `##` continuation). keras-hub's
`compute_word_piece_vocabulary` wraps the same learner but with its own regex pre-tokenizer,
which does not split words exactly like the original.

Layout of the written file: the reserved tokens (default `[PAD] [UNK] [CLS] [SEP] [MASK]`, so
[PAD] is id 0 as the packer and the original pad with 0), then `[unused0]..[unused{n-1}]`, then the
single characters, then the learned pieces from most to least frequent. The file has at most
`vocab_size` lines; the learner aims at 95-100% of it.

Command line: learn_vocab.py (console script `bert-learn-vocab`), e.g.
  bert-learn-vocab --input_file=corpus/*.txt --output_file=vocab.txt --vocab_size=8000
"""

import collections
import time

from absl import logging

from bert_tf import files, tokenization

DEFAULT_RESERVED_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_JOINER = "##"


def count_words(input_files, do_lower_case=True, log_every_lines=100_000):
    """Counts the original BERT pre-tokenized words of every line of the given files/globs."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    basic_tokenizer = tokenization.BasicTokenizer(do_lower_case=do_lower_case)
    counts = collections.Counter()
    lines = 0
    start = time.time()
    for path in files.expand_file_patterns(input_files, "--input_file"):
        with tf.io.gfile.GFile(path, "rb") as reader:
            for number, raw_line in enumerate(reader, start=1):
                # Invalid UTF-8 would be learned as broken tokens: stop at the file and line.
                text = files.decode_utf8(raw_line, path, byte_order_mark=number == 1,
                                         first_line=number)
                counts.update(basic_tokenizer.tokenize(text))
                lines += 1
                if lines % log_every_lines == 0:
                    logging.info("read %d lines (%.0f lines/s), %d distinct words", lines,
                                 lines / (time.time() - start), len(counts))
    logging.info("read %d lines from %s: %d words, %d distinct", lines, input_files,
                 sum(counts.values()), len(counts))
    return counts


def learn_vocab_from_counts(
    word_counts,
    vocab_size,
    reserved_tokens=DEFAULT_RESERVED_TOKENS,
    num_unused=0,
    max_unique_chars=1000,
    max_token_length=50,
    lower_thresh=None,
    num_iterations=4,
):
    """Word counts -> list of vocabulary tokens (at most `vocab_size`)."""
    from tensorflow_text.tools.wordpiece_vocab import (  # pylint: disable=import-outside-toplevel
        wordpiece_tokenizer_learner_lib as learner,
    )

    reserved_tokens = list(reserved_tokens)
    unused_tokens = [f"[unused{i}]" for i in range(num_unused)]
    clash = set(reserved_tokens) & set(unused_tokens)
    if len(set(reserved_tokens)) != len(reserved_tokens) or clash:
        raise ValueError(f"reserved_tokens must be distinct and not [unusedN]: {reserved_tokens}")
    budget = vocab_size - len(unused_tokens)
    if budget <= len(reserved_tokens):
        raise ValueError(
            f"vocab_size={vocab_size} leaves no room for learned pieces after "
            f"{len(reserved_tokens)} reserved and {num_unused} unused tokens"
        )
    if not word_counts:
        raise ValueError("the input files contain no words")
    if lower_thresh is None:
        # The learner's default lower bound (10) is meant for large corpora; let small ones reach
        # smaller vocabularies' thresholds too.
        lower_thresh = 1
    learned = learner.learn(
        dict(word_counts),
        vocab_size=budget,
        reserved_tokens=reserved_tokens,
        lower_thresh=lower_thresh,
        num_iterations=num_iterations,
        max_token_length=max_token_length,
        max_unique_chars=max_unique_chars,
        include_joiner_token=True,
        joiner=_JOINER,
    )
    pieces = [token for token in learned[len(reserved_tokens):] if token not in reserved_tokens]
    if len(reserved_tokens) + len(pieces) > budget:
        pieces = _drop_rarest_pieces(pieces, budget - len(reserved_tokens))
    return reserved_tokens + unused_tokens + pieces


def _drop_rarest_pieces(pieces, keep):
    # The learner lists single characters first, then pieces from most to least frequent; the
    # characters (and their ## forms) must stay so that every word can still be covered.
    def is_character(token):
        return len(token) == 1 or (token.startswith(_JOINER) and len(token) == len(_JOINER) + 1)

    characters = [t for t in pieces if is_character(t)]
    if len(characters) > keep:
        raise ValueError(
            f"vocab_size is too small: the corpus alphabet alone needs {len(characters)} entries "
            f"(characters and their ## forms); lower max_unique_chars or raise vocab_size"
        )
    others = [t for t in pieces if not is_character(t)][: keep - len(characters)]
    kept = set(characters) | set(others)
    return [t for t in pieces if t in kept]


def write_vocab(tokens, output_file):
    """Writes one token a line, atomically (a temporary file renamed when complete)."""
    bad = [t for t in tokens if not t or t != t.strip() or "\n" in t]
    if bad:
        raise ValueError(f"tokens that cannot be written to a vocab file: {bad[:5]}")
    files.atomic_write(str(output_file), "".join(token + "\n" for token in tokens))


def learn_wordpiece_vocab(
    input_files,
    vocab_size,
    output_file,
    do_lower_case=True,
    reserved_tokens=DEFAULT_RESERVED_TOKENS,
    num_unused=0,
    max_unique_chars=1000,
    max_token_length=50,
):
    """Learns a WordPiece vocabulary from text files and writes it to `output_file`.

    Args:
      input_files: a path, glob, comma-separated globs, or a list of them; one text per line.
      vocab_size: maximum number of tokens in the file (reserved and unused ones included).
      output_file: where vocab.txt is written (atomically).
      do_lower_case: learn on lower-cased, accent-stripped words (for uncased models).
      reserved_tokens: tokens written first, in this order ([PAD] first so it is id 0).
      num_unused: number of `[unusedN]` placeholder tokens written after the reserved ones.
      max_unique_chars: size cap of the alphabet; words with rarer characters are not learned
        from (they tokenize to [UNK] unless covered).
      max_token_length: longest learned piece, in characters.

    Returns:
      The list of tokens written.
    """
    start = time.time()
    counts = count_words(input_files, do_lower_case=do_lower_case)
    if not counts:
        names = input_files if isinstance(input_files, str) else ", ".join(input_files)
        raise files.DataFormatError(f"{names}: no words in the input (every line is blank); "
                                    f"expected text, one sentence or document a line")
    tokens = learn_vocab_from_counts(
        counts,
        vocab_size,
        reserved_tokens=reserved_tokens,
        num_unused=num_unused,
        max_unique_chars=max_unique_chars,
        max_token_length=max_token_length,
    )
    write_vocab(tokens, output_file)
    logging.info("wrote %d tokens (target %d) to %s in %.1fs", len(tokens), vocab_size, output_file,
                 time.time() - start)
    return tokens
