"""Named-entity recognition data: CoNLL files, tag schemes, windowed features, tf.data, output.

Top to bottom:

1. Reading. `read_conll` reads a CoNLL-2003-style file (one token a line, whitespace-separated
   columns, token first, the tag in a selectable column, a blank line between sentences,
   `-DOCSTART-` lines skipped) into `NerSentence`s that remember the line of every token, so
   every later error names `file:line`.
2. Tag schemes. `detect_scheme` tells IOB1, BIO (= IOB2) and BIOES (= IOBES) apart and rejects
   files that mix them (a few annotation slips excepted); `convert_tags` converts between any
   two. The model learns BIO when the
   training file is IOB1 or BIO and BIOES when it is BIOES (`model_scheme_for`); `load_ner_file`
   reads a file, detects its scheme and converts its tags to the model's, and its `NerFile`
   converts predictions back to the file's own scheme (`NerFile.to_file_scheme`).
   `label_list_from` / `check_labels` build and check the label list (model-scheme tags).
3. Features. `convert_sentences_to_features` tokenizes word by word and cuts long sentences
   into overlapping windows so that no word is dropped (see `window_starts` and
   `max_context_windows` for the exact rules); `ner_dataset` batches them for tf.data.
4. Predictions. `word_predictions` picks each word's label from the one window responsible for
   it; `write_predictions_conll` writes `token gold predicted` lines for conlleval.

A typical run (what run_ner does)::

    train = load_ner_file(train_path)                    # scheme detected, tags -> model scheme
    labels = label_list_from(train.model_sentences)
    dev = load_ner_file(dev_path, model_scheme=train.model_scheme)
    check_labels(dev.model_sentences, labels)
    features = convert_sentences_to_features(dev.model_sentences, tokenizer, labels, 128)
    order = length_sorted_order(features)                # optional: batch similar lengths
    dataset = ner_dataset(features, 32, is_training=False, order=order)
    logits = [row for batch in dataset for row in model(batch)["logits"].numpy()]
    ids = word_predictions(features, logits, order=order)
    predicted = dev.to_file_scheme([[labels[i] for i in s] for s in ids])
    write_predictions_conll(out_path, dev.sentences, predicted)
"""

import dataclasses
import os
import re
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from absl import logging

from bert_tf.data.classification import DataFormatError, length_sorted_order
from bert_tf.data import batching
from bert_tf.files import atomic_open
from bert_tf.metrics import extract_spans

__all__ = [
    "SCHEMES", "NerSentence", "NerFile", "NerSource", "scan_ner_file", "NerFeatures",
    "read_conll", "iter_conll",
    "detect_scheme", "convert_tags", "model_scheme_for", "model_scheme_of_labels",
    "load_ner_file", "label_list_from", "check_labels", "window_starts", "max_context_windows",
    "convert_sentences_to_features", "resolve_stride", "model_sentences_of",
    "write_ner_features", "open_ner_features", "load_ner_features", "ner_dataset",
    "length_sorted_order", "word_predictions", "write_predictions_conll",
]

SCHEMES = ("IOB1", "BIO", "BIOES")
_SCHEME_PREFIXES = {"IOB1": "BI", "BIO": "BI", "BIOES": "BIES"}
_ONE_SCHEME = "expected one tag scheme per file: IOB1, BIO or BIOES"
# Share of a B-/I- file's chunk openings that may follow the other scheme (annotation slips).
_TOLERATED_SLIPS = 0.05


@dataclasses.dataclass
class NerSentence:
    """One sentence: `words[i]` is tagged `tags[i]` and was read from line `line_numbers[i]`
    (1-based) of the file; `source` is "path:line" of its first token."""

    words: List[str]
    tags: List[str]
    source: str = ""
    line_numbers: List[int] = dataclasses.field(default_factory=list)

    @property
    def path(self) -> str:
        return self.source.rsplit(":", 1)[0]

    def where(self, i: int) -> str:
        """The "path:line" of token i, for error messages."""
        if i < len(self.line_numbers):
            return f"{self.path}:{self.line_numbers[i]}"
        return f"{self.source} (token {i + 1})"


# ---------------------------------------------------------------------------------------------
# Reading CoNLL files
# ---------------------------------------------------------------------------------------------

# Columns are separated by spaces and tabs only: a token that contains a no-break space or
# another Unicode space stays one token (str.split() would cut it and shift the columns).
_COLUMN_SEPARATOR = re.compile(r"[ \t]+")
_TAG_FORM = "expected O or a tag <B|I|E|S>-<TYPE> of the IOB1, BIO or BIOES scheme"


def _parse_tag(tag: str, where: str) -> Tuple[str, str]:
    """`(prefix, type)` of a tag ("O" -> ("O", "")); anything else is a DataFormatError."""
    if tag == "O":
        return "O", ""
    prefix, dash, entity = tag.partition("-")
    if not dash or not entity or prefix not in ("B", "I", "E", "S"):
        raise DataFormatError(f"{where}: tag {tag!r} is not a NER tag; {_TAG_FORM}")
    return prefix, entity


def _binary_lines(path: str) -> Iterator[bytes]:
    """The lines of a local or remote file as bytes, each without its b"\\n", one at a time
    (a file ending with b"\\n" has no empty last line)."""
    if "://" in path:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        reader = tf.io.gfile.GFile(path, "rb")
        lines = iter(reader.readline, b"")
    else:
        reader = open(path, "rb")  # pylint: disable=consider-using-with
        lines = reader
    with reader:
        for line in lines:
            yield line[:-1] if line.endswith(b"\n") else line


