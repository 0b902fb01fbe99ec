"""Exported classifiers from two source trees, or frozen and not, served side by side; and an
export's memory.

    python benchmarks/export_ab.py speed --trees /tmp/base,. [--sizes tiny,small]
        [--precision float32] [--rounds 15] [--min_time 0.4]
    python benchmarks/export_ab.py freeze [--sizes tiny,small,base]
        [--precisions float32,bfloat16] [--rounds 9] [--min_time 0.4]
    python benchmarks/export_ab.py memory [--size small] [--signatures all|serving_default]
        [--trace]

speed: for each tree (a directory holding a `bert_tf` package, e.g. `git archive HEAD bert_tf |
tar -x -C /tmp/base`) and size, a fresh process builds benchmarks.compare's serve model
(BertClassifier with checkpoint-like weights) with that tree's bert_tf and this checkout's
benchmarks/, and exports it with `bert_tf.export.export_model`. One process then loads every export and calls their
`serving_default` with raw text in alternation, --rounds rounds of at least --min_time seconds
each, at batch 1 and 32. Prints each export's median call time and the median of the per-round
ratios to the first tree's: load drifts hit both alike. The host here switches between a fast
and a slow state within minutes, so only such interleaved ratios compare two trees.

freeze: for each size and precision, benchmarks.compare's serve classifier exported twice by
this checkout, with `freeze=True` (weights as graph constants) and `freeze=False` (variables),
each by a fresh process. Prints each export's size on disk, the exporting process's peak RSS,
and, from one fresh process per export that loads it and serves batch 1 and 32 once, its RSS
once loaded, after serving, and at its peak (what a server process holds); then both exports'
latency, interleaved in one process as in speed (ratio: frozen ÷ variables).

memory: builds, freezes and writes a classifier of --size in this process (this checkout's
code), then loads it and serves one text, printing the process's peak RSS at the end of each
stage: the largest RSS sampled (every 10 ms, from /proc/self/statm) while it ran; memory a
stage frees is not always returned to the system, so a stage's figure can include its
predecessors'. --signatures serving_default writes only that
signature, to show what the other two cost.
"""

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


# A process's peak RSS: VmHWM, which exec() resets (a child's ru_maxrss keeps its parent's
# RSS at fork).
_HIGH_WATER = """
def _high_water():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
"""

_EXPORT_CODE = _HIGH_WATER + """
import os, sys
tree, repo, size, precision, out_dir, freeze = sys.argv[1:]
sys.path.insert(0, tree)
import bert_tf  # the tree's; cached, so the checkout put first below cannot replace it
assert os.path.dirname(bert_tf.__file__) == os.path.join(tree, "bert_tf"), bert_tf.__file__
sys.path.insert(0, repo)
from benchmarks import compare  # this checkout's harness, the same for every tree
os.makedirs(out_dir, exist_ok=True)
context = dict(compare.bench_context(out_dir), load=False)
if freeze != "compare":  # else what benchmarks.compare exports
    context["freeze"] = freeze == "true"
bench = compare.BertTfBench("serve", size, precision, context)
print(bench.export_path)
print("HWM", _high_water())
"""


