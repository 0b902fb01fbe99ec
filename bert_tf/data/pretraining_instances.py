"""Pretraining instances: the original `create_pretraining_data.py` algorithm, on all cores.

`create_pretraining_data(input_files, output_files, vocab_file_or_tokenizer, ...)` turns text
(one sentence a line, a blank line between documents) into the pretraining TFRecords of
`bert_tf.data.pretraining_records`, exactly as the original defines them (ORIGINAL_BERT_FACTS.md,
"Data creation"): one `random.Random(random_seed)` drives everything, in the original's call
order, so the same input and seed give the same records.

Two modes:

* default: the original semantics — the whole corpus in memory, shuffled and sampled as one.
  With `num_workers` > 1 the output is byte-identical for any number of workers: workers
  tokenize; the main process walks the generator through the draws only (on sentence lengths,
  in C when `_pretraining_accel` is built) and records its state every ~2,048 instances; workers
  replay the real sampling of each batch from its state and keep the encoded records; the
  main process shuffles record numbers and each worker copies its records to their places in
  the output (see `_sample_in_parallel` and `HeldRecords`).
* streaming: for corpora larger than memory. Documents are read in windows of
  `streaming_window_documents`; each window is shuffled, paired (random-next segments come from
  the same window) and its instances shuffled on its own, with its own generator (window 0 uses
  `random.Random(random_seed)`, window i `random.Random(f"{random_seed}/{i}")`). Windows are
  independent, so workers process whole windows in parallel and the output depends only on the
  input, the seed and the window size — not on the number of workers. A corpus that fits in one
  window gives exactly the default mode's output. Memory is bounded by the limits, not by the
  input: a window also ends (at a document break) once it holds `streaming_window_bytes` of
  input, and a document longer than `streaming_max_document_bytes` (a corpus without blank
  lines) is cut into pieces that count as separate documents (`_StreamingReader`).

In both modes a line longer than `max_line_bytes` is an error naming its file and line: such a
line (a file without line breaks) would be one "sentence" of which each instance uses a few
hundred tokens, and reading it would hold it whole.

Sampling works on token ids rather than token strings. Every decision of the original depends
on a token only through its identity ([CLS]/[SEP] tests, the `##` prefix for whole-word groups,
the lookup into the vocabulary list), so working on ids is the same algorithm, with 4-byte
tokens instead of strings.
"""

import array
import collections
import dataclasses
import functools
import itertools
import mmap
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import time

from absl import logging

from bert_tf import files as files_lib
from bert_tf.data import pretraining_records

try:  # C helpers of the parallel mode; optional (setup.py builds them when it can)
    from bert_tf.data import _pretraining_accel
except ImportError:  # no compiler at install time: the Python code, same output, slower
    _pretraining_accel = None
if os.environ.get("BERT_TF_NO_C_ACCEL"):  # to test the Python paths (worker processes too)
    _pretraining_accel = None

CLS_TOKEN = "[CLS]"
SEP_TOKEN = "[SEP]"
MASK_TOKEN = "[MASK]"
UNK_TOKEN = "[UNK]"
REQUIRED_TOKENS = (CLS_TOKEN, SEP_TOKEN, MASK_TOKEN, UNK_TOKEN)

UNICODE_ERRORS = ("strict", "replace", "ignore")

_LINES_PER_CHUNK = 1000
_INSTANCES_PER_BATCH = 512
# Instances per replay task in the parallel default mode: large enough that the pool's
# per-task overhead (pickling the generator state, waking its threads) stays small, small
# enough that workers finish together (~80 ms of work each).
_INSTANCES_PER_REPLAY = 2048
_LOG_EVERY_SECONDS = 10.0
# Longest input line read (bytes); a longer one is an error. Real sentences and paragraphs are
# far shorter; a longer line is a file without line breaks, which would be one "sentence".
DEFAULT_MAX_LINE_BYTES = 1 << 20
# --streaming bounds: a document longer than this is cut into pieces treated as separate
# documents (a corpus without blank lines is one huge document); a window also ends, at the
# next document break, once it holds this many bytes of input.
DEFAULT_STREAMING_MAX_DOCUMENT_BYTES = 1 << 20
DEFAULT_STREAMING_WINDOW_BYTES = 16 << 20


# ---------------------------------------------------------------------------------------------
# Random draws, bit-identical to `random.Random`'s own methods.
#
# `random.Random.shuffle` and `randint` are Python code around `getrandbits`; the sampler calls
# them hundreds of times per instance, so it inlines the same arithmetic (CPython 3.10-3.12
# `_randbelow_with_getrandbits`: k = n.bit_length(), draw k bits until the value is < n). The
# tests check these against `random.Random` itself.
# ---------------------------------------------------------------------------------------------

_SHUFFLE_PLANS = {}


def _shuffle_plan(n):
    """Fisher-Yates steps of a length-n shuffle, grouped by the number of bits each draw takes.

    Step i (from n-1 down to 1) draws j uniform in [0, i] with k = (i + 1).bit_length() bits;
    k is constant between powers of two. Returns ((k, range of i), ...), cached per n.
    """
    plan = _SHUFFLE_PLANS.get(n)
    if plan is None:
        blocks = []
        high = n - 1
        while high >= 1:
            k = (high + 1).bit_length()
            low = max(1, (1 << (k - 1)) - 1)  # the smallest i with the same k
            blocks.append((k, range(high, low - 1, -1)))
            high = low - 1
        plan = tuple(blocks)
        if n <= 4096:
            _SHUFFLE_PLANS[n] = plan
    return plan


def shuffle_like_random(items, getrandbits):
    """In-place shuffle, identical to `random.Random.shuffle` of the generator of `getrandbits`."""
    for k, steps in _shuffle_plan(len(items)):
        for i in steps:
            j = getrandbits(k)
            while j > i:
                j = getrandbits(k)
            items[i], items[j] = items[j], items[i]


def skip_shuffle_draws(n, getrandbits):
    """Makes exactly the draws of shuffling n items, without shuffling anything."""
    for k, steps in _shuffle_plan(n):
        for i in steps:
            while getrandbits(k) > i:
                pass


def shuffle_list(rng, items):
    """`rng.shuffle(items)` for a list: the same draws and order, in C when the accelerator is
    built (random.shuffle is a Python loop: 0.4 s for the 317k records of a 8 MB corpus)."""
    if _pretraining_accel is None or len(items) >= 1 << 32:
        rng.shuffle(items)
        return
    version, state, gauss_next = rng.getstate()
    rng.setstate((version, _pretraining_accel.shuffle(state, items), gauss_next))


def randbelow_like_random(n, getrandbits):
    """`random.Random.randrange(n)` for n >= 1 (so `randint(a, b)` is `a + this(b - a + 1)`)."""
    k = n.bit_length()
    j = getrandbits(k)
    while j >= n:
        j = getrandbits(k)
    return j


# ---------------------------------------------------------------------------------------------
# Vocabulary facts the sampler needs
# ---------------------------------------------------------------------------------------------


class VocabularyIds:
    """Ids of the special tokens, the vocabulary list and the `##` flags, from a tokenizer."""

    def __init__(self, tokenizer, source="vocab"):
        vocab = tokenizer.vocab
        missing = [token for token in REQUIRED_TOKENS if token not in vocab]
        if missing:
            raise ValueError(
                f"{source} lacks the special token(s) {', '.join(missing)}; a BERT vocabulary "
                f"needs {', '.join(REQUIRED_TOKENS)}")
        self.cls_id = vocab[CLS_TOKEN]
        self.sep_id = vocab[SEP_TOKEN]
        self.mask_id = vocab[MASK_TOKEN]
        # The original draws random tokens from `list(tokenizer.vocab.keys())` and converts them
        # with the vocab: with repeated lines in vocab.txt the list is shorter than the id range.
        self.word_ids = [vocab[word] for word in vocab.keys()]
        self.max_id = max(vocab.values())
        is_subword = bytearray(self.max_id + 1)
        for word, index in vocab.items():
            if word.startswith("##"):
                is_subword[index] = 1
        self.is_subword = bytes(is_subword)


