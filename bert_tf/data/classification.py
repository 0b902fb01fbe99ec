"""Sentence and sentence-pair classification data: processors, features, tf.data pipelines.

Three layers, top to bottom:

1. Reading. `read_tsv` reads a file the way the original run_classifier.py does (tab-separated,
   no quote character: MRPC has unbalanced quotes) and tolerates a UTF-8 byte-order mark;
   `read_csv` reads standard quoted CSV. Both return `(line_number, fields)` rows so that every
   later error can name the file and line. Empty lines are skipped, counted and logged.
2. Processors. One class per task in its published file layout (GLUE: CoLA, SST-2, MRPC, STS-B,
   QQP, MNLI, QNLI, RTE, WNLI; XNLI as the original reads it) plus `GenericProcessor` for a user's
   own TSV/CSV with a header. They turn files into `InputExample`s and check every label.
3. Features. `convert_examples_to_features` tokenizes with the original truncation
   (pairs: pop the last token of the longer segment until the pair fits max_seq_length - 3;
   single texts: cut to max_seq_length - 2) and counts the truncated examples.
   `load_features` streams the examples into a cache on disk (a directory of memory-mapped
   arrays, written chunk by chunk under a temporary name) keyed by the source files, the
   vocabulary, the casing and max_seq_length, so memory does not grow with the file and a
   second run does not tokenize again. `classification_dataset` builds a tf.data pipeline
   whose batches are gathered from those arrays (no feature data in the graph) and padded to
   their longest sequence, not to max_seq_length.
"""

import csv
import dataclasses
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from absl import logging

from bert_tf import files
from bert_tf.data import batching, feature_cache

# Bump when the cached feature layout or the conversion rules change.
_FEATURE_CACHE_VERSION = 3  # 2: a directory of memory-mappable arrays; 3: typed meta.json


DataFormatError = files.DataFormatError  # input that does not have the expected layout


@dataclasses.dataclass
class InputExample:
    """One example: `label` is None for unlabelled (test) examples; `source` is "file:line"."""

    guid: str
    text_a: str
    text_b: Optional[str] = None
    label: Optional[str] = None
    source: str = ""


# ---------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------


def _report_empty_lines(path, empty_lines):
    if empty_lines:
        shown = ", ".join(str(n) for n in empty_lines[:10])
        more = "" if len(empty_lines) <= 10 else f" (and {len(empty_lines) - 10} more)"
        logging.warning("%s: skipped %d empty line(s): line %s%s", path, len(empty_lines), shown, more)


def _decode_line(raw: bytes, path: str, number: int) -> str:
    return files.decode_utf8(raw, path, byte_order_mark=number == 1, first_line=number)


def iter_tsv(path: str) -> Iterator[Tuple[int, List[str]]]:
    """`read_tsv`'s rows one at a time, reading the file line by line (memory does not grow
    with the file); empty lines are reported at the end."""
    empty_lines = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            line = _decode_line(raw, path, number)
            if line.endswith("\n"):
                line = line[:-1]
            if line.endswith("\r"):
                line = line[:-1]
            if not line.strip():
                empty_lines.append(number)
                continue
            yield number, line.split("\t")
    _report_empty_lines(path, empty_lines)


def read_tsv(path: str) -> List[Tuple[int, List[str]]]:
    """Rows of a tab-separated file as `(1-based line number, fields)`.

    No quote character (a `"` is an ordinary character, as in the original), a leading UTF-8
    byte-order mark is dropped, `\\r\\n` line ends are accepted. Empty lines are skipped and
    reported through absl logging (never dropped silently).
    """
    return list(iter_tsv(path))


def iter_csv(path: str) -> Iterator[Tuple[int, List[str]]]:
    """`read_csv`'s rows one at a time (quoted fields may span lines)."""
    empty_lines = []
    state = {"number": 0}

    def decoded_lines(f):
        for raw in f:
            state["number"] += 1
            yield _decode_line(raw, path, state["number"])

    # A field may be as long as the file (a long text is data, as in a TSV), not csv's 128 KiB.
    csv.field_size_limit(max(csv.field_size_limit(), os.path.getsize(path)))
    with open(path, "rb") as f:
        reader = csv.reader(decoded_lines(f))
        start = 1
        try:
            for fields in reader:
                if not any(field.strip() for field in fields):
                    empty_lines.append(start)
                else:
                    yield start, fields
                start = state["number"] + 1
        except csv.Error as error:
            raise DataFormatError(f"{path}:{start}: {error}; expected CSV (RFC 4180) rows"
                                  ) from None
    _report_empty_lines(path, empty_lines)


def read_csv(path: str) -> List[Tuple[int, List[str]]]:
    """Rows of a standard (quoted, comma-separated) CSV file as `(line number, fields)`."""
    return list(iter_csv(path))