def _check_conll_bytes(path: str, expected_layout: str) -> None:
    """The whole-file checks of `iter_conll`, made in 1 MiB blocks before any line is parsed:
    an empty (or whitespace-only) file, then the first NUL byte, each naming its line."""
    opener = open
    if "://" in path:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        opener = tf.io.gfile.GFile
    has_text, newlines, nul_line = False, 0, None
    with opener(path, "rb") as reader:
        for block in iter(lambda: reader.read(1 << 20), b""):
            has_text = has_text or bool(block.strip())
            nul = block.find(b"\0")
            if nul >= 0 and nul_line is None:
                nul_line = newlines + block.count(b"\n", 0, nul) + 1
            newlines += block.count(b"\n")
    if not has_text:
        raise DataFormatError(f"{path}:1: the file is empty; {expected_layout}")
    if nul_line is not None:
        raise DataFormatError(f"{path}:{nul_line}: NUL byte in the text; expected a UTF-8 text "
                              f"file (is it binary or UTF-16?)")


def iter_conll(path: str, tag_column: int = -1) -> Iterator[NerSentence]:
    """`read_conll` one sentence at a time: memory holds one sentence (and one line), not the
    file. The same sentences, checks and errors (each naming the same file:line); the
    whole-file checks (empty file, NUL bytes) run first, over the bytes in blocks, so an error
    is raised before the first sentence is yielded whenever `read_conll` would raise one of
    those."""
    if tag_column == 0:
        raise ValueError("tag_column 0 is the token column; the tag must be in another column")
    path = os.fspath(path)
    min_columns = tag_column + 1 if tag_column > 0 else 1 - tag_column
    expected_layout = ("expected CoNLL lines 'token ... tag' with a blank line between "
                       "sentences")
    _check_conll_bytes(path, expected_layout)
    words, tags, numbers = [], [], []
    found = False
    number = 0
    for number, raw in enumerate(_binary_lines(path), start=1):
        skipped = 0
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw, skipped = raw[3:], 3
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            bad = raw[error.start:error.start + 1]
            raise DataFormatError(f"{path}:{number}: byte {error.start + skipped + 1} ({bad!r}) "
                                  f"is not UTF-8; expected a UTF-8 text file") from None
        stripped = line.strip(" \t")
        columns = _COLUMN_SEPARATOR.split(stripped) if stripped else None
        if columns is None or columns[0] == "-DOCSTART-":
            if words:
                found = True
                yield NerSentence(words, tags, f"{path}:{numbers[0]}", numbers)
                words, tags, numbers = [], [], []
            continue
        where = f"{path}:{number}"
        if len(columns) < min_columns:
            raise DataFormatError(
                f"{where}: {len(columns)} column(s) in {stripped[:60]!r}; expected at least "
                f"{min_columns} (the token first, its tag in column {tag_column})")
        tag = columns[tag_column]
        _parse_tag(tag, where)
        words.append(columns[0])
        tags.append(tag)
        numbers.append(number)
    if words:
        found = True
        yield NerSentence(words, tags, f"{path}:{numbers[0]}", numbers)
    if not found:
        raise DataFormatError(f"{path}:{number}: no sentence in the file (only "
                              f"-DOCSTART- and blank lines); {expected_layout}")


def read_conll(path: str, tag_column: int = -1) -> List[NerSentence]:
    """The sentences of a CoNLL-2003-style file, tags exactly as written (`iter_conll` reads
    them one at a time).

    One token a line: whitespace-separated columns (spaces or tabs), the token in column 0 and
    its tag in `tag_column` (negative counts from the end; the default -1 is the last column).
    Sentences are separated by blank lines; `-DOCSTART-` lines (and so the blank line after
    them) are skipped; the file need not end with a blank line. `\\r\\n` line ends and a UTF-8
    byte-order mark are accepted.

    Raises DataFormatError ("path:line: what is wrong; what was expected") for: an empty file
    or one without sentences, NUL bytes, bytes that are not UTF-8 (decoded line by line, so the
    line is named), a line with too few columns to have a tag, a tag that is not `O` or
    `<B|I|E|S>-<TYPE>`.
    """
    return list(iter_conll(path, tag_column))


# ---------------------------------------------------------------------------------------------
# Tag schemes
# ---------------------------------------------------------------------------------------------


def _check_scheme(scheme: str, what: str = "scheme") -> str:
    if scheme not in SCHEMES:
        raise ValueError(f"{what} must be one of {list(SCHEMES)}, not {scheme!r}")
    return scheme


def _tag_sequences(sentences_or_tag_lists, source) -> Iterator[Tuple[List[str],
                                                                   Callable[[int], str]]]:
    """(tags, where(i) -> "path:line") per sentence or tag list, one at a time."""
    for n, item in enumerate(sentences_or_tag_lists):
        if isinstance(item, NerSentence):
            yield item.tags, item.where
        else:
            yield list(item), (lambda i, n=n: f"{source or '<tags>'}: sequence {n + 1}, "
                                              f"tag {i + 1}")


