"""Pretraining TFRecords: the feature schema, a fast `tf.train.Example` encoder, and the reader.

The schema is the original `create_pretraining_data.py` one (DESIGN.md): int64 `input_ids`,
`input_mask`, `segment_ids` [max_seq_length]; int64 `masked_lm_positions`, `masked_lm_ids` and
float `masked_lm_weights` [max_predictions_per_seq]; int64 `next_sentence_labels` [1]
(0 = the real next segment, 1 = a random one). Files written by the original script are read
unchanged, and files written here parse with the original feature spec.

TensorFlow is imported inside the functions that need it, not at module level: the encoder runs
in the data-creation worker processes, which only need pure Python and must start fast.
"""

import os
import re
import struct
import zlib

from bert_tf import files as files_lib

FEATURE_NAMES = (
    "input_ids",
    "input_mask",
    "segment_ids",
    "masked_lm_positions",
    "masked_lm_ids",
    "masked_lm_weights",
    "next_sentence_labels",
)
_SEQUENCE_FEATURES = ("input_ids", "input_mask", "segment_ids")
_PREDICTION_FEATURES = ("masked_lm_positions", "masked_lm_ids", "masked_lm_weights")


def feature_spec(max_seq_length, max_predictions_per_seq):
    """The `tf.io.parse_example` spec of a pretraining record (the original's, exactly)."""
    import tensorflow as tf

    return {
        "input_ids": tf.io.FixedLenFeature([max_seq_length], tf.int64),
        "input_mask": tf.io.FixedLenFeature([max_seq_length], tf.int64),
        "segment_ids": tf.io.FixedLenFeature([max_seq_length], tf.int64),
        "masked_lm_positions": tf.io.FixedLenFeature([max_predictions_per_seq], tf.int64),
        "masked_lm_ids": tf.io.FixedLenFeature([max_predictions_per_seq], tf.int64),
        "masked_lm_weights": tf.io.FixedLenFeature([max_predictions_per_seq], tf.float32),
        "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64),
    }


# ---------------------------------------------------------------------------------------------
# Encoder: tf.train.Example bytes written directly (protobuf wire format).
#
# Building a tf.train.Example message per instance costs more than creating the instance, so the
# bytes are assembled from precomputed varints. The result equals
# `tf.train.Example(...).SerializeToString(deterministic=True)` (map keys in sorted order), which
# the tests check; the original's map order was whatever its protobuf runtime produced, so only
# the parsed features, not the raw bytes, can match files made by the original script.
# ---------------------------------------------------------------------------------------------


def _varint(value):
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _length_delimited(field_number, payload):
    return _varint((field_number << 3) | 2) + _varint(len(payload)) + payload


# Sorted key order = protobuf's deterministic map serialization.
_SORTED_NAMES = tuple(sorted(FEATURE_NAMES))
_KEY_PREFIX = {name: _length_delimited(1, name.encode()) for name in FEATURE_NAMES}
_FLOAT_ONE = struct.pack("<f", 1.0)
_FLOAT_ZERO = struct.pack("<f", 0.0)


