"""Static shapes for XLA and TPUs: batches padded to a few fixed lengths (bert_tf.data.batching).

The compilation count is measured with a shape-specialising `tf.function(jit_compile=True)`
(no input signature): it traces, and XLA compiles, once per distinct input shape.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bert_tf import finetuning
from bert_tf.config import BertConfig
from bert_tf.data import batching
from bert_tf.data import classification as cls_data
from bert_tf.models import BertClassifier
from bert_tf.tokenization import FullTokenizer

MAX_SEQ = 64
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(27)]


def test_bucket_lengths():
    assert batching.static_length_buckets(128) == (32, 64, 128)
    assert batching.static_length_buckets(512) == (32, 64, 128, 256, 512)
    assert batching.static_length_buckets(384) == (32, 64, 128, 256, 384)
    assert batching.static_length_buckets(32) == (32,)
    assert batching.static_length_buckets(20) == (20,)


def test_buckets_follow_jit_compile_and_tpu_only():
    settings = finetuning.FineTuningSettings(max_seq_length=128)
    strategy = tf.distribute.get_strategy()
    assert finetuning.sequence_length_buckets(settings, strategy) is None
    settings.jit_compile = True
    assert finetuning.sequence_length_buckets(settings, strategy) == (32, 64, 128)


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    """40 examples of every length from 3 to 64, in a shuffled order."""
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    tokenizer = FullTokenizer(str(vocab), do_lower_case=True)
    rng = np.random.default_rng(0)
    lengths = rng.permutation(np.linspace(1, MAX_SEQ - 2, 40).astype(int))
    examples = [cls_data.InputExample(str(i), " ".join(f"w{(i + k) % 27}" for k in range(n)),
                                      None, str(i % 2)) for i, n in enumerate(lengths)]
    return cls_data.convert_examples_to_features(examples, ["0", "1"], MAX_SEQ, tokenizer)


def shapes_of(dataset):
    return [tuple(batch["input_ids"].shape) for batch in dataset]


def test_batches_take_the_smallest_bucket_and_keep_their_content(features):
    buckets = (32, 64)
    bucketed = list(cls_data.classification_dataset(
        features, 4, is_training=False, length_buckets=buckets).as_numpy_iterator())
    per_batch = list(cls_data.classification_dataset(
        features, 4, is_training=False, pad_to_multiple_of=1).as_numpy_iterator())
    assert len(bucketed) == len(per_batch) == 10
    for padded, tight in zip(bucketed, per_batch):
        longest = tight["input_ids"].shape[1]
        assert padded["input_ids"].shape[1] == min(b for b in buckets if b >= longest)
        for name in ("input_ids", "input_mask", "segment_ids"):
            np.testing.assert_array_equal(padded[name][:, :longest], tight[name])
            assert not padded[name][:, longest:].any()  # padding is 0, masked
        np.testing.assert_array_equal(padded["label_ids"], tight["label_ids"])
    # Per-batch padding would have given many more shapes on the same data.
    assert len(set(shapes_of(per_batch))) >= 8
    assert set(shapes_of(bucketed)) == {(4, 32), (4, 64)}


def test_one_bucket_is_a_static_shape_and_padding_values_are_kept(features):
    # The TPU case: (max_seq_length,) -> the element_spec itself is static.
    dataset = cls_data.classification_dataset(features, 4, is_training=False, drop_remainder=True,
                                              length_buckets=(MAX_SEQ,))
    assert dataset.element_spec["input_ids"].shape.as_list() == [4, MAX_SEQ]
    assert dataset.element_spec["label_ids"].shape.as_list() == [4]
    assert all(b["input_ids"].shape == (4, MAX_SEQ) for b in dataset.as_numpy_iterator())
    # NER labels pad with -1 up to the bucket; rows longer than every bucket are an error.
    flat = np.arange(1, 16, dtype=np.int32)
    lengths = np.array([3, 7, 5])
    offsets = cls_data.row_offsets(lengths)
    labels, got = cls_data.padded_rows(flat * 10, offsets, lengths, np.array([0, 2]), 8,
                                       pad_value=-1, length_buckets=(8,))
    assert got.tolist() == [3, 5]
    assert labels.tolist() == [[10, 20, 30, -1, -1, -1, -1, -1],
                               [110, 120, 130, 140, 150, -1, -1, -1]]
    assert batching.padded_width(5, 8, (4, 6)) == 6
    assert batching.padded_width(5, 8) == 8
    with pytest.raises(ValueError, match="longer than the largest length bucket"):
        batching.padded_width(7, 8, (4, 6))


def test_jit_compiles_once_per_bucket_and_padding_changes_no_logit(features):
    keras.utils.set_random_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32,
                        max_position_embeddings=MAX_SEQ)
    model = BertClassifier(config, num_labels=2)
    compiled = tf.function(lambda inputs: model(inputs, training=False)["logits"],
                           jit_compile=True)
    inputs = ("input_ids", "input_mask", "segment_ids")
    bucketed = cls_data.classification_dataset(
        features, 4, is_training=False, length_buckets=batching.static_length_buckets(MAX_SEQ))
    logits = np.concatenate([compiled({k: b[k] for k in inputs}).numpy() for b in bucketed])
    assert compiled.experimental_get_tracing_count() == 2  # one per bucket: 32 and 64
    # The same examples padded per batch to their longest, without XLA: the same logits.
    per_batch = cls_data.classification_dataset(features, 4, is_training=False,
                                                pad_to_multiple_of=1)
    reference = np.concatenate([model({k: b[k] for k in inputs}, training=False)["logits"]
                                for b in per_batch])
    np.testing.assert_allclose(logits, reference, atol=2e-5, rtol=1e-4)
