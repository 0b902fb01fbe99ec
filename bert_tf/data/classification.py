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
   `load_features` caches them on disk keyed by the source files, the vocabulary, the casing and
   max_seq_length, so a second run does not tokenize again. `classification_dataset` builds a
   tf.data pipeline whose batches are padded to their longest sequence, not to max_seq_length.
"""

import csv
import dataclasses
import hashlib
import io
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from absl import logging

from bert_tf import files
from bert_tf.data import batching

# Bump when the cached feature layout or the conversion rules change.
_FEATURE_CACHE_VERSION = 1


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


def read_tsv(path: str) -> List[Tuple[int, List[str]]]:
    """Rows of a tab-separated file as `(1-based line number, fields)`.

    No quote character (a `"` is an ordinary character, as in the original), a leading UTF-8
    byte-order mark is dropped, `\\r\\n` line ends are accepted. Empty lines are skipped and
    reported through absl logging (never dropped silently).
    """
    rows, empty_lines = [], []
    lines = files.read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # The newline that ends the last line.
    for number, line in enumerate(lines, start=1):
        if line.endswith("\r"):
            line = line[:-1]
        if not line.strip():
            empty_lines.append(number)
            continue
        rows.append((number, line.split("\t")))
    _report_empty_lines(path, empty_lines)
    return rows


def read_csv(path: str) -> List[Tuple[int, List[str]]]:
    """Rows of a standard (quoted, comma-separated) CSV file as `(line number, fields)`."""
    rows, empty_lines = [], []
    text = files.read_text(path)
    # A field may be as long as the file (a long text is data, as in a TSV), not csv's 128 KiB.
    csv.field_size_limit(max(csv.field_size_limit(), len(text)))
    with io.StringIO(text, newline="") as f:
        reader = csv.reader(f)
        start = 1
        try:
            for fields in reader:
                if not any(field.strip() for field in fields):
                    empty_lines.append(start)
                else:
                    rows.append((start, fields))
                start = reader.line_num + 1
        except csv.Error as error:
            raise DataFormatError(f"{path}:{start}: {error}; expected CSV (RFC 4180) rows"
                                  ) from None
    _report_empty_lines(path, empty_lines)
    return rows


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
        return self._read_examples(self.train_path(data_dir), self.train_layout, "train")

    def get_dev_examples(self, data_dir: str, set_name: str = "") -> List[InputExample]:
        layout = self.dev_layout or self.train_layout
        return self._read_examples(self.dev_path(data_dir, set_name), layout, "dev")

    def get_test_examples(self, data_dir: str, set_name: str = "") -> List[InputExample]:
        return self._read_examples(self.test_path(data_dir, set_name), self.test_layout, "test")

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

    def _read_examples(self, path, layout: ColumnLayout, set_type: str) -> List[InputExample]:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{self.name}: {set_type} file {path} does not exist")
        rows = read_tsv(path)
        if layout.has_header:
            rows = rows[1:]
        examples = []
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
            examples.append(InputExample(guid=f"{set_type}-{len(examples)}", text_a=text_a,
                                         text_b=text_b, label=label, source=where))
        return examples

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
            self.get_train_examples(data_dir)
        return list(self._labels)

    def get_train_examples(self, data_dir):
        path = self.train_path(data_dir)
        examples = self._read_generic(path, "train", require_label=True)
        if not self.is_regression and self._labels is None:
            self._labels = _sorted_labels({e.label for e in examples})
        if not self.is_regression:
            self._validate_labels(examples)
        return examples

    def get_dev_examples(self, data_dir, set_name=""):
        examples = self._read_generic(self.dev_path(data_dir, set_name), "dev", require_label=True)
        if not self.is_regression:
            self.get_labels(data_dir)
            self._validate_labels(examples)
        return examples

    def get_test_examples(self, data_dir, set_name=""):
        examples = self._read_generic(self.test_path(data_dir, set_name), "test", require_label=False)
        if not self.is_regression and any(e.label is not None for e in examples):
            self.get_labels(data_dir)
            self._validate_labels(examples)
        return examples

    def _validate_labels(self, examples):
        known = set(self._labels)
        for example in examples:
            if example.label is not None and example.label not in known:
                raise DataFormatError(
                    f"{example.source}: label {example.label!r} does not occur in the training "
                    f"labels {self._labels}")

    def _read_generic(self, path, set_type, require_label):
        rows = read_table(path)
        if not rows:
            raise DataFormatError(f"{path}: empty file; expected a header row naming the columns")
        header_line, header = rows[0]
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
        examples = []
        for line_number, fields in rows[1:]:
            where = f"{path}:{line_number}"
            if len(fields) != len(header):
                raise DataFormatError(f"{where}: {len(fields)} columns, but the header has "
                                      f"{len(header)} ({header})")
            value = fields[label].strip() if label is not None else None
            if value is not None and self.is_regression:
                value = self._check_label(value, where)
            examples.append(InputExample(guid=f"{set_type}-{len(examples)}", text_a=fields[a],
                                         text_b=fields[b] if b is not None else None,
                                         label=value, source=where))
        return examples


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


def _sha256_of_file(path, digest):
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)


def feature_cache_key(source_file: str, vocab_file: str, do_lower_case: bool, max_seq_length: int,
                      task: str, label_list: Sequence[str], extra: str = "") -> str:
    """A digest of everything the features depend on: the data file's and vocabulary's bytes,
    the casing, max_seq_length, the task's layout and its labels."""
    digest = hashlib.sha256()
    digest.update(json.dumps([_FEATURE_CACHE_VERSION, task, list(label_list), bool(do_lower_case),
                              int(max_seq_length), extra]).encode())
    _sha256_of_file(source_file, digest)
    digest.update(b"\0vocab\0")
    _sha256_of_file(vocab_file, digest)
    return digest.hexdigest()[:24]