class ExampleEncoder:
    """Encodes pretraining instances as serialized `tf.train.Example` bytes.

    Args:
      max_seq_length: length the sequence features are padded to.
      max_predictions_per_seq: length the masked-LM features are padded to.
      max_id: the largest token id that will be encoded (ids are non-negative).
    """

    def __init__(self, max_seq_length, max_predictions_per_seq, max_id):
        self.max_seq_length = max_seq_length
        self.max_predictions_per_seq = max_predictions_per_seq
        self._varints = [_varint(i) for i in range(max(max_id, max_seq_length) + 1)]
        self._headers = {name: {} for name in FEATURE_NAMES}

    def _header(self, name, payload_length):
        """Everything of a map entry before its packed values; depends only on their length."""
        headers = self._headers[name]
        header = headers.get(payload_length)
        if header is None:
            placeholder = b"\x00" * payload_length
            # Feature{int64_list(3) | float_list(2): {value(1), packed}}
            kind = 2 if name == "masked_lm_weights" else 3
            feature = _length_delimited(kind, _length_delimited(1, placeholder))
            entry = _length_delimited(1, _KEY_PREFIX[name] + _length_delimited(2, feature))
            header = headers[payload_length] = entry[:-payload_length]
        return header

    def encode(self, input_ids, segment_a_length, masked_lm_positions, masked_lm_ids,
               is_random_next):
        """Serialized Example for one instance.

        Args:
          input_ids: ids of `[CLS] A [SEP] B [SEP]` after masking, unpadded.
          segment_a_length: number of tokens of segment A (without specials); segment ids are 0
            for `[CLS] A [SEP]` and 1 for `B [SEP]`, as the original builds them.
          masked_lm_positions: sorted positions of the predicted pieces.
          masked_lm_ids: the original ids at those positions.
          is_random_next: True if B is a random segment (label 1).
        """
        num_tokens = len(input_ids)
        pad = self.max_seq_length - num_tokens
        if pad < 0:
            raise ValueError(
                f"instance has {num_tokens} tokens, more than max_seq_length={self.max_seq_length}")
        num_predictions = len(masked_lm_positions)
        prediction_pad = self.max_predictions_per_seq - num_predictions
        if prediction_pad < 0:
            raise ValueError(
                f"instance has {num_predictions} predictions, more than "
                f"max_predictions_per_seq={self.max_predictions_per_seq}")
        varint = self._varints.__getitem__
        header = self._header
        zero = b"\x00"
        num_a = segment_a_length + 2
        ids = b"".join(map(varint, input_ids)) + zero * pad
        positions = b"".join(map(varint, masked_lm_positions)) + zero * prediction_pad
        labels = b"".join(map(varint, masked_lm_ids)) + zero * prediction_pad
        mask = b"\x01" * num_tokens + zero * pad
        segments = zero * num_a + b"\x01" * (num_tokens - num_a) + zero * pad
        weights = _FLOAT_ONE * num_predictions + _FLOAT_ZERO * prediction_pad
        label = b"\x01" if is_random_next else zero
        # Sorted feature names: protobuf's deterministic map order.
        body = b"".join((
            header("input_ids", len(ids)), ids,
            header("input_mask", len(mask)), mask,
            header("masked_lm_ids", len(labels)), labels,
            header("masked_lm_positions", len(positions)), positions,
            header("masked_lm_weights", len(weights)), weights,
            header("next_sentence_labels", 1), label,
            header("segment_ids", len(segments)), segments,
        ))
        return b"\n" + _varint(len(body)) + body


# ---------------------------------------------------------------------------------------------
# TFRecord framing: uint64 length, masked CRC-32C of the length, data, masked CRC-32C of the
# data — without TensorFlow, so that the data-creation workers need not import it.
#
# CRC-32C comes from `google-crc32c` (the C library TensorFlow and Google Cloud Storage use,
# SSE4.2/ARMv8 CRC instructions where the CPU has them): constant memory for any record
# length, and about 50x faster than the NumPy table-gather this module used to have (whose
# table grew by 1 KiB, [256] uint32, per byte of the longest record: it held the contribution
# of every byte value at every distance from the end of the record).
# ---------------------------------------------------------------------------------------------


