"""Benchmark: peak memory (RSS) against input size, for the two input paths that must not grow
with the input.

(a) `create_pretraining_data.py --streaming` on generated corpora of one document (no blank
    line at all) of each `--corpus_mb` size;
(b) `run_classifier.py --task_name=generic` (a tiny random-init model, 2 layers, hidden 32) on
    generated TSVs of each `--rows` count: train for a fixed number of steps (20; the data path
    is what grows), then evaluate and predict on dev/test files of a tenth of the rows.
(c) `run_ner.py` (same tiny model) on generated CoNLL training files of each `--sentences`
    count (BIO tags, 3-30 words a sentence): train for 20 steps, then evaluate and predict on
    dev/test files of a FIXED 500 sentences (NER evaluation keeps per-window logits and the
    dev tags in memory, so only the training file grows here).

Text is drawn from the words of a generated WordPiece vocabulary (words of 1-3 syllables, some
with `##` suffixes), so it tokenizes into real pieces. Each run is a child process; its peak
RSS is `ru_maxrss` from `os.wait4` (the largest RSS the child, or any descendant it waited for,
ever had); the peak of its anonymous RSS (RssAnon: heap and stacks, without mapped files such
as TensorFlow's libraries and the memory-mapped feature cache) is sampled every 0.5 s. Generated files live in a temporary directory under `--work_dir` (default /tmp)
that is deleted at the end.

    python benchmarks/memory.py --corpus_mb=10,100,1000 --rows=50000,500000,5000000
    python benchmarks/memory.py --parts=pretraining --corpus_mb=10,100
    python benchmarks/memory.py --parts=ner --sentences=50000,500000
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # --repo overrides
_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "pe", "su", "gra", "dol", "an",
              "ib", "or", "ul", "shi", "bre", "tok", "fen"]
_SUFFIXES = ["ing", "ed", "s", "er", "ly"]


def make_vocab(directory):
    rng = random.Random(0)
    words = set()
    while len(words) < 2000:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 3))))
    words = sorted(words)
    tokens = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "!"] + words
              + ["##" + s for s in _SUFFIXES] + ["##" + s for s in _SYLLABLES])
    path = os.path.join(directory, "vocab.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(tokens) + "\n")
    return path, words, len(tokens)


def sentence(rng, words, low=6, high=24):
    out = []
    for _ in range(rng.randint(low, high)):
        word = rng.choice(words)
        if rng.random() < 0.2:
            word += rng.choice(_SUFFIXES)
        out.append(word)
    return " ".join(out) + rng.choice([" .", " ,", " !", ""])


def write_corpus(path, size_bytes, words):
    """One document: sentences one a line, no blank line anywhere."""
    rng = random.Random(1)
    block = "\n".join(sentence(rng, words) for _ in range(20000)).encode() + b"\n"
    with open(path, "wb") as f:
        written = 0
        while written < size_bytes:
            piece = block[:size_bytes - written]
            f.write(piece)
            written += len(piece)
        if not piece.endswith(b"\n"):
            f.write(b"\n")


def write_tsv(path, rows, words, with_label=True):
    rng = random.Random(rows)
    pool = [sentence(rng, words, 3, 30) for _ in range(5000)]
    with open(path, "w", encoding="utf-8") as f:
        f.write("sentence\tlabel\n" if with_label else "sentence\n")
        for i in range(rows):
            text = pool[(i * 7919) % len(pool)]
            f.write(f"{text}\t{i % 3}\n" if with_label else f"{text}\n")


def _rss_parts(pid):
    """(RssAnon, RssFile) of a live process in KiB, from /proc/<pid>/status."""
    values = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("RssAnon:", "RssFile:")):
                    values[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return values.get("RssAnon", 0), values.get("RssFile", 0)


def run_measured(command, log_path):
    """(seconds, peak RSS, peak anonymous RSS, file-backed RSS at that moment (MiB), exit code)
    of a child process. Peak RSS is ru_maxrss (the child or any descendant it waited for);
    RssAnon (heap, stacks: what memory pressure cannot drop) is sampled every 0.5 s. RssFile
    is mapped files: TensorFlow's shared libraries and the touched pages of the memory-mapped
    feature cache, which the kernel can drop and re-read."""
    start = time.monotonic()
    anon_peak = file_at_peak = 0
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                   env=dict(os.environ, PYTHONPATH=REPO))
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            anon, file_backed = _rss_parts(process.pid)
            if anon > anon_peak:
                anon_peak, file_at_peak = anon, file_backed
            time.sleep(0.5)
    process.returncode = os.waitstatus_to_exitcode(status)
    return (time.monotonic() - start, usage.ru_maxrss / 1024.0, anon_peak / 1024.0,
            file_at_peak / 1024.0, process.returncode)


def load():
    return os.getloadavg()[0]


def pretraining(work, vocab, words, sizes_mb, results, dupe_factor=10):
    for mb in sizes_mb:
        corpus = os.path.join(work, f"corpus_{mb}mb.txt")
        write_corpus(corpus, mb * 1000 * 1000, words)
        out = os.path.join(work, "pretrain.tfrecord")
        command = [sys.executable, "create_pretraining_data.py", f"--input_file={corpus}",
                   f"--output_file={out}", f"--vocab_file={vocab}", "--streaming",
                   "--max_seq_length=128", f"--dupe_factor={dupe_factor}", "--num_workers=1"]
        load_before = load()
        seconds, peak, anon, _, code = run_measured(command,
                                                    os.path.join(work, f"pretrain_{mb}.log"))
        size = os.path.getsize(out) if os.path.exists(out) else 0
        row = dict(part=f"create_pretraining_data --streaming --dupe_factor={dupe_factor}",
                   input=f"{mb} MB one document",
                   peak_rss_mib=round(peak), peak_anon_mib=round(anon), seconds=round(seconds),
                   exit_code=code, output_mb=round(size / 1e6),
                   load=f"{load_before:.1f}/{load():.1f}")
        print(json.dumps(row), flush=True)
        results.append(row)
        os.remove(corpus)
        if os.path.exists(out):
            os.remove(out)


def _write_config(work, vocab_size):
    """The tiny model's bert_config.json (2 layers, hidden 32)."""
    config = os.path.join(work, "bert_config.json")
    with open(config, "w") as f:
        json.dump({"vocab_size": vocab_size, "hidden_size": 32, "num_hidden_layers": 2,
                   "num_attention_heads": 2, "intermediate_size": 64, "hidden_act": "gelu",
                   "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
                   "max_position_embeddings": 64, "type_vocab_size": 2,
                   "initializer_range": 0.02}, f)
    return config