def iter_table(path: str) -> Iterator[Tuple[int, List[str]]]:
    """`iter_csv` for `*.csv` files, `iter_tsv` otherwise."""
    return iter_csv(path) if path.lower().endswith(".csv") else iter_tsv(path)


def read_table(path: str) -> List[Tuple[int, List[str]]]:
    """`read_csv` for `*.csv` files, `read_tsv` otherwise."""
    return read_csv(path) if path.lower().endswith(".csv") else read_tsv(path)


# ---------------------------------------------------------------------------------------------
# Processors
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ColumnLayout:
    """Where a file keeps its fields. Column indices may be negative (-1 = last column)."""

    has_header: bool
    text_a: int
    text_b: Optional[int] = None
    label: Optional[int] = None  # None: the file has no labels (test sets).


class DataProcessor:
    """Reads one task's train/dev/test files into `InputExample`s.

    `dev_files` and `test_files` map a set name to a file name; the set named "" is the task's
    main one (the one the original evaluates), others (MNLI's mismatched sets) are extra.
    """

    name = ""
    labels: Tuple[str, ...] = ()
    is_regression = False
    metric = "accuracy"  # One of bert_tf.metrics.TASK_METRICS' keys.
    train_file = "train.tsv"
    dev_files: Dict[str, str] = {"": "dev.tsv"}
    test_files: Dict[str, str] = {"": "test.tsv"}
    train_layout: ColumnLayout
    dev_layout: Optional[ColumnLayout] = None  # Defaults to train_layout.
    test_layout: ColumnLayout

    def get_labels(self, data_dir: Optional[str] = None) -> List[str]:
        """The label names (index = class id). Empty for regression tasks."""
        return list(self.labels)

    def get_train_examples(self, data_dir: str) -> List[InputExample]:
        return list(self.iter_examples(data_dir, "train"))

    def get_dev_examples(self, data_dir: str, set_name: str = "") -> List[InputExample]:
        return list(self.iter_examples(data_dir, "dev", set_name))

    def get_test_examples(self, data_dir: str, set_name: str = "") -> List[InputExample]:
        return list(self.iter_examples(data_dir, "test", set_name))

    def iter_examples(self, data_dir: str, split: str, set_name: str = ""
                      ) -> Iterator[InputExample]:
        """The examples of one split ("train", "dev" or "test") one at a time, read line by
        line: memory does not grow with the file."""
        if split == "train":
            return self._read_examples(self.train_path(data_dir), self.train_layout, "train")
        if split == "dev":
            return self._read_examples(self.dev_path(data_dir, set_name),
                                       self.dev_layout or self.train_layout, "dev")
        if split == "test":
            return self._read_examples(self.test_path(data_dir, set_name), self.test_layout,
                                       "test")
        raise ValueError(f"split must be train, dev or test, not {split!r}")

    def source_path(self, data_dir: str, split: str, set_name: str = "") -> str:
        """The file a split is read from."""
        if split == "train":
            return self.train_path(data_dir)
        if split == "dev":
            return self.dev_path(data_dir, set_name)
        if split == "test":
            return self.test_path(data_dir, set_name)
        raise ValueError(f"split must be train, dev or test, not {split!r}")

    def train_path(self, data_dir: str) -> str:
        return os.path.join(data_dir, self.train_file)

    def dev_path(self, data_dir: str, set_name: str = "") -> str:
        return os.path.join(data_dir, self._file_of(self.dev_files, set_name, "dev"))

    def test_path(self, data_dir: str, set_name: str = "") -> str:
        return os.path.join(data_dir, self._file_of(self.test_files, set_name, "test"))

    def _file_of(self, files, set_name, kind):
        if set_name not in files:
            raise ValueError(f"task {self.name!r} has no {kind} set {set_name!r}; it has {sorted(files)}")
        return files[set_name]

    # -- row parsing ---------------------------------------------------------------------------

    def _read_examples(self, path, layout: ColumnLayout, set_type: str) -> Iterator[InputExample]:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{self.name}: {set_type} file {path} does not exist")
        return self._iter_rows(path, layout, set_type)

    def _iter_rows(self, path, layout: ColumnLayout, set_type: str) -> Iterator[InputExample]:
        rows = iter_tsv(path)
        if layout.has_header:
            next(rows, None)
        count = 0
        needed = [c for c in (layout.text_a, layout.text_b, layout.label) if c is not None]
        min_columns = max(c + 1 if c >= 0 else -c for c in needed)
        if any(c < 0 for c in needed):
            # A negative column means "counted from the end" and must not overlap the texts.
            min_columns = max(min_columns, max(c for c in needed if c >= 0) + 2)
        for line_number, fields in rows:
            where = f"{path}:{line_number}"
            if len(fields) < min_columns:
                raise DataFormatError(
                    f"{where}: expected at least {min_columns} tab-separated columns for "
                    f"{self.name} {set_type} data, found {len(fields)}")
            text_a = fields[layout.text_a]
            text_b = fields[layout.text_b] if layout.text_b is not None else None
            label = None
            if layout.label is not None:
                label = self._check_label(fields[layout.label].strip(), where)
            yield InputExample(guid=f"{set_type}-{count}", text_a=text_a, text_b=text_b,
                               label=label, source=where)
            count += 1

    def _check_label(self, label: str, where: str) -> str:
        if self.is_regression:
            try:
                float(label)
            except ValueError:
                raise DataFormatError(f"{where}: expected a numeric score for {self.name}, "
                                      f"found {label!r}") from None
            return label
        if label not in self.labels:
            raise DataFormatError(f"{where}: label {label!r} is not one of {self.name}'s labels "
                                  f"{list(self.labels)}")
        return label


