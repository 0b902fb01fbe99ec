"""BERT fine-tuning for sentence (pair) classification and regression: GLUE, XNLI, your TSV/CSV.

Same flags, defaults and output files as google-research/bert's run_classifier.py, plus
tf.distribute / mixed-precision flags, --seed, --export_dir (a raw-text SavedModel for TF
Serving) and the generic processor's column flags. See docs/classifier.md.

    python run_classifier.py --task_name=MRPC --do_train --do_eval --do_predict \\
      --data_dir=glue/MRPC --init_checkpoint=uncased_L-12_H-768_A-12/bert_model.ckpt \\
      --output_dir=/tmp/mrpc --export_dir=/tmp/mrpc_export
"""

import json
import os
import time

from absl import app, flags, logging

from bert_tf import cli

FLAGS = flags.FLAGS

# --- The original flags (names, defaults, meaning) --------------------------------------------
flags.DEFINE_string("data_dir", None, "The input data dir. Should contain the .tsv files (or "
                    "other data files) for the task.")
flags.DEFINE_string("bert_config_file", None, "The config json file corresponding to the "
                    "pre-trained BERT model (default: the one next to --init_checkpoint).")
flags.DEFINE_string("task_name", None, "The name of the task to train: cola, sst-2, mrpc, "
                    "sts-b, qqp, mnli, qnli, rte, wnli, xnli, or generic (your own TSV/CSV).")
flags.DEFINE_string("vocab_file", None, "The vocabulary file that the BERT model was trained "
                    "on (default: the one next to --init_checkpoint).")
flags.DEFINE_string("output_dir", None, "The output directory where the model checkpoints and "
                    "result files will be written.")
flags.DEFINE_string("init_checkpoint", None, "Initial checkpoint: an original BERT checkpoint "
                    "(prefix or directory), a Hugging Face BERT directory or a bert_tf checkpoint.")
flags.DEFINE_bool("do_lower_case", True, "Whether to lower case the input text. Should be True "
                  "for uncased models and False for cased models (default: what the "
                  "checkpoint's directory says, else True).")
flags.DEFINE_integer("max_seq_length", 128, "The maximum total input sequence length after "
                     "WordPiece tokenization. Longer sequences are truncated (and counted).")
flags.DEFINE_bool("do_train", False, "Whether to run training.")
flags.DEFINE_bool("do_eval", False, "Whether to run eval on the dev set.")
flags.DEFINE_bool("do_predict", False, "Whether to run the model in inference mode on the test set.")
flags.DEFINE_integer("train_batch_size", 32, "Total batch size for training.")
flags.DEFINE_integer("eval_batch_size", 8, "Total batch size for eval.")
flags.DEFINE_integer("predict_batch_size", 8, "Total batch size for predict.")
flags.DEFINE_float("learning_rate", 5e-5, "The initial learning rate for Adam.")
flags.DEFINE_float("num_train_epochs", 3.0, "Total number of training epochs to perform.")
flags.DEFINE_float("warmup_proportion", 0.1, "Proportion of training to perform linear learning "
                   "rate warmup for. E.g., 0.1 = 10% of training.")
flags.DEFINE_integer("save_checkpoints_steps", 1000, "How often to save the model checkpoint.")
flags.DEFINE_integer("iterations_per_loop", 1000, "How many steps to make in each estimator "
                     "call (bert_tf: steps per host loop between progress reports).")
cli.define_common_flags()  # --distribution_strategy, --num_gpus, TPU flags, --mixed_precision,
#                            --jit_compile, --seed

# --- bert_tf additions -----------------------------------------------------------------------
flags.DEFINE_string("export_dir", None, "If set, export a SavedModel that takes raw text to "
                    "EXPORT_DIR/<next integer version>/ (TF Serving layout).")
flags.DEFINE_string("text_a_column", "sentence", "generic task: header name of the first text.")
flags.DEFINE_string("text_b_column", None, "generic task: header name of the second text "
                    "(sentence pairs).")
flags.DEFINE_string("label_column", "label", "generic task: header name of the label.")
flags.DEFINE_bool("regression", False, "generic task: the label is a real-valued score.")
flags.DEFINE_string("xnli_language", "zh", "xnli task: the language to train and evaluate on.")
flags.DEFINE_bool("cache_features", True, "Cache tokenized features in OUTPUT_DIR/feature_cache "
                  "(keyed by data file, vocabulary, casing and max_seq_length).")
flags.DEFINE_bool("group_by_length", False, "Training batches of examples of similar length "
                  "(random groups of 50 batches sorted by length): less padding, faster; "
                  "off = the original's plain shuffle.")
