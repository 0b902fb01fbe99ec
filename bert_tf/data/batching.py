"""Batch widths for variable-length token sequences: per-batch padding, or a few fixed lengths.

Fine-tuning examples have different lengths. On CPUs and GPUs the fastest batch is padded to
its own longest sequence (rounded up to `pad_to_multiple_of`). XLA (`--jit_compile`) and TPUs
compile one program per input shape, so that would mean one compilation per new length. With
`length_buckets` every batch is padded instead to the smallest of a few fixed lengths that
holds it: `static_length_buckets(max_seq_length)` gives the powers of two from 32 below
max_seq_length plus max_seq_length itself (128 → 32, 64, 128; 512 → 32, 64, 128, 256, 512),
so at most that many shapes are compiled (times two for a last, smaller evaluation batch).
With a single bucket (a TPU strategy: `(max_seq_length,)`) the length is static in the
dataset's element_spec too (`static_batch_shape`), as TPUs require.

Padding is masked (input_mask 0), so it never changes a model output; only the work done.
The feature pipelines (`classification_dataset`, `ner_dataset`) gather each batch from the
feature arrays and pad it to `padded_width`.
"""

from typing import List, Optional, Sequence, Tuple

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


def padded_width(longest: int, pad_to_multiple_of: int = 8,
                 length_buckets: Optional[Sequence[int]] = None) -> int:
    """The width of a batch whose longest sequence has `longest` tokens: the smallest of
    `length_buckets` that holds it (a longer sequence is an error), else `longest` rounded up
    to `pad_to_multiple_of`."""
    longest = int(longest)
    if length_buckets is not None:
        fitting = [int(b) for b in length_buckets if int(b) >= longest]
        if not fitting:
            raise ValueError(f"a sequence of {longest} tokens is longer than the largest length "
                             f"bucket ({max(length_buckets)}, max_seq_length)")
        return min(fitting)
    multiple = int(pad_to_multiple_of or 1)
    return -(-longest // multiple) * multiple


def static_batch_shape(batch_dim: Optional[int],
                       length_buckets: Optional[Sequence[int]] = None) -> List[Optional[int]]:
    """The [batch, length] shape a pipeline can promise: `batch_dim` as the index batches give
    it (static when remainders are dropped, else None), the length when there is one bucket."""
    length = int(length_buckets[0]) if length_buckets is not None and len(length_buckets) == 1 \
        else None
    return [batch_dim, length]