def _opens_chunk_with_inside(parsed, i) -> bool:
    """Is tag i an I- (or E-) that opens a chunk (conlleval's rule: at the start, after O,
    E- or S-, or after a different type)?"""
    prefix, entity = parsed[i]
    if prefix not in ("I", "E"):
        return False
    if i == 0:
        return True
    previous_prefix, previous_type = parsed[i - 1]
    return previous_prefix in ("O", "E", "S") or previous_type != entity


def detect_scheme(sentences_or_tag_lists: Sequence[Union[NerSentence, Sequence[str]]],
                  source: str = "") -> str:
    """The one tag scheme of a file: "IOB1", "BIO" or "BIOES".

    Any E-/S- tag -> BIOES, and then every chunk must be S-X or B-X (I-X)* E-X. Otherwise the
    chunk openings decide: an I-X that opens a chunk (at the sentence start, after O or after
    another type) is IOB1's way, a B-X that does not directly follow a chunk of type X is
    BIO's. Only I- openings -> IOB1; none -> BIO (also for a file without entities). When a
    file has both, the more frequent kind names the scheme, and the other kind is tolerated
    as annotation slips if it is at most 5% of the openings (logged; read as chunk starts, as
    conlleval reads them): CoNLL-2003 as commonly distributed in BIO has 267 I- openings
    among 23,429 in train.txt. Anything else is a mixed file: DataFormatError naming file:line.

    Takes `NerSentence`s (errors name "path:line") or plain tag lists (errors name `source`
    and the sequence and tag number).
    """
    return _detect_scheme(lambda: _tag_sequences(sentences_or_tag_lists, source), source)[0]


def _detect_scheme(sequences: Callable[[], Iterator[Tuple[List[str], Callable[[int], str]]]],
                   source: str) -> Tuple[str, bool]:
    """`detect_scheme` over `sequences()` (called twice for a BIOES file: one pass finds the
    first E-/S- tag and counts the chunk openings, a second checks every BIOES chunk), so the
    sequences can be streamed from a file; memory holds one sequence and a few counters.
    Returns (scheme, whether any tag is not O)."""
    first_bioes, any_entity = None, False
    openings = {"B": [0, None], "I": [0, None]}  # kind -> [count, first (where, tag, after)]
    for tags, where in sequences():
        parsed = [_parse_tag(t, where(i)) for i, t in enumerate(tags)]
        for i, (prefix, entity) in enumerate(parsed):
            if prefix == "O":
                continue
            any_entity = True
            if prefix in ("E", "S") and first_bioes is None:
                first_bioes = where(i)
            if _opens_chunk_with_inside(parsed, i):
                kind = "I"
            elif prefix == "B" and not (i > 0 and parsed[i - 1] in (("B", entity),
                                                                   ("I", entity))):
                kind = "B"
            else:
                continue
            openings[kind][0] += 1
            if openings[kind][1] is None:
                after = "at the sentence start" if i == 0 else f"after {tags[i - 1]!r}"
                openings[kind][1] = (where(i), tags[i], after)
    if first_bioes is not None:
        for tags, where in sequences():
            parsed = [_parse_tag(t, where(i)) for i, t in enumerate(tags)]
            _check_bioes(parsed, tags, where, first_bioes)
        return "BIOES", any_entity
    (b_count, first_b), (i_count, first_i) = openings["B"], openings["I"]
    if not i_count:
        return "BIO", any_entity
    if not b_count:
        return "IOB1", any_entity
    if b_count > i_count:
        scheme, main, stray, main_first, stray_first = "BIO", b_count, i_count, first_b, first_i
        rule = "B- opens", "I- only continues a chunk"
    else:
        scheme, main, stray, main_first, stray_first = "IOB1", i_count, b_count, first_i, first_b
        rule = "I- opens", "B- only separates two adjacent chunks of one type"
    where, tag, after = stray_first
    if stray > _TOLERATED_SLIPS * (main + stray):
        raise DataFormatError(
            f"{where}: {tag!r} opens a chunk {after}, but the file is {scheme} ({rule[0]} "
            f"{main} chunks, first at {main_first[0]}) where {rule[1]}; {_ONE_SCHEME}")
    logging.warning("%s: %d of %d chunks open as the %s scheme does not (first: %r %s at %s); "
                    "read as chunk starts, as conlleval reads them", source or where,
                    stray, main + stray, scheme, tag, after, where)
    return scheme, any_entity


def _check_bioes(parsed, tags, where, first_bioes):
    scheme_note = f"the file is BIOES (E-/S- tags, first at {first_bioes})"
    open_at = None  # Index of the B- of the chunk being read.
    for i, (prefix, entity) in enumerate(parsed):
        if open_at is not None:
            if prefix in ("I", "E") and entity == parsed[open_at][1]:
                if prefix == "E":
                    open_at = None
                continue
            raise DataFormatError(
                f"{where(open_at)}: the chunk {tags[open_at]!r} is not closed by "
                f"E-{parsed[open_at][1]} (next tag: {tags[i]!r} at {where(i)}), but {scheme_note} "
                f"where chunks end with E-; {_ONE_SCHEME}")
        if prefix in ("I", "E"):
            raise DataFormatError(
                f"{where(i)}: {tags[i]!r} opens a chunk, but {scheme_note} where chunks open "
                f"with B- or S-; {_ONE_SCHEME}")
        if prefix == "B":
            open_at = i
    if open_at is not None:
        raise DataFormatError(
            f"{where(open_at)}: the chunk {tags[open_at]!r} is not closed by "
            f"E-{parsed[open_at][1]} before the sentence ends, but {scheme_note} where chunks "
            f"end with E-; {_ONE_SCHEME}")


