"""BERT models: the encoder, the pretraining model and its loss, and fine-tuning models.

All models take a dict of int32 tensors [batch, seq] named like the original TFRecord features
(`input_ids`, `input_mask`, `segment_ids`; the pretrainer also `masked_lm_positions` [batch, P])
and return a dict of float32 tensors, also under a mixed-precision dtype policy. They are built
(all variables created) on construction, so a checkpoint can be loaded into a fresh model.
"""

import keras
import tensorflow as tf
from keras import ops

from bert_tf.config import CLASSIFIER_POOLINGS, BertConfig
from bert_tf.layers import (
    BertEmbeddings,
    BertMaskedLMHead,
    BertNextSentenceHead,
    BertPooler,
    BertTransformerBlock,
)
from bert_tf.layers.utils import build_once, truncated_normal

# run_classifier's output layer uses a fixed stddev, not initializer_range.
CLASSIFIER_INITIALIZER_STDDEV = 0.02
# The original MLM loss denominator: sum(weights) + 1e-5.
MASKED_LM_WEIGHT_EPSILON = 1e-5


def _as_config(config):
    if isinstance(config, BertConfig):
        return config
    if isinstance(config, dict):
        # A dict here comes from get_config(): original keys with bert_tf activation names.
        return BertConfig.from_dict(config, source="original")
    raise TypeError(f"expected a BertConfig or a dict, got {type(config).__name__}")


def _float32(x):
    return ops.cast(x, "float32")


def dummy_inputs(config, batch_size=1, seq_length=2, num_predictions=None):
    """Zero-filled int32 inputs (all positions attended) for tracing or smoke tests."""
    shape = (batch_size, seq_length)
    inputs = {
        "input_ids": tf.zeros(shape, tf.int32),
        "input_mask": tf.ones(shape, tf.int32),
        "segment_ids": tf.zeros(shape, tf.int32),
    }
    if num_predictions:
        inputs["masked_lm_positions"] = tf.zeros((batch_size, num_predictions), tf.int32)
    return inputs