# ---------------------------------------------------------------------------------------------
# The sampler: documents -> instances (the original create_instances_from_document and
# create_masked_lm_predictions, on ids)
# ---------------------------------------------------------------------------------------------

# An instance is a plain tuple (cheap to send to worker processes), the arguments of
# `ExampleEncoder.encode`:
#   (input_ids, segment_a_length, masked_lm_positions, masked_lm_ids, is_random_next)
# input_ids: `[CLS] A [SEP] B [SEP]` after masking; masked_lm_ids: the original ids at the
# sorted masked_lm_positions; is_random_next: B is a random segment (label 1).


@dataclasses.dataclass
class SamplingStats:
    """Counts accumulated while sampling (all instances of a run or of a window)."""

    documents: int = 0
    single_sentence_documents: int = 0
    document_passes: int = 0
    short_target_passes: int = 0
    instances: int = 0
    tokens: int = 0
    masked: int = 0
    random_next: int = 0

    def add(self, other):
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


class InstanceSampler:
    """Creates instances from tokenized documents with the original algorithm.

    The code follows the original's create_instances_from_document / truncate_seq_pair /
    create_masked_lm_predictions step by step (same draws, same order); it only keeps counters
    instead of intermediate lists where the result is the same.

    Args:
      vocabulary: a `VocabularyIds`.
      rng: the `random.Random` that drives every draw.
      max_seq_length, max_predictions_per_seq, masked_lm_prob, short_seq_prob,
      do_whole_word_mask: the original flags.
      documents_have_special_ids: True if some sentence contains the [CLS] or [SEP] id (the
        original then skips those positions too); False allows a faster, equivalent path.
    """

    def __init__(self, vocabulary, rng, max_seq_length, max_predictions_per_seq, masked_lm_prob,
                 short_seq_prob, do_whole_word_mask, documents_have_special_ids=True):
        self.vocabulary = vocabulary
        self.rng = rng
        self.max_seq_length = max_seq_length
        self.max_num_tokens = max_seq_length - 3
        self.max_predictions_per_seq = max_predictions_per_seq
        self.masked_lm_prob = masked_lm_prob
        self.short_seq_prob = short_seq_prob
        self.do_whole_word_mask = do_whole_word_mask
        self.documents_have_special_ids = documents_have_special_ids
        self.stats = SamplingStats()

    def instances_from_document(self, documents, document_index, emit):
        """Calls `emit(instance)` for each instance of `documents[document_index]`."""
        rng = self.rng
        random_draw = rng.random
        getrandbits = rng.getrandbits
        document = documents[document_index]
        num_sentences = len(document)
        max_num_tokens = self.max_num_tokens
        stats = self.stats
        stats.document_passes += 1

        # One target length per document (and pass); short with probability short_seq_prob.
        target_seq_length = max_num_tokens
        if random_draw() < self.short_seq_prob:
            target_seq_length = 2 + randbelow_like_random(max_num_tokens - 1, getrandbits)
            stats.short_target_passes += 1

        chunk_start = 0  # the current chunk is document[chunk_start:i + 1]
        current_length = 0
        i = 0
        while i < num_sentences:
            current_length += len(document[i])
            if i == num_sentences - 1 or current_length >= target_seq_length:
                chunk_size = i + 1 - chunk_start
                a_end = 1
                if chunk_size >= 2:
                    a_end = 1 + randbelow_like_random(chunk_size - 1, getrandbits)
                tokens_a = []
                for sentence in document[chunk_start:chunk_start + a_end]:
                    tokens_a.extend(sentence)

                tokens_b = []
                if chunk_size == 1 or random_draw() < 0.5:
                    is_random_next = True
                    target_b_length = target_seq_length - len(tokens_a)
                    # Ten tries to find another document; the last draw is used regardless.
                    for _ in range(10):
                        random_document_index = randbelow_like_random(len(documents), getrandbits)
                        if random_document_index != document_index:
                            break
                    random_document = documents[random_document_index]
                    random_start = randbelow_like_random(len(random_document), getrandbits)
                    for sentence in random_document[random_start:]:
                        tokens_b.extend(sentence)
                        if len(tokens_b) >= target_b_length:
                            break
                    # The chunk's unused sentences start the next chunk.
                    i -= chunk_size - a_end
                else:
                    is_random_next = False
                    for sentence in document[chunk_start + a_end:i + 1]:
                        tokens_b.extend(sentence)

                tokens_a, tokens_b = self._truncate_pair(tokens_a, tokens_b)
                emit(self._masked_instance(tokens_a, tokens_b, is_random_next))
                chunk_start = i + 1
                current_length = 0
            i += 1

    def _truncate_pair(self, tokens_a, tokens_b):
        """Removes tokens from the longer segment (B on ties), front or back at random.

        One draw per removed token, as the original; the removals are counted and applied once.
        """
        len_a = len(tokens_a)
        len_b = len(tokens_b)
        max_num_tokens = self.max_num_tokens
        if len_a + len_b <= max_num_tokens:
            return tokens_a, tokens_b
        random_draw = self.rng.random
        a_front = a_back = b_front = b_back = 0
        while len_a + len_b > max_num_tokens:
            if len_a > len_b:
                if random_draw() < 0.5:
                    a_front += 1
                else:
                    a_back += 1
                len_a -= 1
            else:
                if random_draw() < 0.5:
                    b_front += 1
                else:
                    b_back += 1
                len_b -= 1
        return tokens_a[a_front:a_front + len_a], tokens_b[b_front:b_front + len_b]

    def _masked_instance(self, tokens_a, tokens_b, is_random_next):
        vocabulary = self.vocabulary
        cls_id = vocabulary.cls_id
        sep_id = vocabulary.sep_id
        getrandbits = self.rng.getrandbits
        random_draw = self.rng.random

        len_a = len(tokens_a)
        len_b = len(tokens_b)
        tokens = [cls_id]
        tokens.extend(tokens_a)
        tokens.append(sep_id)
        tokens.extend(tokens_b)
        tokens.append(sep_id)
        num_tokens = len_a + len_b + 3
        num_to_predict = min(self.max_predictions_per_seq,
                             max(1, round(num_tokens * self.masked_lm_prob)))

        if not self.do_whole_word_mask and not self.documents_have_special_ids:
            # Every candidate is its own group: the first num_to_predict after the shuffle win.
            candidates = list(range(1, len_a + 1))
            candidates.extend(range(len_a + 2, len_a + 2 + len_b))
            shuffle_like_random(candidates, getrandbits)
            chosen = candidates[:num_to_predict]
        else:
            groups = []
            is_subword = vocabulary.is_subword
            whole_word = self.do_whole_word_mask
            for index, token in enumerate(tokens):
                if token == cls_id or token == sep_id:
                    continue
                if whole_word and groups and is_subword[token]:
                    groups[-1].append(index)
                else:
                    groups.append([index])
            shuffle_like_random(groups, getrandbits)
            chosen = []
            covered = set()
            for group in groups:
                if len(chosen) >= num_to_predict:
                    break
                if len(chosen) + len(group) > num_to_predict:
                    continue
                if any(index in covered for index in group):
                    continue
                covered.update(group)
                chosen.extend(group)

        positions = sorted(chosen)
        labels = [tokens[index] for index in positions]
        # 80% [MASK], 10% unchanged, 10% a random vocabulary entry — decided per piece, in the
        # shuffled order. Labels were read above, so the tokens can change in place.
        mask_id = vocabulary.mask_id
        word_ids = vocabulary.word_ids
        num_words = len(word_ids)
        word_bits = num_words.bit_length()
        for index in chosen:
            if random_draw() < 0.8:
                tokens[index] = mask_id
            elif random_draw() < 0.5:
                pass
            else:
                j = getrandbits(word_bits)
                while j >= num_words:
                    j = getrandbits(word_bits)
                tokens[index] = word_ids[j]

        stats = self.stats
        stats.instances += 1
        stats.tokens += num_tokens
        stats.masked += len(positions)
        stats.random_next += is_random_next
        return (tokens, len_a, positions, labels, is_random_next)

    # ------------------------------------------------------------------------------------------
    # Draw accounting (parallel default mode)
    # ------------------------------------------------------------------------------------------

    def account_document(self, sentence_lengths, document_index):
        """Makes exactly the draws of `instances_from_document` and counts its instances, from
        sentence lengths alone; returns the number of instances.

        Without whole-word masking and without [CLS]/[SEP] ids inside sentences, every draw of
        the original depends on the document only through sentence lengths: which sentences
        form A and B, how many tokens truncation removes, how many candidates are shuffled and
        how many pieces get the 80/10/10 draw. The main process makes this walk, recording the
        generator state every few documents, and worker processes replay the real sampling
        from those states in parallel. This Python version is the reference (about a quarter of
        the cost of sampling); `account_documents` uses the same walk in C
        (`_pretraining_accel.account`, about 6x faster) when it is built.
        """
        if self.do_whole_word_mask or self.documents_have_special_ids:
            raise ValueError("draw accounting needs per-piece masking and plain sentences")
        rng = self.rng
        random_draw = rng.random
        getrandbits = rng.getrandbits
        lengths = sentence_lengths[document_index]
        num_sentences = len(lengths)
        max_num_tokens = self.max_num_tokens
        max_predictions = self.max_predictions_per_seq
        masked_lm_prob = self.masked_lm_prob
        num_words = len(self.vocabulary.word_ids)
        word_bits = num_words.bit_length()
        stats = self.stats
        stats.document_passes += 1

        target_seq_length = max_num_tokens
        if random_draw() < self.short_seq_prob:
            target_seq_length = 2 + randbelow_like_random(max_num_tokens - 1, getrandbits)
            stats.short_target_passes += 1

        instances = tokens_total = masked_total = random_next_total = 0
        chunk_start = 0
        current_length = 0
        i = 0
        while i < num_sentences:
            current_length += lengths[i]
            if i == num_sentences - 1 or current_length >= target_seq_length:
                chunk_size = i + 1 - chunk_start
                a_end = 1
                if chunk_size >= 2:
                    a_end = 1 + randbelow_like_random(chunk_size - 1, getrandbits)
                len_a = sum(lengths[chunk_start:chunk_start + a_end])
                if chunk_size == 1 or random_draw() < 0.5:
                    random_next_total += 1
                    target_b_length = target_seq_length - len_a
                    for _ in range(10):
                        random_document_index = randbelow_like_random(len(sentence_lengths),
                                                                      getrandbits)
                        if random_document_index != document_index:
                            break
                    random_lengths = sentence_lengths[random_document_index]
                    random_start = randbelow_like_random(len(random_lengths), getrandbits)
                    len_b = 0
                    for length in random_lengths[random_start:]:
                        len_b += length
                        if len_b >= target_b_length:
                            break
                    i -= chunk_size - a_end
                else:
                    len_b = sum(lengths[chunk_start + a_end:i + 1])

                while len_a + len_b > max_num_tokens:  # one draw per removed token
                    random_draw()
                    if len_a > len_b:
                        len_a -= 1
                    else:
                        len_b -= 1
                num_candidates = len_a + len_b
                num_to_predict = min(max_predictions,
                                     max(1, round((num_candidates + 3) * masked_lm_prob)))
                skip_shuffle_draws(num_candidates, getrandbits)  # the candidate shuffle
                num_masked = min(num_to_predict, num_candidates)
                for _ in range(num_masked):
                    if random_draw() < 0.8:
                        pass
                    elif random_draw() < 0.5:
                        pass
                    else:
                        while getrandbits(word_bits) >= num_words:
                            pass
                instances += 1
                tokens_total += num_candidates + 3
                masked_total += num_masked
                chunk_start = i + 1
                current_length = 0
            i += 1
        stats.instances += instances
        stats.tokens += tokens_total
        stats.masked += masked_total
        stats.random_next += random_next_total
        return instances

    def account_documents(self, lengths, first, max_instances, accelerated=True):
        """`account_document` for documents first, first + 1, ... until at least
        `max_instances` instances were counted or the documents end; returns the index of the
        next document.

        `lengths` is a `SentenceLengths`. With `accelerated` and the C module built, the walk
        runs in C (`_pretraining_accel.c`, about 6x faster: it is the main serial part of the
        parallel mode); the generator ends in the same state either way.
        """
        if self.do_whole_word_mask or self.documents_have_special_ids:
            raise ValueError("draw accounting needs per-piece masking and plain sentences")
        if accelerated and _pretraining_accel is not None:
            version, state, gauss_next = self.rng.getstate()
            (state, next_document, instances, tokens, masked, random_next,
             short_targets) = _pretraining_accel.account(
                 state, lengths.flat, lengths.starts, first, max_instances, self.max_num_tokens,
                 self.max_predictions_per_seq, self.masked_lm_prob, self.short_seq_prob,
                 len(self.vocabulary.word_ids))
            self.rng.setstate((version, state, gauss_next))
            stats = self.stats
            stats.document_passes += next_document - first
            stats.short_target_passes += short_targets
            stats.instances += instances
            stats.tokens += tokens
            stats.masked += masked
            stats.random_next += random_next
            return next_document
        document_index = first
        instances = 0
        while document_index < len(lengths.nested) and instances < max_instances:
            instances += self.account_document(lengths.nested, document_index)
            document_index += 1
        return document_index


