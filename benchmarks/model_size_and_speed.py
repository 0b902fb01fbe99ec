"""Parameter counts of the published BERT sizes and forward-pass time of bert_tf on this machine.

    python benchmarks/model_size_and_speed.py                       # counts + default timings
    python benchmarks/model_size_and_speed.py --timings=base:8:128 --runs=10

Counts: BertEncoder (embeddings, blocks, pooler) and BertPretrainer (adds the MLM transform,
LayerNorm and output bias, and the NSP layer; the MLM decoder is tied to the embeddings).
Timings: inference forward pass (training=False) of BertEncoder inside one tf.function (graph
mode, no XLA), random ids, full attention mask; the first calls (tracing, oneDNN warm-up) are
excluded; the median and the min/max wall-clock time of `--runs` timed calls and the median
process CPU time per call (all threads; less sensitive to other load on a shared machine) are
printed as Markdown tables.
"""

import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bert_tf.config import PRESETS, BertConfig  # noqa: E402
from bert_tf.models import BertEncoder, BertPretrainer  # noqa: E402

DEFAULT_TIMINGS = "tiny:8:128,small:8:128,base:1:128,base:8:128,base:32:128,base:8:512,large:8:128"


def count_parameters(preset):
    config = BertConfig.preset(preset)
    encoder = BertEncoder(config)
    encoder_params = encoder.count_params()
    del encoder
    pretrainer = BertPretrainer(config)
    pretrainer_params = pretrainer.count_params()
    del pretrainer
    keras.backend.clear_session()
    return config, encoder_params, pretrainer_params


def time_forward(preset, batch_size, seq_length, policy, runs, warmup):
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        config = BertConfig.preset(preset)
        model = BertEncoder(config)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    rng = np.random.default_rng(0)
    inputs = {
        "input_ids": tf.constant(rng.integers(1000, config.vocab_size, (batch_size, seq_length)), tf.int32),
        "input_mask": tf.ones((batch_size, seq_length), tf.int32),
        "segment_ids": tf.constant(
            np.repeat([[0] * (seq_length // 2) + [1] * (seq_length - seq_length // 2)], batch_size, 0),
            tf.int32,
        ),
    }

    @tf.function
    def forward(batch):
        outputs = model(batch, training=False)
        return outputs["sequence_output"], outputs["pooled_output"]

    for _ in range(warmup):
        forward(inputs)[0].numpy()
    seconds, cpu_seconds = [], []
    for _ in range(runs):
        start, cpu_start = time.perf_counter(), time.process_time()
        sequence, _ = forward(inputs)
        sequence.numpy()  # wait for the result
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
    del model
    keras.backend.clear_session()
    return statistics.median(seconds), min(seconds), max(seconds), statistics.median(cpu_seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default=",".join(PRESETS), help="presets to count")
    parser.add_argument(
        "--timings",
        default=DEFAULT_TIMINGS,
        help="comma-separated preset:batch:seq_length forward-time cases ('' = none)",
    )
    parser.add_argument("--policies", default="float32,mixed_bfloat16")
    parser.add_argument("--runs", type=int, default=7, help="timed calls per case (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per case")
    args = parser.parse_args()

    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs; Python "
        f"{platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}; "
        f"TF threads inter={tf.config.threading.get_inter_op_parallelism_threads()} "
        f"intra={tf.config.threading.get_intra_op_parallelism_threads()} (0 = all cores)"
    )
    print(f"Load average (1/5/15 min) at start: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
    presets = [p for p in args.presets.split(",") if p]
    if presets:
        print()
        print("| preset | layers | hidden | heads | intermediate | BertEncoder params | BertPretrainer params |")
        print("|---|---|---|---|---|---|---|")
    for preset in presets:
        config, encoder_params, pretrainer_params = count_parameters(preset)
        print(
            f"| {preset} | {config.num_hidden_layers} | {config.hidden_size} | "
            f"{config.num_attention_heads} | {config.intermediate_size} | "
            f"{encoder_params:,} ({encoder_params / 1e6:.1f}M) | "
            f"{pretrainer_params:,} ({pretrainer_params / 1e6:.1f}M) |",
            flush=True,
        )

    cases = [c for c in args.timings.split(",") if c]
    if not cases:
        return
    policies = [p for p in args.policies.split(",") if p]
    print()
    print(
        f"Forward time of BertEncoder (training=False, tf.function graph mode, no XLA; "
        f"median wall-clock ms of {args.runs} runs after {args.warmup} warm-up calls, [min–max], "
        f"sequences/s at the median, and the median process CPU ms per call, all threads)"
    )
    print()
    print("| preset | batch × seq | " + " | ".join(f"{p}" for p in policies) + " |")
    print("|---|---|" + "---|" * len(policies))
    for case in cases:
        preset, batch_size, seq_length = case.split(":")
        batch_size, seq_length = int(batch_size), int(seq_length)
        cells = []
        for policy in policies:
            median, low, high, cpu = time_forward(
                preset, batch_size, seq_length, policy, args.runs, args.warmup
            )
            cells.append(
                f"{median * 1e3:.0f} [{low * 1e3:.0f}–{high * 1e3:.0f}] ({batch_size / median:.1f}/s), "
                f"CPU {cpu * 1e3:.0f}"
            )
        print(f"| {preset} | {batch_size} × {seq_length} | " + " | ".join(cells) + " |", flush=True)
    print()
    print(f"Load average (1/5/15 min) at end: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