def _run_child(code, *arguments):
    """Run `code` in a fresh Python with `arguments`: its stdout's lines, and {word: [ints]}
    of each line that starts with an upper-case word (e.g. "HWM 123"). Raises with its stderr
    if it fails."""
    result = subprocess.run([sys.executable, "-c", code, *map(str, arguments)],
                            capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{arguments} failed:\n{result.stderr[-3000:]}")
    lines = result.stdout.strip().splitlines()
    values = {words[0]: [int(v) for v in words[1:]] for words in map(str.split, lines)
              if words and words[0].isupper()}
    return lines, values


def _export_with_tree(tree, size, precision, out_dir, freeze="compare"):
    """benchmarks.compare's serve export, built by a fresh process with `tree`'s bert_tf and
    `freeze` ("compare": as benchmarks.compare exports; "true"; "false"): (its path, the
    exporting process's peak RSS in bytes)."""
    lines, values = _run_child(_EXPORT_CODE, os.path.abspath(tree), REPO, size, precision,
                               out_dir, freeze)
    return lines[-2], values["HWM"][0]


_SERVE_CODE = _HIGH_WATER + """
import os, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401 (the tokenizer's ops, for loading)
path, repo = sys.argv[1:]
sys.path.insert(0, repo)
from benchmarks import compare
def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
serve = tf.saved_model.load(path).signatures["serving_default"]
loaded = rss()
texts = compare.synthetic_texts(32)
for batch in (1, 32):
    serve(text=tf.constant(texts[:batch]))["probabilities"].numpy()
print("RSS", loaded, rss(), _high_water())
"""


def _interleaved(label, served, batches, rounds, min_time, texts_all):
    """Call each (name, signature) of `served` with raw text in alternation, `rounds` rounds of
    at least `min_time` s per batch size; print each one's median and median ratio to the
    first's. Returns {batch: [median seconds per call, in `served` order]}."""
    import tensorflow as tf

    medians = {}
    for batch in batches:
        texts = tf.constant(texts_all[:batch])

        def timed(function, calls):
            start = time.perf_counter()
            for _ in range(calls):
                outputs = function(text=texts)
            outputs["probabilities"].numpy()
            return (time.perf_counter() - start) / calls

        for _, function in served:
            timed(function, 3)
        calls = max(2, int(min_time / timed(served[0][1], 3)))
        times = [[] for _ in served]
        for _ in range(rounds):
            for index, (_, function) in enumerate(served):
                times[index].append(timed(function, calls))
        for (name, _), own in zip(served, times):
            ratio = statistics.median(b / a for a, b in zip(times[0], own))
            print(f"{label} batch {batch:2d} {name:30s} median "
                  f"{statistics.median(own) * 1000:8.3f} ms  ÷ first {ratio:.3f}", flush=True)
        medians[batch] = [statistics.median(own) for own in times]
    return medians


def speed(args):
    import tensorflow as tf

    importlib.import_module("tensorflow_text")  # registers the tokenizer's ops for loading

    sys.path.insert(0, REPO)
    from benchmarks import compare

    trees = args.trees.split(",")
    with tempfile.TemporaryDirectory(prefix="export_ab_") as work:
        for size in args.sizes.split(","):
            paths = [_export_with_tree(tree, size, args.precision,
                                       os.path.join(work, f"{size}_{index}"))[0]
                     for index, tree in enumerate(trees)]
            served = [(tree, tf.saved_model.load(path).signatures["serving_default"])
                      for tree, path in zip(trees, paths)]
            _interleaved(f"{size} {args.precision}", served, (1, 32), args.rounds,
                         args.min_time, compare.synthetic_texts(32))


def _disk_bytes(path):
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)


def freeze(args):
    import tensorflow as tf

    importlib.import_module("tensorflow_text")
    sys.path.insert(0, REPO)
    from benchmarks import compare

    rows = []
    with tempfile.TemporaryDirectory(prefix="export_freeze_") as work:
        for size in args.sizes.split(","):
            for precision in args.precisions.split(","):
                exports = {}
                for frozen in (True, False):
                    name = "frozen" if frozen else "variables"
                    path, export_peak = _export_with_tree(
                        REPO, size, precision, os.path.join(work, f"{size}_{precision}_{name}"),
                        freeze="true" if frozen else "false")
                    loaded, served, serve_peak = _run_child(_SERVE_CODE, path, REPO)[1]["RSS"]
                    exports[name] = path
                    rows.append({"size": size, "precision": precision, "export": name,
                                 "disk": _disk_bytes(path), "export_peak": export_peak,
                                 "loaded": loaded, "served": served, "serve_peak": serve_peak})
                    print(rows[-1], flush=True)
                served = [(name, tf.saved_model.load(path).signatures["serving_default"])
                          for name, path in exports.items()]
                medians = _interleaved(f"{size} {precision}", served, (1, 32), args.rounds,
                                       args.min_time, compare.synthetic_texts(32))
                for row in rows[-2:]:
                    index = list(exports).index(row["export"])
                    row.update({f"batch_{batch}_ms": medians[batch][index] * 1000
                                for batch in medians})
                del served
    gib = 2 ** 30
    print("\n| size | precision | export | on disk | export peak | served RSS (loaded / after "
          "calls / peak) | batch 1 | batch 32 |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['size']} | {row['precision']} | {row['export']} | "
              f"{row['disk'] / 2**20:.0f} MiB | {row['export_peak'] / gib:.2f} GiB | "
              f"{row['loaded'] / gib:.2f} / {row['served'] / gib:.2f} / "
              f"{row['serve_peak'] / gib:.2f} GiB | {row['batch_1_ms']:.1f} ms | "
              f"{row['batch_32_ms']:.0f} ms |")


# (module, attribute path) of the TensorFlow steps `memory --trace` reports, in call order.
TRACED = (
    ("bert_tf.inference", "convert_variables_to_constants_v2"),  # imported by name there
    ("tensorflow.python.framework.convert_to_constants", "_run_inline_graph_optimization"),
    ("tensorflow.python.framework.convert_to_constants",
     "_FunctionConverterData._build_tensor_data"),
    ("tensorflow.python.framework.convert_to_constants", "_replace_variables_by_constants"),
    ("tensorflow.python.eager.wrap_function", "function_from_graph_def"),
    ("tensorflow.python.saved_model.save", "save_and_return_nodes"),
    ("keras.src.backend.tensorflow.export", "TFExportArchive.add_endpoint"),
    ("tensorflow.python.saved_model.save", "_build_meta_graph_impl"),
    ("tensorflow.python.saved_model.signature_serialization", "canonicalize_signatures"),
    ("tensorflow.python.saved_model.save", "_SaveableView.__init__"),
    ("tensorflow.python.saved_model.save", "_fill_meta_graph_def"),
)