def convert_tags(tags: Sequence[str], source_scheme: str, target_scheme: str) -> List[str]:
    """`tags` (one sentence, written in `source_scheme`) rewritten in `target_scheme`.

    The chunks are read with conlleval's rules (`bert_tf.metrics.extract_spans`), which read
    all three schemes, and written again: BIO opens every chunk with B-; BIOES also ends a
    chunk of two or more tokens with E- and writes a one-token chunk as S-; IOB1 opens with
    I- and uses B- only for a chunk that directly follows one of the same type. So an
    ill-formed sequence (a model's prediction) converts to the chunks conlleval scores for it,
    and IOB1 -> BIO -> BIOES -> IOB1 gives back a well-formed IOB1 sequence unchanged.
    """
    _check_scheme(source_scheme, "source_scheme")
    _check_scheme(target_scheme, "target_scheme")
    allowed = _SCHEME_PREFIXES[source_scheme]
    for i, tag in enumerate(tags):
        prefix, _ = _parse_tag(tag, f"tag {i + 1}")
        if prefix != "O" and prefix not in allowed:
            raise ValueError(f"tag {i + 1} {tag!r} cannot occur in {source_scheme} tags")
    output = ["O"] * len(tags)
    previous_end, previous_type = -1, None
    for entity, start, end in extract_spans(tags):
        if target_scheme == "BIOES" and end - start == 1:
            output[start] = f"S-{entity}"
        else:
            output[start:end] = [f"I-{entity}"] * (end - start)
            if target_scheme != "IOB1" or (start == previous_end and entity == previous_type):
                output[start] = f"B-{entity}"
            if target_scheme == "BIOES":
                output[end - 1] = f"E-{entity}"
        previous_end, previous_type = end, entity
    return output


def model_scheme_for(file_scheme: str) -> str:
    """The scheme the model learns for a training file in `file_scheme`: BIOES for BIOES,
    BIO for IOB1 and BIO (IOB1's B-/I- depend on the neighbouring chunk, BIO's do not)."""
    return "BIOES" if _check_scheme(file_scheme, "file_scheme") == "BIOES" else "BIO"


def model_scheme_of_labels(label_list: Sequence[str]) -> str:
    """The model scheme a saved label list was built in (for predict-only runs)."""
    return "BIOES" if any(label[:2] in ("E-", "S-") for label in label_list) else "BIO"


@dataclasses.dataclass
class NerFile:
    """A CoNLL file read for training, evaluation or prediction.

    `sentences` carry the tags as written in the file, in `scheme`; `model_sentences` are the
    same sentences with the tags in `model_scheme` (what features and labels are built from).
    Predictions (model-scheme tags) go back to the file's scheme with `to_file_scheme`.
    """

    path: str
    scheme: str
    model_scheme: str
    sentences: List[NerSentence]
    model_sentences: List[NerSentence]

    def to_file_scheme(self, tag_sequences: Sequence[Sequence[str]]) -> List[List[str]]:
        return [convert_tags(tags, self.model_scheme, self.scheme) for tags in tag_sequences]


def load_ner_file(path: str, tag_column: int = -1, model_scheme: Optional[str] = None) -> NerFile:
    """Reads `path` (`read_conll`), detects its scheme (`detect_scheme`) and converts its tags
    to the model's scheme.

    `model_scheme`: None for the training file (the model scheme follows from the file's,
    `model_scheme_for`); for dev and test files pass the training file's `model_scheme` (or
    `model_scheme_of_labels(labels)`). A file without any entity (e.g. a test file whose tag
    column is all O) has no detectable scheme; it is taken to be in `model_scheme`.
    """
    sentences = read_conll(path, tag_column)
    scheme, model_scheme = _file_schemes(
        lambda: _tag_sequences(sentences, path), path, model_scheme)
    if scheme == model_scheme:
        model_sentences = sentences
    else:
        model_sentences = [dataclasses.replace(s, tags=convert_tags(s.tags, scheme, model_scheme))
                           for s in sentences]
    return NerFile(path=path, scheme=scheme, model_scheme=model_scheme, sentences=sentences,
                   model_sentences=model_sentences)


def _file_schemes(sequences, path: str, model_scheme: Optional[str]) -> Tuple[str, str]:
    """(file scheme, model scheme) as `load_ner_file` documents them."""
    if model_scheme not in (None, "BIO", "BIOES"):
        raise ValueError(f"model_scheme must be 'BIO' or 'BIOES', not {model_scheme!r}")
    scheme, any_entity = _detect_scheme(sequences, path)
    if model_scheme is None:
        model_scheme = model_scheme_for(scheme)
    elif not any_entity:
        scheme = model_scheme
    return scheme, model_scheme


