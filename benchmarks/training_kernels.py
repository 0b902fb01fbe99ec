"""The training-step kernels of bert_tf.layers.fused against the op-by-op TensorFlow they replace.

    python benchmarks/training_kernels.py                      # BERT-Base shapes, bfloat16
    python benchmarks/training_kernels.py --dtype float32
    python benchmarks/training_kernels.py --drift 60           # the host's matmul rate over 60 s

Each row is one forward + backward (gradients of a weighted sum) inside a tf.function, at
BERT-Base pretraining shapes (batch 8 x 128 tokens: [1024, 3072] for the GELU, [1024, 768]
for the add-norm, [8, 12, 128, 128] for the attention probabilities). The variants of a row
are timed interleaved (round r: A, B, C, each `--calls` times), medians over rounds.

  bias_gelu   unfused: tf.nn.bias_add + bert_tf's gelu (keras ops, TensorFlow differentiates);
              xla_autodiff: the same math in one jit_compile function that TensorFlow
              differentiates itself; fused: bert_tf.layers.fused.bias_gelu (explicit gradient,
              forward and backward each one XLA function).
  add_norm    unfused: bias_add + keras Dropout + residual add + BertLayerNorm (what the
              transformer block ran before); fused: fused.bias_dropout_add_norm.
  attention   unfused: scale, mask, softmax, keras Dropout; fused: fused.attention_probs.
  dropout     float_draw: keras Dropout (a uniform float per element); fused: fused.dropout
              (16 hashed bits per element, computed inside the kernel that applies them).

--drift SECONDS prints the rate of one bfloat16 [1024x768]·[768x3072] product every ~2.5 s:
on the shared host here it moves between ~500 and ~1,350 GFLOP/s with nothing else running
in the VM, which moves every bfloat16 figure with it (interleave anything you compare).
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _grad_fn(tf, fn, inputs):
    """tf.function: forward + gradients of a fixed weighted sum of fn(*inputs)."""
    weights = tf.random.stateless_normal(fn(*inputs).shape, [9, 9])

    @tf.function
    def step(*args):
        with tf.GradientTape() as tape:
            tape.watch(args)
            loss = tf.reduce_sum(tf.cast(fn(*args), tf.float32) * weights)
        return tape.gradient(loss, args)

    return lambda: [g.numpy() for g in step(*inputs) if g is not None]


def rows(dtype_name):
    import keras
    import tensorflow as tf

    from bert_tf.layers import fused
    from bert_tf.layers.activations import gelu
    from bert_tf.layers.attention import attention_bias
    from bert_tf.layers.layer_norm import BertLayerNorm

    policy = "mixed_bfloat16" if dtype_name == "bfloat16" else "float32"
    dtype = tf.bfloat16 if dtype_name == "bfloat16" else tf.float32

    def tensor(shape, seed, scale=1.0):
        return tf.cast(tf.random.stateless_normal(shape, [seed, 0]) * scale, dtype)

    seed = tf.constant([1, 2], tf.int32)
    dropout = keras.layers.Dropout(0.1, dtype=policy)
    layer_norm = BertLayerNorm(epsilon=1e-12, dtype=policy)
    layer_norm.build((None, 768))

    y, bias = tensor((1024, 3072), 1), tensor((3072,), 2, 0.1)

    @tf.function(jit_compile=True, autograph=False)
    def xla_bias_gelu(y, bias):
        x = tf.cast(y, tf.float32) + tf.cast(bias, tf.float32)
        return tf.cast(gelu(x), y.dtype)

    gelu_row = {
        "unfused": _grad_fn(tf, lambda y, b: gelu(tf.nn.bias_add(y, b)), (y, bias)),
        "xla_autodiff": _grad_fn(tf, xla_bias_gelu, (y, bias)),
        "fused": _grad_fn(tf, fused.bias_gelu, (y, bias)),
    }

    h, hb, residual = tensor((1024, 768), 3), tensor((768,), 4, 0.1), tensor((1024, 768), 5)
    gamma, beta = tf.ones(768), tf.zeros(768)

    def unfused_add_norm(h, hb, residual):
        return layer_norm(residual + dropout(tf.nn.bias_add(h, hb), training=True))

    def fused_add_norm(h, hb, residual):
        return fused.bias_dropout_add_norm(h, hb, residual, gamma, beta, 1e-12, 0.1, seed)

    norm_row = {"unfused": _grad_fn(tf, unfused_add_norm, (h, hb, residual)),
                "fused": _grad_fn(tf, fused_add_norm, (h, hb, residual))}

    scores = tensor((8, 12, 128, 128), 6, 4.0)
    mask = tf.ones((8, 128), tf.int32)

    def unfused_attention(scores):
        logits = scores * tf.constant(0.125, dtype) + tf.cast(attention_bias(mask), dtype)
        return dropout(tf.nn.softmax(logits, axis=-1), training=True)

    def fused_attention(scores):
        return fused.attention_probs(scores, attention_bias(mask), 0.125, 0.1, seed)

    attention_row = {"unfused": _grad_fn(tf, unfused_attention, (scores,)),
                     "fused": _grad_fn(tf, fused_attention, (scores,))}

    probs = tensor((8, 12, 128, 128), 7)
    dropout_row = {"float_draw": _grad_fn(tf, lambda x: dropout(x, training=True), (probs,)),
                   "fused": _grad_fn(tf, lambda x: fused.dropout(x, 0.1, seed), (probs,))}
    return {"bias_gelu [1024, 3072]": gelu_row, "add_norm [1024, 768]": norm_row,
            "attention [8, 12, 128, 128]": attention_row,
            "dropout [8, 12, 128, 128]": dropout_row}


def measure(variants, rounds, calls):
    for call in variants.values():
        call()
        call()
    samples = {name: [] for name in variants}
    for _ in range(rounds):
        for name, call in variants.items():
            start = time.perf_counter()
            for _ in range(calls):
                call()
            samples[name].append((time.perf_counter() - start) / calls)
    return {name: statistics.median(values) for name, values in samples.items()}


def drift(seconds):
    import numpy as np
    import tensorflow as tf

    x = tf.cast(tf.random.normal((1024, 768)), tf.bfloat16)
    w = tf.cast(tf.random.normal((768, 3072)), tf.bfloat16)

    @tf.function
    def chain(x):
        for _ in range(10):
            x = tf.matmul(x, w)[:, :768]
        return x

    chain(x).numpy()
    flops = 10 * 2 * 1024 * 768 * 3072
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        times = []
        for _ in range(10):
            t = time.perf_counter()
            chain(x).numpy()
            times.append(time.perf_counter() - t)
        print(f"t={time.perf_counter() - start:6.1f} s  {flops / np.median(times) / 1e9:6.0f} "
              "GFLOP/s", flush=True)
        time.sleep(1.5)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--drift", type=float, default=0,
                        help="instead: print the bfloat16 matmul rate for this many seconds")
    args = parser.parse_args(argv)
    if args.drift:
        drift(args.drift)
        return 0
    print(f"forward + backward, {args.dtype}, median of {args.rounds} interleaved rounds of "
          f"{args.calls} calls; load average {os.getloadavg()[0]:.1f}\n")
    print("| kernel | variant | ms per call | vs unfused |")
    print("|---|---|---:|---:|")
    for kernel, variants in rows(args.dtype).items():
        times = measure(variants, args.rounds, args.calls)
        reference = times.get("unfused", times.get("float_draw"))
        for name, seconds in times.items():
            print(f"| {kernel} | {name} | {seconds * 1e3:.2f} | {seconds / reference:.2f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