class ColaProcessor(DataProcessor):
    """CoLA: train/dev have no header (source, label, original mark, sentence); test has
    `index<TAB>sentence` with a header."""

    name = "cola"
    labels = ("0", "1")
    metric = "mcc"
    train_layout = ColumnLayout(has_header=False, text_a=3, label=1)
    test_layout = ColumnLayout(has_header=True, text_a=1)


class Sst2Processor(DataProcessor):
    """SST-2: `sentence<TAB>label` with a header; test `index<TAB>sentence`."""

    name = "sst-2"
    labels = ("0", "1")
    train_layout = ColumnLayout(has_header=True, text_a=0, label=1)
    test_layout = ColumnLayout(has_header=True, text_a=1)


class MrpcProcessor(DataProcessor):
    """MRPC: `Quality, #1 ID, #2 ID, #1 String, #2 String` with a header (test: index first)."""

    name = "mrpc"
    labels = ("0", "1")
    metric = "accuracy_and_f1"
    train_layout = ColumnLayout(has_header=True, text_a=3, text_b=4, label=0)
    test_layout = ColumnLayout(has_header=True, text_a=3, text_b=4)


class StsbProcessor(DataProcessor):
    """STS-B (regression): sentences in columns 7 and 8, the score in the last column."""

    name = "sts-b"
    is_regression = True
    metric = "pearson_and_spearman"
    train_layout = ColumnLayout(has_header=True, text_a=7, text_b=8, label=-1)
    test_layout = ColumnLayout(has_header=True, text_a=7, text_b=8)


class QqpProcessor(DataProcessor):
    """QQP: `id, qid1, qid2, question1, question2, is_duplicate`; test `id, question1, question2`."""

    name = "qqp"
    labels = ("0", "1")
    metric = "accuracy_and_f1"
    train_layout = ColumnLayout(has_header=True, text_a=3, text_b=4, label=5)
    test_layout = ColumnLayout(has_header=True, text_a=1, text_b=2)


class MnliProcessor(DataProcessor):
    """MNLI: sentences in columns 8 and 9, gold label last; matched and mismatched dev/test."""

    name = "mnli"
    labels = ("contradiction", "entailment", "neutral")
    dev_files = {"": "dev_matched.tsv", "mismatched": "dev_mismatched.tsv"}
    test_files = {"": "test_matched.tsv", "mismatched": "test_mismatched.tsv"}
    train_layout = ColumnLayout(has_header=True, text_a=8, text_b=9, label=-1)
    test_layout = ColumnLayout(has_header=True, text_a=8, text_b=9)


class QnliProcessor(DataProcessor):
    """QNLI: `index, question, sentence, label`."""

    name = "qnli"
    labels = ("entailment", "not_entailment")
    train_layout = ColumnLayout(has_header=True, text_a=1, text_b=2, label=3)
    test_layout = ColumnLayout(has_header=True, text_a=1, text_b=2)


class RteProcessor(DataProcessor):
    """RTE: `index, sentence1, sentence2, label`."""

    name = "rte"
    labels = ("entailment", "not_entailment")
    train_layout = ColumnLayout(has_header=True, text_a=1, text_b=2, label=3)
    test_layout = ColumnLayout(has_header=True, text_a=1, text_b=2)


class WnliProcessor(DataProcessor):
    """WNLI: `index, sentence1, sentence2, label` with labels 0/1."""

    name = "wnli"
    labels = ("0", "1")
    train_layout = ColumnLayout(has_header=True, text_a=1, text_b=2, label=3)
    test_layout = ColumnLayout(has_header=True, text_a=1, text_b=2)


