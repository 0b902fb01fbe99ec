"""bert_tf's Keras layers: one building block of the original BERT per module."""

from bert_tf.layers.activations import gelu, gelu_exact, get_activation
from bert_tf.layers.attention import BertSelfAttention, attention_bias
from bert_tf.layers.dense import BertDense
from bert_tf.layers.embeddings import LAYER_NORM_EPSILON, BertEmbeddings
from bert_tf.layers.layer_norm import BertLayerNorm
from bert_tf.layers.masked_lm import BertMaskedLMHead, gather_positions
from bert_tf.layers.next_sentence import BertNextSentenceHead
from bert_tf.layers.pooler import BertPooler
from bert_tf.layers.transformer import BertTransformerBlock

__all__ = [
    "BertDense",
    "BertEmbeddings",
    "BertLayerNorm",
    "BertMaskedLMHead",
    "BertNextSentenceHead",
    "BertPooler",
    "BertSelfAttention",
    "BertTransformerBlock",
    "LAYER_NORM_EPSILON",
    "attention_bias",
    "gather_positions",
    "gelu",
    "gelu_exact",
    "get_activation",
]