def _mask_crc(crc):
    """TFRecord's masked CRC: rotate right by 15 bits and add a constant (mod 2**32)."""
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class Crc32c:
    """CRC-32C (Castagnoli) of many messages, and the TFRecord framing that uses it."""

    def __init__(self):
        import google_crc32c  # pylint: disable=import-outside-toplevel

        self._value = google_crc32c.value

    def crc(self, messages):
        """CRC-32C of each bytes-like object in `messages` (a list), as a uint32 array."""
        import numpy as np  # pylint: disable=import-outside-toplevel

        value = self._value
        return np.fromiter((value(m if isinstance(m, bytes) else bytes(m))
                            for m in messages), dtype=np.uint32, count=len(messages))

    @staticmethod
    def _mask(crc):
        """`_mask_crc` of a NumPy array of CRCs."""
        crc = crc.astype("uint64")
        return _mask_crc(crc)

    def frame(self, records):
        """TFRecord framing of each record: the bytes a TFRecord file stores for it."""
        value = self._value
        pack_header = struct.Struct("<QI").pack
        pack_crc = struct.Struct("<I").pack
        framed = []
        for record in records:
            length = struct.pack("<Q", len(record))
            framed.append(pack_header(len(record), _mask_crc(value(length)))
                          + record + pack_crc(_mask_crc(value(record))))
        return framed


# ---------------------------------------------------------------------------------------------
# Writer: TFRecord files, written under a temporary name and renamed when complete.
# ---------------------------------------------------------------------------------------------


def check_output_files(output_files):
    """ValueError naming the first output path that cannot be written: an existing directory,
    or a path below a file. Missing directories are fine (the writer creates them)."""
    for path in output_files:
        if os.path.isdir(path):
            raise ValueError(f"output_file {path!r} is a directory; expected a file path "
                             f"(e.g. {os.path.join(path, 'train.tfrecord')!r})")
        parent = os.path.dirname(os.path.abspath(path))
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise ValueError(f"output_file {path!r}: {parent!r} is a file, not a directory")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ValueError(f"output_file {path!r}: directory {parent!r} is not writable")