class XnliProcessor(DataProcessor):
    """XNLI as the original reads it: train from the machine-translated MultiNLI file
    `multinli/multinli.train.<language>.tsv` (premise, hypo, label; "contradictory" means
    "contradiction"), dev from `xnli.dev.tsv` keeping the rows of `language` (column 0; label
    column 1; sentences columns 6 and 7). The original has no XNLI test set."""

    name = "xnli"
    labels = ("contradiction", "entailment", "neutral")
    test_files: Dict[str, str] = {}
    train_layout = ColumnLayout(has_header=True, text_a=0, text_b=1, label=2)
    dev_layout = ColumnLayout(has_header=True, text_a=6, text_b=7, label=1)

    def __init__(self, language: str = "zh"):
        self.language = language
        self.train_file = os.path.join("multinli", f"multinli.train.{language}.tsv")

    def _check_label(self, label, where):
        return super()._check_label("contradiction" if label == "contradictory" else label, where)

    def iter_examples(self, data_dir, split, set_name=""):
        if split == "dev":
            return iter(self.get_dev_examples(data_dir, set_name))  # a small file
        if split == "test":
            return iter(self.get_test_examples(data_dir, set_name))
        return super().iter_examples(data_dir, split, set_name)

    def get_dev_examples(self, data_dir, set_name=""):
        path = os.path.join(data_dir, "xnli.dev.tsv")
        if set_name:
            raise ValueError(f"task xnli has only one dev set, not {set_name!r}")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"xnli: dev file {path} does not exist")
        examples = []
        for line_number, fields in read_tsv(path)[1:]:
            where = f"{path}:{line_number}"
            if len(fields) < 8:
                raise DataFormatError(f"{where}: expected at least 8 columns for xnli dev data, "
                                      f"found {len(fields)}")
            if fields[0] != self.language:
                continue
            examples.append(InputExample(guid=f"dev-{len(examples)}", text_a=fields[6],
                                         text_b=fields[7], label=self._check_label(fields[1], where),
                                         source=where))
        return examples

    def dev_path(self, data_dir, set_name=""):
        return os.path.join(data_dir, "xnli.dev.tsv")

    def get_test_examples(self, data_dir, set_name=""):
        raise ValueError("task xnli has no test set (as in the original); use --do_predict with "
                         "another task or the generic processor")


class GenericProcessor(DataProcessor):
    """A user's own `train`/`dev`/`test` `.tsv` (tab, no quoting) or `.csv` (quoted) files
    with a header row naming the columns.

    Labels are discovered from the training file (sorted; numerically when all are integers);
    a dev label that train lacks is an error naming its file and line. Test files may omit the
    label column. `labels` overrides discovery (for predict-only runs without a train file).
    """

    name = "generic"

    def __init__(self, text_a_column: str = "sentence", text_b_column: Optional[str] = None,
                 label_column: str = "label", labels: Optional[Sequence[str]] = None,
                 is_regression: bool = False):
        self.text_a_column = text_a_column
        self.text_b_column = text_b_column or None
        self.label_column = label_column
        self.is_regression = is_regression
        self.metric = "pearson_and_spearman" if is_regression else "accuracy"
        self._labels = list(labels) if labels is not None else None

    def _find(self, data_dir, stem):
        for extension in (".tsv", ".csv"):
            path = os.path.join(data_dir, stem + extension)
            if os.path.isfile(path):
                return path
        raise FileNotFoundError(f"generic processor: neither {stem}.tsv nor {stem}.csv in {data_dir}")

    def train_path(self, data_dir):
        return self._find(data_dir, "train")

    def dev_path(self, data_dir, set_name=""):
        return self._find(data_dir, "dev" + (f"_{set_name}" if set_name else ""))

    def test_path(self, data_dir, set_name=""):
        return self._find(data_dir, "test" + (f"_{set_name}" if set_name else ""))

    def get_labels(self, data_dir=None):
        if self.is_regression:
            return []
        if self._labels is None:
            if data_dir is None:
                raise ValueError("generic processor: labels are discovered from the training file; "
                                 "pass data_dir (or labels=...)")
            found = set()
            for example in self._read_generic(self.train_path(data_dir), "train", True):
                found.add(example.label)
            self._labels = _sorted_labels(found)
        return list(self._labels)

    def get_train_examples(self, data_dir):
        return list(self.iter_examples(data_dir, "train"))

    def get_dev_examples(self, data_dir, set_name=""):
        return list(self.iter_examples(data_dir, "dev", set_name))

    def get_test_examples(self, data_dir, set_name=""):
        return list(self.iter_examples(data_dir, "test", set_name))

    def iter_examples(self, data_dir, split, set_name=""):
        path = self.source_path(data_dir, split, set_name)
        examples = self._read_generic(path, split, require_label=split != "test")
        if self.is_regression:
            return examples
        self.get_labels(data_dir)  # a first pass over train.tsv when they are not known yet
        return self._checked_labels(examples)

    def _checked_labels(self, examples):
        known = set(self._labels)
        for example in examples:
            if example.label is not None and example.label not in known:
                raise DataFormatError(
                    f"{example.source}: label {example.label!r} does not occur in the training "
                    f"labels {self._labels}")
            yield example

    def _read_generic(self, path, set_type, require_label):
        rows = iter_table(path)
        first = next(rows, None)
        if first is None:
            raise DataFormatError(f"{path}: empty file; expected a header row naming the columns")
        header_line, header = first
        header = [name.strip() for name in header]

        def column(name, required):
            if name in header:
                return header.index(name)
            if required:
                raise DataFormatError(f"{path}:{header_line}: no column {name!r} in the header "
                                      f"{header}")
            return None

        a = column(self.text_a_column, True)
        b = column(self.text_b_column, True) if self.text_b_column else None
        label = column(self.label_column, require_label)
        return self._generic_rows(rows, path, header, a, b, label, set_type)

    def _generic_rows(self, rows, path, header, a, b, label, set_type):
        for count, (line_number, fields) in enumerate(rows):
            where = f"{path}:{line_number}"
            if len(fields) != len(header):
                raise DataFormatError(f"{where}: {len(fields)} columns, but the header has "
                                      f"{len(header)} ({header})")
            value = fields[label].strip() if label is not None else None
            if value is not None and self.is_regression:
                value = self._check_label(value, where)
            yield InputExample(guid=f"{set_type}-{count}", text_a=fields[a],
                               text_b=fields[b] if b is not None else None, label=value,
                               source=where)


