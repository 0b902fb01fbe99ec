"""A Dense layer that multiplies [..., in] inputs as one 2-D matrix product."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="bert_tf")
class BertDense(keras.layers.Dense):
    """keras.layers.Dense with the same weights and result, computed as MatMul + BiasAdd.

    Why not plain Dense: on a [batch, seq, in] input Keras 3 emits a broadcasting BatchMatMulV2
    and a separate add, which oneDNN on CPU runs 2-3x slower than one [batch·seq, in] MatMul
    and cannot fuse with the bias and the GELU that follow. Reshaping to 2-D lets TensorFlow's
    remapper fuse MatMul + BiasAdd (+ activation) into one oneDNN kernel.
    """

    def product(self, inputs):
        """inputs · kernel without the bias, as a [rows, units] matrix (inputs [..., in])."""
        dtype = self.compute_dtype
        flat = tf.reshape(tf.cast(inputs, dtype), [-1, tf.shape(inputs)[-1]])
        return tf.matmul(flat, tf.cast(self.kernel, dtype))

    def call(self, inputs, training=None):
        shape = tf.shape(inputs)
        flat = tf.reshape(inputs, [-1, shape[-1]])
        outputs = tf.matmul(flat, self.kernel)
        if self.bias is not None:
            outputs = tf.nn.bias_add(outputs, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return tf.reshape(outputs, tf.concat([shape[:-1], [self.units]], axis=0))