flags.DEFINE_integer("pad_to_multiple_of", 8, "Batches are padded to their longest sequence "
                     "rounded up to this multiple (not to max_seq_length).")

flags.DEFINE_enum("classifier_pooling", "auto", ["auto", "pooler", "cls", "mean"],
                  "What the classifier reads: 'pooler' (the original: tanh pooler over [CLS]), "
                  "'cls' ([CLS]'s last hidden state), 'mean' (mean of the tokens' last hidden "
                  "states). 'auto': what OUTPUT_DIR or --init_checkpoint's directory recorded "
                  "from an earlier fine-tuning run, else (single-text tasks) the sentence "
                  "pooling a sentence-transformers checkpoint declares (1_Pooling/config.json), "
                  "else 'pooler'.")

LABEL_LIST_FILE = "label_list.txt"
CLASSIFIER_CONFIG_FILE = "classifier_config.json"


def _resolve_model_files(flag_values):
    """(config, vocab_file, do_lower_case): the flags, else what init_checkpoint's dir holds."""
    from bert_tf import checkpoints
    from bert_tf.config import BertConfig

    ckpt = flag_values.init_checkpoint
    if flag_values.bert_config_file:
        config = BertConfig.from_json_file(flag_values.bert_config_file)
    elif ckpt:
        config = checkpoints.read_config(ckpt)
    else:
        raise app.UsageError("--bert_config_file is required when --init_checkpoint is not given")
    vocab_file, lower_case = flag_values.vocab_file, flag_values.do_lower_case
    found_vocab, found_case = checkpoints.find_vocab_and_casing(ckpt) if ckpt else (None, None)
    if not vocab_file:
        vocab_file = found_vocab
        if not vocab_file:
            raise app.UsageError(f"--vocab_file is required: no vocab.txt found next to "
                                 f"--init_checkpoint={ckpt}")
    if not flag_values["do_lower_case"].present and found_case is not None:
        lower_case = found_case
    if ckpt:
        from bert_tf.tokenization import validate_case_matches_checkpoint

        validate_case_matches_checkpoint(lower_case, ckpt)
    return config, vocab_file, lower_case