def _save_features(path, features: ClassificationFeatures):
    buffer = io.BytesIO()
    np.savez(buffer, token_ids=features.token_ids, row_lengths=features.row_lengths,
             first_segment_lengths=features.first_segment_lengths, label_ids=features.label_ids,
             guids=np.asarray(features.guids, dtype=np.str_),
             num_truncated=np.int64(features.num_truncated),
             max_seq_length=np.int64(features.max_seq_length))
    files.atomic_write(path, buffer.getvalue())


def _load_saved_features(path) -> ClassificationFeatures:
    with np.load(path, allow_pickle=False) as data:
        return ClassificationFeatures(
            token_ids=data["token_ids"], row_lengths=data["row_lengths"],
            first_segment_lengths=data["first_segment_lengths"], label_ids=data["label_ids"],
            guids=[str(g) for g in data["guids"]], num_truncated=int(data["num_truncated"]),
            max_seq_length=int(data["max_seq_length"]))


def load_features(processor: DataProcessor, data_dir: str, split: str, tokenizer, vocab_file: str,
                  do_lower_case: bool, max_seq_length: int, label_list: Sequence[str],
                  cache_dir: Optional[str] = None, set_name: str = ""
                  ) -> Tuple[List[InputExample], ClassificationFeatures]:
    """Examples and features of one split ("train", "dev" or "test"), tokenized once.

    With `cache_dir`, features are stored as `<cache_dir>/<split>[_<set>]-<key>.npz` (key from
    `feature_cache_key`) and reused by later runs; the examples are always read (that is cheap
    and validates the file).
    """
    if split == "train":
        examples, source = processor.get_train_examples(data_dir), processor.train_path(data_dir)
    elif split == "dev":
        examples = processor.get_dev_examples(data_dir, set_name)
        source = processor.dev_path(data_dir, set_name)
    elif split == "test":
        examples = processor.get_test_examples(data_dir, set_name)
        source = processor.test_path(data_dir, set_name)
    else:
        raise ValueError(f"split must be train, dev or test, not {split!r}")
    tag = split + (f"_{set_name}" if set_name else "")
    cache_path = None
    if cache_dir:
        layout = repr(getattr(processor, "text_a_column", "")) + repr(
            getattr(processor, "text_b_column", "")) + repr(getattr(processor, "label_column", ""))
        key = feature_cache_key(source, vocab_file, do_lower_case, max_seq_length, processor.name,
                                label_list, extra=tag + layout)
        cache_path = os.path.join(cache_dir, f"{tag}-{key}.npz")
        if os.path.isfile(cache_path):
            features = _load_saved_features(cache_path)
            if len(features) == len(examples):
                logging.info("%s: %d examples, features from cache %s (%d truncated to %d tokens)",
                             tag, len(features), cache_path, features.num_truncated, max_seq_length)
                return examples, features
            logging.warning("%s: stale feature cache %s (%d rows, %d examples); rebuilding",
                            tag, cache_path, len(features), len(examples))
    features = convert_examples_to_features(examples, label_list, max_seq_length, tokenizer,
                                            processor.is_regression)
    logging.info("%s: %d examples from %s, %d truncated to max_seq_length %d", tag, len(features),
                 source, features.num_truncated, max_seq_length)
    if cache_path:
        os.makedirs(cache_dir, exist_ok=True)
        _save_features(cache_path, features)
    return examples, features