class _BertModel(keras.Model):
    """Shared plumbing: the config, eager build on construction, get_config."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.config = _as_config(config)

    def _finish_init(self):
        # Variables do not depend on input shapes (any seq <= max_position_embeddings), so
        # build now: checkpoint loaders can fill a fresh model without calling it on data.
        self.build()

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        # Keras 3 hands Python lists of layers to tf.train.Checkpoint only for SavedModel;
        # without this the transformer blocks would silently be left out of checkpoints.
        children = super()._trackable_children(save_type, **kwargs)
        if save_type == "checkpoint":
            for name in getattr(self, "_tracked", ()):
                value = getattr(self, name, None)
                if isinstance(value, list) and name not in children:
                    children[name] = self._checkpoint_list(name, value)
        return children

    def _checkpoint_list(self, name, value):
        # One stable TF list wrapper per attribute, so restores match the saved object graph.
        cache = self.__dict__.setdefault("_checkpoint_lists", {})
        if name not in cache or list(cache[name]) != list(value):
            cache[name] = tf.__internal__.tracking.wrap(list(value))
        return cache[name]

    def build_from_config(self, config):
        build_once(self)

    def get_build_config(self):
        return {}

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "config": self.config.to_dict(),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="bert_tf")
class BertEncoder(_BertModel):
    """The BERT encoder: embeddings, `num_hidden_layers` post-LN blocks, the tanh pooler.

    Inputs: dict with `input_ids` [batch, seq] and optionally `input_mask` (default all ones) and
    `segment_ids` (default zeros), int32; seq may vary between calls up to
    max_position_embeddings.
    Outputs (float32): `sequence_output` [batch, seq, hidden], `pooled_output` [batch, hidden],
    `encoder_outputs` (list: each block's output [batch, seq, hidden]) and `embedding_output`
    [batch, seq, hidden] (after the embedding LayerNorm and dropout).
    """

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        c = self.config
        policy = self.dtype_policy
        self.embeddings = BertEmbeddings(
            vocab_size=c.vocab_size,
            hidden_size=c.hidden_size,
            max_position_embeddings=c.max_position_embeddings,
            type_vocab_size=c.type_vocab_size,
            dropout_rate=c.hidden_dropout_prob,
            initializer_range=c.initializer_range,
            layer_norm_epsilon=c.layer_norm_eps,
            name="embeddings",
            dtype=policy,
        )
        self.transformer_layers = [
            BertTransformerBlock(
                hidden_size=c.hidden_size,
                num_attention_heads=c.num_attention_heads,
                intermediate_size=c.intermediate_size,
                hidden_act=c.hidden_act,
                hidden_dropout_prob=c.hidden_dropout_prob,
                attention_probs_dropout_prob=c.attention_probs_dropout_prob,
                initializer_range=c.initializer_range,
                layer_norm_epsilon=c.layer_norm_eps,
                name=f"transformer_layer_{i}",
                dtype=policy,
            )
            for i in range(c.num_hidden_layers)
        ]
        self.pooler = BertPooler(
            c.hidden_size, initializer_range=c.initializer_range, name="pooler", dtype=policy
        )
        self._finish_init()

    def build(self, input_shape=None):
        build_once(self.embeddings)
        for block in self.transformer_layers:
            build_once(block)
        build_once(self.pooler)
        self.built = True

    def call(self, inputs, training=None):
        input_ids = inputs["input_ids"]
        input_mask = inputs.get("input_mask")
        if input_mask is None:
            input_mask = ops.ones_like(input_ids)
        segment_ids = inputs.get("segment_ids")
        if segment_ids is None:
            segment_ids = ops.zeros_like(input_ids)

        hidden = self.embeddings(input_ids, segment_ids, training=training)
        embedding_output = hidden
        encoder_outputs = []
        for block in self.transformer_layers:
            hidden = block(hidden, input_mask, training=training)
            encoder_outputs.append(hidden)
        pooled = self.pooler(hidden)
        return {
            "sequence_output": _float32(hidden),
            "pooled_output": _float32(pooled),
            "encoder_outputs": [_float32(x) for x in encoder_outputs],
            "embedding_output": _float32(embedding_output),
        }

    @property
    def word_embedding_table(self):
        """The [vocab, hidden] word embedding variable (the MLM decoder is tied to it)."""
        return self.embeddings.word_embeddings.embeddings


@keras.saving.register_keras_serializable(package="bert_tf")
class BertPretrainer(_BertModel):
    """Encoder + masked-LM head + next-sentence head, as the original run_pretraining.

    Extra input `masked_lm_positions` int32 [batch, P]; adds float32 outputs
    `masked_lm_logits` [batch, P, vocab] and `next_sentence_logits` [batch, 2] to the
    encoder's. Train it with `pretraining_loss`.
    """

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        c = self.config
        policy = self.dtype_policy
        with keras.name_scope(self.name):  # variable paths "<model>/encoder/..."
            self.encoder = BertEncoder(c, name="encoder", dtype=policy)
        self.masked_lm_head = BertMaskedLMHead(
            vocab_size=c.vocab_size,
            hidden_size=c.hidden_size,
            hidden_act=c.hidden_act,
            initializer_range=c.initializer_range,
            layer_norm_epsilon=c.layer_norm_eps,
            name="masked_lm_head",
            dtype=policy,
        )
        self.next_sentence_head = BertNextSentenceHead(
            c.hidden_size,
            initializer_range=c.initializer_range,
            name="next_sentence_head",
            dtype=policy,
        )
        self._finish_init()

    def build(self, input_shape=None):
        build_once(self.encoder)
        build_once(self.masked_lm_head)
        build_once(self.next_sentence_head)
        self.built = True

    def call(self, inputs, training=None):
        outputs = dict(self.encoder(inputs, training=training))
        outputs["masked_lm_logits"] = self.masked_lm_head(
            outputs["sequence_output"],
            inputs["masked_lm_positions"],
            self.encoder.word_embedding_table,
        )
        outputs["next_sentence_logits"] = self.next_sentence_head(outputs["pooled_output"])
        return outputs


class _BertWithClassifierHead(_BertModel):
    """Encoder + dropout + Dense(num_labels) on one of the encoder's outputs.

    Subclasses name the encoder output the head reads (`_head_input`). The Dense kernel uses a
    fixed stddev 0.02, as the original run_classifier's output layer.
    """

    _head_input = None  # "pooled_output" or "sequence_output"

    def __init__(self, config, num_labels, classifier_dropout=0.1, **kwargs):
        super().__init__(config, **kwargs)
        _check_num_labels(num_labels)
        self.num_labels = num_labels
        self.classifier_dropout = classifier_dropout
        policy = self.dtype_policy
        with keras.name_scope(self.name):  # variable paths "<model>/encoder/..."
            self.encoder = BertEncoder(self.config, name="encoder", dtype=policy)
        self.dropout = keras.layers.Dropout(classifier_dropout, name="dropout", dtype=policy)
        self.classifier = keras.layers.Dense(
            num_labels,
            kernel_initializer=truncated_normal(CLASSIFIER_INITIALIZER_STDDEV),
            name="classifier",
            dtype=policy,
        )
        self._finish_init()

    def build(self, input_shape=None):
        build_once(self.encoder)
        build_once(self.classifier, (None, self.config.hidden_size))
        self.built = True

    def call(self, inputs, training=None):
        outputs = dict(self.encoder(inputs, training=training))
        features = self.dropout(self._head_features(inputs, outputs), training=training)
        outputs["logits"] = _float32(self.classifier(features))
        return outputs

    def _head_features(self, inputs, outputs):
        return outputs[self._head_input]

    # Keras-native training: `compile(loss=...)` + `fit` train the task output. The model still
    # returns its dict of outputs (predict, serving); when the labels are one tensor rather than
    # a dict keyed by output name, the loss and metrics see only `task_output`.
    task_output = "logits"

    def _outputs_for_labels(self, y, y_pred):
        if isinstance(y_pred, dict) and not isinstance(y, dict):
            return y_pred[self.task_output]
        return y_pred

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return super().compute_loss(x=x, y=y, y_pred=self._outputs_for_labels(y, y_pred),
                                    sample_weight=sample_weight, training=training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, self._outputs_for_labels(y, y_pred), sample_weight=sample_weight)

    def get_config(self):
        config = super().get_config()
        config.update(num_labels=self.num_labels, classifier_dropout=self.classifier_dropout)
        return config


@keras.saving.register_keras_serializable(package="bert_tf")
class BertClassifier(_BertWithClassifierHead):
    """Sequence classifier of run_classifier: dropout + dense on one vector per sequence.

    `pooling` picks that vector: "pooler" (the original: the tanh pooler's output),
    "cls" (the [CLS] token's last hidden state, without the pooler) or "mean" (the mean of the
    last hidden states over the positions where `input_mask` is 1, [CLS] and [SEP] included —
    sentence-transformers' mean pooling). The pooler's variables exist in every case, so any
    checkpoint loads the same way.

    Adds output `logits` float32 [batch, num_labels]; with num_labels == 1 it is a regression
    score (e.g. STS-B). `.classifier` is a Dense [hidden, num_labels]: the transpose of the
    original's top-level `output_weights` [num_labels, hidden], plus `output_bias`.
    """

    _head_input = "pooled_output"

    def __init__(self, config, num_labels, classifier_dropout=0.1, pooling="pooler", **kwargs):
        if pooling not in CLASSIFIER_POOLINGS:
            raise ValueError(f"pooling must be one of {CLASSIFIER_POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        super().__init__(config, num_labels, classifier_dropout=classifier_dropout, **kwargs)

    def _head_features(self, inputs, outputs):
        if self.pooling == "pooler":
            return outputs["pooled_output"]
        sequence = outputs["sequence_output"]  # float32
        if self.pooling == "cls":
            return sequence[:, 0]
        mask = inputs.get("input_mask")
        if mask is None:
            return ops.mean(sequence, axis=1)
        mask = ops.expand_dims(ops.cast(mask, sequence.dtype), -1)
        total = ops.sum(sequence * mask, axis=1)
        return total / ops.maximum(ops.sum(mask, axis=1), 1.0)

    def get_config(self):
        config = super().get_config()
        config.update(pooling=self.pooling)
        return config


@keras.saving.register_keras_serializable(package="bert_tf")
class BertTokenClassifier(_BertWithClassifierHead):
    """Per-token classifier (e.g. NER): dropout + dense on every position's hidden state.

    Adds output `logits` float32 [batch, seq, num_labels].
    """

    _head_input = "sequence_output"


def _check_num_labels(num_labels):
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise ValueError(f"num_labels must be a positive integer, got {num_labels!r}")


# ------------------------------------------------------------------------- pretraining loss
def _masked_lm_nll(features, outputs):
    logits = _float32(outputs["masked_lm_logits"])
    ids = tf.cast(features["masked_lm_ids"], tf.int32)
    nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ids, logits=logits)
    weights = tf.cast(features["masked_lm_weights"], tf.float32)
    return nll, weights, logits, ids


def _next_sentence_nll(features, outputs):
    logits = _float32(outputs["next_sentence_logits"])
    labels = tf.reshape(tf.cast(features["next_sentence_labels"], tf.int32), [-1])
    nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return nll, logits, labels


def pretraining_loss(features, outputs):
    """The original pretraining loss, in float32.

    masked_lm_loss = Σ(w · nll) / (Σ w + 1e-5) over all masked positions of the batch;
    next_sentence_loss = mean nll; loss = their sum.

    Args:
      features: dict with `masked_lm_ids` [B, P], `masked_lm_weights` [B, P] (0 for padding
        predictions) and `next_sentence_labels` [B, 1] or [B] (0 = real next, 1 = random).
      outputs: BertPretrainer outputs (`masked_lm_logits`, `next_sentence_logits`).
    Returns:
      dict of float32 scalars `loss`, `masked_lm_loss`, `next_sentence_loss`.
    """
    mlm_nll, weights, _, _ = _masked_lm_nll(features, outputs)
    masked_lm_loss = tf.reduce_sum(weights * mlm_nll) / (
        tf.reduce_sum(weights) + MASKED_LM_WEIGHT_EPSILON
    )
    nsp_nll, _, _ = _next_sentence_nll(features, outputs)
    next_sentence_loss = tf.reduce_mean(nsp_nll)
    return {
        "loss": masked_lm_loss + next_sentence_loss,
        "masked_lm_loss": masked_lm_loss,
        "next_sentence_loss": next_sentence_loss,
    }


class PretrainingMetrics:
    """The original run_pretraining eval metrics as running means over every batch.

    masked_lm_accuracy and masked_lm_loss are weighted by `masked_lm_weights` (Σw·v / Σw, no
    +1e-5); next_sentence_accuracy and next_sentence_loss are plain means over examples.
    Create it inside the distribution strategy scope when there is one.
    """

    NAMES = ("masked_lm_accuracy", "masked_lm_loss", "next_sentence_accuracy", "next_sentence_loss")

    def __init__(self):
        self.metrics = {name: keras.metrics.Mean(name=name) for name in self.NAMES}

    def update_state(self, features, outputs):
        mlm_nll, weights, mlm_logits, ids = _masked_lm_nll(features, outputs)
        mlm_correct = tf.cast(tf.equal(tf.argmax(mlm_logits, -1, output_type=tf.int32), ids), tf.float32)
        self.metrics["masked_lm_accuracy"].update_state(mlm_correct, sample_weight=weights)
        self.metrics["masked_lm_loss"].update_state(mlm_nll, sample_weight=weights)
        nsp_nll, nsp_logits, labels = _next_sentence_nll(features, outputs)
        nsp_correct = tf.cast(tf.equal(tf.argmax(nsp_logits, -1, output_type=tf.int32), labels), tf.float32)
        self.metrics["next_sentence_accuracy"].update_state(nsp_correct)
        self.metrics["next_sentence_loss"].update_state(nsp_nll)

    def result(self):
        """dict name -> float32 scalar tensor."""
        return {name: metric.result() for name, metric in self.metrics.items()}

    def reset_state(self):
        for metric in self.metrics.values():
            metric.reset_state()