class RecordFileWriter:
    """Round-robin TFRecord writer over several output files; never leaves a partial file.

    `write_framed` takes records already framed by `Crc32c.frame` (the data-creation workers
    frame in parallel); `write` frames one record itself. Data goes to `<output>.tmp-<pid>`
    files; `close()` flushes them all to disk and then renames them to their final names
    (`bert_tf.files.publish_files`: one quick step at the end, so a run that fails or is
    killed while writing leaves an existing set of the same names untouched), `abort()` (or
    leaving a `with` block through an exception) deletes them. With `gzip=True` each file is one GZIP stream, as
    TensorFlow's `TFRecordOptions(compression_type="GZIP")` writes it.
    """

    _FLUSH_BYTES = 1 << 20

    def __init__(self, output_files, gzip=False):
        self.output_files = list(output_files)
        if not self.output_files:
            raise ValueError("output_file: at least one output file is required")
        if len(set(self.output_files)) != len(self.output_files):
            raise ValueError(f"output_file: a file is listed twice in {self.output_files}")
        check_output_files(self.output_files)
        self._created_directories = []
        for path in self.output_files:
            parent = os.path.dirname(os.path.abspath(path))
            missing = []
            while not os.path.isdir(parent):
                missing.append(parent)
                parent = os.path.dirname(parent)
            for directory in reversed(missing):
                os.mkdir(directory)
                self._created_directories.append(directory)
        self._temp_files = [f"{path}.tmp-{os.getpid()}" for path in self.output_files]
        self._files = []
        try:
            for temp in self._temp_files:
                self._files.append(open(temp, "wb"))
        except Exception:
            self.abort()
            raise
        self._compressors = ([zlib.compressobj(6, zlib.DEFLATED, 31) for _ in self._files]
                             if gzip else None)
        self._buffers = [[] for _ in self._files]
        self._buffered = [0] * len(self._files)
        self._next = 0
        self._crc = None
        self.num_records = [0] * len(self.output_files)

    def write_framed(self, framed_record):
        index = self._next
        self._buffers[index].append(framed_record)
        self._buffered[index] += len(framed_record)
        if self._buffered[index] >= self._FLUSH_BYTES:
            self._flush(index)
        self.num_records[index] += 1
        self._next = (index + 1) % len(self._files)

    def write_framed_many(self, framed_records):
        """`write_framed` for each record of a sequence, in order, with less per-record work."""
        num_files = len(self._files)
        for start in range(0, len(framed_records), 4096):
            chunk = framed_records[start:start + 4096]
            for k in range(min(num_files, len(chunk))):
                index = (self._next + k) % num_files
                part = chunk[k::num_files]
                self._buffers[index].extend(part)
                self._buffered[index] += sum(map(len, part))
                self.num_records[index] += len(part)
                if self._buffered[index] >= self._FLUSH_BYTES:
                    self._flush(index)
            self._next = (self._next + len(chunk)) % num_files

    def write_framed_block(self, index, data, count):
        """Appends `count` framed records, joined in `data`, to output file `index`.

        For callers that keep the round-robin themselves (record j of the run to file j mod n),
        instead of `write_framed`; the two are not meant to be mixed.
        """
        self._buffers[index].append(data)
        self._buffered[index] += len(data)
        self.num_records[index] += count
        if self._buffered[index] >= self._FLUSH_BYTES:
            self._flush(index)

    @property
    def compressed(self):
        return self._compressors is not None

    def claim_region(self, index, size, count):
        """Reserves `size` bytes at the end of output file `index` for `count` framed records
        that the caller writes itself (e.g. other processes, through a shared mapping); returns
        (temporary path, offset). Uncompressed output only; the round-robin is the caller's.
        """
        if self.compressed:
            raise ValueError("claim_region: GZIP output is one stream, written in order")
        self._flush(index)
        file = self._files[index]
        file.flush()
        offset = file.tell()
        os.ftruncate(file.fileno(), offset + size)
        file.seek(offset + size)
        self.num_records[index] += count
        return self._temp_files[index], offset

    def write(self, record):
        """Writes one serialized record (unframed bytes)."""
        if self._crc is None:
            self._crc = Crc32c()
        self.write_framed(self._crc.frame([record])[0])

    def _flush(self, index):
        data = b"".join(self._buffers[index])
        if self._compressors is not None:
            data = self._compressors[index].compress(data)
        self._files[index].write(data)
        self._buffers[index] = []
        self._buffered[index] = 0

    def close(self):
        """Finishes every file and moves it to its final name; returns {path: size in bytes}."""
        for index, file in enumerate(self._files):
            self._flush(index)
            if self._compressors is not None:
                file.write(self._compressors[index].flush())
            file.close()
        self._files = []
        try:
            files_lib.publish_files(list(zip(self._temp_files, self.output_files)))
        except BaseException:
            self.abort()
            raise
        return {path: os.path.getsize(path) for path in self.output_files}

    def abort(self):
        for file in self._files:
            file.close()
        self._files = []
        for temp in self._temp_files:
            if os.path.exists(temp):
                os.remove(temp)
        for directory in reversed(self._created_directories):  # a failed run leaves nothing
            if os.path.isdir(directory) and not os.listdir(directory):
                os.rmdir(directory)
        self._created_directories = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        return False


# ---------------------------------------------------------------------------------------------
# Reader
# ---------------------------------------------------------------------------------------------

_GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path):
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def expand_file_patterns(file_pattern):
    """Files matching a comma-separated list of globs (each sorted); errors name empty patterns."""
    return files_lib.expand_file_patterns(file_pattern, "input_file")


def check_record_file(path, max_seq_length, max_predictions_per_seq, compression_type="",
                      vocab_size=None):
    """Checks the first record of a file against the expected feature lengths (and, with
    `vocab_size`, its token ids against the model's vocabulary).

    Raises ValueError naming the file, the feature, its length in the file and the expected one,
    so that a file made with other flags fails clearly instead of as an opaque parse error.
    Returns False for a file without records.
    """
    import tensorflow as tf

    dataset = tf.data.TFRecordDataset(path, compression_type=compression_type).take(1)
    try:
        records = [r.numpy() for r in dataset]
    except tf.errors.DataLossError as error:
        raise files_lib.DataFormatError(f"{path}: {data_loss_text(error)}; the file is damaged, "
                                        f"recreate or re-copy it") from None
    if not records:
        return False
    check_example(records[0], path, max_seq_length, max_predictions_per_seq, vocab_size)
    return True


