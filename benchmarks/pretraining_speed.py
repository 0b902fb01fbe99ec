"""Pretraining throughput (examples/s) of bert_tf's training loop on this machine.

For each model size and precision: BertPretrainer + AdamWeightDecay in bert_tf.training.Trainer
(one device), sequence length 128, 20 predictions, random token ids (speed does not depend on
the values). The first loop (tracing, warm-up) is not timed; the figure is the examples/s of the
second loop of `--steps` updates, as the script's own progress line reports it.

    python benchmarks/pretraining_speed.py [--sizes tiny,small,base] [--precisions float32,bfloat16]
"""

import argparse
import os
import platform
import tempfile
import time

import numpy as np

DEFAULT_BATCHES = {"tiny": 64, "mini": 64, "small": 32, "medium": 16, "base": 8}
DEFAULT_STEPS = {"tiny": 10, "mini": 10, "small": 5, "medium": 3, "base": 2}


def measure(size, precision, batch, steps, seq=128, predictions=20, jit=False):
    import keras
    import tensorflow as tf

    from bert_tf import distribution, optimization, training
    from bert_tf.config import BertConfig
    from bert_tf.models import BertPretrainer, pretraining_loss

    distribution.set_mixed_precision(precision)
    keras.utils.set_random_seed(0)
    config = BertConfig.preset(size)
    rng = np.random.default_rng(0)
    n = batch * 4
    ids = rng.integers(5, config.vocab_size, size=(n, seq)).astype(np.int32)
    positions = np.sort(rng.integers(1, seq, size=(n, predictions)), 1).astype(np.int32)
    data = dict(input_ids=ids, input_mask=np.ones_like(ids), segment_ids=np.zeros_like(ids),
                masked_lm_positions=positions, masked_lm_ids=ids[:, :predictions],
                masked_lm_weights=np.ones((n, predictions), np.float32),
                next_sentence_labels=(ids[:, :1] % 2).astype(np.int32))

    def dataset_fn(context):
        return (tf.data.Dataset.from_tensor_slices(data).repeat()
                .batch(context.get_per_replica_batch_size(batch), drop_remainder=True)
                .prefetch(2))

    strategy = distribution.get_strategy("one_device")
    with strategy.scope():
        model = BertPretrainer(config)
        optimizer = optimization.create_optimizer(1e-4, 10000, 100)
    with tempfile.TemporaryDirectory() as model_dir:
        trainer = training.Trainer(strategy, model, optimizer, pretraining_loss, model_dir,
                                   train_batch_size=batch, steps_per_loop=steps,
                                   save_checkpoints_steps=10**9, jit_compile=jit)
        start = time.time()
        metrics = trainer.train(dataset_fn, 2 * steps)
        total = time.time() - start
    distribution.set_mixed_precision("none")
    return metrics["examples_per_second"], total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,small,base")
    parser.add_argument("--precisions", default="float32,bfloat16")
    parser.add_argument("--steps", type=int, default=None, help="timed updates per config")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average at start {load}")
    print("| size | precision | batch | seq | examples/s | wall s (incl. tracing) |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        for precision in args.precisions.split(","):
            batch = DEFAULT_BATCHES[size]
            steps = args.steps or DEFAULT_STEPS[size]
            rate, total = measure(size, precision, batch, steps)
            print(f"| {size} | {precision} | {batch} | 128 | {rate:.1f} | {total:.0f} |", flush=True)
    try:
        print(f"load average at end {os.getloadavg()}")
    except OSError:
        pass


if __name__ == "__main__":
    main()
