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


def test_one_bucket_is_a_static_shape_and_padding_values_are_kept():
    # The TPU case: (max_seq_length,) -> the element_spec itself is static; NER labels pad -1.
    windows = [np.arange(1, n + 1, dtype=np.int32) for n in (3, 7, 5, 2, 6)]
    dataset = tf.data.Dataset.from_generator(
        lambda: ({"input_ids": w, "label_ids": w * 10} for w in windows),
        output_signature={"input_ids": tf.TensorSpec([None], tf.int32),
                          "label_ids": tf.TensorSpec([None], tf.int32)})
    batched = batching.pad_and_batch(dataset, 2, drop_remainder=True,
                                     padding_values={"input_ids": 0, "label_ids": -1},
                                     length_buckets=(8,))
    assert batched.element_spec["input_ids"].shape.as_list() == [2, 8]
    batches = list(batched.as_numpy_iterator())
    assert len(batches) == 2  # the odd window out is dropped (training under TPU)
    assert batches[0]["input_ids"][0].tolist() == [1, 2, 3, 0, 0, 0, 0, 0]
    assert batches[0]["label_ids"][0].tolist() == [10, 20, 30, -1, -1, -1, -1, -1]
    too_long = batching.pad_and_batch(dataset, 2, drop_remainder=False,
                                      padding_values={"input_ids": 0, "label_ids": -1},
                                      length_buckets=(4, 6))
    with pytest.raises(tf.errors.InvalidArgumentError, match="longer than the largest"):
        list(too_long)


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