def _fine_tune(work, script, extra_flags, data, config, vocab, train_rows, name, part, input_,
               results):
    """Runs `script` (the tiny model, max_seq_length 32, 20 training steps of 32, then eval and
    predict with batch 256) on `data`, measured; appends and prints its row."""
    output = os.path.join(work, name)
    steps, batch = 20, 32
    command = [sys.executable, script] + list(extra_flags) + [
        f"--data_dir={data}", f"--bert_config_file={config}", f"--vocab_file={vocab}",
        "--do_lower_case=true", f"--output_dir={output}", "--do_train", "--do_eval",
        "--do_predict", "--max_seq_length=32", f"--train_batch_size={batch}",
        "--eval_batch_size=256", "--predict_batch_size=256",
        f"--num_train_epochs={steps * batch / train_rows}", "--save_checkpoints_steps=1000"]
    load_before = load()
    seconds, peak, anon, file_backed, code = run_measured(command,
                                                          os.path.join(work, f"{name}.log"))
    row = dict(part=part, input=input_, peak_rss_mib=round(peak), peak_anon_mib=round(anon),
               file_mib_at_anon_peak=round(file_backed), seconds=round(seconds),
               exit_code=code, load=f"{load_before:.1f}/{load():.1f}")
    print(json.dumps(row), flush=True)
    results.append(row)
    shutil.rmtree(output, ignore_errors=True)