# ---------------------------------------------------------------------------------------------
# tf.data
# ---------------------------------------------------------------------------------------------


def classification_dataset(features: ClassificationFeatures, batch_size: int, is_training: bool,
                           seed: Optional[int] = None, order: Optional[np.ndarray] = None,
                           pad_to_multiple_of: int = 8, drop_remainder: Optional[bool] = None,
                           input_context=None, length_buckets: Optional[Sequence[int]] = None):
    """A tf.data pipeline of dict batches `input_ids`, `input_mask`, `segment_ids` int32
    [batch, length] and `label_ids` [batch], each batch padded to its own longest sequence
    (rounded up to `pad_to_multiple_of`), not to max_seq_length, or with `length_buckets` to
    the smallest of those lengths that holds it (`bert_tf.data.batching`: XLA and TPUs).

    Training: shuffled (seeded) and repeated forever, or, with `order` (e.g.
    `length_grouped_order`), that order repeated; `drop_remainder=True` by default as in the
    original. Evaluation/prediction: one pass in `order` (indices into the features; e.g.
    `length_sorted_order(features)` to batch similar lengths together — the caller undoes the
    permutation). `input_context` (from `distribute_datasets_from_function`) shards the data
    and turns `batch_size` into the per-replica size.
    """
    import tensorflow as tf

    indices = np.arange(len(features)) if order is None else np.asarray(order)
    n = len(indices)
    offsets = np.concatenate([[0], np.cumsum(features.row_lengths)[:-1]]).astype(np.int64)
    token_ids = tf.constant(features.token_ids)
    starts = tf.constant(offsets[indices])
    lengths = tf.constant(features.row_lengths[indices].astype(np.int64))
    first = tf.constant(features.first_segment_lengths[indices].astype(np.int64))
    labels = tf.constant(features.label_ids[indices])

    dataset = tf.data.Dataset.from_tensor_slices((starts, lengths, first, labels))
    if input_context is not None:
        dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    if is_training:
        if order is None:
            dataset = dataset.shuffle(n, seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.repeat()
    if drop_remainder is None:
        drop_remainder = is_training

    def one_example(start, length, first_length, label):
        ids = token_ids[start:start + length]
        positions = tf.range(length)
        segment_ids = tf.cast(positions >= first_length, tf.int32)
        return {"input_ids": ids, "input_mask": tf.ones_like(ids), "segment_ids": segment_ids,
                "label_ids": label}

    dataset = dataset.map(one_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = batching.pad_and_batch(
        dataset, batch_size, drop_remainder,
        padding_values={"input_ids": 0, "input_mask": 0, "segment_ids": 0},
        pad_to_multiple_of=pad_to_multiple_of, length_buckets=length_buckets)
    return dataset.prefetch(tf.data.AUTOTUNE)


def length_sorted_order(features: ClassificationFeatures) -> np.ndarray:
    """Indices that sort the examples by length (stable): evaluation batches then hold similar
    lengths and need little padding. Results come back in this order; undo with
    `np.argsort(order)`."""
    return np.argsort(features.row_lengths, kind="stable")



def length_grouped_order(features: ClassificationFeatures, batch_size: int, num_batches: int,
                         seed: int, batches_per_group: int = 50) -> np.ndarray:
    """A training order of `num_batches * batch_size` indices whose batches hold examples of
    similar length (so per-batch padding is small) while staying random.

    The stream is the original's (a fresh seeded permutation per epoch, epochs back to back,
    batches may cross an epoch boundary); it is cut into groups of `batches_per_group` batches,
    each group sorted by length and split into batches, and the batches of a group are
    shuffled. Each epoch still visits every example once; only which examples share a batch
    changes (toward similar lengths).
    """
    n = len(features)
    if n == 0:
        raise ValueError("no training examples")
    rng = np.random.RandomState(seed)
    group = batch_size * max(1, int(batches_per_group))
    needed = batch_size * int(num_batches)
    epochs = -(-needed // n)
    stream = np.concatenate([rng.permutation(n) for _ in range(epochs)])[:needed]
    lengths = features.row_lengths
    pieces = []
    for start in range(0, needed, group):
        chunk = stream[start:start + group]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches = [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
        for b in rng.permutation(len(batches)):
            pieces.append(batches[b])
    return np.concatenate(pieces)
