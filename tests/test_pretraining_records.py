"""Pretraining TFRecords: encoder and framing against TensorFlow's own, and the tf.data reader on
files written the original way (tf.train.Example + tf.io.TFRecordWriter)."""

import collections
import os
import random

import numpy as np
import pytest
import tensorflow as tf

from bert_tf.data import pretraining_dataset
from bert_tf.data import pretraining_records

SEQ, PREDS = 16, 4


def original_example(ids, segment_a_length, positions, labels, is_random_next, seq=SEQ,
                     preds=PREDS):
    """A record built exactly as the original script builds it (OrderedDict of features)."""
    def int_feature(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))

    n, k = len(ids), len(positions)
    features = collections.OrderedDict()
    features["input_ids"] = int_feature(list(ids) + [0] * (seq - n))
    features["input_mask"] = int_feature([1] * n + [0] * (seq - n))
    features["segment_ids"] = int_feature(
        [0] * (segment_a_length + 2) + [1] * (n - segment_a_length - 2) + [0] * (seq - n))
    features["masked_lm_positions"] = int_feature(list(positions) + [0] * (preds - k))
    features["masked_lm_ids"] = int_feature(list(labels) + [0] * (preds - k))
    features["masked_lm_weights"] = tf.train.Feature(
        float_list=tf.train.FloatList(value=[1.0] * k + [0.0] * (preds - k)))
    features["next_sentence_labels"] = int_feature([1 if is_random_next else 0])
    return tf.train.Example(features=tf.train.Features(feature=features))


def random_instances(count, seed=0, max_id=30521):
    rng = random.Random(seed)
    instances = []
    for _ in range(count):
        n = rng.randint(5, SEQ)
        ids = [rng.randint(0, max_id) for _ in range(n)]
        segment_a_length = rng.randint(1, n - 4)
        k = rng.randint(1, PREDS)
        positions = sorted(rng.sample(range(1, n - 1), min(k, n - 2)))
        labels = [rng.randint(0, max_id) for _ in positions]
        instances.append((ids, segment_a_length, positions, labels, rng.random() < 0.5))
    return instances


def write_original_files(directory, instances, num_files, name="orig", **example_kwargs):
    """Round-robin over files with tf.io.TFRecordWriter, as the original script writes."""
    paths = [os.path.join(directory, f"{name}-{i}.tfrecord") for i in range(num_files)]
    writers = [tf.io.TFRecordWriter(p) for p in paths]
    for i, instance in enumerate(instances):
        writers[i % num_files].write(
            original_example(*instance, **example_kwargs).SerializeToString())
    for writer in writers:
        writer.close()
    return paths


def expected_features(instance):
    example = original_example(*instance)
    return {name: np.array(getattr(f, f.WhichOneof("kind")).value)
            for name, f in example.features.feature.items()}


# ---------------------------------------------------------------------------------------------
# Encoder and framing
# ---------------------------------------------------------------------------------------------


def test_encoder_equals_protobuf_deterministic_serialization():
    encoder = pretraining_records.ExampleEncoder(SEQ, PREDS, max_id=30521)
    for instance in random_instances(200):
        expected = original_example(*instance).SerializeToString(deterministic=True)
        assert encoder.encode(*instance) == expected


def test_encoder_rejects_overlong_instances():
    encoder = pretraining_records.ExampleEncoder(8, 2, max_id=100)
    with pytest.raises(ValueError, match="max_seq_length=8"):
        encoder.encode(list(range(9)), 2, [1], [5], False)
    with pytest.raises(ValueError, match="max_predictions_per_seq=2"):
        encoder.encode(list(range(8)), 2, [1, 2, 3], [5, 6, 7], False)


def test_writer_bytes_equal_tensorflow_writer(tmp_path):
    records = [original_example(*i).SerializeToString() for i in random_instances(50)]
    records += [b"", b"x" * 5000]
    records += [bytes(range(i % 200, i % 200 + 50)) * 30 for i in range(100)]  # > 64 KiB
    reference = str(tmp_path / "tf.tfrecord")
    with tf.io.TFRecordWriter(reference) as writer:
        for record in records:
            writer.write(record)
    mine = str(tmp_path / "mine.tfrecord")
    writer = pretraining_records.RecordFileWriter([mine])
    for record in records:
        writer.write(record)
    writer.close()
    with open(reference, "rb") as a, open(mine, "rb") as b:
        assert a.read() == b.read()
    # Known CRC-32C check value of "123456789".
    assert int(pretraining_records.Crc32c().crc([b"123456789"])[0]) == 0xE3069283

    gz = str(tmp_path / "mine.gz")
    writer = pretraining_records.RecordFileWriter([gz], gzip=True)
    for record in records:
        writer.write(record)
    writer.close()
    read = [r.numpy() for r in tf.data.TFRecordDataset(gz, compression_type="GZIP")]
    assert read == records