class _PeakRss:
    def __init__(self):
        self.stage, self.peaks = None, {}
        self.calls = []  # [peak] of each traced call running now, innermost last
        threading.Thread(target=self._watch, daemon=True).start()

    def trace(self, module_name, path):
        """Replace module_name.path by a wrapper printing each call's RSS at entry, peak, exit."""
        owner = importlib.import_module(module_name)
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        original = getattr(owner, name)

        def traced(*args, **kwargs):
            entry = self.rss()
            self.calls.append([entry])
            start = time.time()
            try:
                return original(*args, **kwargs)
            finally:
                peak = max(self.calls.pop()[0], self.rss())
                if self.calls:
                    self.calls[-1][0] = max(self.calls[-1][0], peak)
                print(f"{'  ' * len(self.calls)}{path}: entry {entry / 2**30:.2f}, peak "
                      f"{peak / 2**30:.2f}, exit {self.rss() / 2**30:.2f} GiB "
                      f"({time.time() - start:.1f} s)", flush=True)

        setattr(owner, name, traced)

    @staticmethod
    def rss():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _watch(self):
        while True:
            rss = self.rss()
            if rss > self.peaks.get(self.stage, 0):
                self.peaks[self.stage] = rss
            for call in list(self.calls):
                call[0] = max(call[0], rss)
            time.sleep(0.01)

    def enter(self, stage):
        if self.stage is not None:
            print(f"{self.stage:34s} peak RSS {max(self.peaks.get(self.stage, 0), self.rss()) / 2**30:6.2f} GiB",
                  flush=True)
        self.stage = stage


def memory(args):
    watch = _PeakRss()
    watch.enter("start (TensorFlow imported)")
    import keras
    import tensorflow as tf

    sys.path.insert(0, REPO)
    from benchmarks import compare
    from bert_tf import export
    from bert_tf.config import BertConfig
    from bert_tf.models import BertClassifier

    for module_name, path in TRACED if args.trace else ():
        watch.trace(module_name, path)
    with tempfile.TemporaryDirectory(prefix="export_memory_") as work:
        context = compare.bench_context(work)
        watch.enter("model built")
        model = BertClassifier(BertConfig.preset(args.size), num_labels=compare.NUM_LABELS)
        compare.trained_like(model)
        functions = export.serving_functions(
            model, "classifier", context["vocab_file"], do_lower_case=True,
            max_seq_length=compare.SEQ_LEN,
            label_list=[str(i) for i in range(compare.NUM_LABELS)])
        watch.enter("frozen")
        functions = export.frozen_serving_functions(functions)
        watch.enter(f"written ({args.signatures})")
        out = os.path.join(work, "export")
        if args.signatures == "all":
            path = export.write_serving_model(out, functions, warmup=False, freeze=False)
        else:
            archive = keras.export.ExportArchive()
            archive.track(functions.preprocessor)
            archive.add_endpoint("serving_default", tf.function(
                functions.serve_text, autograph=False,
                input_signature=[tf.TensorSpec([None], tf.string, name="text")]))
            path = out
            archive.write_out(path, verbose=False)
        size = _disk_bytes(path)
        watch.enter("loaded and called once")
        importlib.import_module("tensorflow_text")  # the tokenizer's ops, for loading
        loaded = tf.saved_model.load(path)
        loaded.signatures["serving_default"](text=tf.constant(context["texts"][:1]))
        watch.enter("end")
        print(f"SavedModel on disk: {size / 2**20:.0f} MiB")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    ab = commands.add_parser("speed")
    ab.add_argument("--trees", required=True, help="comma-separated source trees")
    ab.add_argument("--sizes", default="tiny,small")
    ab.add_argument("--precision", default="float32", choices=["float32", "bfloat16"])
    ab.add_argument("--rounds", type=int, default=15)
    ab.add_argument("--min_time", type=float, default=0.4)
    frozen = commands.add_parser("freeze")
    frozen.add_argument("--sizes", default="tiny,small,base")
    frozen.add_argument("--precisions", default="float32,bfloat16")
    frozen.add_argument("--rounds", type=int, default=9)
    frozen.add_argument("--min_time", type=float, default=0.4)
    mem = commands.add_parser("memory")
    mem.add_argument("--size", default="small")
    mem.add_argument("--signatures", default="all", choices=["all", "serving_default"])
    mem.add_argument("--trace", action="store_true",
                     help="also each call of the TensorFlow steps in TRACED")
    args = parser.parse_args()
    {"speed": speed, "freeze": freeze, "memory": memory}[args.command](args)


if __name__ == "__main__":
    main()