@dataclasses.dataclass
class NerSource:
    """A CoNLL file read sentence by sentence, never held in memory: `load_ner_file`'s
    `NerFile` for files of any size. `sentences()` and `model_sentences()` stream the file
    again each time they are called (tags in `scheme` / in `model_scheme`)."""

    path: str
    tag_column: int
    scheme: str
    model_scheme: str

    def sentences(self) -> Iterator[NerSentence]:
        return iter_conll(self.path, self.tag_column)

    def model_sentences(self) -> Iterator[NerSentence]:
        return model_sentences_of(self.path, self.tag_column, self.scheme, self.model_scheme)

    def to_file_scheme(self, tag_sequences: Sequence[Sequence[str]]) -> List[List[str]]:
        return [convert_tags(tags, self.model_scheme, self.scheme) for tags in tag_sequences]


def scan_ner_file(path: str, tag_column: int = -1, model_scheme: Optional[str] = None,
                  scheme: Optional[str] = None) -> NerSource:
    """`load_ner_file` streaming: the file's scheme is detected (or given as `scheme`) in
    passes over the file that hold one sentence at a time; every line is checked then (the
    same errors as `read_conll` and `detect_scheme`)."""
    path = os.fspath(path)
    if scheme is None:
        sequences = lambda: ((s.tags, s.where) for s in iter_conll(path, tag_column))  # noqa: E731
        scheme, model_scheme = _file_schemes(sequences, path, model_scheme)
    else:
        _check_scheme(scheme, "scheme")
        model_scheme = model_scheme or model_scheme_for(scheme)
        for _ in iter_conll(path, tag_column):  # every line checked before any slow work
            pass
    return NerSource(path=path, tag_column=tag_column, scheme=scheme, model_scheme=model_scheme)


def label_list_from(sentences: Sequence[NerSentence]) -> List[str]:
    """`["O"] + sorted(every other tag)` of the (model-scheme) training sentences; a label's
    index is its class id."""
    return ["O"] + sorted({tag for s in sentences for tag in s.tags} - {"O"})


def _unknown_tag(sentence: NerSentence, i: int, label_list) -> DataFormatError:
    return DataFormatError(f"{sentence.where(i)}: tag {sentence.tags[i]!r} is not one of the "
                           f"training labels {list(label_list)}; expected one of them (the model "
                           f"cannot predict a tag the training file never uses)")


def check_labels(sentences: Sequence[NerSentence], label_list: Sequence[str]) -> None:
    """DataFormatError (file:line and the known labels) for the first tag not in `label_list`."""
    known = set(label_list)
    for sentence in sentences:
        for i, tag in enumerate(sentence.tags):
            if tag not in known:
                raise _unknown_tag(sentence, i, label_list)


# ---------------------------------------------------------------------------------------------
# Features: word pieces in overlapping windows
# ---------------------------------------------------------------------------------------------


def window_starts(num_pieces: int, window: int, stride: int) -> List[int]:
    """First piece of each window over a sentence of `num_pieces` pieces, `window` pieces per
    window (max_seq_length - 2): starts = [0]; while starts[-1] + window < num_pieces:
    starts.append(starts[-1] + stride). Window i covers [starts[i], min(starts[i] + window,
    num_pieces)); with 1 <= stride <= window every piece is in at least one window."""
    starts = [0]
    while starts[-1] + window < num_pieces:
        starts.append(starts[-1] + stride)
    return starts


def max_context_windows(positions, starts, lengths) -> np.ndarray:
    """For each piece position, the index of the window that predicts it: among the windows
    that contain it, the one maximising original BERT run_squad's `_check_is_max_context` score

        min(position - start, start + length - 1 - position) + 0.01 * length,

    ties going to the earlier window (run_squad keeps the first window unless a later one
    scores strictly higher). The score is computed in float64 exactly as run_squad's Python
    does it (and as the float64 TF graph of the tagger export must), so results agree bit for
    bit with the original: where windows differ in length by 100 or more, an exact tie can be
    broken by float rounding (e.g. 1 + 0.01 * 118 = 2.1799999999999997 < 2 + 0.01 * 18), and
    then it is broken the same way here.
    """
    positions = np.asarray(positions, np.int64)[:, None]
    starts = np.asarray(starts, np.int64)[None, :]
    lengths = np.asarray(lengths, np.int64)[None, :]
    left = positions - starts
    right = starts + lengths - 1 - positions
    context = np.minimum(left, right).astype(np.float64)
    scores = np.where(context >= 0, context + 0.01 * lengths.astype(np.float64), -np.inf)
    if positions.size and np.isinf(scores.max(axis=1)).any():
        raise ValueError("a position lies in no window")
    return np.argmax(scores, axis=1)  # argmax takes the first maximum: ties -> earlier window.


@dataclasses.dataclass
class NerFeatures:
    """Windows of word pieces, unpadded, as flat arrays.

    Window w is `token_ids[offsets[w]:offsets[w] + row_lengths[w]]` = `[CLS] pieces [SEP]`
    (offsets = exclusive cumsum of row_lengths; segment ids all 0) with `label_ids` aligned to
    it: each word's label id on its first piece, -1 on other pieces, [CLS] and [SEP]. It comes
    from sentence `sentence_index[w]`, pieces `window_start[w]` onwards.

    At prediction time window w is responsible for `owned_lengths[w]` words (flat, in window
    order): word `owned_word_index[j]` of its sentence, whose first piece is at position
    `owned_positions[j]` of the window ([CLS] = 0). Every word of every sentence is owned by
    exactly one window (`max_context_windows`).
    """

    token_ids: np.ndarray
    label_ids: np.ndarray
    row_lengths: np.ndarray
    sentence_index: np.ndarray
    window_start: np.ndarray
    owned_positions: np.ndarray
    owned_word_index: np.ndarray
    owned_lengths: np.ndarray
    words_per_sentence: np.ndarray
    num_split_sentences: int
    max_seq_length: int
    stride: int

    @property
    def num_windows(self) -> int:
        return len(self.row_lengths)

    @property
    def num_sentences(self) -> int:
        return len(self.words_per_sentence)

    def __len__(self):
        return self.num_windows

    def as_lists(self) -> List[Tuple[List[int], List[int]]]:
        """`(input_ids, label_ids)` per window, for inspection and tests."""
        ends = np.cumsum(self.row_lengths)
        return [(self.token_ids[end - n:end].tolist(), self.label_ids[end - n:end].tolist())
                for n, end in zip(self.row_lengths, ends)]


