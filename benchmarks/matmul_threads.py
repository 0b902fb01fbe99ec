"""How TensorFlow's and torch's bfloat16 matmul scale from one thread to all of them.

    python benchmarks/matmul_threads.py [--torch-python /path/to/venv/bin/python]
        [--rounds 6] [--shape 4096,768,3072] [--threads 1,2]

Each measurement is a fresh process (a framework's thread count is fixed once it has run an
op) that times --calls products of a [M×K]·[K×N] bfloat16 matmul after a warm-up, takes the best
of five such timings, and prints GFLOP/s. Processes alternate (TensorFlow 1 thread, torch 1
thread, TensorFlow 2 threads, ...) for --rounds rounds, so that the host's load drifts hit every
configuration alike; the table gives each configuration's median and range, and each
framework's median ratio of its all-thread to its one-thread rate from the same round. One more
process per framework, with ONEDNN_VERBOSE=1, reports the oneDNN version, threading runtime and
primitive each one runs, and that primitive's own execution times on the first --threads count
(fastest and median). torch is optional (--torch-python or $BERT_TF_BENCH_TORCH_PYTHON).
"""

import argparse
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.compare import TORCH_PYTHON_ENV  # noqa: E402 (after the path it needs)

_TIMING_CODE = r"""
import sys, time
framework, threads, m, k, n, calls = sys.argv[1], *map(int, sys.argv[2:])
if framework == "tensorflow":
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    a = tf.cast(tf.random.uniform([m, k]), tf.bfloat16)
    b = tf.cast(tf.random.uniform([k, n]), tf.bfloat16)
    product = tf.function(tf.linalg.matmul)
    def timed():
        start = time.perf_counter()
        for _ in range(calls):
            out = product(a, b)
        out.numpy()
        return time.perf_counter() - start
else:
    import torch
    torch.set_num_threads(threads)
    a = torch.rand(m, k).bfloat16()
    b = torch.rand(k, n).bfloat16()
    def timed():
        with torch.inference_mode():
            start = time.perf_counter()
            for _ in range(calls):
                torch.matmul(a, b)
            return time.perf_counter() - start
timed()
best = min(timed() for _ in range(5))
print("GFLOPS", 2 * m * k * n * calls / best / 1e9)
"""


def _python_for(framework, torch_python):
    return sys.executable if framework == "tensorflow" else torch_python


def measure(framework, python, threads, shape, calls):
    """GFLOP/s of one fresh process."""
    result = subprocess.run([python, "-c", _TIMING_CODE, framework, str(threads),
                             *map(str, shape), str(calls)], capture_output=True, text=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("GFLOPS ")]
    if result.returncode or not lines:
        raise RuntimeError(f"{framework} with {threads} threads failed:\n{result.stderr[-2000:]}")
    return float(lines[-1].split()[1])


def onednn_info(framework, python, shape, threads):
    """With ONEDNN_VERBOSE, one process timing the product on `threads` threads: the oneDNN
    version, runtime and primitive lines it prints, and the primitive's own execution times
    (ms, as oneDNN measures them: without the framework's work around the call)."""
    env = dict(os.environ, ONEDNN_VERBOSE="1")
    result = subprocess.run([python, "-c", _TIMING_CODE, framework, str(threads),
                             *map(str, shape), "10"], capture_output=True, text=True, env=env)
    wanted, exec_ms = [], []
    for line in result.stdout.splitlines():
        fields = line.split(",")
        if not line.startswith("onednn_verbose"):
            continue
        if len(fields) > 5 and fields[3] == "exec" and fields[5] == "matmul":
            exec_ms.append(float(fields[-1]))
            summary = ",".join(fields[2:7])
        elif "oneDNN v" in line or "runtime:" in line:
            summary = ",".join(fields[3:])
        else:
            continue
        if summary not in wanted:
            wanted.append(summary)
    return wanted, exec_ms


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-python", default=os.environ.get(TORCH_PYTHON_ENV))
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--shape", default="4096,768,3072", help="M,K,N")
    parser.add_argument("--threads", default=f"1,{os.cpu_count()}")
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    if len(shape) != 3:
        parser.error(f"--shape={args.shape!r}: expected M,K,N")
    threads = [int(v) for v in args.threads.split(",")]
    frameworks = ["tensorflow"] + (["torch"] if args.torch_python else [])
    if not args.torch_python:
        print(f"torch: skipped (no --torch-python or ${TORCH_PYTHON_ENV})")

    for framework in frameworks:
        lines, exec_ms = onednn_info(framework, _python_for(framework, args.torch_python), shape,
                                     threads[0])
        for line in lines:
            print(f"{framework}: {line}")
        if exec_ms:
            print(f"{framework}: primitive execution on {threads[0]} thread(s), "
                  f"{len(exec_ms)} calls: fastest {min(exec_ms):.1f} ms, median "
                  f"{statistics.median(exec_ms):.1f} ms")

    rates = {(f, t): [] for f in frameworks for t in threads}
    for round_index in range(args.rounds):
        for t in threads:
            for framework in frameworks:
                rate = measure(framework, _python_for(framework, args.torch_python), t, shape,
                               args.calls)
                rates[framework, t].append(rate)
        print(f"round {round_index + 1}: " + ", ".join(
            f"{f} {t}t {rates[f, t][-1]:.0f}" for t in threads for f in frameworks), flush=True)

    print(f"\nbfloat16 [{shape[0]}x{shape[1]}]·[{shape[1]}x{shape[2]}], GFLOP/s over "
          f"{args.rounds} alternating rounds\n")
    print("| framework | threads | median | min–max |")
    print("|---|---:|---:|---:|")
    for (framework, t), values in rates.items():
        print(f"| {framework} | {t} | {statistics.median(values):.0f} | "
              f"{min(values):.0f}–{max(values):.0f} |")
    if len(threads) > 1:
        print()
        for framework in frameworks:
            ratios = [many / one for one, many in zip(rates[framework, threads[0]],
                                                      rates[framework, threads[-1]])]
            print(f"{framework}: {threads[-1]} threads ÷ {threads[0]}, median of the rounds' "
                  f"ratios: {statistics.median(ratios):.2f} ({min(ratios):.2f}–"
                  f"{max(ratios):.2f})")


if __name__ == "__main__":
    main()
