"""Batching variable-length token sequences: per-batch padding, or a few fixed lengths.

Fine-tuning examples have different lengths. On CPUs and GPUs the fastest batch is padded to
its own longest sequence (rounded up to `pad_to_multiple_of`). XLA (`--jit_compile`) and TPUs
compile one program per input shape, so that would mean one compilation per new length. With
`length_buckets` every batch is padded instead to the smallest of a few fixed lengths that
holds it: `static_length_buckets(max_seq_length)` gives the powers of two from 32 below
max_seq_length plus max_seq_length itself (128 → 32, 64, 128; 512 → 32, 64, 128, 256, 512),
so at most that many shapes are compiled (times two for a last, smaller evaluation batch).
With a single bucket (a TPU strategy: `(max_seq_length,)`) the length is static in the
dataset's element_spec too, as TPUs require.

Padding is masked (input_mask 0), so it never changes a model output; only the work done.
"""

from typing import Dict, Optional, Sequence, Tuple

SMALLEST_BUCKET = 32


def static_length_buckets(max_seq_length: int) -> Tuple[int, ...]:
    """(32, 64, ..., max_seq_length): powers of two from 32 below max_seq_length, then it."""
    max_seq_length = int(max_seq_length)
    buckets = []
    length = SMALLEST_BUCKET
    while length < max_seq_length:
        buckets.append(length)
        length *= 2
    return tuple(buckets) + (max_seq_length,)


def pad_and_batch(dataset, batch_size: int, drop_remainder: bool,
                  padding_values: Dict[str, int], pad_to_multiple_of: int = 8,
                  length_buckets: Optional[Sequence[int]] = None):
    """Batches a dataset of dicts of unpadded 1-D int32 sequences (plus scalars) into dicts of
    [batch, length] tensors.

    Each sequence feature (those in `padding_values`, padded with its value) is padded to the
    batch's longest sequence rounded up to `pad_to_multiple_of` or, with `length_buckets`, to
    the smallest bucket at least that long (a sequence longer than every bucket is an error).
    Other features (e.g. a scalar label) are batched as they are.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    spec = dataset.element_spec
    values = {name: tf.constant(padding_values.get(name, 0), spec[name].dtype) for name in spec}
    if length_buckets is not None and len(length_buckets) == 1:
        (length,) = length_buckets
        shapes = {name: [length] if name in padding_values else spec[name].shape for name in spec}
        return dataset.padded_batch(batch_size, padded_shapes=shapes, padding_values=values,
                                    drop_remainder=drop_remainder)
    dataset = dataset.padded_batch(batch_size, padding_values=values,
                                   drop_remainder=drop_remainder)
    if length_buckets is not None:
        buckets = tf.constant(sorted(int(b) for b in length_buckets), tf.int32)

        def target_length(length):
            index = tf.searchsorted(buckets, tf.reshape(length, [1]), side="left")[0]
            check = tf.debugging.assert_less(index, tf.size(buckets), message=(
                "a sequence is longer than the largest length bucket (max_seq_length)"))
            with tf.control_dependencies([check]):
                return tf.gather(buckets, index)
    elif pad_to_multiple_of and pad_to_multiple_of > 1:
        multiple = int(pad_to_multiple_of)

        def target_length(length):
            return length + (multiple - length % multiple) % multiple
    else:
        return dataset

    def pad(batch):
        first = next(name for name in padding_values if name in batch)
        length = tf.shape(batch[first])[1]
        extra = target_length(length) - length
        return {name: (tf.pad(value, [[0, 0], [0, extra]], constant_values=values[name])
                       if name in padding_values else value)
                for name, value in batch.items()}

    return dataset.map(pad, num_parallel_calls=tf.data.AUTOTUNE)
