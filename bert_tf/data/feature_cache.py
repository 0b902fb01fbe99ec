"""Feature caches on disk: directories of memory-mapped flat arrays, written chunk by chunk.

Shared by classification (`bert_tf.data.classification.load_features`) and NER
(`bert_tf.data.ner.load_ner_features`). A cache directory holds one raw little-endian file
`<name>.bin` per 1-D array and `meta.json` giving each array's dtype and length plus the
caller's own fields. `write_arrays` appends chunk after chunk (memory: one chunk) into a
temporary directory beside the target that is flushed and renamed only when complete, so an
interrupted run leaves no partial cache under the final name. `open_arrays` maps the files
read-only after checking their sizes; `load_or_build` reuses a complete cache, rebuilds a
damaged one and builds a missing one.
"""

import hashlib
import itertools
import json
import os
import shutil
from typing import Callable, Dict, Iterable, Iterator, Sequence, Tuple

import numpy as np
from absl import logging

from bert_tf import files

DataFormatError = files.DataFormatError


def sha256_of_file(path: str, digest) -> None:
    """Feeds the bytes of `path` into `digest`, 1 MiB at a time."""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)


def cache_key(parts: Sequence, paths: Sequence[str]) -> str:
    """A short digest of `parts` (JSON-serialisable settings) and the bytes of `paths`."""
    digest = hashlib.sha256()
    digest.update(json.dumps(list(parts)).encode())
    for path in paths:
        digest.update(b"\0file\0")
        sha256_of_file(path, digest)
    return digest.hexdigest()[:24]


def chunked(items: Iterable, size: int) -> Iterator[list]:
    """`items` (any iterable, consumed once) as lists of `size` (the last one shorter)."""
    iterator = iter(items)
    while True:
        chunk = list(itertools.islice(iterator, size))
        if not chunk:
            return
        yield chunk


def write_arrays(chunks: Iterable[Dict[str, np.ndarray]], directory: str,
                 names: Sequence[str], dtypes: Dict[str, str],
                 meta: Callable[[], dict] = dict, what: str = "chunks") -> str:
    """Writes the 1-D arrays of every chunk (a dict name -> array, consumed one at a time)
    end to end into `directory/<name>.bin` (dtype `dtypes[name]`, little-endian) and
    `meta.json` = `meta()` (called after the last chunk) plus each array's dtype and length.

    Written into `parent/.<name>.tmp-XXXX` and renamed when complete (`files.staging_directory`
    and `files.publish_directory`): an interrupted run leaves nothing under `directory`. If
    another run published `directory` first, its copy is kept. Returns `directory`.
    """
    directory = os.path.abspath(directory)
    os.makedirs(os.path.dirname(directory), exist_ok=True)  # kept (empty) if the write fails
    with files.staging_directory(os.path.dirname(directory),
                                 os.path.basename(directory)) as staging:
        outputs = {name: open(os.path.join(staging, name + ".bin"), "wb") for name in names}
        lengths = dict.fromkeys(names, 0)
        try:
            for n, chunk in enumerate(chunks, start=1):
                for name in names:
                    values = np.asarray(chunk[name], np.dtype(dtypes[name]))
                    outputs[name].write(values.tobytes())
                    lengths[name] += len(values)
                if n % 20 == 0:
                    logging.info("%s: %d %s written", directory, n, what)
        finally:
            for f in outputs.values():
                f.close()
        info = dict(meta())
        info["arrays"] = {name: {"dtype": np.dtype(dtypes[name]).str, "length": lengths[name]}
                          for name in names}
        with open(os.path.join(staging, "meta.json"), "w", encoding="utf-8") as f:
            json.dump(info, f)
        if not os.path.isdir(directory):  # else another run finished the same features first
            files.publish_directory(staging, directory)
    return directory


def open_arrays(directory: str) -> Tuple[Dict[str, np.ndarray], dict]:
    """(name -> read-only memory-mapped array, meta) of a directory `write_arrays` wrote.
    Nothing is read up front: pages come from disk as they are used. A file whose size does
    not match meta.json is a DataFormatError naming it."""
    with open(os.path.join(directory, "meta.json"), encoding="utf-8") as f:
        meta = json.load(f)
    arrays = {}
    for name, spec in meta["arrays"].items():
        dtype, length = np.dtype(spec["dtype"]), int(spec["length"])
        path = os.path.join(directory, name + ".bin")
        if not os.path.isfile(path) or os.path.getsize(path) != dtype.itemsize * length:
            raise DataFormatError(f"{path}: expected {dtype.itemsize * length} bytes for "
                                  f"{length} values as {directory}/meta.json says; the feature "
                                  f"cache is damaged (delete the directory to rebuild it)")
        arrays[name] = (np.zeros(0, dtype) if length == 0 else
                        np.memmap(path, dtype=dtype, mode="r", shape=(length,)))
    return arrays, meta


def load_or_build(directory: str, build: Callable[[str], None], open_fn: Callable[[str], object]):
    """`open_fn(directory)` of a complete cache; a damaged one (DataFormatError, ValueError,
    KeyError from `open_fn`) is logged, removed and rebuilt; a missing one is built with
    `build(directory)` first. Returns `(opened, built)`."""
    if os.path.isfile(os.path.join(directory, "meta.json")):
        try:
            return open_fn(directory), False
        except (DataFormatError, ValueError, KeyError) as error:
            logging.warning("%s; rebuilding it", error)
            shutil.rmtree(directory)
    build(directory)
    return open_fn(directory), True
