"""BERT input embeddings: word + token type + position, LayerNorm, dropout."""

import keras
from keras import ops

from bert_tf.layers import fused
from bert_tf.layers.layer_norm import BertLayerNorm
from bert_tf.layers.utils import build_once, truncated_normal

LAYER_NORM_EPSILON = 1e-12


@keras.saving.register_keras_serializable(package="bert_tf")
class BertEmbeddings(keras.layers.Layer):
    """Sum of word, token-type and (sliced) absolute position embeddings, normalised.

    bert_tf's own layer: keras-hub's TokenAndPositionEmbedding has no token-type table and no
    LayerNorm/dropout in the original order.

    Inputs: `input_ids` and `segment_ids`, int [batch, seq] with seq <= max_position_embeddings.
    Output: [batch, seq, hidden_size] in the layer's compute dtype.
    """

    def __init__(
        self,
        vocab_size,
        hidden_size,
        max_position_embeddings,
        type_vocab_size,
        dropout_rate=0.1,
        initializer_range=0.02,
        layer_norm_epsilon=LAYER_NORM_EPSILON,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.dropout_rate = dropout_rate
        self.initializer_range = initializer_range
        self.layer_norm_epsilon = layer_norm_epsilon
        sublayer_args = dict(dtype=self.dtype_policy)
        self.word_embeddings = keras.layers.Embedding(
            vocab_size,
            hidden_size,
            embeddings_initializer=truncated_normal(initializer_range),
            name="word_embeddings",
            **sublayer_args,
        )
        self.position_embeddings = keras.layers.Embedding(
            max_position_embeddings,
            hidden_size,
            embeddings_initializer=truncated_normal(initializer_range),
            name="position_embeddings",
            **sublayer_args,
        )
        self.token_type_embeddings = keras.layers.Embedding(
            type_vocab_size,
            hidden_size,
            embeddings_initializer=truncated_normal(initializer_range),
            name="token_type_embeddings",
            **sublayer_args,
        )
        self.layer_norm = BertLayerNorm(
            epsilon=layer_norm_epsilon, name="layer_norm", **sublayer_args
        )
        self.dropout = keras.layers.Dropout(dropout_rate, name="dropout", **sublayer_args)

    def build(self, input_shape=None):
        for table in (self.word_embeddings, self.position_embeddings, self.token_type_embeddings):
            build_once(table, (None, None))
        build_once(self.layer_norm, (None, None, self.hidden_size))
        self.built = True

    def call(self, input_ids, segment_ids, training=None):
        seq_length = ops.shape(input_ids)[1]
        if isinstance(seq_length, int) and seq_length > self.max_position_embeddings:
            raise ValueError(
                f"sequence length {seq_length} exceeds max_position_embeddings "
                f"{self.max_position_embeddings}"
            )
        embeddings = self.word_embeddings(input_ids) + self.token_type_embeddings(segment_ids)
        positions = ops.expand_dims(ops.arange(seq_length, dtype="int32"), 0)
        embeddings = embeddings + self.position_embeddings(positions)
        embeddings = self.layer_norm(embeddings)
        if training:
            return fused.dropout_like(self.dropout, embeddings)
        return embeddings

    def get_config(self):
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            max_position_embeddings=self.max_position_embeddings,
            type_vocab_size=self.type_vocab_size,
            dropout_rate=self.dropout_rate,
            initializer_range=self.initializer_range,
            layer_norm_epsilon=self.layer_norm_epsilon,
        )
        return config