def check_example(record, where, max_seq_length, max_predictions_per_seq, vocab_size=None):
    """Checks one serialized record: a tf.train.Example with every pretraining feature, of the
    right type (int64; float for masked_lm_weights) and length (and, with `vocab_size`, token
    ids below it). DataFormatError naming `where` (the file, and the record) otherwise."""
    from google.protobuf.message import DecodeError
    import tensorflow as tf

    try:
        example = tf.train.Example.FromString(record)
    except DecodeError:
        raise files_lib.DataFormatError(
            f"{where}: the record is not a tf.train.Example; is it a pretraining TFRecord "
            f"file?") from None
    features = example.features.feature
    expected = {name: max_seq_length for name in _SEQUENCE_FEATURES}
    expected.update({name: max_predictions_per_seq for name in _PREDICTION_FEATURES})
    expected["next_sentence_labels"] = 1
    for name, want in expected.items():
        if name not in features:
            raise files_lib.DataFormatError(
                f"{where}: record has no feature {name!r}; is it a pretraining TFRecord file "
                f"(features {', '.join(FEATURE_NAMES)})?")
        feature = features[name]
        kind = feature.WhichOneof("kind")
        want_kind = "float_list" if name == "masked_lm_weights" else "int64_list"
        if kind is not None and kind != want_kind:
            raise files_lib.DataFormatError(
                f"{where}: feature {name!r} is a {kind}; expected "
                f"{'an' if want_kind[0] == 'i' else 'a'} {want_kind} (the "
                f"pretraining TFRecord features of create_pretraining_data)")
        values = getattr(feature, kind).value if kind else []
        if len(values) != want:
            flag = ("max_predictions_per_seq" if name in _PREDICTION_FEATURES
                    else "max_seq_length" if name in _SEQUENCE_FEATURES else None)
            hint = (f"the file was made with {flag}={len(values)}, the reader expects "
                    f"{flag}={want}" if flag else f"expected {want}")
            raise files_lib.DataFormatError(
                f"{where}: feature {name!r} has length {len(values)}, expected {want}: {hint}")
    if vocab_size is not None:
        for name in ("input_ids", "masked_lm_ids"):
            largest = max(features[name].int64_list.value, default=0)
            if largest >= vocab_size:
                raise files_lib.DataFormatError(
                    f"{where}: feature {name!r} holds token id {largest}, but the model's "
                    f"vocab_size is {vocab_size}: the data was made with a larger vocab.txt "
                    f"than --bert_config_file describes")


def find_bad_record(files, compression, max_seq_length, max_predictions_per_seq):
    """The first record of `files` that `check_example` refuses, as its DataFormatError (naming
    the file and the record number), or None. Reads every record: only for naming the record
    behind a parse error that TensorFlow reports without one."""
    import tensorflow as tf

    for path, ctype in zip(files, compression):
        for index, record in enumerate(tf.data.TFRecordDataset(path, compression_type=ctype)):
            try:
                check_example(record.numpy(), f"{path}: record {index}", max_seq_length,
                              max_predictions_per_seq)
            except files_lib.DataFormatError as error:
                return error
    return None


