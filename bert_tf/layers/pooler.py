"""The BERT pooler: tanh(dense(hidden state of the first token))."""

import keras

from bert_tf.layers.utils import truncated_normal


@keras.saving.register_keras_serializable(package="bert_tf")
class BertPooler(keras.layers.Dense):
    """A tanh Dense [hidden, hidden] applied to the first ([CLS]) position.

    It is a Dense layer (so `.kernel`/`.bias` are the original `bert/pooler/dense/*`) whose call
    takes the whole sequence: [batch, seq, hidden] -> [batch, hidden].
    """

    def __init__(self, hidden_size, initializer_range=0.02, **kwargs):
        for key in ("units", "activation", "kernel_initializer"):
            kwargs.pop(key, None)  # from Dense.get_config; fixed by the arguments above
        super().__init__(
            hidden_size,
            activation="tanh",
            kernel_initializer=truncated_normal(initializer_range),
            **kwargs,
        )
        self.hidden_size = hidden_size
        self.initializer_range = initializer_range

    def build(self, input_shape=None):
        super().build((None, self.hidden_size))

    def call(self, sequence_output):
        return super().call(sequence_output[:, 0, :])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.hidden_size)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, initializer_range=self.initializer_range)
        return config
