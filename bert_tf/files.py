"""File helpers every module shares: atomic writes and input-file patterns.

An output is never half-written: `atomic_write` writes to a temporary name in the target's
directory, flushes it to disk (fsync) and renames it over the target, so a reader (or a crashed
run) sees either the old file or the complete new one. Remote paths (`gs://`, `hdfs://`, ...) go
through TensorFlow's file system, whose rename is the closest it offers.
"""

import glob as _glob
import os
import tempfile
from typing import Iterable, List, Union


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
    path = os.fspath(path)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if _is_remote(path):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        temporary = f"{path}.tmp-{os.getpid()}"
        with tf.io.gfile.GFile(temporary, "wb") as writer:
            writer.write(payload)
        tf.io.gfile.rename(temporary, path, overwrite=True)
        return path
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                         dir=directory)
    try:
        with os.fdopen(handle, "wb") as writer:
            writer.write(payload)
            writer.flush()
            os.fsync(writer.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
        _fsync_directory(directory)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return path


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


def _fsync_directory(directory: str) -> None:
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