def scan_record_framing(path, batch_records=65536):
    """Walks the framing of an uncompressed TFRecord file (each record's length header and its
    CRC, skipping the data) and returns the number of records.

    Raises ValueError naming the file and byte offset when the file is cut short (the last
    record incomplete: TensorFlow's reader would stop there without a word) or a length header
    is corrupt. It reads 12 bytes a record, so it is cheap even for large files; the data CRCs
    are checked by TensorFlow while reading.
    """
    size = os.path.getsize(path)
    crc = Crc32c()
    count, offset = 0, 0
    with open(path, "rb") as reader:
        while offset < size:
            headers, offsets = [], []
            while offset < size and len(headers) < batch_records:
                reader.seek(offset)
                header = reader.read(12)
                if len(header) < 12:
                    raise ValueError(
                        f"{path}: truncated: the last {size - offset} byte(s), from byte "
                        f"{offset}, are not a whole record (the file was cut short; recreate "
                        f"or re-copy it)")
                headers.append(header)
                offsets.append(offset)
                offset += 16 + struct.unpack("<Q", header[:8])[0]
            expected = crc._mask(crc.crc([h[:8] for h in headers])).astype("<u4")
            stored = [struct.unpack("<I", h[8:12])[0] for h in headers]
            for i, (want, got) in enumerate(zip(expected.tolist(), stored)):
                if want != got:
                    raise ValueError(f"{path}: corrupted record header at byte {offsets[i]} "
                                     f"(record {count + i}); the file is damaged, recreate it")
            count += len(headers)
            if offset > size:
                raise ValueError(
                    f"{path}: truncated: record {count - 1} at byte {offsets[-1]} needs "
                    f"{offset - offsets[-1]} bytes but the file ends at byte {size} (the file "
                    f"was cut short; recreate or re-copy it)")
    return count


def data_loss_text(error):
    """What TensorFlow's DataLossError says, without its graph-function decorations."""
    message = re.sub(r"\{\{[^}]*\}\}|\[Op:[^\]]*\]|\bname:\s*$", "", error.message.splitlines()[0])
    return " ".join(message.split()) or "unreadable record"


def find_corrupt_record_file(files, compression):
    """The first of `files` whose records TensorFlow cannot read (DataLossError), with the
    error; (None, None) when all read. Reads every record: only for reporting a failure."""
    import tensorflow as tf

    for path, ctype in zip(files, compression):
        try:
            for _ in tf.data.TFRecordDataset(path, compression_type=ctype):
                pass
        except tf.errors.DataLossError as error:
            return path, error
    return None, None


def check_record_files(file_pattern, max_seq_length, max_predictions_per_seq, vocab_size=None,
                       gzip="auto"):
    """The validation pass over pretraining TFRecords before training: every file's framing
    (uncompressed files: not cut short, headers intact) and first record (feature lengths;
    with `vocab_size`, token ids below it). Returns the files. Errors name the file."""
    files = expand_file_patterns(file_pattern)
    nonempty = False
    for path in files:
        compressed = is_gzip(path) if gzip == "auto" else bool(gzip)
        if not compressed and scan_record_framing(path) == 0:
            continue
        nonempty |= check_record_file(path, max_seq_length, max_predictions_per_seq,
                                      "GZIP" if compressed else "", vocab_size=vocab_size)
    if not nonempty:
        raise ValueError(f"no records in any file matching {file_pattern!r}")
    return files


def decode_record(record, max_seq_length, max_predictions_per_seq):
    """Parses serialized pretraining Example(s): int64 features become int32."""
    import tensorflow as tf

    parse = tf.io.parse_example if record.shape.rank == 1 else tf.io.parse_single_example
    example = parse(record, feature_spec(max_seq_length, max_predictions_per_seq))
    return {name: (tf.cast(value, tf.int32) if value.dtype == tf.int64 else value)
            for name, value in example.items()}


