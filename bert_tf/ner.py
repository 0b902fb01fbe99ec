"""Named-entity recognition fine-tuning on CoNLL-style files, with conlleval's entity F1.

The library behind run_ner.py. A BertTokenClassifier learns one label per word (on the word's
first WordPiece; other pieces and special tokens are ignored by the loss and the metrics).
Sentences longer than max_seq_length are cut into overlapping windows, and every word is
predicted exactly once, from the window where it has the most context (bert_tf.data.ner).
From Python::

    from bert_tf.ner import NerSettings, run_ner

    results = run_ner(NerSettings(
        data_dir="conll2003", init_checkpoint="cased_L-12_H-768_A-12", output_dir="/tmp/ner",
        do_train=True, do_eval=True, num_train_epochs=3))
    results["eval"]["eval_f1"]

Outputs in output_dir: checkpoints, `label_list.txt`, `eval_results.txt` (conlleval's micro
precision / recall / F1, per-type figures, token accuracy, eval_loss), `dev_predictions.txt`
and `test_predictions.txt` (`token gold predicted` lines in the input file's tag scheme). See
docs/ner.md.
"""

import dataclasses
import functools
import os
import time
from typing import List, Optional

from absl import logging

from bert_tf import finetuning
from bert_tf.finetuning import FineTuningSettings

TAG_SCHEMES = ("auto", "IOB1", "BIO", "BIOES")


@dataclasses.dataclass
class NerSettings(FineTuningSettings):
    """run_classifier's settings (same names and defaults) plus NER's own."""

    train_file: Optional[str] = None
    dev_file: Optional[str] = None
    test_file: Optional[str] = None
    tag_column: int = -1
    tag_scheme: str = "auto"
    window_stride: Optional[int] = None
    # On by default here (run_classifier keeps the original's plain shuffle): CoNLL sentence
    # lengths vary so much that a random batch of 32 is ~64% padding.
    group_by_length: bool = True

    def validate(self):
        super().validate()
        if self.tag_scheme not in TAG_SCHEMES:
            raise ValueError(f"--tag_scheme={self.tag_scheme!r}: expected one of "
                             f"{list(TAG_SCHEMES)}")
        for flag, mode, needed in (("train_file", "do_train", self.do_train),
                                   ("dev_file", "do_eval", self.do_eval),
                                   ("test_file", "do_predict", self.do_predict)):
            if needed and not (getattr(self, flag) or self.data_dir):
                raise ValueError(f"--{flag} or --data_dir is required with --{mode}")
        window = self.max_seq_length - 2
        if self.window_stride is not None and not 1 <= self.window_stride <= window:
            raise ValueError(f"--window_stride must be between 1 and max_seq_length - 2 = "
                             f"{window}, got {self.window_stride}")

    def data_file(self, split: str) -> str:
        """The file of `split` ("train", "dev" or "test"): its flag, else DATA_DIR/<split>.txt."""
        explicit = getattr(self, f"{split}_file")
        path = explicit or os.path.join(self.data_dir, f"{split}.txt")
        if not os.path.isfile(path):
            flag = f"--{split}_file" if explicit else "--data_dir"
            raise FileNotFoundError(f"{path} does not exist ({flag}); expected a CoNLL file: a "
                                    f"token and its tag per line, a blank line between sentences")
        return path


def load_split(settings: NerSettings, split: str, model_scheme: Optional[str] = None):
    """A `bert_tf.data.ner.NerSource` for `split`: the file streamed (never held in memory),
    its scheme detected (or --tag_scheme) and every line checked; `model_scheme` for
    dev/test files, from the training file's for training."""
    from bert_tf.data import ner as ner_data

    path = settings.data_file(split)
    forced = None if settings.tag_scheme == "auto" else settings.tag_scheme
    return ner_data.scan_ner_file(path, settings.tag_column, model_scheme, scheme=forced)


def load_features(settings: NerSettings, source, split: str, tokenizer, label_list, model_files):
    """The windows of `source` (a NerSource), converted chunk by chunk into the feature cache
    in output_dir/feature_cache and memory-mapped (--cache_features, the default), else in
    memory."""
    from bert_tf.data import ner as ner_data

    cache_dir = (os.path.join(settings.output_dir, "feature_cache")
                 if settings.cache_features else None)
    return ner_data.load_ner_features(
        source.path, source.tag_column, source.scheme, source.model_scheme, tokenizer,
        label_list, settings.max_seq_length, stride=settings.window_stride,
        vocab_file=model_files.vocab_file, do_lower_case=model_files.do_lower_case,
        cache_dir=cache_dir, tag=f"ner_{split}")