def _sorted_labels(labels):
    try:
        return sorted(labels, key=int)
    except ValueError:
        return sorted(labels)


PROCESSORS = {
    "cola": ColaProcessor,
    "sst-2": Sst2Processor,
    "sst2": Sst2Processor,
    "mrpc": MrpcProcessor,
    "sts-b": StsbProcessor,
    "stsb": StsbProcessor,
    "qqp": QqpProcessor,
    "mnli": MnliProcessor,
    "qnli": QnliProcessor,
    "rte": RteProcessor,
    "wnli": WnliProcessor,
    "xnli": XnliProcessor,
    "generic": GenericProcessor,
}


def get_processor(task_name: str, **generic_options) -> DataProcessor:
    """The processor for `task_name` (case-insensitive); options go to GenericProcessor."""
    key = task_name.lower()
    if key not in PROCESSORS:
        raise ValueError(f"unknown task_name {task_name!r}; expected one of {sorted(PROCESSORS)}")
    cls = PROCESSORS[key]
    return cls(**generic_options) if cls is GenericProcessor else cls()


# ---------------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ClassificationFeatures:
    """Tokenized examples, unpadded: example i is `token_ids[offsets[i]:offsets[i+1]]`
    (`[CLS] a [SEP] (b [SEP])`); its first `first_segment_lengths[i]` tokens have segment 0.

    `label_ids` is int32 class ids (-1 for unlabelled examples) or float32 scores (NaN when
    unlabelled). `num_truncated` counts the examples that had to be cut to max_seq_length.
    """

    token_ids: np.ndarray
    row_lengths: np.ndarray
    first_segment_lengths: np.ndarray
    label_ids: np.ndarray
    guids: List[str]
    num_truncated: int
    max_seq_length: int

    def __len__(self):
        return len(self.row_lengths)

    def as_lists(self):
        """`(input_ids, segment_ids)` per example, for inspection and tests."""
        ends = np.cumsum(self.row_lengths)
        out = []
        for i, end in enumerate(ends):
            ids = self.token_ids[end - self.row_lengths[i]:end].tolist()
            segments = [0] * int(self.first_segment_lengths[i])
            segments += [1] * (len(ids) - len(segments))
            out.append((ids, segments))
        return out


def truncate_pair(tokens_a: List[str], tokens_b: List[str], max_length: int) -> bool:
    """The original's rule: pop the last token of the longer list (b on ties) until the pair
    fits `max_length`. Modifies both lists; returns whether anything was removed."""
    truncated = False
    while len(tokens_a) + len(tokens_b) > max_length:
        truncated = True
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()
    return truncated


