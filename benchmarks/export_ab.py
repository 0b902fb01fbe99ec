"""Exported classifiers from two source trees, served side by side; and an export's memory.

    python benchmarks/export_ab.py speed --trees /tmp/base,. [--sizes tiny,small]
        [--precision float32] [--rounds 15] [--min_time 0.4]
    python benchmarks/export_ab.py memory [--size small] [--signatures all|serving_default]

speed: for each tree (a directory holding a `bert_tf` package, e.g. `git archive HEAD bert_tf |
tar -x -C /tmp/base`) and size, a fresh process builds benchmarks.compare's serve model
(BertClassifier with checkpoint-like weights) with that tree's bert_tf and this checkout's
benchmarks/, and exports it with `bert_tf.export.export_model`. One process then loads every export and calls their
`serving_default` with raw text in alternation, --rounds rounds of at least --min_time seconds
each, at batch 1 and 32. Prints each export's median call time and the median of the per-round
ratios to the first tree's: load drifts hit both alike. The host here switches between a fast
and a slow state within minutes, so only such interleaved ratios compare two trees.

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


_EXPORT_CODE = """
import glob, os, sys
tree, repo, size, precision, out_dir = sys.argv[1:]
sys.path.insert(0, tree)
import bert_tf  # the tree's; cached, so the checkout put first below cannot replace it
assert os.path.dirname(bert_tf.__file__) == os.path.join(tree, "bert_tf"), bert_tf.__file__
sys.path.insert(0, repo)
from benchmarks import compare  # this checkout's harness, the same for every tree
os.makedirs(out_dir, exist_ok=True)
bench = compare.BertTfBench("serve", size, precision, compare.bench_context(out_dir))
print(glob.glob(os.path.join(bench.export_dir, "*"))[0])
"""


def _export_with_tree(tree, size, precision, out_dir):
    """benchmarks.compare's serve export, built by a fresh process with `tree`'s bert_tf."""
    result = subprocess.run([sys.executable, "-c", _EXPORT_CODE, os.path.abspath(tree), REPO,
                             size, precision, out_dir], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"export with tree {tree} failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


def speed(args):
    import tensorflow as tf

    importlib.import_module("tensorflow_text")  # registers the tokenizer's ops for loading

    sys.path.insert(0, REPO)
    from benchmarks import compare

    trees = args.trees.split(",")
    texts_all = compare.synthetic_texts(32)
    with tempfile.TemporaryDirectory(prefix="export_ab_") as work:
        for size in args.sizes.split(","):
            paths = [_export_with_tree(tree, size, args.precision,
                                       os.path.join(work, f"{size}_{index}"))
                     for index, tree in enumerate(trees)]
            served = [tf.saved_model.load(path).signatures["serving_default"] for path in paths]
            for batch in (1, 32):
                texts = tf.constant(texts_all[:batch])

                def timed(function, calls):
                    start = time.perf_counter()
                    for _ in range(calls):
                        outputs = function(text=texts)
                    outputs["probabilities"].numpy()
                    return (time.perf_counter() - start) / calls

                for function in served:
                    timed(function, 3)
                calls = max(2, int(args.min_time / timed(served[0], 3)))
                times = [[] for _ in served]
                for _ in range(args.rounds):
                    for index, function in enumerate(served):
                        times[index].append(timed(function, calls))
                for tree, own in zip(trees, times):
                    ratio = statistics.median(b / a for a, b in zip(times[0], own))
                    print(f"{size} {args.precision} batch {batch:2d} {tree:30s} "
                          f"median {statistics.median(own) * 1000:8.3f} ms  "
                          f"÷ first tree {ratio:.3f}", flush=True)


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
        size = sum(os.path.getsize(os.path.join(root, name))
                   for root, _, names in os.walk(path) for name in names)
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
    mem = commands.add_parser("memory")
    mem.add_argument("--size", default="small")
    mem.add_argument("--signatures", default="all", choices=["all", "serving_default"])
    mem.add_argument("--trace", action="store_true",
                     help="also each call of the TensorFlow steps in TRACED")
    args = parser.parse_args()
    speed(args) if args.command == "speed" else memory(args)


if __name__ == "__main__":
    main()