def test_crc32c_rfc3720_vectors_and_long_records_match_tensorflow(tmp_path):
    crc = pretraining_records.Crc32c()
    # RFC 3720 (iSCSI) appendix B.4 test vectors.
    vectors = [bytes(32), b"\xff" * 32, bytes(range(32)), bytes(range(31, -1, -1))]
    assert crc.crc(vectors).tolist() == [0x8A9136AA, 0x62A8AB43, 0x46DD794E, 0x113FDB5C]
    # Records of 1 MiB and 3 MiB + 1 byte, framed as TensorFlow frames them (masked CRCs).
    rng = random.Random(7)
    records = [rng.randbytes(1 << 20), b"", rng.randbytes(3 * (1 << 20) + 1)]
    reference = str(tmp_path / "tf.tfrecord")
    with tf.io.TFRecordWriter(reference) as writer:
        for record in records:
            writer.write(record)
    with open(reference, "rb") as f:
        assert b"".join(crc.frame(records)) == f.read()


def test_write_framed_many_round_robins_like_tensorflow_writers(tmp_path):
    # 10,000 records over three files, written in uneven batches (batches straddle the
    # round-robin turn) as bytes and memoryviews: each file must equal TensorFlow's writer fed
    # every third record.
    records = [bytes([i % 251]) * (i % 97) for i in range(10000)]
    framed = pretraining_records.Crc32c().frame(records)
    paths = [str(tmp_path / f"mine{k}.tfrecord") for k in range(3)]
    writer = pretraining_records.RecordFileWriter(paths)
    writer.write_framed(framed[0])
    start = 1
    for size in (1, 2, 4100, 5, 9000):
        batch = framed[start:start + size]
        writer.write_framed_many(batch if size % 2 else [memoryview(r) for r in batch])
        start += size
    assert start >= len(framed)
    assert writer.num_records == [3334, 3333, 3333]
    writer.close()
    for k, path in enumerate(paths):
        reference = str(tmp_path / f"tf{k}.tfrecord")
        with tf.io.TFRecordWriter(reference) as tf_writer:
            for record in records[k::3]:
                tf_writer.write(record)
        with open(reference, "rb") as a, open(path, "rb") as b:
            assert a.read() == b.read(), path


def test_writer_leaves_nothing_on_failure(tmp_path):
    path = tmp_path / "out.tfrecord"
    with pytest.raises(RuntimeError):
        with pretraining_records.RecordFileWriter([str(path)]) as writer:
            writer.write(b"abc")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# Reader
# ---------------------------------------------------------------------------------------------


def test_reads_original_records_unchanged(tmp_path):
    instances = random_instances(10)
    paths = write_original_files(str(tmp_path), instances, num_files=1)
    dataset = pretraining_dataset(paths[0], batch_size=4, max_seq_length=SEQ,
                                  max_predictions_per_seq=PREDS, is_training=False)
    batches = list(dataset)
    assert [int(b["input_ids"].shape[0]) for b in batches] == [4, 4, 2]  # eval keeps the rest
    for name, value in batches[0].items():
        want = tf.float32 if name == "masked_lm_weights" else tf.int32
        assert value.dtype == want, name
    assert batches[0]["next_sentence_labels"].shape == (4, 1)
    assert batches[0]["input_ids"].shape == (4, SEQ)
    assert batches[0]["masked_lm_weights"].shape == (4, PREDS)
    got = {name: np.concatenate([b[name].numpy() for b in batches]) for name in batches[0]}
    for i, instance in enumerate(instances):
        for name, values in expected_features(instance).items():
            np.testing.assert_array_equal(got[name][i], values, err_msg=name)


def test_training_pipeline_repeats_shuffles_and_drops_remainder(tmp_path):
    instances = random_instances(30, seed=1)
    paths = write_original_files(str(tmp_path), instances, num_files=3)
    dataset = pretraining_dataset(str(tmp_path / "orig-*.tfrecord"), batch_size=8,
                                  max_seq_length=SEQ, max_predictions_per_seq=PREDS,
                                  is_training=True, seed=3)
    batches = list(dataset.take(12))  # 96 records > 30: repeats
    assert all(b["input_ids"].shape == (8, SEQ) for b in batches)
    seen = np.concatenate([b["input_ids"].numpy() for b in batches])
    first_pass = {tuple(row) for row in seen[:24]}
    all_ids = {tuple(expected_features(i)["input_ids"]) for i in instances}
    assert first_pass <= all_ids
    assert {tuple(row) for row in seen} == all_ids
    in_file_order = [tuple(expected_features(i)["input_ids"]) for i in instances[:24]]
    assert [tuple(row) for row in seen[:24]] != in_file_order  # shuffled
    assert len(paths) == 3