def classifier(work, vocab, words, vocab_size, row_counts, results):
    config = _write_config(work, vocab_size)
    for rows in row_counts:
        data = os.path.join(work, f"tsv_{rows}")
        os.makedirs(data)
        write_tsv(os.path.join(data, "train.tsv"), rows, words)
        write_tsv(os.path.join(data, "dev.tsv"), rows // 10, words)
        write_tsv(os.path.join(data, "test.tsv"), rows // 10, words, with_label=False)
        _fine_tune(work, "run_classifier.py", ["--task_name=generic"], data, config, vocab,
                   rows, f"out_{rows}", "run_classifier generic",
                   f"{rows:,} train rows + 2x{rows // 10:,}", results)
        shutil.rmtree(data)


def write_conll(path, sentences, words):
    rng = random.Random(sentences)
    types = ["PER", "LOC", "ORG"]
    with open(path, "w", encoding="utf-8") as f:
        f.write("-DOCSTART- O\n\n")
        for _ in range(sentences):
            lines = []
            for word in sentence(rng, words, 3, 30).split():
                if rng.random() < 0.15:
                    lines.append(f"{word} B-{rng.choice(types)}")
                elif lines and lines[-1].split()[1] != "O" and rng.random() < 0.5:
                    lines.append(f"{word} I-{lines[-1].split()[1][2:]}")
                else:
                    lines.append(f"{word} O")
            f.write("\n".join(lines) + "\n\n")


def ner(work, vocab, vocab_size, words, sentence_counts, results):
    config = _write_config(work, vocab_size)
    for sentences in sentence_counts:
        data = os.path.join(work, f"conll_{sentences}")
        os.makedirs(data)
        write_conll(os.path.join(data, "train.txt"), sentences, words)
        write_conll(os.path.join(data, "dev.txt"), 500, words)
        write_conll(os.path.join(data, "test.txt"), 500, words)
        _fine_tune(work, "run_ner.py", [], data, config, vocab, sentences,
                   f"ner_out_{sentences}", "run_ner", f"{sentences:,} train sentences + 2x500",
                   results)
        shutil.rmtree(data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="pretraining,classifier")
    parser.add_argument("--corpus_mb", default="10,100")
    parser.add_argument("--rows", default="50000,500000")
    parser.add_argument("--sentences", default="50000,500000",
                        help="CoNLL training sentences per run_ner run (part 'ner')")
    parser.add_argument("--dupe_factor", type=int, default=10,
                        help="create_pretraining_data's --dupe_factor (10, the original's "
                             "default; 1 makes a 1 GB corpus feasible on 2 cores; compare peaks "
                             "only between runs of the same dupe factor)")
    parser.add_argument("--work_dir", default="/tmp")
    parser.add_argument("--repo", default=REPO,
                        help="checkout whose scripts run (e.g. an older one, for comparison)")
    args = parser.parse_args()
    globals()["REPO"] = os.path.abspath(args.repo)
    work = tempfile.mkdtemp(prefix="bert_tf_memory_", dir=args.work_dir)
    results = []
    try:
        vocab, words, vocab_size = make_vocab(work)
        parts = args.parts.split(",")
        if "pretraining" in parts:
            pretraining(work, vocab, words, [int(x) for x in args.corpus_mb.split(",")], results,
                        args.dupe_factor)
        if "classifier" in parts:
            classifier(work, vocab, words, vocab_size, [int(x) for x in args.rows.split(",")],
                       results)
        if "ner" in parts:
            ner(work, vocab, vocab_size, words, [int(x) for x in args.sentences.split(",")],
                results)
    finally:
        for name in os.listdir(work):
            if name.endswith(".log"):
                with open(os.path.join(work, name)) as f:
                    tail = f.readlines()[-3:]
                print(f"--- {name}: " + "".join(tail).strip()[-400:])
        shutil.rmtree(work, ignore_errors=True)
    print("| part | input | peak RSS (MiB) | peak anonymous RSS (MiB) | wall s | load |")
    print("|---|---|---:|---:|---:|---|")
    for row in results:
        print(f"| {row['part']} | {row['input']} | {row['peak_rss_mib']:,} | "
              f"{row['peak_anon_mib']:,} | {row['seconds']} | "
              f"{row['load']} |" + ("" if row["exit_code"] == 0 else f" exit {row['exit_code']}"))


if __name__ == "__main__":
    main()