def _recorded_pooling(directory):
    """The pooling a previous run_classifier recorded in `directory`, or None."""
    from bert_tf.models import CLASSIFIER_POOLINGS

    path = os.path.join(directory, CLASSIFIER_CONFIG_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        try:
            record = json.load(f)
        except json.JSONDecodeError:
            record = None
    pooling = record.get("pooling") if isinstance(record, dict) else None
    if pooling not in CLASSIFIER_POOLINGS:
        raise app.UsageError(f'{path}: expected {{"pooling": one of {list(CLASSIFIER_POOLINGS)}}}')
    return pooling


def _resolve_pooling(flag_values, pair):
    """(pooling, where it came from) for --classifier_pooling (see the flag's help). `pair`:
    each example is a text pair packed into one sequence."""
    from bert_tf import checkpoints

    if flag_values.classifier_pooling != "auto":
        return flag_values.classifier_pooling, "--classifier_pooling"
    ckpt = flag_values.init_checkpoint
    candidates = [flag_values.output_dir]
    if ckpt:
        candidates.append(checkpoints.checkpoint_directory(ckpt))
    for directory in candidates:
        pooling = _recorded_pooling(directory)
        if pooling:
            return pooling, os.path.join(directory, CLASSIFIER_CONFIG_FILE)
    # A declared sentence pooling makes one text's embedding; two texts packed into one
    # sequence were never pooled that way by the checkpoint, so pairs keep the original's head.
    if ckpt and not pair:
        try:
            pooling = checkpoints.find_sentence_pooling(ckpt)
        except ValueError as e:
            raise app.UsageError(f"--init_checkpoint={ckpt}: {e} (--classifier_pooling)") from None
        if pooling:
            return pooling, "the sentence-transformers Pooling config of --init_checkpoint"
    return "pooler", "the original's default"


def _saved_generic_labels(flag_values):
    """A previous training run's label list (generic task), for eval/predict-only runs."""
    saved = os.path.join(flag_values.output_dir, LABEL_LIST_FILE)
    if flag_values.do_train or not os.path.isfile(saved):
        return None
    with open(saved, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.rstrip("\n")]


def classification_loss(labels, logits, is_regression):
    """Per-example loss: the original's -Σ one_hot · log_softmax(logits) for classes;
    squared error of the score for regression (the original has no regression task)."""
    import tensorflow as tf

    logits = tf.cast(logits, tf.float32)
    if is_regression:
        return tf.square(logits[:, 0] - tf.cast(labels, tf.float32))
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    one_hot = tf.one_hot(tf.cast(labels, tf.int32), depth=tf.shape(logits)[-1], dtype=tf.float32)
    return -tf.reduce_sum(one_hot * log_probs, axis=-1)


def build_classifier(config, num_labels, pooling="pooler"):
    """A BertClassifier (built); num_labels 0 (regression) gives one output."""
    from bert_tf.models import BertClassifier

    return BertClassifier(config, num_labels=max(num_labels, 1), pooling=pooling)


def make_predict_fn(model, jit_compile=False):
    """A tf.function inputs -> float32 logits that does not retrace for new batch shapes."""
    import tensorflow as tf

    spec = {name: tf.TensorSpec([None, None], tf.int32, name=name)
            for name in ("input_ids", "input_mask", "segment_ids")}

    @tf.function(input_signature=[spec], jit_compile=jit_compile)
    def predict(inputs):
        return tf.cast(model(inputs, training=False)["logits"], tf.float32)

    return predict


def predict_logits(predict_fn, features, batch_size, pad_to_multiple_of=8):
    """Logits [N, C] for every example, in the features' order. Batches are formed from
    length-sorted examples (little padding) and the order restored afterwards."""
    import numpy as np

    from bert_tf.data import classification as cls_data

    order = cls_data.length_sorted_order(features)
    dataset = cls_data.classification_dataset(features, batch_size, is_training=False, order=order,
                                              pad_to_multiple_of=pad_to_multiple_of)
    names = ("input_ids", "input_mask", "segment_ids")
    chunks = [predict_fn({k: batch[k] for k in names}).numpy() for batch in dataset]
    logits = np.concatenate(chunks, axis=0) if chunks else np.zeros((0, 1), np.float32)
    restored = np.empty_like(logits)
    restored[order] = logits
    return restored


def evaluate(logits, features, processor, batch_size, global_step, prefix="eval_"):
    """The original eval_results keys (eval_accuracy, eval_loss, global_step, loss) plus the
    task's GLUE metrics, from the logits of every dev example."""
    import numpy as np

    from bert_tf import metrics

    labels = features.label_ids
    unlabelled = np.isnan(labels) if processor.is_regression else labels < 0
    if unlabelled.any():
        raise ValueError(f"{int(unlabelled.sum())} dev examples have no label")
    per_example = classification_loss(labels, logits, processor.is_regression).numpy()
    # The Estimator's `loss`: the mean over eval batches of each batch's mean loss.
    batch_means = [per_example[i:i + batch_size].mean() for i in range(0, len(per_example), batch_size)]
    results = {"eval_loss": float(per_example.mean()), "loss": float(np.mean(batch_means)),
               "global_step": int(global_step)}
    predictions = logits[:, 0] if processor.is_regression else np.argmax(logits, axis=-1)
    for name, value in metrics.task_metrics(processor.metric, labels, predictions).items():
        results[prefix + name] = value
    return results


def write_atomically(path, text):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write_eval_results(path, results):
    """`key = value` lines sorted by key, as the original writes eval_results.txt."""
    write_atomically(path, "".join(f"{key} = {results[key]}\n" for key in sorted(results)))


def write_predictions(output_dir, logits, processor, label_list, suffix=""):
    """test_results.tsv (the original's format: tab-separated class probabilities, or the score)
    and predictions.tsv (GLUE submission format: `index<TAB>prediction` with label names)."""
    import numpy as np

    if processor.is_regression:
        scores = logits[:, 0]
        results = "".join(f"{score}\n" for score in scores)
        predicted = [f"{score:.3f}" for score in scores]
    else:
        shifted = logits - logits.max(axis=-1, keepdims=True)
        probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
        results = "".join("\t".join(str(p) for p in row) + "\n" for row in probabilities)
        predicted = [label_list[i] for i in np.argmax(logits, axis=-1)]
    write_atomically(os.path.join(output_dir, f"test_results{suffix}.tsv"), results)
    write_atomically(os.path.join(output_dir, f"predictions{suffix}.tsv"),
                     "index\tprediction\n" + "".join(f"{i}\t{p}\n" for i, p in enumerate(predicted)))


def _copy_model_files(output_dir, config, vocab_file, do_lower_case):
    """bert_config.json, vocab.txt and the casing beside the fine-tuned checkpoints, so the
    output_dir itself works as an --init_checkpoint later."""
    import shutil

    config.to_json_file(os.path.join(output_dir, "bert_config.json.tmp"))
    os.replace(os.path.join(output_dir, "bert_config.json.tmp"),
               os.path.join(output_dir, "bert_config.json"))
    target = os.path.join(output_dir, "vocab.txt")
    if os.path.abspath(vocab_file) != os.path.abspath(target):
        shutil.copyfile(vocab_file, target + ".tmp")
        os.replace(target + ".tmp", target)
    write_atomically(os.path.join(output_dir, "tokenizer_config.json"),
                     json.dumps({"do_lower_case": bool(do_lower_case)}) + "\n")


def main(argv):
    del argv
    for name in ("data_dir", "task_name", "output_dir"):
        if not FLAGS[name].value:
            raise app.UsageError(f"--{name} is required")
    if not (FLAGS.do_train or FLAGS.do_eval or FLAGS.do_predict):
        raise app.UsageError("At least one of --do_train, --do_eval or --do_predict must be True.")
    if FLAGS.task_name.lower() != "generic" and (FLAGS["text_a_column"].present or FLAGS["text_b_column"].present
                                                 or FLAGS["label_column"].present or FLAGS.regression):
        raise app.UsageError("--text_a_column/--text_b_column/--label_column/--regression are for "
                             "--task_name=generic only")

    if FLAGS.do_predict and FLAGS.task_name.lower() == "xnli":
        raise app.UsageError("--task_name=xnli has no test set (as in the original); "
                             "use --do_predict with another task")

    import tensorflow as tf

    from bert_tf import optimization, training
    from bert_tf.data import classification as cls_data
    from bert_tf.tokenization import FullTokenizer

    run_start = time.time()
    strategy = cli.setup_from_flags(FLAGS)
    config, vocab_file, do_lower_case = _resolve_model_files(FLAGS)
    if FLAGS.max_seq_length > config.max_position_embeddings:
        raise app.UsageError(f"--max_seq_length={FLAGS.max_seq_length} exceeds the model's "
                             f"max_position_embeddings={config.max_position_embeddings}")
    os.makedirs(FLAGS.output_dir, exist_ok=True)

    task = FLAGS.task_name.lower()
    if task == "generic":
        processor = cls_data.get_processor(task, text_a_column=FLAGS.text_a_column,
                                           text_b_column=FLAGS.text_b_column,
                                           label_column=FLAGS.label_column,
                                           is_regression=FLAGS.regression,
                                           labels=_saved_generic_labels(FLAGS))
    elif task == "xnli":
        processor = cls_data.XnliProcessor(FLAGS.xnli_language)
    else:
        processor = cls_data.get_processor(task)
    label_list = processor.get_labels(FLAGS.data_dir)
    num_labels = len(label_list) if label_list else 1
    tokenizer = FullTokenizer(vocab_file, do_lower_case=do_lower_case)
    cache_dir = os.path.join(FLAGS.output_dir, "feature_cache") if FLAGS.cache_features else None

    def features_of(split, set_name=""):
        return cls_data.load_features(processor, FLAGS.data_dir, split, tokenizer, vocab_file,
                                      do_lower_case, FLAGS.max_seq_length, label_list,
                                      cache_dir=cache_dir, set_name=set_name)

    pair = task not in ("cola", "sst-2", "sst2") and not (
        task == "generic" and not FLAGS.text_b_column)
    pooling, pooling_source = _resolve_pooling(FLAGS, pair)
    logging.info("Classifier pooling: %s (from %s)", pooling, pooling_source)
    with strategy.scope():
        model = build_classifier(config, num_labels, pooling)

    def load_init_checkpoint():
        if FLAGS.init_checkpoint:
            from bert_tf import checkpoints

            report = checkpoints.load_checkpoint(model, FLAGS.init_checkpoint)
            logging.info("init_checkpoint %s: %d variables loaded; initialised randomly (not in "
                         "the checkpoint): %s", FLAGS.init_checkpoint, len(report.loaded),
                         [str(v) for v in report.missing])

    num_train_steps = 1
    train_features = None
    if FLAGS.do_train:
        _, train_features = features_of("train")
        num_train_steps = int(len(train_features) / FLAGS.train_batch_size * FLAGS.num_train_epochs)
        if num_train_steps < 1:
            raise app.UsageError(f"{len(train_features)} training examples, batch "
                                 f"{FLAGS.train_batch_size} and {FLAGS.num_train_epochs} epochs "
                                 f"give 0 training steps")
    num_warmup_steps = int(num_train_steps * FLAGS.warmup_proportion)
    with strategy.scope():
        optimizer = optimization.create_optimizer(FLAGS.learning_rate, num_train_steps,
                                                  num_warmup_steps)

    def loss_fn(features, outputs):
        return tf.reduce_mean(classification_loss(features["label_ids"], outputs["logits"],
                                                  processor.is_regression))

    trainer = training.Trainer(strategy, model, optimizer, loss_fn, model_dir=FLAGS.output_dir,
                               train_batch_size=FLAGS.train_batch_size,
                               steps_per_loop=min(FLAGS.iterations_per_loop, 100),
                               save_checkpoints_steps=FLAGS.save_checkpoints_steps,
                               jit_compile=FLAGS.jit_compile)
    timings = {}
    if FLAGS.do_train:
        _copy_model_files(FLAGS.output_dir, config, vocab_file, do_lower_case)
        write_atomically(os.path.join(FLAGS.output_dir, CLASSIFIER_CONFIG_FILE),
                         json.dumps({"pooling": pooling}) + "\n")
        if processor.name == "generic" and label_list:
            write_atomically(os.path.join(FLAGS.output_dir, LABEL_LIST_FILE),
                             "".join(f"{label}\n" for label in label_list))
        logging.info("***** Running training *****  examples %d, batch %d, steps %d, warmup %d, "
                     "truncated %d", len(train_features), FLAGS.train_batch_size, num_train_steps,
                     num_warmup_steps, train_features.num_truncated)
        order = None
        if FLAGS.group_by_length:
            order = cls_data.length_grouped_order(train_features, FLAGS.train_batch_size,
                                                  num_train_steps, FLAGS.seed)

        def train_dataset_fn(input_context):
            return cls_data.classification_dataset(
                train_features, FLAGS.train_batch_size, is_training=True, seed=FLAGS.seed,
                order=order, pad_to_multiple_of=FLAGS.pad_to_multiple_of,
                input_context=input_context)

        start = time.time()
        trainer.train(train_dataset_fn, num_train_steps, init_fn=load_init_checkpoint)
        timings["train_seconds"] = time.time() - start
    elif trainer.restore() is None:
        load_init_checkpoint()
    global_step = trainer.global_step

    predict_fn = make_predict_fn(model, jit_compile=FLAGS.jit_compile)
    if FLAGS.do_eval:
        start = time.time()
        results = {}
        for set_name in processor.dev_files if task != "generic" else [""]:
            _, dev_features = features_of("dev", set_name)
            logging.info("***** Running evaluation%s *****  examples %d, batch %d, truncated %d",
                         f" ({set_name})" if set_name else "", len(dev_features),
                         FLAGS.eval_batch_size, dev_features.num_truncated)
            logits = predict_logits(predict_fn, dev_features, FLAGS.eval_batch_size,
                                    FLAGS.pad_to_multiple_of)
            set_results = evaluate(logits, dev_features, processor, FLAGS.eval_batch_size,
                                   global_step)
            if set_name:
                set_results = {f"{set_name}_{k}": v for k, v in set_results.items()
                               if k != "global_step"}
            results.update(set_results)
        timings["eval_seconds"] = time.time() - start
        training.write_eval_results(os.path.join(FLAGS.output_dir, "eval_results.txt"), results)

    if FLAGS.do_predict:
        start = time.time()
        for set_name in processor.test_files if task != "generic" else [""]:
            _, test_features = features_of("test", set_name)
            logging.info("***** Running prediction%s *****  examples %d, batch %d, truncated %d",
                         f" ({set_name})" if set_name else "", len(test_features),
                         FLAGS.predict_batch_size, test_features.num_truncated)
            logits = predict_logits(predict_fn, test_features, FLAGS.predict_batch_size,
                                    FLAGS.pad_to_multiple_of)
            write_predictions(FLAGS.output_dir, logits, processor, label_list,
                              suffix=f"_{set_name}" if set_name else "")
        timings["predict_seconds"] = time.time() - start

    if FLAGS.export_dir:
        from bert_tf import export

        preprocessor = export.TextPreprocessor(vocab_file, lower_case=do_lower_case,
                                               seq_length=FLAGS.max_seq_length)
        path = export.export_text_model(
            FLAGS.export_dir, model, preprocessor,
            export.classification_postprocess(label_list, processor.is_regression),
            input_names=("text_a", "text_b") if pair else ("text_a",))
        logging.info("Exported a raw-text SavedModel to %s", path)
    timings["total_seconds"] = time.time() - run_start
    logging.info("Timings: %s", ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))


def run_main():
    app.run(main)


if __name__ == "__main__":
    run_main()
