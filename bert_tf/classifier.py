"""Sentence (pair) classification and regression fine-tuning: GLUE, XNLI, your TSV/CSV.

The library behind run_classifier.py, with the original script's settings, outputs and file
formats (eval_results.txt, test_results.tsv) plus bert_tf's (predictions.tsv, a raw-text
SavedModel, the classifier's pooling). From Python::

    from bert_tf.classifier import ClassifierSettings, run_classifier

    results = run_classifier(ClassifierSettings(
        task_name="mrpc", data_dir="glue/MRPC", init_checkpoint="uncased_L-12_H-768_A-12",
        output_dir="/tmp/mrpc", do_train=True, do_eval=True))
    results["eval"]["eval_accuracy"]

See docs/classifier.md.
"""

import dataclasses
import functools
import json
import os
import time
from typing import Optional

from absl import logging

from bert_tf import files, finetuning
from bert_tf.finetuning import FineTuningSettings

CLASSIFIER_CONFIG_FILE = "classifier_config.json"
SINGLE_TEXT_TASKS = ("cola", "sst-2", "sst2")


@dataclasses.dataclass
class ClassifierSettings(FineTuningSettings):
    """The original run_classifier flags (same names and defaults) plus bert_tf's."""

    task_name: Optional[str] = None
    # generic task (your own TSV/CSV)
    text_a_column: str = "sentence"
    text_b_column: Optional[str] = None
    label_column: str = "label"
    regression: bool = False
    xnli_language: str = "zh"
    group_by_length: bool = False
    classifier_pooling: str = "auto"

    def validate(self):
        for name in ("task_name", "output_dir") + (() if self.export_only else ("data_dir",)):
            if not getattr(self, name):
                raise ValueError(f"--{name} is required")
        super().validate()
        task = self.task_name.lower()
        generic_only = (self.text_a_column != "sentence" or self.text_b_column is not None
                        or self.label_column != "label" or self.regression)
        if task != "generic" and generic_only:
            raise ValueError("--text_a_column/--text_b_column/--label_column/--regression are for "
                             "--task_name=generic only")
        if self.do_predict and task == "xnli":
            raise ValueError("--task_name=xnli has no test set (as in the original); "
                             "use --do_predict with another task")
        from bert_tf.config import CLASSIFIER_POOLINGS

        if self.classifier_pooling not in ("auto",) + CLASSIFIER_POOLINGS:
            raise ValueError(f"--classifier_pooling={self.classifier_pooling!r}: expected auto or "
                             f"one of {list(CLASSIFIER_POOLINGS)}")

    @property
    def is_pair_task(self) -> bool:
        """Each example is a text pair packed into one sequence."""
        task = self.task_name.lower()
        return task not in SINGLE_TEXT_TASKS and not (task == "generic"
                                                      and not self.text_b_column)


def recorded_pooling(directory):
    """The pooling a previous run_classifier recorded in `directory`, or None."""
    from bert_tf.config import CLASSIFIER_POOLINGS

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
        raise ValueError(f'{path}: expected {{"pooling": one of {list(CLASSIFIER_POOLINGS)}}}')
    return pooling


def resolve_pooling(settings: ClassifierSettings):
    """(pooling, where it came from) for `classifier_pooling`: an explicit choice; else the head
    recorded by an earlier run in output_dir or init_checkpoint's directory; else, for single
    texts, the sentence pooling a sentence-transformers checkpoint declares; else the pooler."""
    from bert_tf import checkpoints

    if settings.classifier_pooling != "auto":
        return settings.classifier_pooling, "--classifier_pooling"
    ckpt = settings.init_checkpoint
    candidates = [settings.output_dir]
    if ckpt:
        candidates.append(checkpoints.checkpoint_directory(ckpt))
    for directory in candidates:
        pooling = recorded_pooling(directory)
        if pooling:
            return pooling, os.path.join(directory, CLASSIFIER_CONFIG_FILE)
    # A declared sentence pooling makes one text's embedding; two texts packed into one
    # sequence were never pooled that way by the checkpoint, so pairs keep the original's head.
    if ckpt and not settings.is_pair_task:
        try:
            pooling = checkpoints.find_sentence_pooling(ckpt)
        except ValueError as e:
            raise ValueError(f"--init_checkpoint={ckpt}: {e} (--classifier_pooling)") from None
        if pooling:
            return pooling, "the sentence-transformers Pooling config of --init_checkpoint"
    return "pooler", "the original's default"


def _saved_generic_labels(settings: ClassifierSettings):
    """A previous training run's label list (generic task), for eval/predict-only runs."""
    return None if settings.do_train else finetuning.read_label_list(settings.output_dir)


