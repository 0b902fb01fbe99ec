"""File helpers every module shares: atomic writes and input-file patterns.

An output is never half-written: `atomic_write` writes to a temporary name in the target's
directory, flushes it to disk (fsync) and renames it over the target, so a reader (or a crashed
run) sees either the old file or the complete new one. Remote paths (`gs://`, `hdfs://`, ...) go
through TensorFlow's file system, whose rename is the closest it offers.

Outputs of several files use the same steps at a larger grain: `atomic_directory` for a folder
that appears whole (bert-convert's output, a SavedModel version), `publish_files` for a set of
files renamed into an existing folder together (an original checkpoint's `.index`/`.data`/
`bert_config.json`, the shards of a TFRecord set). In both, every byte is on disk before the
first rename, so a crash or kill during the slow writing leaves the previous output untouched.
"""

import contextlib
import glob as _glob
import os
import shutil
import tempfile
from typing import IO, Iterable, Iterator, List, Sequence, Tuple, Union


class DataFormatError(ValueError):
    """Input data that does not have the expected layout or encoding; the message names the
    file and line (or record)."""


def read_bytes(path: str) -> bytes:
    """The bytes of a local or remote (`gs://`, ...) file."""
    path = os.fspath(path)
    if _is_remote(path):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        with tf.io.gfile.GFile(path, "rb") as reader:
            return reader.read()
    with open(path, "rb") as reader:
        return reader.read()