class SentenceLengths:
    """The token count of every sentence, per document: a flat int32 array with per-document
    int64 offsets (what the C walk reads), and, built only if the Python walk asks for it, the
    same as nested lists."""

    def __init__(self, documents):
        self.flat = array.array("i", [len(sentence) for document in documents
                                      for sentence in document])
        self.starts = array.array("q", itertools.accumulate(map(len, documents), initial=0))

    @functools.cached_property
    def nested(self):
        starts = self.starts
        return [self.flat[starts[d]:starts[d + 1]].tolist() for d in range(len(starts) - 1)]


# ---------------------------------------------------------------------------------------------
# Input: files -> chunks of lines -> token ids -> documents
# ---------------------------------------------------------------------------------------------


def expand_input_files(input_files):
    """Comma-separated globs (or a list of them) -> existing, non-empty files, in order."""
    return files_lib.expand_file_patterns(input_files, "input_file", allow_empty_files=False)


def read_lines(path, max_line_bytes=DEFAULT_MAX_LINE_BYTES):
    """Yields the raw lines (bytes, with their b"\\n") of `path`, holding at most
    `max_line_bytes` + 1 bytes of any line: a longer line is a ValueError naming the file and
    line (0: no limit). Lines end at b"\\n" only, as with the original's readline."""
    with open(path, "rb") as reader:
        if not max_line_bytes:
            yield from reader
            return
        readline = reader.readline
        line_number = 0
        while True:
            line = readline(max_line_bytes + 1)
            if not line:
                return
            line_number += 1
            if len(line) > max_line_bytes and not line.endswith(b"\n"):
                raise files_lib.DataFormatError(
                    f"{path}:{line_number}: line longer than {max_line_bytes:,} bytes "
                    f"(--max_line_bytes); the input must have one sentence per line and a blank "
                    f"line between documents: split the text into sentences (or raise "
                    f"--max_line_bytes, or pass 0 for no limit)")
            yield line


def iter_line_chunks(input_files, lines_per_chunk=_LINES_PER_CHUNK,
                     max_line_bytes=DEFAULT_MAX_LINE_BYTES):
    """Yields (path, first_line_number, [raw line bytes]) in input order.

    Lines end at b"\\n" only (as the original's readline); line numbers are 1-based; lines
    longer than `max_line_bytes` are an error (`read_lines`).
    """
    for path in input_files:
        lines = []
        first_line = 1
        for line in read_lines(path, max_line_bytes):
            lines.append(line)
            if len(lines) >= lines_per_chunk:
                yield path, first_line, lines
                first_line += len(lines)
                lines = []
        if lines:
            yield path, first_line, lines