def resolve_stride(max_seq_length: int, stride: Optional[int] = None) -> int:
    """The window stride `convert_sentences_to_features` uses: `stride`, default
    max(1, (max_seq_length - 2) // 2); ValueError when it could skip pieces."""
    if max_seq_length < 3:
        raise ValueError(f"max_seq_length must be at least 3, got {max_seq_length}")
    window = max_seq_length - 2
    if stride is None:
        stride = max(1, window // 2)
    if not 1 <= stride <= window:
        raise ValueError(f"stride must be between 1 and max_seq_length - 2 = {window} (a larger "
                         f"stride would skip pieces), got {stride}")
    return int(stride)


def convert_sentences_to_features(sentences: Sequence[NerSentence], tokenizer,
                                  label_list: Sequence[str], max_seq_length: int,
                                  stride: Optional[int] = None) -> NerFeatures:
    """Word pieces of `sentences` (model-scheme tags) in windows of at most `max_seq_length`.

    Each word is tokenized on its own (`tokenizer`: a FullTokenizer, or anything with
    `tokenize` and `convert_tokens_to_ids`); a word that yields no piece (only control
    characters, say) becomes one [UNK] so that every word gets a prediction. A sentence of P
    pieces is cut into windows of W = max_seq_length - 2 pieces starting every `stride`
    pieces (default max(1, W // 2); `window_starts`). Training uses every window, with every
    word whose first piece lies inside it labelled; prediction takes each word from the one
    window `max_context_windows` picks. A tag missing from `label_list` is a DataFormatError.
    """
    stride = resolve_stride(max_seq_length, stride)
    window = max_seq_length - 2
    label_map = {label: i for i, label in enumerate(label_list)}
    cls_id, sep_id, unk_id = tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]", "[UNK]"])
    word_ids = {}  # word -> piece ids: CoNLL words repeat a lot.
    token_ids, label_ids, row_lengths, sentence_index, window_start = [], [], [], [], []
    owned_positions, owned_word_index, owned_lengths, words_per_sentence = [], [], [], []
    num_split = 0
    for s, sentence in enumerate(sentences):
        pieces, first_pieces, word_labels = [], [], []
        for i, (word, tag) in enumerate(zip(sentence.words, sentence.tags)):
            if tag not in label_map:
                raise _unknown_tag(sentence, i, label_list)
            ids = word_ids.get(word)
            if ids is None:
                ids = tokenizer.convert_tokens_to_ids(list(tokenizer.tokenize(word))) or [unk_id]
                word_ids[word] = ids
            first_pieces.append(len(pieces))
            word_labels.append(label_map[tag])
            pieces.extend(ids)
        num_pieces = len(pieces)
        piece_labels = np.full(num_pieces, -1, np.int32)
        piece_labels[first_pieces] = word_labels
        starts = window_starts(num_pieces, window, stride)
        lengths = [min(window, num_pieces - start) for start in starts]
        owner = max_context_windows(first_pieces, starts, lengths)
        first_pieces = np.asarray(first_pieces, np.int64)
        num_split += len(starts) > 1
        words_per_sentence.append(len(sentence.words))
        for w, (start, length) in enumerate(zip(starts, lengths)):
            token_ids.extend([cls_id] + pieces[start:start + length] + [sep_id])
            label_ids.extend([-1] + piece_labels[start:start + length].tolist() + [-1])
            row_lengths.append(length + 2)
            sentence_index.append(s)
            window_start.append(start)
            owned = np.flatnonzero(owner == w)
            owned_word_index.extend(owned.tolist())
            owned_positions.extend((first_pieces[owned] - start + 1).tolist())
            owned_lengths.append(len(owned))
    as_int32 = lambda values: np.asarray(values, np.int32)  # noqa: E731
    return NerFeatures(
        token_ids=as_int32(token_ids), label_ids=as_int32(label_ids),
        row_lengths=as_int32(row_lengths), sentence_index=as_int32(sentence_index),
        window_start=as_int32(window_start), owned_positions=as_int32(owned_positions),
        owned_word_index=as_int32(owned_word_index), owned_lengths=as_int32(owned_lengths),
        words_per_sentence=as_int32(words_per_sentence), num_split_sentences=int(num_split),
        max_seq_length=int(max_seq_length), stride=int(stride))


# Bump when the cached NER feature layout or the conversion rules change.
_NER_CACHE_VERSION = 1
_NER_ARRAYS = ("token_ids", "label_ids", "row_lengths", "sentence_index", "window_start",
               "owned_positions", "owned_word_index", "owned_lengths", "words_per_sentence")