def test_sharding_with_input_context(tmp_path):
    instances = random_instances(24, seed=2)
    write_original_files(str(tmp_path), instances, num_files=4, name="many")
    write_original_files(str(tmp_path), instances, num_files=1, name="one")
    for pattern in ("many-*.tfrecord", "one-*.tfrecord"):
        shards = []
        for pipeline in range(2):
            context = tf.distribute.InputContext(num_input_pipelines=2,
                                                 input_pipeline_id=pipeline,
                                                 num_replicas_in_sync=2)
            dataset = pretraining_dataset(str(tmp_path / pattern), batch_size=4,
                                          max_seq_length=SEQ, max_predictions_per_seq=PREDS,
                                          is_training=False, input_context=context)
            batches = list(dataset)
            assert batches[0]["input_ids"].shape[0] == 2  # per-replica batch = 4 / 2
            shards.append({tuple(r) for b in batches for r in b["input_ids"].numpy()})
        assert not shards[0] & shards[1], pattern
        assert shards[0] | shards[1] == {tuple(expected_features(i)["input_ids"])
                                         for i in instances}, pattern


def test_one_pipeline_feeding_two_replicas_yields_per_replica_batches(tmp_path):
    # MirroredStrategy on one machine: one input pipeline, two replicas in sync. Each batch is
    # one replica's share (8 / 2) and the single pipeline still reads every record.
    instances = random_instances(24, seed=3)
    write_original_files(str(tmp_path), instances, num_files=2)
    context = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0,
                                         num_replicas_in_sync=2)
    dataset = pretraining_dataset(str(tmp_path / "orig-*.tfrecord"), batch_size=8,
                                  max_seq_length=SEQ, max_predictions_per_seq=PREDS,
                                  is_training=False, input_context=context)
    batches = list(dataset)
    assert [b["input_ids"].shape[0] for b in batches] == [4] * 6
    assert {tuple(r) for b in batches for r in b["input_ids"].numpy()} == {
        tuple(expected_features(i)["input_ids"]) for i in instances}

def test_length_mismatch_names_file_and_both_lengths(tmp_path):
    paths = write_original_files(str(tmp_path), random_instances(3), num_files=1)
    with pytest.raises(ValueError, match=r"orig-0.tfrecord.*input_ids.*length 16, expected 32.*"
                                         r"max_seq_length=16.*max_seq_length=32"):
        pretraining_dataset(paths[0], 2, max_seq_length=32, max_predictions_per_seq=PREDS,
                            is_training=False)
    with pytest.raises(ValueError, match=r"masked_lm_positions.*length 4, expected 5.*"
                                         r"max_predictions_per_seq=4"):
        pretraining_dataset(paths[0], 2, max_seq_length=SEQ, max_predictions_per_seq=5,
                            is_training=False)
    other = tmp_path / "other.tfrecord"
    with tf.io.TFRecordWriter(str(other)) as writer:
        writer.write(tf.train.Example().SerializeToString())
    with pytest.raises(ValueError, match="other.tfrecord: record has no feature 'input_ids'"):
        pretraining_dataset(str(other), 2, SEQ, PREDS, is_training=False)
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        pretraining_dataset(str(tmp_path / "nothing-here*"), 2, SEQ, PREDS, is_training=False)


def test_gzip_auto_detection_and_files_from_the_writer(tmp_path):
    instances = random_instances(9, seed=4)
    encoder = pretraining_records.ExampleEncoder(SEQ, PREDS, max_id=30521)
    plain, gz = str(tmp_path / "a.tfrecord"), str(tmp_path / "b.tfrecord")
    for path, gzip in ((plain, False), (gz, True)):
        writer = pretraining_records.RecordFileWriter([path], gzip=gzip)
        for instance in instances:
            writer.write(encoder.encode(*instance))
        writer.close()
    dataset = pretraining_dataset(f"{plain},{gz}", batch_size=9, max_seq_length=SEQ,
                                  max_predictions_per_seq=PREDS, is_training=False)
    batches = list(dataset)
    assert len(batches) == 2
    for batch in batches:
        for i, instance in enumerate(instances):
            for name, values in expected_features(instance).items():
                np.testing.assert_array_equal(batch[name][i].numpy().reshape(-1), values)