def processor_of(settings: ClassifierSettings):
    """The data processor for the settings' task."""
    from bert_tf.data import classification as cls_data

    task = settings.task_name.lower()
    if task == "generic":
        return cls_data.get_processor(task, text_a_column=settings.text_a_column,
                                      text_b_column=settings.text_b_column,
                                      label_column=settings.label_column,
                                      is_regression=settings.regression,
                                      labels=_saved_generic_labels(settings))
    if task == "xnli":
        return cls_data.XnliProcessor(settings.xnli_language)
    return cls_data.get_processor(task)


def _sets(settings, files):
    return files if settings.task_name.lower() != "generic" else [""]


def check_data(settings: ClassifierSettings, processor, label_list):
    """The validation pass: reads every file the run will use (train, each dev and test set)
    and checks its rows and labels, so a malformed dev.tsv stops the run before training.
    Errors name the file and line."""
    import itertools

    from bert_tf.data.classification import DataFormatError

    splits = []
    if settings.do_train:
        splits.append(("train", ""))
    if settings.do_eval:
        splits += [("dev", set_name) for set_name in _sets(settings, processor.dev_files)]
    if settings.do_predict:
        splits += [("test", set_name) for set_name in _sets(settings, processor.test_files)]
    # One example at a time: the pass reads each file line by line and holds nothing.
    examples = itertools.chain.from_iterable(
        processor.iter_examples(settings.data_dir, split, set_name) for split, set_name in splits)
    known = set(label_list or ())
    for example in examples:
        if example.label is None:
            continue
        if processor.is_regression:
            try:
                float(example.label)
            except ValueError:
                raise DataFormatError(f"{example.source}: label {example.label!r} is not a "
                                      f"number; expected a real-valued score") from None
        elif example.label not in known:
            raise DataFormatError(f"{example.source}: label {example.label!r} is not in the "
                                  f"label list {list(label_list)}")


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


def predict_logits(predict_fn, features, batch_size, pad_to_multiple_of=8, length_buckets=None):
    """Logits [N, C] for every example, in the features' order. Batches are formed from
    length-sorted examples (little padding) and the order restored afterwards; see
    `classification_dataset` for the padding."""
    import numpy as np

    from bert_tf.data import classification as cls_data

    order = cls_data.length_sorted_order(features)
    dataset = cls_data.classification_dataset(features, batch_size, is_training=False, order=order,
                                              pad_to_multiple_of=pad_to_multiple_of,
                                              length_buckets=length_buckets)
    chunks = finetuning.predict_batches(predict_fn, dataset)
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
    batch_means = [per_example[i:i + batch_size].mean()
                   for i in range(0, len(per_example), batch_size)]
    results = {"eval_loss": float(per_example.mean()), "loss": float(np.mean(batch_means)),
               "global_step": int(global_step)}
    predictions = logits[:, 0] if processor.is_regression else np.argmax(logits, axis=-1)
    for name, value in metrics.task_metrics(processor.metric, labels, predictions).items():
        results[prefix + name] = value
    return results


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
    files.atomic_write(os.path.join(output_dir, f"test_results{suffix}.tsv"), results)
    files.atomic_write(os.path.join(output_dir, f"predictions{suffix}.tsv"),
                       "index\tprediction\n" + "".join(f"{i}\t{p}\n"
                                                       for i, p in enumerate(predicted)))