_NER_CHUNK = 5000  # sentences converted at a time when writing features to disk


def model_sentences_of(path: str, tag_column: int, scheme: str,
                       model_scheme: str) -> Iterator[NerSentence]:
    """The sentences of `path` (`iter_conll`, one at a time) with their tags converted from
    the file's `scheme` to `model_scheme` (what features are built from)."""
    for sentence in iter_conll(path, tag_column):
        if scheme != model_scheme:
            sentence = dataclasses.replace(
                sentence, tags=convert_tags(sentence.tags, scheme, model_scheme))
        yield sentence


def write_ner_features(sentences, directory: str, tokenizer, label_list: Sequence[str],
                       max_seq_length: int, stride: Optional[int] = None) -> str:
    """Converts `sentences` (any iterable of model-scheme `NerSentence`s, consumed once)
    `_NER_CHUNK` at a time with `convert_sentences_to_features` and appends each chunk's
    arrays to a `bert_tf.data.feature_cache` directory (`sentence_index` made global);
    written under a temporary name and renamed when complete. Memory: one chunk."""
    from bert_tf.data import feature_cache

    stride = resolve_stride(max_seq_length, stride)
    totals = {"num_sentences": 0, "num_windows": 0, "num_split_sentences": 0}

    def chunks():
        for chunk in feature_cache.chunked(sentences, _NER_CHUNK):
            features = convert_sentences_to_features(chunk, tokenizer, label_list,
                                                     max_seq_length, stride)
            arrays = {name: getattr(features, name) for name in _NER_ARRAYS}
            arrays["sentence_index"] = features.sentence_index + totals["num_sentences"]
            totals["num_sentences"] += features.num_sentences
            totals["num_windows"] += features.num_windows
            totals["num_split_sentences"] += features.num_split_sentences
            yield arrays

    return feature_cache.write_arrays(
        chunks(), directory, _NER_ARRAYS, dict.fromkeys(_NER_ARRAYS, "<i4"),
        meta=lambda: dict(totals, max_seq_length=int(max_seq_length), stride=stride),
        what=f"chunks of {_NER_CHUNK} sentences")


def open_ner_features(directory: str) -> NerFeatures:
    """The features `write_ner_features` wrote, memory-mapped read-only."""
    from bert_tf.data import feature_cache

    arrays, meta = feature_cache.open_arrays(directory)
    return NerFeatures(**{name: arrays[name] for name in _NER_ARRAYS},
                       num_split_sentences=int(meta["num_split_sentences"]),
                       max_seq_length=int(meta["max_seq_length"]), stride=int(meta["stride"]))


def load_ner_features(path: str, tag_column: int, scheme: str, model_scheme: str, tokenizer,
                      label_list: Sequence[str], max_seq_length: int,
                      stride: Optional[int] = None, vocab_file: Optional[str] = None,
                      do_lower_case: bool = True, cache_dir: Optional[str] = None,
                      tag: str = "") -> NerFeatures:
    """The features of the CoNLL file `path` (tags in `scheme`, converted to `model_scheme`),
    sentences streamed from the file (`model_sentences_of`).

    With `cache_dir` (and `vocab_file`), written by `write_ner_features` to
    `<cache_dir>/<tag>-<key>/` and memory-mapped (memory does not grow with the file; later
    runs map the same directory; a damaged one is rebuilt). The key covers the file's and the
    vocabulary's bytes, casing, max_seq_length, stride, tag column, both schemes, the labels
    and `_NER_CACHE_VERSION`. Without `cache_dir`, converted in memory.
    """
    from bert_tf.data import feature_cache

    stride = resolve_stride(max_seq_length, stride)
    sentences = model_sentences_of(path, tag_column, scheme, model_scheme)
    if not cache_dir:
        return convert_sentences_to_features(list(sentences), tokenizer, label_list,
                                             max_seq_length, stride)
    if vocab_file is None:
        raise ValueError("load_ner_features: a cache_dir needs the vocab_file (part of the key)")
    key = feature_cache.cache_key(
        ["ner", _NER_CACHE_VERSION, tag, int(tag_column), scheme, model_scheme,
         list(label_list), bool(do_lower_case), int(max_seq_length), stride],
        [path, vocab_file])
    cache_path = os.path.join(cache_dir, f"{tag or 'ner'}-{key}")
    features, built = feature_cache.load_or_build(
        cache_path, lambda target: write_ner_features(sentences, target, tokenizer, label_list,
                                                      max_seq_length, stride),
        open_ner_features)
    logging.info("%s: %d sentences, %d windows, features %s %s", path, features.num_sentences,
                 features.num_windows, "written to" if built else "from cache", cache_path)
    return features


# ---------------------------------------------------------------------------------------------
# tf.data
# ---------------------------------------------------------------------------------------------