DOCUMENT_BREAK = -1


def tokenize_chunk(tokenizer, chunk, unicode_errors="strict"):
    """Tokenizes one chunk of lines.

    Returns (ids, lengths): `ids` an array of all token ids of the chunk, `lengths` one entry
    per line: DOCUMENT_BREAK for a blank line (after stripping), else its number of tokens.
    """
    path, first_line, lines = chunk
    ids = array.array("i")
    lengths = array.array("i")
    tokenize = tokenizer.tokenize
    convert = tokenizer.convert_tokens_to_ids
    for offset, raw in enumerate(lines):
        try:
            line = raw.decode("utf-8", unicode_errors)
        except UnicodeDecodeError as error:
            raise files_lib.DataFormatError(
                f"{path}:{first_line + offset}: invalid UTF-8 at byte {error.start} of the line "
                f"({raw[max(0, error.start - 10):error.start + 10]!r}); fix the file or pass "
                f"unicode_errors='replace' (--unicode_errors=replace)") from None
        line = line.strip()
        if not line:
            lengths.append(DOCUMENT_BREAK)
            continue
        tokens = tokenize(line)
        try:
            token_ids = convert(tokens)
        except KeyError as error:
            raise ValueError(
                f"{path}:{first_line + offset}: the tokenizer produced {error.args[0]!r}, which "
                f"is not in its vocabulary") from None
        ids.extend(token_ids)
        lengths.append(len(token_ids))
    return ids, lengths


class DocumentAssembler:
    """Collects tokenized chunks into documents: a blank line ends a document.

    Documents continue across chunks and files unless a blank line separates them; empty
    documents are dropped by `documents()`. Each sentence is an `array('i')` of ids.
    """

    def __init__(self, special_ids=()):
        self._documents = [[]]
        self._special_ids = tuple(special_ids)
        self.has_special_ids = False  # does any sentence contain one of `special_ids`?
        self.lines = 0
        self.tokens = 0

    def add(self, ids, lengths):
        documents = self._documents
        current = documents[-1]
        offset = 0
        for length in lengths:
            if length == DOCUMENT_BREAK:
                current = []
                documents.append(current)
            elif length:
                current.append(ids[offset:offset + length])
                offset += length
        self.lines += len(lengths)
        self.tokens += len(ids)
        if not self.has_special_ids and self._special_ids and len(ids):
            import numpy as np  # pylint: disable=import-outside-toplevel

            # (`special in ids` on an array makes a Python int per element: 3x slower.)
            values = np.frombuffer(ids, dtype=np.int32)
            self.has_special_ids = bool(np.isin(values, self._special_ids).any())

    def documents(self):
        return [document for document in self._documents if document]


# ---------------------------------------------------------------------------------------------
# Worker processes
# ---------------------------------------------------------------------------------------------

_worker_state = {}


def _init_worker(tokenizer, encoder, unicode_errors, sampler_options, barrier):
    _worker_state.update(tokenizer=tokenizer, encoder=encoder, unicode_errors=unicode_errors,
                         sampler_options=sampler_options, crc=pretraining_records.Crc32c(),
                         barrier=barrier)


def _worker_tokenize(chunk):
    return tokenize_chunk(_worker_state["tokenizer"], chunk, _worker_state["unicode_errors"])


def encode_and_frame(encoder, crc, instances):
    """Instances -> TFRecord-framed serialized Examples."""
    encode = encoder.encode
    return crc.frame([encode(*instance) for instance in instances])


def _worker_encode(instances):
    return encode_and_frame(_worker_state["encoder"], _worker_state["crc"], instances)


