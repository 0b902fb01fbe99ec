"""Atomic outputs: every writer, made to fail mid-write, leaves the previous complete output as
it was and no temporary file; on success every file is on disk (fsync) before it is renamed."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from bert_tf import checkpoints, export, files, training
from bert_tf.config import BertConfig
from bert_tf.data import pretraining_records


def listing(directory):
    """Every path below `directory` (hidden ones included), relative, sorted."""
    found = []
    for root, dirs, names in os.walk(directory):
        for name in dirs + names:
            found.append(os.path.relpath(os.path.join(root, name), directory))
    return sorted(found)


class SyscallLog:
    """Records the files fsynced and the renames done, in order (the real calls still run)."""

    def __init__(self, monkeypatch):
        self.events = []
        real_fsync, real_replace, real_rename = os.fsync, os.replace, os.rename

        def fsync(fd):
            self.events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
            return real_fsync(fd)

        def replace(source, target):
            self.events.append(("rename", os.fspath(target)))
            return real_replace(source, target)

        def rename(source, target):
            self.events.append(("rename", os.fspath(target)))
            return real_rename(source, target)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(os, "rename", rename)

    def synced(self):
        return {path for kind, path in self.events if kind == "fsync"}

    def renamed(self):
        return [path for kind, path in self.events if kind == "rename"]


def fail_on_call(monkeypatch, module, name, call_number, error=OSError("disk full")):
    """Makes the `call_number`-th call of module.name raise `error` (the others run)."""
    real = getattr(module, name)
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(args)
        if len(calls) == call_number:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


# ---------------------------------------------------------------------------------------------
# bert_tf.files
# ---------------------------------------------------------------------------------------------


def test_atomic_open_keeps_the_old_file_when_the_block_fails(tmp_path, monkeypatch):
    path = tmp_path / "predictions.jsonl"
    path.write_text("old\n")
    for error in (ValueError("bad row"), SystemExit(2), KeyboardInterrupt()):
        with pytest.raises(type(error)):
            with files.atomic_open(str(path)) as out:
                out.write("half of the new ")
                raise error
        assert path.read_text() == "old\n"
        assert listing(tmp_path) == ["predictions.jsonl"]
    log = SyscallLog(monkeypatch)
    with files.atomic_open(str(path)) as out:
        out.write("new é\n")
    assert path.read_text(encoding="utf-8") == "new é\n"
    assert log.events[0][0] == "fsync" and log.events[1] == ("rename", str(path))
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)  # not tempfile's private mode


def test_atomic_directory_leaves_nothing_when_it_fails(tmp_path):
    target = tmp_path / "a" / "b" / "out"
    with pytest.raises(OSError, match="disk full"):
        with files.atomic_directory(str(target)) as staging:
            (open(os.path.join(staging, "model.safetensors"), "w")).write("partial")
            raise OSError("disk full")
    assert listing(tmp_path) == []  # the parents it created are gone too
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="already exists and is not an empty folder"):
        with files.atomic_directory(str(tmp_path / "taken")):
            pass
    assert listing(tmp_path) == ["taken", "taken/keep.txt"]


def test_atomic_directory_syncs_every_file_before_the_rename(tmp_path, monkeypatch):
    log = SyscallLog(monkeypatch)
    target = tmp_path / "out"
    with files.atomic_directory(str(target)) as staging:
        os.makedirs(os.path.join(staging, "assets"))
        for name in ("config.json", os.path.join("assets", "vocab.txt")):
            with open(os.path.join(staging, name), "w") as f:
                f.write(name)
    assert listing(target) == ["assets", "assets/vocab.txt", "config.json"]
    rename = log.events.index(("rename", str(target)))
    synced_before = {p for kind, p in log.events[:rename] if kind == "fsync"}
    assert {os.path.basename(p) for p in synced_before} >= {"config.json", "vocab.txt", "assets"}


# ---------------------------------------------------------------------------------------------
# Original TF1 checkpoints: .index, .data-*, bert_config.json
# ---------------------------------------------------------------------------------------------

CONFIG = BertConfig(vocab_size=8, hidden_size=4, num_hidden_layers=1, num_attention_heads=1,
                    intermediate_size=8, max_position_embeddings=8)


def original_weights(seed, config=CONFIG):
    rng = np.random.default_rng(seed)
    values = {"bert/embeddings/word_embeddings": rng.normal(size=(8, 4)).astype(np.float32),
              "bert/pooler/dense/bias": rng.normal(size=(4,)).astype(np.float32)}
    return checkpoints.BertWeights(config=config, values=values)


def assert_checkpoint_holds(prefix, weights):
    reader = tf.train.load_checkpoint(prefix)
    for name, value in weights.values.items():
        np.testing.assert_array_equal(reader.get_tensor(name), value)
    with open(os.path.join(os.path.dirname(prefix), "bert_config.json")) as f:
        assert json.load(f)["hidden_size"] == weights.config.hidden_size


def test_original_checkpoint_failing_mid_write_keeps_the_old_one(tmp_path, monkeypatch):
    prefix = str(tmp_path / "bert_model.ckpt")
    old = original_weights(0)
    checkpoints.write_original_checkpoint(old, prefix)
    before = listing(tmp_path)
    assert before == ["bert_config.json", "bert_model.ckpt.data-00000-of-00001",
                      "bert_model.ckpt.index"]
    # The data and index are written, bert_config.json fails: nothing is replaced.
    bigger = dict(CONFIG.to_dict(), hidden_size=6)
    with monkeypatch.context() as patch:
        fail_on_call(patch, checkpoints.json, "dump", 1)
        with pytest.raises(OSError, match="disk full"):
            checkpoints.write_original_checkpoint(
                original_weights(1, BertConfig.from_dict(bigger)), prefix)
    assert listing(tmp_path) == before
    assert_checkpoint_holds(prefix, old)
    # A complete new write replaces all three, the .index last.
    log = SyscallLog(monkeypatch)
    new = original_weights(2)
    checkpoints.write_original_checkpoint(new, prefix)
    assert listing(tmp_path) == before
    assert_checkpoint_holds(prefix, new)
    assert [os.path.basename(p) for p in log.renamed()] == [
        "bert_config.json", "bert_model.ckpt.data-00000-of-00001", "bert_model.ckpt.index"]
    first_rename = next(i for i, (kind, _) in enumerate(log.events) if kind == "rename")
    synced = {os.path.basename(p) for kind, p in log.events[:first_rename] if kind == "fsync"}
    assert synced >= {"bert_config.json", "bert_model.ckpt.data-00000-of-00001",
                      "bert_model.ckpt.index"}


def test_original_checkpoint_interrupted_between_renames_is_not_readable(tmp_path, monkeypatch):
    prefix = str(tmp_path / "bert_model.ckpt")
    checkpoints.write_original_checkpoint(original_weights(0), prefix)
    # A crash after the data file was replaced, before the new .index: the old .index is
    # already gone, so no reader pairs it with the new data.
    fail_on_call(monkeypatch, os, "replace", 3, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        checkpoints.write_original_checkpoint(original_weights(1), prefix)
    assert listing(tmp_path) == ["bert_config.json", "bert_model.ckpt.data-00000-of-00001"]
    with pytest.raises(ValueError):
        checkpoints.checkpoint_format(prefix)


# ---------------------------------------------------------------------------------------------
# TFRecord sets
# ---------------------------------------------------------------------------------------------


def test_record_set_failing_mid_write_or_before_the_renames_keeps_the_old_set(tmp_path,
                                                                              monkeypatch):
    paths = [str(tmp_path / f"train-{i}.tfrecord") for i in range(3)]
    with pretraining_records.RecordFileWriter(paths) as writer:
        for i in range(6):
            writer.write(b"old %d" % i)
        writer.close()
    old = {p: open(p, "rb").read() for p in paths}

    def old_set_intact():
        assert listing(tmp_path) == sorted(os.path.basename(p) for p in paths)
        assert {p: open(p, "rb").read() for p in paths} == old

    with pytest.raises(RuntimeError):
        with pretraining_records.RecordFileWriter(paths) as writer:
            writer.write(b"new 0")
            raise RuntimeError("tokenizer failed")
    old_set_intact()
    # Every shard complete, the flush of the second fails: no shard is replaced.
    with monkeypatch.context() as patch:
        fail_on_call(patch, files, "fsync_file", 2)
        with pytest.raises(OSError, match="disk full"):
            with pretraining_records.RecordFileWriter(paths) as writer:
                for i in range(6):
                    writer.write(b"new %d" % i)
                writer.close()
    old_set_intact()
    log = SyscallLog(monkeypatch)
    with pretraining_records.RecordFileWriter(paths) as writer:
        for i in range(6):
            writer.write(b"new %d" % i)
        writer.close()
    assert [list(tf.data.TFRecordDataset(p).as_numpy_iterator()) for p in paths] == [
        [b"new 0", b"new 3"], [b"new 1", b"new 4"], [b"new 2", b"new 5"]]
    first_rename = log.events.index(("rename", paths[0]))
    assert sum(kind == "fsync" for kind, _ in log.events[:first_rename]) == 3
    assert log.renamed() == paths


# ---------------------------------------------------------------------------------------------
# SavedModel exports
# ---------------------------------------------------------------------------------------------


class _Vocabulary:
    def id_to_token(self):
        return ["[PAD]", "[UNK]", "hello"]


def _serving_functions():
    def serve_ids(inputs):
        return {"ids": inputs["input_ids"]}

    return export.ServingFunctions(text_inputs=("text",), serve_text=lambda text: {"t": text},
                                   serve_ids=serve_ids, preprocessor=_Vocabulary())


def test_export_failing_mid_write_leaves_the_export_dir_as_it_was(tmp_path, monkeypatch):
    export_dir = tmp_path / "export"
    (export_dir / "1" / "variables").mkdir(parents=True)
    (export_dir / "1" / "saved_model.pb").write_bytes(b"previous version")
    (export_dir / "README").write_text("mine")
    before = listing(export_dir)
    archive_class = type(keras.export.ExportArchive())  # the backend's subclass
    monkeypatch.setattr(archive_class, "add_endpoint", lambda *a, **k: None)

    def write_half(self, path, verbose=False):
        os.makedirs(os.path.join(path, "variables"), exist_ok=True)
        with open(os.path.join(path, "saved_model.pb"), "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(archive_class, "write_out", write_half)
    with pytest.raises(OSError, match="disk full"):
        export.write_serving_model(str(export_dir), _serving_functions(), warmup=False)
    assert listing(export_dir) == before
    assert (export_dir / "1" / "saved_model.pb").read_bytes() == b"previous version"
    with pytest.raises(OSError, match="disk full"):  # a new EXPORT_DIR is not left behind
        export.write_serving_model(str(tmp_path / "new" / "export"), _serving_functions(),
                                   warmup=False)
    assert not (tmp_path / "new").exists()

    def write_all(self, path, verbose=False):
        os.makedirs(os.path.join(path, "variables"), exist_ok=True)
        with open(os.path.join(path, "saved_model.pb"), "wb") as f:
            f.write(b"complete")

    monkeypatch.setattr(archive_class, "write_out", write_all)
    log = SyscallLog(monkeypatch)
    path = export.write_serving_model(str(export_dir), _serving_functions(), warmup=False)
    assert path == str(export_dir / "2")
    assert listing(export_dir) == sorted(before + ["2", "2/saved_model.pb", "2/variables"])
    assert (export_dir / "1" / "saved_model.pb").read_bytes() == b"previous version"
    rename = log.events.index(("rename", path))
    assert any(p.endswith("saved_model.pb") for kind, p in log.events[:rename] if kind == "fsync")


# ---------------------------------------------------------------------------------------------
# Training checkpoints (tf.train.CheckpointManager)
# ---------------------------------------------------------------------------------------------


def test_training_checkpoints_are_synced(tmp_path, monkeypatch):
    from bert_tf import distribution, optimization

    strategy = distribution.get_strategy("one_device")
    with strategy.scope():
        inputs = keras.Input((2,), name="x")
        model = keras.Model({"x": inputs}, keras.layers.Dense(1)(inputs))
        optimizer = optimization.create_optimizer(0.1, 10, 0)
    trainer = training.Trainer(strategy, model, optimizer, lambda f, o: tf.reduce_mean(o),
                               str(tmp_path), train_batch_size=2)
    log = SyscallLog(monkeypatch)
    path = trainer.save()
    synced = {os.path.relpath(p, tmp_path) for p in log.synced()}
    assert synced >= {"ckpt-0.index", "ckpt-0.data-00000-of-00001", "checkpoint", "."}
    assert tf.train.latest_checkpoint(str(tmp_path)) == path