def convert_examples_to_features(examples: Sequence[InputExample], label_list: Sequence[str],
                                 max_seq_length: int, tokenizer,
                                 is_regression: bool = False) -> ClassificationFeatures:
    """Tokenize and pack `examples` with the original run_classifier's truncation.

    `tokenizer` is a `bert_tf.tokenization.FullTokenizer` (anything with `tokenize` and
    `convert_tokens_to_ids`).
    """
    if max_seq_length < 3:
        raise ValueError(f"max_seq_length must be at least 3, got {max_seq_length}")
    label_map = {label: i for i, label in enumerate(label_list)}
    cls_id, sep_id = tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]"])
    all_ids, lengths, first_lengths, label_ids, guids = [], [], [], [], []
    num_truncated = 0
    for example in examples:
        tokens_a = tokenizer.tokenize(example.text_a)
        if example.text_b is not None:
            tokens_b = tokenizer.tokenize(example.text_b)
            truncated = truncate_pair(tokens_a, tokens_b, max_seq_length - 3)
        else:
            tokens_b = None
            truncated = len(tokens_a) > max_seq_length - 2
            tokens_a = tokens_a[:max_seq_length - 2]
        num_truncated += truncated
        ids = [cls_id] + tokenizer.convert_tokens_to_ids(tokens_a) + [sep_id]
        first_lengths.append(len(ids))
        if tokens_b is not None:
            ids += tokenizer.convert_tokens_to_ids(tokens_b) + [sep_id]
        all_ids.extend(ids)
        lengths.append(len(ids))
        guids.append(example.guid)
        if example.label is None:
            label_ids.append(float("nan") if is_regression else -1)
        elif is_regression:
            label_ids.append(float(example.label))
        else:
            if example.label not in label_map:
                raise DataFormatError(f"{example.source}: label {example.label!r} is not in the "
                                      f"label list {list(label_list)}")
            label_ids.append(label_map[example.label])
    return ClassificationFeatures(
        token_ids=np.asarray(all_ids, np.int32),
        row_lengths=np.asarray(lengths, np.int32),
        first_segment_lengths=np.asarray(first_lengths, np.int32),
        label_ids=np.asarray(label_ids, np.float32 if is_regression else np.int32),
        guids=guids, num_truncated=int(num_truncated), max_seq_length=max_seq_length)


def feature_cache_key(source_file: str, vocab_file: str, do_lower_case: bool, max_seq_length: int,
                      task: str, label_list: Sequence[str], extra: str = "") -> str:
    """A digest of everything the features depend on: the data file's and vocabulary's bytes,
    the casing, max_seq_length, the task's layout and its labels."""
    return feature_cache.cache_key(
        [_FEATURE_CACHE_VERSION, task, list(label_list), bool(do_lower_case),
         int(max_seq_length), extra], [source_file, vocab_file])


_FEATURE_ARRAYS = ("token_ids", "row_lengths", "first_segment_lengths", "label_ids")
_CONVERT_CHUNK = 10000  # examples tokenized at a time when writing features to disk


def write_features(examples, directory: str, label_list: Sequence[str], max_seq_length: int,
                   tokenizer, is_regression: bool = False) -> str:
    """Tokenizes `examples` (any iterable, consumed once) chunk by chunk into `directory`:
    the arrays of `ClassificationFeatures` as a `bert_tf.data.feature_cache` directory
    (written under a temporary name and renamed when complete, so an interrupted run leaves
    no partial cache). Memory: one chunk of `_CONVERT_CHUNK` examples, whatever the number of
    examples.
    """
    totals = {"count": 0, "num_truncated": 0}

    def chunks():
        for chunk in feature_cache.chunked(examples, _CONVERT_CHUNK):
            features = convert_examples_to_features(chunk, label_list, max_seq_length,
                                                    tokenizer, is_regression)
            totals["count"] += len(features)
            totals["num_truncated"] += features.num_truncated
            yield {name: getattr(features, name) for name in _FEATURE_ARRAYS}

    dtypes = {"token_ids": "<i4", "row_lengths": "<i4", "first_segment_lengths": "<i4",
              "label_ids": "<f4" if is_regression else "<i4"}
    return feature_cache.write_arrays(
        chunks(), directory, _FEATURE_ARRAYS, dtypes,
        meta=lambda: dict(totals, max_seq_length=int(max_seq_length)),
        what=f"chunks of {_CONVERT_CHUNK} examples")


def open_features(directory: str) -> ClassificationFeatures:
    """The features `write_features` wrote, memory-mapped read-only (pages are read from disk
    as batches need them; nothing is loaded up front). `guids` is None."""
    arrays, meta = feature_cache.open_arrays(directory)
    return ClassificationFeatures(
        **{name: arrays[name] for name in _FEATURE_ARRAYS}, guids=None,
        num_truncated=int(meta["num_truncated"]), max_seq_length=int(meta["max_seq_length"]))