def decode_utf8(data: bytes, path: str, byte_order_mark: bool = True, first_line: int = 1
                ) -> str:
    """`data` (the contents of `path` from line `first_line` on) as text; invalid UTF-8 is a
    DataFormatError naming `path:line` and the byte. A leading byte-order mark is dropped
    unless told otherwise."""
    try:
        return data.decode("utf-8-sig" if byte_order_mark else "utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + first_line
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise DataFormatError(
            f"{path}:{line}: byte 0x{data[error.start]:02x} at column {column} is not valid "
            f"UTF-8; expected a UTF-8 text file (re-encode it, e.g. with iconv)") from None


def read_text(path: str) -> str:
    """A UTF-8 text file's contents (`decode_utf8` errors)."""
    return decode_utf8(read_bytes(path), path)


def _is_remote(path: str) -> bool:
    return "://" in path


def atomic_write(path: str, data: Union[str, bytes]) -> str:
    """Writes `data` (str as UTF-8, or bytes) to `path` atomically; returns `path`.

    The parent directory is created when missing. New files get the usual 0644 permissions
    (minus the umask), not tempfile's 0600.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    with atomic_open(path, "wb") as writer:
        writer.write(payload)
    return os.fspath(path)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w") -> Iterator[IO]:
    """A file object ("w" UTF-8 text or "wb") for output streamed to `path` atomically.

    It writes a temporary file beside `path`; when the block completes the file is flushed to
    disk and renamed to `path`, when it raises (SystemExit and KeyboardInterrupt included) it
    is deleted and `path` keeps its old contents, if any. The parent directory is created
    when missing.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    encoding = None if "b" in mode else "utf-8"
    if _is_remote(path):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        temporary = f"{path}.tmp-{os.getpid()}"
        try:
            with tf.io.gfile.GFile(temporary, "wb") as raw:
                writer = raw if encoding is None else _TextToBytes(raw)
                yield writer
            tf.io.gfile.rename(temporary, path, overwrite=True)
        except BaseException:
            if tf.io.gfile.exists(temporary):
                tf.io.gfile.remove(temporary)
            raise
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                         dir=directory)
    try:
        with os.fdopen(handle, mode, encoding=encoding) as writer:
            yield writer
            writer.flush()
            os.fsync(writer.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
        fsync_directory(directory)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


class _TextToBytes:
    """`write(str)` as UTF-8 onto a binary GFile."""

    def __init__(self, raw):
        self._raw = raw

    def write(self, text):
        return self._raw.write(text.encode("utf-8"))

    def flush(self):
        self._raw.flush()


def atomic_copy(source: str, path: str) -> str:
    """Copies the file `source` to `path` atomically (nothing happens when they are the same)."""
    if os.path.abspath(source) == os.path.abspath(path):
        return path
    with open(source, "rb") as reader:
        return atomic_write(path, reader.read())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_directory(directory: str) -> None:
    """Makes a rename in `directory` durable (no-op where directories cannot be opened)."""
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def fsync_file(path: str) -> None:
    """Flushes a written file's data to disk (so a rename of it survives a power loss)."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def fsync_tree(directory: str) -> None:
    """`fsync_file` for every file below `directory`, then each directory itself."""
    for root, _, names in os.walk(directory, topdown=False):
        for name in names:
            path = os.path.join(root, name)
            if os.path.isfile(path) and not os.path.islink(path):
                fsync_file(path)
        fsync_directory(root)


def missing_directories(directory: str) -> List[str]:
    """The ancestors of `directory` (itself included) that do not exist yet, outermost first:
    what a writer creates and must remove again when it fails."""
    missing = []
    directory = os.path.abspath(directory)
    while not os.path.exists(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return list(reversed(missing))


def remove_empty_directories(directories: Sequence[str]) -> None:
    """Removes the directories of `missing_directories` again, innermost first, while empty."""
    for directory in reversed(list(directories)):
        if os.path.isdir(directory) and not os.listdir(directory):
            os.rmdir(directory)


@contextlib.contextmanager
def staging_directory(parent: str, name: str) -> Iterator[str]:
    """A new empty directory `parent/.name.tmp-XXXX` to write an output folder into.

    Removed with its contents when the block ends and it is still there (the caller renames it
    into place with `publish_directory` on success), and so are the ancestors this created:
    a failed run leaves nothing behind.
    """
    created = missing_directories(parent)
    os.makedirs(parent, exist_ok=True)
    try:
        staging = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        remove_empty_directories(created)
        raise


def publish_directory(staging: str, path: str) -> str:
    """Flushes every file of `staging` to disk and renames it to `path` (which must not
    exist, or be an empty directory); returns `path`. OSError when `path` is a directory with
    files in it (e.g. one a concurrent writer published first)."""
    fsync_tree(staging)
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp creates it 0700
    os.rename(staging, path)
    fsync_directory(os.path.dirname(os.path.abspath(path)))
    return path


@contextlib.contextmanager
def atomic_directory(path: str) -> Iterator[str]:
    """Yields a temporary directory beside `path` to write a whole output folder into; when the
    block completes the folder is flushed to disk and renamed to `path`, when it raises the
    folder (and any parent directory created for it) is removed.

    `path` must not exist or be an empty directory: ValueError otherwise, before anything is
    written (an existing output is never replaced or merged into).
    """
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    _check_new_directory(path)
    with staging_directory(os.path.dirname(path), os.path.basename(path)) as staging:
        yield staging
        _check_new_directory(path)
        if os.path.isdir(path):
            os.rmdir(path)  # empty, checked above
        publish_directory(staging, path)


def _check_new_directory(path):
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise ValueError(f"{path} already exists and is not an empty folder; expected a new "
                         "folder")


def publish_files(moves: Sequence[Tuple[str, str]], commit_marker: bool = False) -> None:
    """Renames complete temporary files onto their targets as one set, in the given order.

    Every temporary file is flushed to disk before the first rename, so the renames run back
    to back after all the slow work: a crash or kill before them leaves every old target as it
    was, and after them every target is durable (their directories are flushed too).

    commit_marker: the last target is the file that makes the set readable (a checkpoint's
      `.index`). An old one is deleted before any other target is replaced, so a crash
      between the renames leaves a set without its marker, which readers reject, never old
      and new files that read as one complete set.
    """
    moves = [(os.fspath(temporary), os.fspath(target)) for temporary, target in moves]
    for temporary, _ in moves:
        fsync_file(temporary)
    if commit_marker and moves and os.path.exists(moves[-1][1]):
        os.remove(moves[-1][1])
    for temporary, target in moves:
        os.replace(temporary, target)
    for directory in sorted({os.path.dirname(os.path.abspath(t)) for _, t in moves}):
        fsync_directory(directory)


def expand_file_patterns(patterns: Union[str, Iterable[str]], what: str = "input file",
                         allow_empty_files: bool = True) -> List[str]:
    """Existing files named by a comma-separated list of globs (or a list of such strings).

    Each glob's matches are sorted; a plain path that does not exist, a glob that matches
    nothing, or (with `allow_empty_files=False`) an empty file is a FileNotFoundError /
    ValueError whose message starts with `what` (e.g. "--input_file").
    """
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [os.fspath(patterns)]
    files = []
    for spec in patterns:
        for pattern in str(spec).split(","):
            pattern = pattern.strip()
            if not pattern:
                continue
            if _is_remote(pattern):
                import tensorflow as tf  # pylint: disable=import-outside-toplevel

                matches = sorted(tf.io.gfile.glob(pattern))
            elif _glob.has_magic(pattern):
                matches = sorted(_glob.glob(pattern))
            else:
                matches = [pattern] if os.path.exists(pattern) else []
            if not matches:
                raise FileNotFoundError(f"{what}: no file matches {pattern!r}")
            for path in matches:
                if not _is_remote(path):
                    if not os.path.isfile(path):
                        raise FileNotFoundError(f"{what}: {path!r} is not a file")
                    if not allow_empty_files and os.path.getsize(path) == 0:
                        raise ValueError(f"{what}: {path!r} is empty")
                files.append(path)
    if not files:
        raise FileNotFoundError(f"{what}: no files given")
    return files


def check_output_directory(path: str, flag: str):
    """ValueError unless `path` is a directory or can become one (its nearest existing
    ancestor is a writable directory)."""
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise ValueError(f"{flag}={path} is a file; expected a directory (or a path where "
                             f"one can be created)")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"{flag}={path}: the directory is not writable")
        return
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag}={path}: cannot create it ({parent} is not a writable "
                         f"directory)")