class SharedCorpus:
    """Tokenized documents in one flat file of int32 ids that worker processes map read-only.

    Layout: the ids of all sentences, in document order; then, per sentence, its end offset;
    then, per document, the index of its last sentence + 1 (all int32). The header holds the
    three counts.
    """

    def __init__(self, path):
        self.path = path

    @classmethod
    def write(cls, documents, directory=None):
        fd, path = tempfile.mkstemp(prefix="bert_tf_corpus_", suffix=".bin", dir=directory)
        sentence_ends = array.array("q")
        document_ends = array.array("q")
        total = 0
        with os.fdopen(fd, "wb") as f:
            f.write(b"\0" * 24)  # header, filled below
            for document in documents:
                for sentence in document:
                    sentence.tofile(f)
                    total += len(sentence)
                    sentence_ends.append(total)
                document_ends.append(len(sentence_ends))
            sentence_ends.tofile(f)
            document_ends.tofile(f)
            f.seek(0)
            array.array("q", [total, len(sentence_ends), len(document_ends)]).tofile(f)
        return cls(path)

    def load(self):
        """The documents as lists of memoryview slices over the mapped file."""
        with open(self.path, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        view = memoryview(mapped)
        total, num_sentences, num_documents = view[:24].cast("q")
        ids = view[24:24 + 4 * total].cast("i")
        offset = 24 + 4 * total
        sentence_ends = view[offset:offset + 8 * num_sentences].cast("q").tolist()
        offset += 8 * num_sentences
        document_ends = view[offset:offset + 8 * num_documents].cast("q").tolist()
        documents = []
        sentence = 0
        start = 0
        for document_end in document_ends:
            document = []
            while sentence < document_end:
                end = sentence_ends[sentence]
                document.append(ids[start:end])
                start = end
                sentence += 1
            documents.append(document)
        return documents

    def remove(self):
        if os.path.exists(self.path):
            os.remove(self.path)


def _state_digest(rng):
    # The Mersenne Twister words only: hash(None) (the state's gauss_next) is address-based in
    # Python 3.11 and differs between processes.
    return hash(rng.getstate()[1])


class HeldRecords:
    """Framed records that stay in the worker processes that made them until they are written.

    Records never pass through the pool's pipes or a scratch file: each replay task's records
    stay in its worker's memory as one blob, and the worker returns only (pid, blob index,
    record lengths). To write, the main process shuffles record *numbers* (the same draws as
    shuffling the records), computes every record's output file and offset, sizes the output
    files, and each worker copies its own records into a shared mapping of them (one task per
    worker, held together by a barrier). GZIP output is one stream: the workers then fill
    uncompressed scratch files that the main process compresses in order.
    """

    def __init__(self, directory=None):
        self.directory = tempfile.mkdtemp(prefix="bert_tf_records_", dir=directory)
        self.token = os.path.basename(self.directory)  # names this run's blobs in the workers
        self.blobs = []  # (pid, blob index, number of records), in sampling order
        self.lengths = array.array("I")

    @staticmethod
    def hold(token, records):
        """In a worker: keeps `records` (framed bytes) joined; returns where they are."""
        held = _worker_state.get("held")
        if held is None or held[0] != token:
            held = _worker_state["held"] = (token, [])
        held[1].append(b"".join(records))
        return os.getpid(), len(held[1]) - 1, array.array("I", map(len, records))

    def add(self, location):
        """In the main process: records what `hold` returned, in sampling order."""
        pid, index, lengths = location
        self.blobs.append((pid, index, len(lengths)))
        self.lengths.extend(lengths)

    def __len__(self):
        return len(self.lengths)

    def write_shuffled(self, rng, writer, pool, progress=None):
        """Writes the records in the order `rng.shuffle(records)` would give (the same draws),
        round-robin over the writer's files (record j to file j mod n)."""
        import numpy as np  # pylint: disable=import-outside-toplevel

        order = list(range(len(self)))
        shuffle_list(rng, order)
        order = np.array(order, dtype=np.int64)
        lengths = np.frombuffer(self.lengths, np.uint32).astype(np.int64)
        num_files = len(writer.output_files)
        out_file = np.empty(len(order), np.uint16)
        out_offset = np.empty(len(order), np.int64)
        paths = []
        for k in range(num_files):
            positions = order[k::num_files]
            sizes = lengths[positions]
            total = int(sizes.sum())
            if writer.compressed:
                path, base = os.path.join(self.directory, f"output-{k}.bin"), 0
                with open(path, "wb") as f:
                    f.truncate(total)
            else:
                path, base = writer.claim_region(k, total, len(positions))
            paths.append(path)
            out_file[positions] = k
            out_offset[positions] = base + np.cumsum(sizes) - sizes
        # Each worker's records, in the order it holds them.
        starts = np.concatenate([[0], np.cumsum([count for _, _, count in self.blobs])])
        per_worker = collections.defaultdict(list)
        for (pid, index, count), start in zip(self.blobs, starts.tolist()):
            per_worker[pid].append((index, start, count))
        assignments = {}
        for pid, blobs in per_worker.items():
            blobs.sort()
            records = np.concatenate([np.arange(start, start + count, dtype=np.int64)
                                      for _, start, count in blobs])
            assignments[pid] = ([index for index, _, _ in blobs],
                                out_file[records].tobytes(), out_offset[records].tobytes())
        task = (self.token, paths, assignments)
        results = [pool.submit(_worker_scatter, task) for _ in range(pool.num_workers)]
        written = sum(result.get() for result in results)
        if written != len(order):
            raise RuntimeError(f"internal error: workers wrote {written} of {len(order)} records")
        if writer.compressed:
            for k, path in enumerate(paths):
                count = len(range(k, len(order), num_files))
                with open(path, "rb") as f:
                    while True:
                        data = f.read(1 << 24)
                        if not data:
                            break
                        writer.write_framed_block(k, data, count)
                        count = 0
        if progress is not None:
            progress.update(len(order))

    def remove(self):
        shutil.rmtree(self.directory, ignore_errors=True)


_SCATTER_TIMEOUT_SECONDS = 600


def _worker_scatter(task):
    """One per worker (a barrier makes sure of it): copies this worker's held records into the
    shared mappings of the output files; returns how many it wrote."""
    token, paths, assignments = task
    # A worker that finished its task early must not take a second one.
    _worker_state["barrier"].wait(_SCATTER_TIMEOUT_SECONDS)
    held = _worker_state.pop("held", None)
    assignment = assignments.get(os.getpid())
    if assignment is None:
        return 0
    if held is None or held[0] != token:
        raise RuntimeError("internal error: a worker lost the records it held")
    indices, out_file, out_offset = assignment
    out_file = array.array("H", out_file)
    out_offset = array.array("q", out_offset)
    maps = []
    views = []
    record = 0
    try:
        for path in paths:
            with open(path, "r+b") as f:
                mapped = mmap.mmap(f.fileno(), 0) if os.fstat(f.fileno()).st_size else None
            maps.append(mapped)
            views.append(memoryview(mapped) if mapped is not None else None)
        targets = [m if m is not None else bytearray() for m in maps]
        for index in indices:
            if _pretraining_accel is not None:
                record += _pretraining_accel.scatter(held[1][index], targets, out_file,
                                                     out_offset, record)
            else:
                blob = memoryview(held[1][index])
                start = 0
                while start < len(blob):
                    # A framed record: its length (8 bytes), a CRC, the data, a CRC.
                    end = start + 16 + int.from_bytes(blob[start:start + 8], "little")
                    offset = out_offset[record]
                    views[out_file[record]][offset:offset + end - start] = blob[start:end]
                    start = end
                    record += 1
                blob.release()
            held[1][index] = None  # free as we go
    finally:
        for view in views:
            if view is not None:
                view.release()
        for mapped in maps:
            if mapped is not None:
                mapped.close()
    return record


def _worker_replay(task):
    """Samples documents from a recorded generator state: the same instances the main process
    would have made; the records stay in this worker (`HeldRecords`)."""
    corpus_path, state, document_indices, has_special_ids, token = task
    cache = _worker_state.setdefault("corpus", {})
    if corpus_path not in cache:
        cache.clear()
        cache[corpus_path] = SharedCorpus(corpus_path).load()
    documents = cache[corpus_path]
    options = _worker_state["sampler_options"]
    rng = random.Random()
    rng.setstate(state)
    sampler = _make_sampler(options["vocabulary"], rng, options, has_special_ids)
    instances = []
    for document_index in document_indices:
        sampler.instances_from_document(documents, document_index, instances.append)
    records = encode_and_frame(_worker_state["encoder"], _worker_state["crc"], instances)
    return HeldRecords.hold(token, records), _state_digest(rng)


def _window_seed(random_seed, window_index):
    return random_seed if window_index == 0 else f"{random_seed}/{window_index}"


def _special_ids(vocabulary):
    return (vocabulary.cls_id, vocabulary.sep_id)


def _worker_window(task):
    window_index, chunks = task
    state = _worker_state
    options = dict(state["sampler_options"])
    vocabulary = options["vocabulary"]
    assembler = DocumentAssembler(_special_ids(vocabulary))
    for chunk in chunks:
        assembler.add(*tokenize_chunk(state["tokenizer"], chunk, state["unicode_errors"]))
    return _sample_window(assembler, window_index, options, vocabulary, state["encoder"],
                          state["crc"])


def _sample_window(assembler, window_index, options, vocabulary, encoder, crc,
                   on_instances=None):
    """Samples, encodes and shuffles one streaming window; `on_instances(count)` (progress)
    is called as instances are made."""
    documents = assembler.documents()
    if not documents:
        return [], SamplingStats(), assembler.lines
    rng = random.Random(_window_seed(options["random_seed"], window_index))
    sampler = _make_sampler(vocabulary, rng, options, assembler.has_special_ids)
    shuffle_list(rng, documents)
    sampler.stats.documents = len(documents)
    sampler.stats.single_sentence_documents = sum(len(d) == 1 for d in documents)
    # Instances are encoded as they come (an instance is ~5x its record in Python objects);
    # encoding makes no draws, so the records are those of encoding all at the end.
    records = []
    batch = []
    for _ in range(options["dupe_factor"]):
        for document_index in range(len(documents)):
            sampler.instances_from_document(documents, document_index, batch.append)
            if len(batch) >= _INSTANCES_PER_BATCH:
                records.extend(encode_and_frame(encoder, crc, batch))
                batch = []
                if on_instances is not None:
                    on_instances(len(records))
    records.extend(encode_and_frame(encoder, crc, batch))
    del batch, documents
    shuffle_list(rng, records)
    return records, sampler.stats, assembler.lines


def _make_sampler(vocabulary, rng, options, documents_have_special_ids):
    return InstanceSampler(
        vocabulary, rng, max_seq_length=options["max_seq_length"],
        max_predictions_per_seq=options["max_predictions_per_seq"],
        masked_lm_prob=options["masked_lm_prob"], short_seq_prob=options["short_seq_prob"],
        do_whole_word_mask=options["do_whole_word_mask"],
        documents_have_special_ids=documents_have_special_ids)


def _start_method():
    # fork starts workers in milliseconds and shares the tokenizer copy-on-write, but is unsafe
    # once TensorFlow (its threads) is loaded in this process, as in a notebook or a test run;
    # spawn is always safe. The output does not depend on the choice.
    if "fork" in multiprocessing.get_all_start_methods() and "tensorflow" not in sys.modules:
        return "fork"
    return "spawn"


class _Pool:
    """A process pool with ordered, bounded-in-flight mapping."""

    def __init__(self, num_workers, initargs):
        context = multiprocessing.get_context(_start_method())
        self._pool = context.Pool(num_workers, initializer=_init_worker,
                                  initargs=tuple(initargs) + (context.Barrier(num_workers),))
        self.num_workers = num_workers

    def imap_ordered(self, func, tasks, max_in_flight=None):
        """Like Pool.imap, but never more than `max_in_flight` tasks queued or unread."""
        max_in_flight = max_in_flight or 2 * self.num_workers + 1
        pending = collections.deque()
        for task in tasks:
            pending.append(self._pool.apply_async(func, (task,)))
            if len(pending) >= max_in_flight:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()

    def submit(self, func, task):
        return self._pool.apply_async(func, (task,))

    def close(self):
        self._pool.close()
        self._pool.join()

    def terminate(self):
        self._pool.terminate()
        self._pool.join()


# ---------------------------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------------------------


class _Progress:
    def __init__(self, what, total=None, unit="items"):
        self.what = what
        self.total = total
        self.unit = unit
        self.start = time.monotonic()
        self._last = self.start

    def update(self, done, extra="", instances=None):
        """Logs (at most every few seconds) progress, rate, ETA and optionally instances/s."""
        now = time.monotonic()
        if now - self._last < _LOG_EVERY_SECONDS:
            return
        self._last = now
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        if self.unit == "bytes":
            message = f"{self.what}: {done / 1e6:,.1f} MB"
            if self.total:
                message += f" of {self.total / 1e6:,.1f} MB ({100.0 * done / self.total:.1f}%)"
            message += f", {rate / 1e6:,.2f} MB/s"
        else:
            message = f"{self.what}: {done:,} {self.unit}"
            if self.total:
                message += f" of {self.total:,} ({100.0 * done / self.total:.1f}%)"
            message += f", {rate:,.0f} {self.unit}/s"
        if instances is not None:
            message += f", {instances:,} instances ({instances / elapsed:,.0f} instances/s)"
        if self.total and rate > 0:
            message += f", ETA {_format_seconds((self.total - done) / rate)}"
        if extra:
            message += f", {extra}"
        logging.info("%s", message)


def _format_seconds(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# ---------------------------------------------------------------------------------------------
# The library entry point
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class PretrainingDataSummary:
    """What `create_pretraining_data` wrote."""

    input_files: list
    documents: int
    instances: int
    tokens: int
    masked: int
    random_next: int
    short_target_fraction: float
    single_sentence_documents: int
    output_files: dict  # path -> size in bytes
    records_per_file: dict
    seconds: float
    streaming: bool
    windows: int = 1

    @property
    def masked_fraction(self):
        return self.masked / self.tokens if self.tokens else 0.0

    @property
    def random_next_fraction(self):
        return self.random_next / self.instances if self.instances else 0.0

    @property
    def instances_per_second(self):
        return self.instances / self.seconds if self.seconds else 0.0

    def __str__(self):
        lines = [
            f"documents: {self.documents:,} ({self.single_sentence_documents:,} with a single "
            f"sentence)" + (f" in {self.windows:,} windows" if self.streaming else ""),
            f"instances: {self.instances:,} in {self.seconds:.1f} s "
            f"({self.instances_per_second:,.0f} instances/s)",
            f"tokens: {self.tokens:,} ({self.tokens / max(1, self.instances):.1f} per instance)",
            f"masked fraction: {self.masked_fraction:.4f}",
            f"random-next fraction: {self.random_next_fraction:.4f}",
            f"short-target fraction: {self.short_target_fraction:.4f}",
        ]
        for path, size in self.output_files.items():
            lines.append(f"wrote {path}: {self.records_per_file[path]:,} records, {size:,} bytes")
        return "\n".join(lines)


def _check_arguments(max_seq_length, max_predictions_per_seq, masked_lm_prob, short_seq_prob,
                     dupe_factor, num_workers, unicode_errors, streaming_window_documents,
                     streaming_window_bytes, streaming_max_document_bytes, max_line_bytes):
    if max_seq_length < 5:
        raise ValueError(
            f"max_seq_length={max_seq_length} is too small: [CLS] A [SEP] B [SEP] needs at least "
            f"5 positions (2 tokens of text)")
    if max_predictions_per_seq < 1:
        raise ValueError(f"max_predictions_per_seq={max_predictions_per_seq}: must be >= 1")
    if not 0.0 < masked_lm_prob <= 1.0:
        raise ValueError(f"masked_lm_prob={masked_lm_prob}: must be in (0, 1]")
    if not 0.0 <= short_seq_prob <= 1.0:
        raise ValueError(f"short_seq_prob={short_seq_prob}: must be in [0, 1]")
    if dupe_factor < 1:
        raise ValueError(f"dupe_factor={dupe_factor}: must be >= 1")
    if num_workers < 1:
        raise ValueError(f"num_workers={num_workers}: must be >= 1")
    if unicode_errors not in UNICODE_ERRORS:
        raise ValueError(f"unicode_errors={unicode_errors!r}: expected one of {UNICODE_ERRORS}")
    if streaming_window_documents < 2:
        raise ValueError(
            f"streaming_window_documents={streaming_window_documents}: must be >= 2")
    if streaming_window_bytes < 1:
        raise ValueError(f"streaming_window_bytes={streaming_window_bytes}: must be >= 1")
    if streaming_max_document_bytes < 1:
        raise ValueError(
            f"streaming_max_document_bytes={streaming_max_document_bytes}: must be >= 1")
    if max_line_bytes < 0:
        raise ValueError(f"max_line_bytes={max_line_bytes}: must be >= 0 (0: no limit)")


def _warn_if_too_large_for_memory(input_bytes, dupe_factor, max_seq_length):
    """The default mode holds the corpus and every record in memory (as the original): warns,
    pointing to --streaming, when that estimate exceeds half of the machine's RAM."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    # Measured: 10 MB of text -> 149 MB of records at dupe_factor 10, length 128; plus the
    # tokens (4 bytes each, ~1 per 4 bytes of text) and Python overhead.
    estimate = input_bytes * (1.5 * dupe_factor * max_seq_length / 128 + 3)
    if estimate > ram / 2:
        logging.warning(
            "The default mode keeps the whole corpus and all its records in memory (as the "
            "original does): about %.1f GB for these %.1f MB of input, more than half of this "
            "machine's %.1f GB of RAM. Use --streaming for bounded memory.", estimate / 1e9,
            input_bytes / 1e6, ram / 1e9)


def _make_tokenizer(vocab_file_or_tokenizer, do_lower_case):
    if isinstance(vocab_file_or_tokenizer, (str, os.PathLike)):
        from bert_tf.tokenization import FullTokenizer  # pylint: disable=import-outside-toplevel

        vocab_file = os.fspath(vocab_file_or_tokenizer)
        if not os.path.isfile(vocab_file) and "://" not in vocab_file:
            raise FileNotFoundError(f"vocab_file: {vocab_file!r} does not exist")
        return FullTokenizer(vocab_file, do_lower_case=do_lower_case), f"vocab_file {vocab_file!r}"
    return vocab_file_or_tokenizer, "the tokenizer's vocab"


def create_pretraining_data(input_files, output_files, vocab_file_or_tokenizer,
                            do_lower_case=True, do_whole_word_mask=False, max_seq_length=128,
                            max_predictions_per_seq=20, random_seed=12345, dupe_factor=10,
                            masked_lm_prob=0.15, short_seq_prob=0.1, num_workers=1,
                            streaming=False, streaming_window_documents=10000, gzip=False,
                            unicode_errors="strict",
                            streaming_window_bytes=DEFAULT_STREAMING_WINDOW_BYTES,
                            streaming_max_document_bytes=DEFAULT_STREAMING_MAX_DOCUMENT_BYTES,
                            max_line_bytes=DEFAULT_MAX_LINE_BYTES):
    """Creates pretraining TFRecords from text files (the original create_pretraining_data).

    Args:
      input_files: comma-separated globs or a list of paths/globs; one sentence per line, a
        blank line between documents.
      output_files: comma-separated paths or a list; records go round-robin across them.
      vocab_file_or_tokenizer: a vocab.txt path (a `FullTokenizer` is built with
        `do_lower_case`) or a tokenizer object with `tokenize`, `convert_tokens_to_ids` and
        `vocab` (picklable when num_workers > 1).
      do_lower_case, do_whole_word_mask, max_seq_length, max_predictions_per_seq, random_seed,
      dupe_factor, masked_lm_prob, short_seq_prob: the original flags and defaults.
      num_workers: processes. Default mode: the output is identical for any value.
      streaming: bounded-memory mode (see the module docstring for how it differs).
      streaming_window_documents: documents per streaming window.
      streaming_window_bytes: a streaming window also ends, at the next document break, once
        it holds this many bytes of input.
      streaming_max_document_bytes: in streaming mode, a document longer than this is cut
        (after the line that reaches it) into pieces treated as separate documents.
      max_line_bytes: a longer input line is an error naming file and line (0: no limit).
      gzip: write GZIP-compressed TFRecords.
      unicode_errors: "strict" (default: invalid UTF-8 is an error naming file and line),
        "replace" (U+FFFD, which the tokenizer then drops) or "ignore".

    Returns:
      A `PretrainingDataSummary`. No output file exists unless the whole run succeeded.
    """
    start = time.monotonic()
    _check_arguments(max_seq_length, max_predictions_per_seq, masked_lm_prob, short_seq_prob,
                     dupe_factor, num_workers, unicode_errors, streaming_window_documents,
                     streaming_window_bytes, streaming_max_document_bytes, max_line_bytes)
    if isinstance(output_files, str):
        output_files = [path.strip() for path in output_files.split(",") if path.strip()]
    pretraining_records.check_output_files(output_files)  # before any slow work
    input_paths = expand_input_files(input_files)
    tokenizer, vocab_source = _make_tokenizer(vocab_file_or_tokenizer, do_lower_case)
    vocabulary = VocabularyIds(tokenizer, vocab_source)
    encoder = pretraining_records.ExampleEncoder(max_seq_length, max_predictions_per_seq,
                                                 vocabulary.max_id)
    options = dict(vocabulary=vocabulary, random_seed=random_seed, dupe_factor=dupe_factor,
                   max_seq_length=max_seq_length, max_predictions_per_seq=max_predictions_per_seq,
                   masked_lm_prob=masked_lm_prob, short_seq_prob=short_seq_prob,
                   do_whole_word_mask=do_whole_word_mask)
    input_bytes = sum(os.path.getsize(p) for p in input_paths)
    logging.info("Creating pretraining data from %d file(s) (%s bytes) with %d worker(s)%s",
                 len(input_paths), f"{input_bytes:,}", num_workers,
                 ", streaming" if streaming else "")
    if not streaming:
        _warn_if_too_large_for_memory(input_bytes, dupe_factor, max_seq_length)

    pool = None
    if num_workers > 1:
        pool = _Pool(num_workers, (tokenizer, encoder, unicode_errors, options))
    try:
        writer = pretraining_records.RecordFileWriter(output_files, gzip=gzip)
        with writer:
            if streaming:
                limits = dict(window_documents=streaming_window_documents,
                              window_bytes=streaming_window_bytes,
                              document_bytes=streaming_max_document_bytes,
                              max_line_bytes=max_line_bytes)
                stats, windows = _run_streaming(input_paths, tokenizer, encoder, unicode_errors,
                                                options, limits, pool, writer)
            else:
                stats = _run_in_memory(input_paths, tokenizer, encoder, unicode_errors, options,
                                       pool, writer, max_line_bytes)
                windows = 1
            if stats.documents == 0:
                raise ValueError(
                    f"no usable documents in {', '.join(input_paths)}: every line is blank or "
                    f"tokenizes to nothing")
            if stats.documents < 2:
                raise ValueError(
                    f"only one document in {', '.join(input_paths)}: next-sentence pairs need "
                    f"at least two documents separated by a blank line")
            sizes = writer.close()
        if pool is not None:
            pool.close()
            pool = None
    finally:
        if pool is not None:
            pool.terminate()

    summary = PretrainingDataSummary(
        input_files=input_paths, documents=stats.documents, instances=stats.instances,
        tokens=stats.tokens, masked=stats.masked, random_next=stats.random_next,
        short_target_fraction=(stats.short_target_passes / stats.document_passes
                               if stats.document_passes else 0.0),
        single_sentence_documents=stats.single_sentence_documents, output_files=sizes,
        records_per_file=dict(zip(writer.output_files, writer.num_records)),
        seconds=time.monotonic() - start, streaming=streaming, windows=windows)
    for line in str(summary).split("\n"):
        logging.info("%s", line)
    return summary


def _chunk_bytes(chunk):
    return sum(map(len, chunk[2]))


class _ByteCounter:
    """Passes chunks through and remembers their sizes, to report progress in input bytes."""

    def __init__(self, chunks):
        self._chunks = chunks
        self._sizes = collections.deque()
        self.done = 0

    def __iter__(self):
        for chunk in self._chunks:
            self._sizes.append(sum(_chunk_bytes(c) for c in chunk)
                               if isinstance(chunk, list) else _chunk_bytes(chunk))
            yield chunk

    def finished_one(self):
        self.done += self._sizes.popleft()
        return self.done


def _read_documents(input_paths, tokenizer, unicode_errors, pool, special_ids, max_line_bytes):
    """Returns (documents, whether a sentence contains one of special_ids)."""
    total_bytes = sum(os.path.getsize(p) for p in input_paths)
    progress = _Progress("Tokenizing", total=total_bytes, unit="bytes")
    assembler = DocumentAssembler(special_ids)
    chunks = _ByteCounter(iter_line_chunks(input_paths, max_line_bytes=max_line_bytes))
    if pool is None:
        results = (tokenize_chunk(tokenizer, chunk, unicode_errors) for chunk in chunks)
    else:
        results = pool.imap_ordered(_worker_tokenize, chunks, max_in_flight=8 * pool.num_workers)
    for ids, lengths in results:
        assembler.add(ids, lengths)
        progress.update(chunks.finished_one(),
                        f"{assembler.lines:,} lines, {assembler.tokens:,} tokens")
    documents = assembler.documents()
    logging.info("Read %s lines, %s tokens, %s documents", f"{assembler.lines:,}",
                 f"{assembler.tokens:,}", f"{len(documents):,}")
    return documents, assembler.has_special_ids


def _log_phase(name, wall_start, cpu_start):
    logging.info("%s took %.2f s (main process CPU %.2f s)", name, time.monotonic() - wall_start,
                 time.process_time() - cpu_start)


def _run_in_memory(input_paths, tokenizer, encoder, unicode_errors, options, pool, writer,
                   max_line_bytes):
    wall, cpu = time.monotonic(), time.process_time()
    documents, has_special_ids = _read_documents(input_paths, tokenizer, unicode_errors, pool,
                                                 _special_ids(options["vocabulary"]),
                                                 max_line_bytes)
    _log_phase("Tokenizing", wall, cpu)
    wall, cpu = time.monotonic(), time.process_time()
    rng = random.Random(options["random_seed"])
    sampler = _make_sampler(options["vocabulary"], rng, options, has_special_ids)
    stats = sampler.stats
    stats.documents = len(documents)
    stats.single_sentence_documents = sum(len(d) == 1 for d in documents)
    if len(documents) < 2:
        return stats
    shuffle_list(rng, documents)

    held = None
    try:
        if pool is not None and not options["do_whole_word_mask"] and not has_special_ids:
            # Scratch files go next to the output (disk), not to a /tmp that may be RAM.
            scratch_dir = os.path.dirname(os.path.abspath(writer.output_files[0]))
            held = HeldRecords(scratch_dir)
            _sample_in_parallel(documents, sampler, pool, options, held)
            records = held
        else:
            records = _sample_in_main_process(documents, sampler, pool, encoder, options)
        del documents
        _log_phase("Sampling and encoding", wall, cpu)
        wall, cpu = time.monotonic(), time.process_time()

        write_progress = _Progress("Writing", total=len(records), unit="records")
        if held is not None:
            held.write_shuffled(rng, writer, pool, write_progress)
        else:
            shuffle_list(rng, records)
            for start in range(0, len(records), 65536):
                writer.write_framed_many(records[start:start + 65536])
                write_progress.update(min(start + 65536, len(records)))
        del records
        _log_phase("Shuffling and writing", wall, cpu)
    finally:
        if held is not None:
            held.remove()
    return stats


def _sample_in_parallel(documents, sampler, pool, options, held):
    """Workers sample; the main process only accounts for the draws and records states.

    The main process runs `account_documents` (the same draws, on sentence lengths; in C when
    built) and, every batch of ~2,048 instances, hands the generator state at the batch's start
    to a worker, which replays the real sampling of those documents and keeps the encoded
    records (`held`: `HeldRecords`). Each worker reports a digest of its final state, which
    must equal the main process's state at the end of the batch.
    """
    rng = sampler.rng
    corpus = SharedCorpus.write(documents, held.directory)
    try:
        lengths = SentenceLengths(documents)
        num_documents = len(documents)
        total = options["dupe_factor"] * num_documents
        progress = _Progress("Sampling", total=total, unit="documents")
        pending = collections.deque()
        max_in_flight = 3 * pool.num_workers

        def collect(entry):
            result, expected_digest = entry
            location, digest = result.get()
            if digest != expected_digest:
                raise RuntimeError("internal error: a worker's sampling diverged from the main "
                                   "process's draws")
            held.add(location)

        done = 0
        for _ in range(options["dupe_factor"]):
            first = 0
            while first < num_documents:
                state = rng.getstate()
                end = sampler.account_documents(lengths, first, _INSTANCES_PER_REPLAY)
                task = (corpus.path, state, range(first, end), False, held.token)
                pending.append((pool.submit(_worker_replay, task), _state_digest(rng)))
                while len(pending) > max_in_flight:
                    collect(pending.popleft())
                done += end - first
                first = end
                progress.update(done, instances=sampler.stats.instances)
        while pending:
            collect(pending.popleft())
    finally:
        corpus.remove()


def _sample_in_main_process(documents, sampler, pool, encoder, options):
    """Samples in this process; workers (if any) encode."""
    stats = sampler.stats
    total = options["dupe_factor"] * len(documents)
    progress = _Progress("Sampling", total=total, unit="documents")
    records = []
    crc = pretraining_records.Crc32c()
    pending = collections.deque()
    batch = []
    max_in_flight = 4 * pool.num_workers if pool is not None else 0

    def flush():
        nonlocal batch
        if pool is None:
            records.extend(encode_and_frame(encoder, crc, batch))
        else:
            pending.append(pool.submit(_worker_encode, batch))
            while len(pending) > max_in_flight:
                records.extend(pending.popleft().get())
        batch = []

    done = 0
    for _ in range(options["dupe_factor"]):
        for document_index in range(len(documents)):
            sampler.instances_from_document(documents, document_index, batch.append)
            if len(batch) >= _INSTANCES_PER_BATCH:
                flush()
            done += 1
            progress.update(done, instances=stats.instances)
    flush()
    while pending:
        records.extend(pending.popleft().get())
    return records


class _StreamingReader:
    """Groups the input's lines into windows (lists of line chunks) for --streaming.

    A window ends after its `window_documents`-th document break, or at the first document
    break once it holds `window_bytes` bytes of input. A document longer than `document_bytes`
    is cut after the line that reaches that size: a synthetic blank line is inserted there, so
    the pieces are separate documents (a corpus without blank lines is one endless document;
    cut, it is read in bounded windows with documents to draw random-next segments from).
    The first cut logs a warning. Counts `bytes` and `lines` read so far, for progress.
    """

    def __init__(self, input_paths, window_documents, window_bytes, document_bytes,
                 max_line_bytes, on_progress=None):
        self.input_paths = input_paths
        self.window_documents = window_documents
        self.window_bytes = window_bytes
        self.document_bytes = document_bytes
        self.max_line_bytes = max_line_bytes
        self.on_progress = on_progress
        self.bytes = 0
        self.lines = 0
        self.cut_documents = 0

    def _cut(self, path, line_number):
        if not self.cut_documents:
            logging.warning(
                "%s:%d: a document longer than %s bytes (--streaming_max_document_bytes): the "
                "corpus seems to lack blank lines between documents. Cutting such documents "
                "into pieces of about that size, each treated as a separate document (random-"
                "next segments may then come from another piece of the same text); put a blank "
                "line between documents to avoid this.", path, line_number,
                f"{self.document_bytes:,}")
        self.cut_documents += 1

    def __iter__(self):
        window = []
        chunk_lines = []
        chunk_path = None
        chunk_first = 1
        breaks = 0  # documents (or pieces) ended in this window
        window_size = 0
        document_size = 0
        last_report = 0
        for path in self.input_paths:
            for line_number, line in enumerate(read_lines(path, self.max_line_bytes), 1):
                if path != chunk_path or len(chunk_lines) >= _LINES_PER_CHUNK:
                    if chunk_lines:
                        window.append((chunk_path, chunk_first, chunk_lines))
                    chunk_path, chunk_first, chunk_lines = path, line_number, []
                chunk_lines.append(line)
                size = len(line)
                window_size += size
                self.bytes += size
                self.lines += 1
                if self.on_progress is not None and self.bytes - last_report >= 1 << 20:
                    last_report = self.bytes
                    self.on_progress()
                ends_document = not line.strip()
                if not ends_document:
                    document_size += size
                    if document_size >= self.document_bytes:
                        self._cut(path, line_number)
                        # The chunk ends here; the break is a chunk of its own, so that line
                        # numbers (for error messages) stay those of the file.
                        window.append((chunk_path, chunk_first, chunk_lines))
                        window.append((path, line_number, [b"\n"]))
                        chunk_lines = []
                        chunk_first = line_number + 1
                        ends_document = True
                if ends_document:
                    document_size = 0
                    breaks += 1
                    if breaks >= self.window_documents or window_size >= self.window_bytes:
                        if chunk_lines:
                            window.append((chunk_path, chunk_first, chunk_lines))
                        yield window
                        window, chunk_lines, breaks, window_size = [], [], 0, 0
                        chunk_first = line_number + 1
        if chunk_lines:
            window.append((chunk_path, chunk_first, chunk_lines))
        if window:
            yield window


def _run_streaming(input_paths, tokenizer, encoder, unicode_errors, options, limits, pool,
                   writer):
    stats = SamplingStats()
    crc = pretraining_records.Crc32c()
    progress = _Progress("Streaming", total=sum(os.path.getsize(p) for p in input_paths),
                         unit="bytes")

    def report(window_instances=0):
        progress.update(reader.bytes, f"{reader.lines:,} lines read, {windows:,} windows "
                        f"written, {stats.documents:,} documents",
                        instances=stats.instances + window_instances)

    reader = _StreamingReader(input_paths, limits["window_documents"], limits["window_bytes"],
                              limits["document_bytes"], limits["max_line_bytes"], report)
    tasks = enumerate(reader)
    if pool is None:
        def run_local(task):
            window_index, chunks = task
            assembler = DocumentAssembler(_special_ids(options["vocabulary"]))
            for chunk in chunks:
                assembler.add(*tokenize_chunk(tokenizer, chunk, unicode_errors))
            del chunks
            return _sample_window(assembler, window_index, options, options["vocabulary"],
                                  encoder, crc, on_instances=report)
        results = map(run_local, tasks)
    else:
        results = pool.imap_ordered(_worker_window, tasks, max_in_flight=pool.num_workers + 1)
    windows = 0
    for records, window_stats, _ in results:
        writer.write_framed_many(records)
        del records
        stats.add(window_stats)
        windows += 1
        report()
    if reader.cut_documents:
        logging.warning("Cut %s over-long document(s) into pieces of about %s bytes "
                        "(--streaming_max_document_bytes)", f"{reader.cut_documents:,}",
                        f"{limits['document_bytes']:,}")
    return stats, windows