def load_features(processor: DataProcessor, data_dir: str, split: str, tokenizer, vocab_file: str,
                  do_lower_case: bool, max_seq_length: int, label_list: Sequence[str],
                  cache_dir: Optional[str] = None, set_name: str = ""
                  ) -> ClassificationFeatures:
    """The features of one split ("train", "dev" or "test"), tokenized once, in file order.

    With `cache_dir`, they are written by `write_features` to
    `<cache_dir>/<split>[_<set>]-<key>/` (key from `feature_cache_key`: the data file's and the
    vocabulary's bytes, casing, max_seq_length, task, labels, columns), streamed from the
    examples (memory does not grow with the file) and memory-mapped; later runs map the same
    directory. Without `cache_dir`, they are converted in memory.
    """
    source = processor.source_path(data_dir, split, set_name)
    examples = processor.iter_examples(data_dir, split, set_name)
    tag = split + (f"_{set_name}" if set_name else "")
    if not cache_dir:
        features = convert_examples_to_features(list(examples), label_list, max_seq_length,
                                                tokenizer, processor.is_regression)
        logging.info("%s: %d examples from %s, %d truncated to max_seq_length %d", tag,
                     len(features), source, features.num_truncated, max_seq_length)
        return features
    layout = repr(getattr(processor, "text_a_column", "")) + repr(
        getattr(processor, "text_b_column", "")) + repr(getattr(processor, "label_column", ""))
    key = feature_cache_key(source, vocab_file, do_lower_case, max_seq_length, processor.name,
                            label_list, extra=tag + layout)
    cache_path = os.path.join(cache_dir, f"{tag}-{key}")
    features, built = feature_cache.load_or_build(
        cache_path, lambda path: write_features(examples, path, label_list, max_seq_length,
                                                tokenizer, processor.is_regression),
        open_features)
    if not built:
        logging.info("%s: %d examples, features from cache %s (%d truncated to %d tokens)",
                     tag, len(features), cache_path, features.num_truncated, max_seq_length)
        return features
    logging.info("%s: %d examples from %s, %d truncated to max_seq_length %d; cached in %s",
                 tag, len(features), source, features.num_truncated, max_seq_length, cache_path)
    return features


# ---------------------------------------------------------------------------------------------
# tf.data
# ---------------------------------------------------------------------------------------------


# Training order without `order`: a seeded shuffle of the example indices through a buffer of
# min(examples, TRAIN_SHUFFLE_BUFFER) indices (about 200 bytes each in tf.data). Data sets up to
# this size get a full shuffle (the original run_classifier used a 100-record buffer over its
# TFRecords); larger ones a windowed shuffle of the file order, so memory stays bounded.
TRAIN_SHUFFLE_BUFFER = 100_000


def index_batches(num_examples: int, batch_size: int, is_training: bool,
                  seed: Optional[int] = None, order: Optional[np.ndarray] = None,
                  drop_remainder: Optional[bool] = None, input_context=None,
                  shuffle_buffer_size: int = TRAIN_SHUFFLE_BUFFER):
    """A tf.data pipeline of int64 index batches [batch] into features of `num_examples` rows:
    the order every feature pipeline shares (see `classification_dataset`)."""
    import tensorflow as tf

    if order is None:
        dataset = tf.data.Dataset.range(num_examples)
    elif callable(order):  # e.g. functools.partial(length_grouped_batches, ...): read lazily
        dataset = tf.data.Dataset.from_generator(
            lambda: (np.asarray(batch, np.int64) for batch in order()),
            output_signature=tf.TensorSpec([None], tf.int64)).unbatch()
    else:
        dataset = tf.data.Dataset.from_tensor_slices(np.asarray(order, np.int64))
    if input_context is not None:
        dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    if is_training:
        if order is None:
            buffer = max(1, min(num_examples, int(shuffle_buffer_size)))
            dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.repeat()
    if drop_remainder is None:
        drop_remainder = is_training
    return dataset.batch(batch_size, drop_remainder=drop_remainder)


def padded_rows(flat, offsets, row_lengths, indices, pad_to_multiple_of, pad_value=0,
                length_buckets=None):
    """Rows `flat[offsets[i]:offsets[i] + row_lengths[i]]` for i in `indices`, as an int32
    [len(indices), width] array padded with `pad_value`; width is `batching.padded_width` of
    the longest row (rounded up to `pad_to_multiple_of`, or the smallest of `length_buckets`
    that holds it). Also returns the row lengths."""
    lengths = np.asarray(row_lengths[indices], np.int64)
    width = batching.padded_width(int(lengths.max()) if len(lengths) else 0, pad_to_multiple_of,
                                  length_buckets)
    out = np.full((len(indices), width), pad_value, np.int32)
    for row, (start, length) in enumerate(zip(offsets[indices].tolist(), lengths.tolist())):
        out[row, :length] = flat[start:start + length]
    return out, lengths


def row_offsets(row_lengths) -> np.ndarray:
    """Exclusive cumulative sum: where each row starts in the flat array (int64)."""
    offsets = np.zeros(len(row_lengths), np.int64)
    if len(row_lengths) > 1:
        np.cumsum(row_lengths[:-1], out=offsets[1:])
    return offsets