def pretraining_dataset(file_pattern, batch_size, max_seq_length, max_predictions_per_seq,
                        is_training, input_context=None, gzip="auto", shuffle_buffer_size=100,
                        cycle_length=None, repeat=None, drop_remainder=None, seed=None,
                        check_files=True):
    """tf.data pipeline over pretraining TFRecords (made here or by the original script).

    Args:
      file_pattern: a glob, a comma-separated list of globs, or a list of them.
      batch_size: the global batch size. Without `input_context` the dataset yields batches of
        this size; with it, batches of `input_context.get_per_replica_batch_size(batch_size)`.
      max_seq_length, max_predictions_per_seq: the lengths the files were written with; every
        file's first record is checked against them (ValueError naming the file otherwise).
      is_training: shuffle the files and the records, interleave files, repeat, and drop the
        last partial batch (the original run_pretraining input_fn in training).
      input_context: a `tf.distribute.InputContext`; files (or, with fewer files than input
        pipelines, records) are sharded by `input_pipeline_id`.
      gzip: True, False, or "auto" (detected per file from its first bytes).
      shuffle_buffer_size: records shuffle buffer in training (the original's 100).
      cycle_length: files read at once in training (default min(4, number of files)).
      repeat: repeat forever; default `is_training`. (The original also repeated the eval
        input; pass repeat=True for that.)
      drop_remainder: default `is_training`.
      seed: seed for the file and record shuffles (None: nondeterministic).
      check_files: check each file's first record (see above).

    Returns:
      A `tf.data.Dataset` of dicts: `input_ids`, `input_mask`, `segment_ids` int32
      [batch, max_seq_length]; `masked_lm_positions`, `masked_lm_ids` int32 and
      `masked_lm_weights` float32 [batch, max_predictions_per_seq]; `next_sentence_labels`
      int32 [batch, 1].
    """
    import tensorflow as tf

    files = expand_file_patterns(file_pattern)
    if gzip == "auto":
        compression = ["GZIP" if is_gzip(path) else "" for path in files]
    else:
        compression = ["GZIP" if gzip else ""] * len(files)
    if check_files:
        for path, ctype in zip(files, compression):
            if not ctype:
                scan_record_framing(path)  # TensorFlow reads a file cut short without a word
        nonempty = [check_record_file(path, max_seq_length, max_predictions_per_seq, ctype)
                    for path, ctype in zip(files, compression)]
        if not any(nonempty):
            raise ValueError(f"no records in any file matching {file_pattern!r}")
    if repeat is None:
        repeat = is_training
    if drop_remainder is None:
        drop_remainder = is_training

    files_dataset = tf.data.Dataset.from_tensor_slices((files, compression))
    shard_records = False
    if input_context is not None:
        # One replica's share of the global batch, also when one pipeline feeds all replicas.
        batch_size = input_context.get_per_replica_batch_size(batch_size)
        if input_context.num_input_pipelines > 1:
            if len(files) >= input_context.num_input_pipelines:
                files_dataset = files_dataset.shard(input_context.num_input_pipelines,
                                                    input_context.input_pipeline_id)
            else:
                shard_records = True

    def read_file(path, ctype):
        return tf.data.TFRecordDataset(path, compression_type=ctype)

    if shard_records:
        # Fewer files than pipelines: every pipeline reads all files in the same order and keeps
        # its share of the records, so the shards partition the data.
        records = files_dataset.flat_map(read_file).shard(input_context.num_input_pipelines,
                                                          input_context.input_pipeline_id)
        if repeat:
            records = records.repeat()
    elif is_training:
        num_files = len(files)
        files_dataset = files_dataset.shuffle(num_files, seed=seed,
                                              reshuffle_each_iteration=True)
        if repeat:
            files_dataset = files_dataset.repeat()
        records = files_dataset.interleave(
            read_file, cycle_length=cycle_length or min(4, num_files),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=seed is not None)
    else:
        records = files_dataset.flat_map(read_file)
        if repeat:
            records = records.repeat()
    if is_training and shuffle_buffer_size:
        records = records.shuffle(shuffle_buffer_size, seed=seed)
    batches = records.batch(batch_size, drop_remainder=drop_remainder)
    batches = batches.map(
        lambda serialized: decode_record(serialized, max_seq_length, max_predictions_per_seq),
        num_parallel_calls=tf.data.AUTOTUNE)
    return batches.prefetch(tf.data.AUTOTUNE)
