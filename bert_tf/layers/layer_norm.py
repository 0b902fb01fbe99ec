"""LayerNorm with the original epsilon; under mixed precision one fused pass instead of ten."""

import keras
import tensorflow as tf
from keras import ops


@tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
def _normalize_in_float32(x, gamma, beta, epsilon):
    # The same math as keras' LayerNormalization under mixed precision (statistics and the
    # affine map in float32, one rounding to the compute dtype at the end), compiled by XLA
    # into one loop over the rows.
    x32 = tf.cast(x, tf.float32)
    mean = tf.reduce_mean(x32, axis=-1, keepdims=True)
    variance = tf.reduce_mean(tf.math.squared_difference(x32, mean), axis=-1, keepdims=True)
    scale = tf.math.rsqrt(variance + epsilon) * gamma
    return tf.cast(x32 * scale + (beta - mean * scale), x.dtype)


@keras.saving.register_keras_serializable(package="bert_tf")
class BertLayerNorm(keras.layers.LayerNormalization):
    """keras.layers.LayerNormalization over the last axis, with the same weights (gamma, beta).

    float32: keras' own computation, unchanged. bfloat16/float16 compute: keras upcasts the
    [batch, seq, hidden] activations to float32 and runs about ten separate TensorFlow ops,
    each a full pass over memory; on CPU that made the LayerNorms ~10% of a bfloat16 BERT
    forward pass. Here the same float32 math runs as one XLA-compiled function, about twice
    as fast, with the same result.
    """

    def call(self, inputs):
        if self.compute_dtype == "float32" or self.axis not in (-1, [-1], (-1,)):
            return super().call(inputs)
        return _normalize_in_float32(
            inputs,
            ops.cast(self.gamma, "float32"),
            ops.cast(self.beta, "float32"),
            float(self.epsilon),
        )
