"""Keras-native fine-tuning: `compile` + `fit` on tf.data pipelines built from raw strings.

References: synthetic tasks whose answer is known by construction (a sentence is positive iff
it contains "good"; a token is tagged iff it is "good"), and the original AdamWeightDecay
update written out in NumPy from ORIGINAL_BERT_FACTS.md.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bert_tf.config import BertConfig
from bert_tf.models import BertClassifier, BertTokenClassifier
from bert_tf.optimization import KerasAdamWeightDecay, WarmupLinearDecay, create_keras_optimizer
from bert_tf.preprocessing import BertPacker, BertTokenizer

WORDS = ["the", "movie", "was", "plot", "actor", "long", "short", "film", "bad", "dull", "fine", "story"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good"] + WORDS
SEQ = 12


def synthetic_sentences(n, seed):
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        words = list(rng.choice(WORDS, size=rng.integers(3, 8)))
        positive = bool(rng.integers(0, 2))
        if positive:
            words.insert(int(rng.integers(0, len(words) + 1)), "good")
        texts.append(" ".join(words).capitalize())
        labels.append(int(positive))
    return texts, np.array(labels, np.int32)


def tiny_config():
    return BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=SEQ, type_vocab_size=2,
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.fixture(scope="module")
def preprocess():
    tokenizer = BertTokenizer(VOCAB, lower_case=True)
    packer = BertPacker(SEQ, cls_id=VOCAB.index("[CLS]"), sep_id=VOCAB.index("[SEP]"))
    return lambda text: packer(tokenizer(text))


def test_classifier_learns_with_compile_and_fit(preprocess):
    keras.utils.set_random_seed(1)
    texts, labels = synthetic_sentences(256, seed=0)
    train = (tf.data.Dataset.from_tensor_slices((texts, labels)).shuffle(256, seed=0).batch(32)
             .map(lambda text, label: (preprocess(text), label)))
    model = BertClassifier(tiny_config(), num_labels=2)
    steps = 8 * 8
    model.compile(optimizer=create_keras_optimizer(3e-3, num_train_steps=steps, num_warmup_steps=6),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(train, epochs=8, verbose=0)

    dev_texts, dev_labels = synthetic_sentences(128, seed=1)
    dev = tf.data.Dataset.from_tensor_slices((dev_texts, dev_labels)).batch(64).map(
        lambda text, label: (preprocess(text), label))
    loss, accuracy = model.evaluate(dev, verbose=0)
    assert accuracy >= 0.95, (loss, accuracy)
    predictions = model.predict(dev.map(lambda x, y: x), verbose=0)
    assert set(predictions) >= {"logits", "pooled_output", "sequence_output"}  # the dict stays
    assert predictions["logits"].shape == (128, 2)
    np.testing.assert_equal(int(model.optimizer.iterations.numpy()), steps)


def test_token_classifier_learns_with_padding_masked_by_sample_weight(preprocess):
    keras.utils.set_random_seed(2)
    texts, _ = synthetic_sentences(256, seed=2)

    def example(text):
        features = preprocess(text)
        tags = tf.cast(tf.equal(features["input_ids"], VOCAB.index("good")), tf.int32)
        return features, tags, features["input_mask"]

    train = tf.data.Dataset.from_tensor_slices(texts).batch(32).map(example)
    model = BertTokenClassifier(tiny_config(), num_labels=2)
    model.compile(optimizer=create_keras_optimizer(3e-3, num_train_steps=48, num_warmup_steps=4),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  weighted_metrics=["accuracy"])
    model.fit(train, epochs=6, verbose=0)
    dev_texts, _ = synthetic_sentences(64, seed=3)
    _, accuracy = model.evaluate(tf.data.Dataset.from_tensor_slices(dev_texts).batch(64).map(example), verbose=0)
    assert accuracy >= 0.98


def test_dict_labels_still_address_outputs_by_name(preprocess):
    texts, labels = synthetic_sentences(8, seed=4)
    model = BertClassifier(tiny_config(), num_labels=2)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer="sgd", loss={"logits": loss})
    data = tf.data.Dataset.from_tensor_slices((texts, labels)).batch(4).map(
        lambda t, y: (preprocess(t), {"logits": y}))
    history = model.fit(data, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_keras_adam_weight_decay_is_the_original_update():
    """Two steps against the NumPy formula: no bias correction, decay on kernels only, clipping."""
    kernel = keras.Variable(np.array([[0.5, -1.0], [2.0, 0.25]], np.float32), name="kernel")
    bias = keras.Variable(np.array([0.1, -0.2], np.float32), name="bias")
    schedule = WarmupLinearDecay(0.1, num_train_steps=10, num_warmup_steps=1)
    optimizer = KerasAdamWeightDecay(schedule, weight_decay_rate=0.01)
    grads = [np.array([[3.0, 0.0], [-4.0, 1.0]], np.float32), np.array([0.5, 0.5], np.float32)]

    w = [kernel.numpy().astype(np.float64), bias.numpy().astype(np.float64)]
    m = [np.zeros_like(x) for x in w]
    v = [np.zeros_like(x) for x in w]
    for step in range(2):
        optimizer.apply_gradients(zip([tf.constant(g) for g in grads], [kernel, bias]))
        norm = np.sqrt(sum(np.sum(np.square(g.astype(np.float64))) for g in grads))
        clipped = [g * (1.0 / max(norm, 1.0)) for g in grads]
        lr = 0.1 * step / 1 if step < 1 else 0.1 * (1 - step / 10)
        for i, g in enumerate(clipped):
            m[i] = 0.9 * m[i] + 0.1 * g
            v[i] = 0.999 * v[i] + 0.001 * g * g
            update = m[i] / (np.sqrt(v[i]) + 1e-6)
            if i == 0:  # the bias is excluded from weight decay
                update = update + 0.01 * w[i]
            w[i] = w[i] - lr * update
    np.testing.assert_allclose(kernel.numpy(), w[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(bias.numpy(), w[1], rtol=0, atol=1e-6)