def classification_dataset(features: ClassificationFeatures, batch_size: int, is_training: bool,
                           seed: Optional[int] = None, order: Optional[np.ndarray] = None,
                           pad_to_multiple_of: int = 8, drop_remainder: Optional[bool] = None,
                           input_context=None, shuffle_buffer_size: int = TRAIN_SHUFFLE_BUFFER,
                           length_buckets: Optional[Sequence[int]] = None):
    """A tf.data pipeline of dict batches `input_ids`, `input_mask`, `segment_ids` int32
    [batch, length] and `label_ids` [batch], each batch padded to its own longest sequence
    (rounded up to `pad_to_multiple_of`), not to max_seq_length, or with `length_buckets` to
    the smallest of those lengths that holds it (`bert_tf.data.batching`: XLA and TPUs).

    Training: shuffled (seeded; `TRAIN_SHUFFLE_BUFFER`) and repeated forever, or, with `order`
    (an index array such as `length_grouped_order`, or a callable returning an iterator of
    index arrays such as a `functools.partial` of `length_grouped_batches`, read lazily), that
    order repeated; `drop_remainder=True` by default as in
    the original. Evaluation/prediction: one pass in `order` (indices into the features; e.g.
    `length_sorted_order(features)` to batch similar lengths together — the caller undoes the
    permutation). `input_context` (from `distribute_datasets_from_function`) shards the data
    and turns `batch_size` into the per-replica size.

    The graph holds no feature data: each batch of indices is gathered from the feature arrays
    (memory-mapped from the feature cache by `load_features`) by a NumPy function, so memory
    does not grow with the number of examples (beyond 8 bytes an example for `order` and the
    row offsets).
    """
    import tensorflow as tf

    offsets = row_offsets(features.row_lengths)
    token_ids, row_lengths = features.token_ids, features.row_lengths
    first_lengths, labels = features.first_segment_lengths, features.label_ids
    label_dtype = tf.as_dtype(labels.dtype)

    def gather(indices):
        ids, lengths = padded_rows(token_ids, offsets, row_lengths, indices, pad_to_multiple_of,
                                   length_buckets=length_buckets)
        positions = np.arange(ids.shape[1])[None, :]
        mask = (positions < lengths[:, None]).astype(np.int32)
        segments = ((positions >= first_lengths[indices][:, None]) & (mask > 0)).astype(np.int32)
        return ids, mask, segments, np.asarray(labels[indices])

    dataset = index_batches(len(features), batch_size, is_training, seed, order, drop_remainder,
                            input_context, shuffle_buffer_size)
    shape = batching.static_batch_shape(dataset.element_spec.shape[0], length_buckets)

    @tf.autograph.experimental.do_not_convert  # plain TF calls; nothing to convert
    def to_batch(indices):
        ids, mask, segments, label_ids = tf.numpy_function(
            gather, [indices], [tf.int32, tf.int32, tf.int32, label_dtype], stateful=False)
        for tensor in (ids, mask, segments):
            tensor.set_shape(shape)
        label_ids.set_shape(shape[:1])
        return {"input_ids": ids, "input_mask": mask, "segment_ids": segments,
                "label_ids": label_ids}

    dataset = dataset.map(to_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def length_sorted_order(features: ClassificationFeatures) -> np.ndarray:
    """Indices that sort the examples by length (stable): evaluation batches then hold similar
    lengths and need little padding. Results come back in this order; undo with
    `np.argsort(order)`."""
    return np.argsort(features.row_lengths, kind="stable")



def length_grouped_batches(features: ClassificationFeatures, batch_size: int, num_batches: int,
                           seed: int, batches_per_group: int = 50) -> Iterator[np.ndarray]:
    """A training order of `num_batches` batches of `batch_size` indices whose batches hold
    examples of similar length (so per-batch padding is small) while staying random; yields
    the batches one at a time (memory: one epoch's permutation and one group).

    The stream is the original's (a fresh seeded permutation per epoch, epochs back to back,
    batches may cross an epoch boundary); it is cut into groups of `batches_per_group` batches,
    each group sorted by length and split into batches, and the batches of a group are
    shuffled. Each epoch still visits every example once; only which examples share a batch
    changes (toward similar lengths). One `RandomState(seed)` draws every epoch's permutation
    first and then every group's shuffle; a second generator, advanced past the permutations,
    makes the group shuffles, so the order is produced lazily with the same draws.
    """
    n = len(features)
    if n == 0:
        raise ValueError("no training examples")
    group = batch_size * max(1, int(batches_per_group))
    needed = batch_size * int(num_batches)
    epochs = -(-needed // n)
    epoch_rng = np.random.RandomState(seed)
    group_rng = np.random.RandomState(seed)
    for _ in range(epochs):
        group_rng.permutation(n)
    lengths = features.row_lengths
    buffer = np.zeros(0, np.int64)
    produced = 0
    while produced < needed:
        take = min(group, needed - produced)
        while len(buffer) < take:
            buffer = np.concatenate([buffer, epoch_rng.permutation(n)])
        chunk, buffer = buffer[:take], buffer[take:]
        produced += take
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches = [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
        for b in group_rng.permutation(len(batches)):
            yield batches[b]


def length_grouped_order(features: ClassificationFeatures, batch_size: int, num_batches: int,
                         seed: int, batches_per_group: int = 50) -> np.ndarray:
    """`length_grouped_batches` as one array of `num_batches * batch_size` indices."""
    return np.concatenate(list(length_grouped_batches(features, batch_size, num_batches, seed,
                                                      batches_per_group)))