def _saved_label_list(settings: NerSettings) -> Optional[List[str]]:
    """The label list of an earlier training run: in output_dir, else beside init_checkpoint."""
    from bert_tf import checkpoints

    directories = [settings.output_dir]
    if settings.init_checkpoint:
        directories.append(checkpoints.checkpoint_directory(settings.init_checkpoint))
    for directory in directories:
        labels = finetuning.read_label_list(directory)
        if labels is not None:
            if labels[0] != "O":
                raise ValueError(f"{os.path.join(directory, finetuning.LABEL_LIST_FILE)}: "
                                 f"expected 'O' as the first label")
            return labels
    return None


def token_classification_loss(label_ids, logits):
    """Mean cross-entropy over the positions whose label id is >= 0 (first pieces of words)."""
    import tensorflow as tf

    logits = tf.cast(logits, tf.float32)
    mask = tf.cast(label_ids >= 0, tf.float32)
    safe_labels = tf.maximum(tf.cast(label_ids, tf.int32), 0)
    per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe_labels, logits=logits)
    return tf.reduce_sum(per_token * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def window_order(features):
    """Windows sorted by length (stable): batches of similar lengths need little padding."""
    import numpy as np

    return np.argsort(features.row_lengths, kind="stable")


def predict_windows(predict_fn, features, batch_size, pad_to_multiple_of=8, length_buckets=None):
    """(per-window logits [length, num_labels] in `order`, order) for every window (padding as
    `ner_dataset` says)."""
    from bert_tf.data import ner as ner_data

    order = window_order(features)
    dataset = ner_data.ner_dataset(features, batch_size, is_training=False, order=order,
                                   pad_to_multiple_of=pad_to_multiple_of,
                                   length_buckets=length_buckets)
    per_window = [row for batch in finetuning.predict_batches(predict_fn, dataset)
                  for row in batch]
    return per_window, order


def _mean_window_loss(features, per_window, order):
    """The training loss (cross-entropy over labelled positions) over all windows."""
    import numpy as np

    ends = np.cumsum(features.row_lengths)
    total, count = 0.0, 0
    for logits, w in zip(per_window, order):
        n = features.row_lengths[w]
        labels = features.label_ids[ends[w] - n:ends[w]]
        keep = labels >= 0
        if not keep.any():
            continue
        logits = logits[:n][keep].astype(np.float64)
        shifted = logits - logits.max(axis=-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        total -= log_probs[np.arange(len(logits)), labels[keep]].sum()
        count += int(keep.sum())
    return total / max(count, 1)


def predict_tags(predict_fn, features, label_list, batch_size, pad_to_multiple_of=8,
                 length_buckets=None):
    """(predicted model-scheme tags per sentence, per-window logits, order)."""
    from bert_tf.data import ner as ner_data

    per_window, order = predict_windows(predict_fn, features, batch_size, pad_to_multiple_of,
                                        length_buckets)
    ids = ner_data.word_predictions(features, per_window, order)
    tags = [[label_list[i] for i in sentence] for sentence in ids]
    return tags, per_window, order


def _log_windows(path, features, max_seq_length):
    logging.info("%s: %d sentences, %d windows (%d sentences longer than max_seq_length %d "
                 "split into overlapping windows)", path, features.num_sentences,
                 features.num_windows, features.num_split_sentences, max_seq_length)


def evaluate(ner_file, predicted_tags, eval_loss, global_step):
    """eval_results: conlleval's precision / recall / F1 / accuracy and per-type figures (as
    `eval_<name>`), eval_loss and global_step; logs conlleval's table."""
    from bert_tf import metrics

    truth = [s.tags for s in ner_file.model_sentences()]
    report = metrics.conlleval_report(truth, predicted_tags)
    logging.info("conlleval on %s:\n%s", ner_file.path, metrics.format_conlleval_table(report))
    results = {f"eval_{k}": v for k, v in report.items()}
    results.update(eval_loss=float(eval_loss), global_step=int(global_step))
    return results


def run_ner(settings: NerSettings, strategy=None):
    """Fine-tunes, evaluates, predicts and exports as the settings say; returns a dict:
    {"eval": eval results or None, "global_step": int, "label_list": [...],
     "export_path": path or None, "timings": seconds per phase}.

    As `bert_tf.classifier.run_classifier`: the strategy (default: the current one) and the
    Keras dtype policy are the caller's; the random seed is set from `settings.seed`.
    """
    import keras
    import tensorflow as tf

    from bert_tf.data import ner as ner_data
    from bert_tf.models import BertTokenClassifier
    from bert_tf.tokenization import FullTokenizer

    settings.validate()
    run_start = time.time()
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(settings.seed)
    model_files = finetuning.resolve_model_files(settings)
    tokenizer = FullTokenizer(model_files.vocab_file, do_lower_case=model_files.do_lower_case)

    # Every input file is read and checked before anything is built or written.
    train_file = dev_file = test_file = None
    if settings.do_train:
        train_file = load_split(settings, "train")
        label_list = ner_data.label_list_from(train_file.model_sentences())
        model_scheme = train_file.model_scheme
    else:
        label_list = _saved_label_list(settings)
        if label_list is None:
            raise ValueError(f"no {finetuning.LABEL_LIST_FILE} in --output_dir={settings.output_dir} or "
                             f"beside --init_checkpoint: evaluate/predict-only runs need the "
                             f"labels of a training run (run with --do_train first)")
        model_scheme = ner_data.model_scheme_of_labels(label_list)
    if settings.do_eval:
        dev_file = load_split(settings, "dev", model_scheme)
        ner_data.check_labels(dev_file.model_sentences(), label_list)
    if settings.do_predict:
        test_file = load_split(settings, "test", model_scheme)
        ner_data.check_labels(test_file.model_sentences(), label_list)
    logging.info("Labels (%s scheme): %s", model_scheme, label_list)
    finetuning.check_init_checkpoint(settings, model_files.config, "token_classifier",
                                     len(label_list))
    os.makedirs(settings.output_dir, exist_ok=True)

    with strategy.scope():
        model = BertTokenClassifier(model_files.config, num_labels=len(label_list))

    num_train_steps = train_features = None
    if settings.do_train:
        train_features = load_features(settings, train_file, "train", tokenizer, label_list,
                                       model_files)
        num_train_steps = finetuning.num_train_steps_of(train_features.num_windows, settings)

    def loss_fn(features, outputs):
        return token_classification_loss(features["label_ids"], outputs["logits"])

    run = finetuning.FineTuningRun(strategy, model, settings, loss_fn, num_train_steps)
    timings, train_dataset_fn = {}, None
    if settings.do_train:
        finetuning.copy_model_files(settings.output_dir, model_files)
        finetuning.write_label_list(settings.output_dir, label_list)
        logging.info("***** Running training *****  sentences %d, windows %d (%d sentences "
                     "split), batch %d, steps %d, warmup %d", train_features.num_sentences,
                     train_features.num_windows, train_features.num_split_sentences,
                     settings.train_batch_size, run.num_train_steps, run.num_warmup_steps)

        order = None
        if settings.group_by_length:
            from bert_tf.data.classification import length_grouped_batches

            order = functools.partial(length_grouped_batches, train_features,
                                      settings.train_batch_size, run.num_train_steps,
                                      settings.seed)

        def train_input(input_context):
            return ner_data.ner_dataset(train_features, settings.train_batch_size,
                                        is_training=True, seed=settings.seed, order=order,
                                        pad_to_multiple_of=settings.pad_to_multiple_of,
                                        input_context=input_context,
                                        length_buckets=run.length_buckets)

        train_dataset_fn = train_input
    train_seconds = run.train_or_restore(train_dataset_fn)
    if train_seconds is not None:
        timings["train_seconds"] = train_seconds
    global_step = run.global_step
    predict_fn = run.predict_fn()
    results = None
    if settings.do_eval:
        start = time.time()
        logging.info("***** Running evaluation *****  batch %d", settings.eval_batch_size)
        features = load_features(settings, dev_file, "dev", tokenizer, label_list, model_files)
        _log_windows(dev_file.path, features, settings.max_seq_length)
        tags, per_window, order = predict_tags(predict_fn, features, label_list,
                                               settings.eval_batch_size,
                                               settings.pad_to_multiple_of, run.length_buckets)
        results = evaluate(dev_file, tags, _mean_window_loss(features, per_window, order),
                           global_step)
        del per_window
        finetuning.write_eval_results(settings.output_dir, results)
        ner_data.write_predictions_conll(os.path.join(settings.output_dir, "dev_predictions.txt"),
                                         dev_file.sentences(), dev_file.to_file_scheme(tags))
        timings["eval_seconds"] = time.time() - start

    if settings.do_predict:
        start = time.time()
        logging.info("***** Running prediction *****  batch %d", settings.predict_batch_size)
        features = load_features(settings, test_file, "test", tokenizer, label_list, model_files)
        _log_windows(test_file.path, features, settings.max_seq_length)
        tags, _, _ = predict_tags(predict_fn, features, label_list, settings.predict_batch_size,
                                  settings.pad_to_multiple_of, run.length_buckets)
        ner_data.write_predictions_conll(
            os.path.join(settings.output_dir, "test_predictions.txt"), test_file.sentences(),
            test_file.to_file_scheme(tags))
        timings["predict_seconds"] = time.time() - start

    export_path = None
    if settings.export_dir:
        from bert_tf import export

        export_path = export.export_tagger(settings.export_dir, model, model_files.vocab_file,
                                           model_files.do_lower_case, settings.max_seq_length,
                                           label_list)
        logging.info("Exported a raw-text SavedModel to %s", export_path)
    timings["total_seconds"] = time.time() - run_start
    finetuning.log_timings(timings)
    return {"eval": results, "global_step": global_step, "label_list": label_list,
            "export_path": export_path, "timings": timings}