def ner_dataset(features: NerFeatures, batch_size: int, is_training: bool,
                seed: Optional[int] = None, order: Optional[np.ndarray] = None,
                pad_to_multiple_of: int = 8, drop_remainder: Optional[bool] = None,
                input_context=None, length_buckets: Optional[Sequence[int]] = None):
    """A tf.data pipeline of dict batches `input_ids`, `input_mask`, `segment_ids`, `label_ids`,
    all int32 [batch, length], each batch padded to its longest window (rounded up to
    `pad_to_multiple_of`; with `length_buckets`, to the smallest of those lengths that holds
    it: `bert_tf.data.batching`); padding is 0, and -1 for `label_ids` (ignored by loss and
    metrics).

    The same contract as `classification_dataset`: training is shuffled (seeded) and repeated
    forever, or `order` repeated, with `drop_remainder=True` by default; evaluation and
    prediction make one pass over the windows in `order` (default: feature order; e.g.
    `length_sorted_order(features)`, then pass the same `order` to `word_predictions`).
    `input_context` shards the windows and makes `batch_size` per replica.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from bert_tf.data.classification import index_batches, padded_rows, row_offsets

    # As classification_dataset: batches gathered from the arrays, no feature data in the graph.
    offsets = row_offsets(features.row_lengths)

    def gather(indices):
        ids, lengths = padded_rows(features.token_ids, offsets, features.row_lengths, indices,
                                   pad_to_multiple_of, length_buckets=length_buckets)
        labels, _ = padded_rows(features.label_ids, offsets, features.row_lengths, indices,
                                pad_to_multiple_of, pad_value=-1, length_buckets=length_buckets)
        mask = (np.arange(ids.shape[1])[None, :] < lengths[:, None]).astype(np.int32)
        return ids, mask, np.zeros_like(ids), labels

    dataset = index_batches(features.num_windows, batch_size, is_training, seed, order,
                            drop_remainder, input_context)
    shape = batching.static_batch_shape(dataset.element_spec.shape[0], length_buckets)

    @tf.autograph.experimental.do_not_convert  # plain TF calls; nothing to convert
    def to_batch(indices):
        tensors = tf.numpy_function(gather, [indices], [tf.int32] * 4, stateful=False)
        for tensor in tensors:
            tensor.set_shape(shape)
        return dict(zip(("input_ids", "input_mask", "segment_ids", "label_ids"), tensors))

    dataset = dataset.map(to_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------------------------------------
# Predictions
# ---------------------------------------------------------------------------------------------


def word_predictions(features: NerFeatures, per_window, order: Optional[np.ndarray] = None
                     ) -> List[List[int]]:
    """Each sentence's predicted label id per word, every word exactly once, taken from the
    window `max_context_windows` chose for it.

    `per_window` has one entry per window: logits [length, num_labels] (argmax is taken) or
    label ids [length], where length >= the window's length (padding is ignored). From
    batches: `[row for batch in batches for row in batch]`. `order`: the window order the
    entries come in (the `order` given to `ner_dataset`); default feature order.
    """
    if len(per_window) != features.num_windows:
        raise ValueError(f"{len(per_window)} window predictions for {features.num_windows} windows")
    windows = np.arange(features.num_windows) if order is None else np.asarray(order)
    if sorted(windows.tolist()) != list(range(features.num_windows)):
        raise ValueError("order must be a permutation of the window indices")
    owned_ends = np.cumsum(features.owned_lengths)
    predictions = [np.full(n, -1, np.int64) for n in features.words_per_sentence]
    for k, w in enumerate(windows):
        values = np.asarray(per_window[k])
        end = owned_ends[w]
        start = end - features.owned_lengths[w]
        positions = features.owned_positions[start:end]
        if positions.size == 0:
            continue
        if values.ndim not in (1, 2) or len(values) <= positions.max():
            raise ValueError(f"entry {k} (window {w}) has shape {values.shape}; expected "
                             f"[length >= {positions.max() + 1}] label ids or "
                             f"[length, num_labels] logits")
        chosen = values[positions].argmax(-1) if values.ndim == 2 else values[positions]
        predictions[features.sentence_index[w]][features.owned_word_index[start:end]] = chosen
    return [p.tolist() for p in predictions]


def write_predictions_conll(path: str, sentences: Iterable[NerSentence],
                            predicted_tags: Sequence[Sequence[str]]) -> str:
    """Writes `token gold predicted` lines (one space apart, a blank line after each sentence,
    sentences in file order; -DOCSTART- lines are not repeated) atomically to `path`, the
    input conlleval expects. `gold` is the tag read from the file, so pass the file-scheme
    `NerFile.sentences` (or the stream `NerSource.sentences()`, read one at a time) and
    `to_file_scheme(...)` predictions. A test file without gold tags must still have a tag
    column (e.g. all O): `read_conll` needs one; its tags are then written as the gold column.
    A count or length mismatch is a ValueError and leaves no file.
    """
    if hasattr(sentences, "__len__") and len(sentences) != len(predicted_tags):
        raise ValueError(f"{len(sentences)} sentences but {len(predicted_tags)} predictions")
    with atomic_open(path, "w") as writer:
        count = 0
        for sentence in sentences:
            if count >= len(predicted_tags):
                raise ValueError(f"{sentence.source}: more sentences than the "
                                 f"{len(predicted_tags)} predictions")
            predicted = predicted_tags[count]
            count += 1
            if len(predicted) != len(sentence.words):
                raise ValueError(f"{sentence.source}: {len(sentence.words)} words but "
                                 f"{len(predicted)} predicted tags")
            writer.write("".join(f"{word} {gold} {guess}\n" for word, gold, guess
                                 in zip(sentence.words, sentence.tags, predicted)) + "\n")
        if count != len(predicted_tags):
            raise ValueError(f"{count} sentences but {len(predicted_tags)} predictions")
    return path