def run_classifier(settings: ClassifierSettings, strategy=None):
    """Fine-tunes, evaluates, predicts and exports as the settings say; returns a dict:
    {"eval": eval results or None, "global_step": int, "export_path": path or None,
     "pooling": the classifier head used, "timings": seconds per phase}.

    The strategy (default: `tf.distribute.get_strategy()`) and the Keras dtype policy are the
    caller's (bert_tf.cli.setup_from_flags sets both from the script's flags; a Python user may
    call `bert_tf.distribution.set_mixed_precision("bfloat16")` first). The random seed is set
    from `settings.seed`.
    """
    import keras
    import tensorflow as tf

    from bert_tf.data import classification as cls_data
    from bert_tf.tokenization import FullTokenizer

    settings.validate()
    run_start = time.time()
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(settings.seed)
    model_files = finetuning.resolve_model_files(settings)

    processor = processor_of(settings)
    label_list = processor.get_labels(settings.data_dir)
    num_labels = len(label_list) if label_list else 1
    check_data(settings, processor, label_list)
    pooling, pooling_source = resolve_pooling(settings)
    finetuning.check_init_checkpoint(settings, model_files.config, "classifier", num_labels, pooling)
    os.makedirs(settings.output_dir, exist_ok=True)  # only once every input checked out
    tokenizer = FullTokenizer(model_files.vocab_file, do_lower_case=model_files.do_lower_case)
    cache_dir = (os.path.join(settings.output_dir, "feature_cache")
                 if settings.cache_features else None)

    def features_of(split, set_name=""):
        return cls_data.load_features(processor, settings.data_dir, split, tokenizer,
                                      model_files.vocab_file, model_files.do_lower_case,
                                      settings.max_seq_length, label_list, cache_dir=cache_dir,
                                      set_name=set_name)

    logging.info("Classifier pooling: %s (from %s)", pooling, pooling_source)
    with strategy.scope():
        model = build_classifier(model_files.config, num_labels, pooling)

    num_train_steps, train_features = None, None
    if settings.do_train:
        train_features = features_of("train")
        num_train_steps = finetuning.num_train_steps_of(len(train_features), settings)

    def loss_fn(features, outputs):
        return tf.reduce_mean(classification_loss(features["label_ids"], outputs["logits"],
                                                  processor.is_regression))

    run = finetuning.FineTuningRun(strategy, model, settings, loss_fn, num_train_steps)
    timings, train_dataset_fn = {}, None
    if settings.do_train:
        finetuning.copy_model_files(settings.output_dir, model_files)
        files.atomic_write(os.path.join(settings.output_dir, CLASSIFIER_CONFIG_FILE),
                           json.dumps({"pooling": pooling}) + "\n")
        if processor.name == "generic" and label_list:
            finetuning.write_label_list(settings.output_dir, label_list)
        logging.info("***** Running training *****  examples %d, batch %d, steps %d, warmup %d, "
                     "truncated %d", len(train_features), settings.train_batch_size,
                     run.num_train_steps, run.num_warmup_steps, train_features.num_truncated)
        order = None
        if settings.group_by_length:
            order = functools.partial(cls_data.length_grouped_batches, train_features,
                                      settings.train_batch_size, run.num_train_steps,
                                      settings.seed)

        def train_input(input_context):
            return cls_data.classification_dataset(
                train_features, settings.train_batch_size, is_training=True, seed=settings.seed,
                order=order, pad_to_multiple_of=settings.pad_to_multiple_of,
                input_context=input_context, length_buckets=run.length_buckets)

        train_dataset_fn = train_input
    train_seconds = run.train_or_restore(train_dataset_fn)
    if train_seconds is not None:
        timings["train_seconds"] = train_seconds
    global_step = run.global_step
    predict_fn = run.predict_fn()
    results = None
    if settings.do_eval:
        start = time.time()
        results = {}
        for set_name in _sets(settings, processor.dev_files):
            dev_features = features_of("dev", set_name)
            logging.info("***** Running evaluation%s *****  examples %d, batch %d, truncated %d",
                         f" ({set_name})" if set_name else "", len(dev_features),
                         settings.eval_batch_size, dev_features.num_truncated)
            logits = predict_logits(predict_fn, dev_features, settings.eval_batch_size,
                                    settings.pad_to_multiple_of, run.length_buckets)
            set_results = evaluate(logits, dev_features, processor, settings.eval_batch_size,
                                   global_step)
            if set_name:
                set_results = {f"{set_name}_{k}": v for k, v in set_results.items()
                               if k != "global_step"}
            results.update(set_results)
        timings["eval_seconds"] = time.time() - start
        finetuning.write_eval_results(settings.output_dir, results)

    if settings.do_predict:
        start = time.time()
        for set_name in _sets(settings, processor.test_files):
            test_features = features_of("test", set_name)
            logging.info("***** Running prediction%s *****  examples %d, batch %d, truncated %d",
                         f" ({set_name})" if set_name else "", len(test_features),
                         settings.predict_batch_size, test_features.num_truncated)
            logits = predict_logits(predict_fn, test_features, settings.predict_batch_size,
                                    settings.pad_to_multiple_of, run.length_buckets)
            write_predictions(settings.output_dir, logits, processor, label_list,
                              suffix=f"_{set_name}" if set_name else "")
        timings["predict_seconds"] = time.time() - start

    export_path = None
    if settings.export_dir:
        from bert_tf import export

        preprocessor = export.TextPreprocessor(model_files.vocab_file,
                                               lower_case=model_files.do_lower_case,
                                               seq_length=settings.max_seq_length)
        export_path = export.export_text_model(
            settings.export_dir, model, preprocessor,
            export.classification_postprocess(label_list, processor.is_regression),
            input_names=("text_a", "text_b") if settings.is_pair_task else ("text",))
        logging.info("Exported a raw-text SavedModel to %s", export_path)
    timings["total_seconds"] = time.time() - run_start
    finetuning.log_timings(timings)
    return {"eval": results, "global_step": global_step, "export_path": export_path,
            "pooling": pooling, "timings": timings}
