"""BERT pretraining (masked LM + next sentence) on pretraining TFRecords: the library behind
run_pretraining.py and the built-in demo.

`run_pretraining(...)` takes the original script's settings as plain arguments, builds the
strategy-scoped BertPretrainer and optimizer, trains with bert_tf.training.Trainer (resuming
from `output_dir`), evaluates, and writes `eval_results.txt` exactly as the original.
"""

import dataclasses
import os
from typing import Optional

from absl import logging

from bert_tf import files

EVAL_RESULTS_FILE = "eval_results.txt"


@dataclasses.dataclass
class PretrainingSettings:
    """The original run_pretraining flags (same names and defaults) plus bert_tf's."""

    bert_config_file: Optional[str] = None
    input_file: Optional[str] = None
    output_dir: Optional[str] = None
    init_checkpoint: Optional[str] = None
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    do_train: bool = False
    do_eval: bool = False
    train_batch_size: int = 32
    eval_batch_size: int = 8
    learning_rate: float = 5e-5
    num_train_steps: int = 100000
    num_warmup_steps: int = 10000
    save_checkpoints_steps: int = 1000
    iterations_per_loop: int = 1000
    max_eval_steps: int = 100
    # bert_tf additions
    optimizer: str = "adamw"
    gradient_accumulation_steps: int = 1
    eval_input_file: Optional[str] = None
    keep_checkpoint_max: int = 5
    seed: int = 12345
    jit_compile: bool = False
    # Load what fits of init_checkpoint and start the rest new (with a warning).
    allow_partial_checkpoint: bool = False

    def validate(self):
        if not self.do_train and not self.do_eval:
            raise ValueError("At least one of `do_train` or `do_eval` must be True.")
        for name in ("bert_config_file", "input_file", "output_dir"):
            if not getattr(self, name):
                raise ValueError(f"--{name} is required")
        if not os.path.isfile(self.bert_config_file):
            raise ValueError(f"--bert_config_file={self.bert_config_file}: no such file")
        positive = ["max_seq_length", "max_predictions_per_seq", "train_batch_size",
                    "eval_batch_size", "save_checkpoints_steps", "iterations_per_loop",
                    "gradient_accumulation_steps", "keep_checkpoint_max"]
        if self.do_train:
            positive.append("num_train_steps")
        if self.do_eval:
            positive.append("max_eval_steps")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}")
        if self.num_warmup_steps < 0:
            raise ValueError(f"--num_warmup_steps must be >= 0, got {self.num_warmup_steps}")
        if self.optimizer not in ("adamw", "lamb"):
            raise ValueError(f"--optimizer={self.optimizer!r}: expected adamw or lamb")
        files.check_output_directory(self.output_dir, "--output_dir")
        files.expand_file_patterns(self.input_file, "--input_file")
        if self.do_eval and self.eval_input_file:
            files.expand_file_patterns(self.eval_input_file, "--eval_input_file")


def pretraining_dataset_fn(input_file, global_batch_size, max_seq_length, max_predictions_per_seq,
                           is_training, seed=None):
    """dataset_fn(input_context) for the Trainer over pretraining TFRecords.

    Training input is shuffled with `seed` (deterministic, so a resumed run can skip to its
    position); eval input is read in order and repeats, as the original.
    """
    from bert_tf.data.pretraining_records import pretraining_dataset

    def dataset_fn(input_context):
        kwargs = dict(is_training=is_training, seed=seed)
        if not is_training:
            kwargs.update(repeat=True, drop_remainder=True)  # the original eval input_fn
        # Files (or records) are sharded per input pipeline; the reader yields each replica's
        # share of the global batch.
        return pretraining_dataset(input_file, global_batch_size, max_seq_length,
                                   max_predictions_per_seq, input_context=input_context, **kwargs)

    return dataset_fn


def build_pretrainer(strategy, bert_config, settings):
    """BertPretrainer + optimizer created under the strategy's scope."""
    from bert_tf import optimization
    from bert_tf.models import BertPretrainer

    with strategy.scope():
        model = BertPretrainer(bert_config)
        optimizer = optimization.create_optimizer(
            settings.learning_rate, settings.num_train_steps, settings.num_warmup_steps,
            optimizer_type=settings.optimizer,
        )
    return model, optimizer


def _name_corrupt_file(input_files, error):
    """A ValueError naming the input file behind TensorFlow's DataLossError (which names none)."""
    from bert_tf.data import pretraining_records

    compression = ["GZIP" if pretraining_records.is_gzip(p) else "" for p in input_files]
    path, found = pretraining_records.find_corrupt_record_file(input_files, compression)
    if path is None:
        return ValueError(f"reading the pretraining TFRecords failed: "
                          f"{pretraining_records.data_loss_text(error)}")
    return ValueError(f"{path}: {pretraining_records.data_loss_text(found)}; the file is "
                      f"damaged, recreate or re-copy it")


def _find_bad_record(input_files, settings):
    """The DataFormatError of the first record of `input_files` that does not parse as a
    pretraining example of the settings' lengths, or None."""
    from bert_tf.data import pretraining_records

    compression = ["GZIP" if pretraining_records.is_gzip(p) else "" for p in input_files]
    return pretraining_records.find_bad_record(input_files, compression, settings.max_seq_length,
                                               settings.max_predictions_per_seq)


def run_pretraining(settings: PretrainingSettings, strategy=None):
    """Trains and/or evaluates as the original run_pretraining.py; returns a result dict.

    The strategy (default: `tf.distribute.get_strategy()`) and the Keras dtype policy must be
    set up by the caller (bert_tf.cli.setup_from_flags does both). Returns
    {"train": last train metrics or None, "train_history": [(step, metrics)] per loop,
     "eval": eval results or None, "checkpoint": newest checkpoint path,
     "eval_results_file": path or None}.
    """
    import tensorflow as tf

    from bert_tf import checkpoints, training
    from bert_tf.config import BertConfig
    from bert_tf.models import PretrainingMetrics, pretraining_loss

    settings.validate()
    strategy = strategy or tf.distribute.get_strategy()
    bert_config = BertConfig.from_json_file(settings.bert_config_file)
    if settings.max_seq_length > bert_config.max_position_embeddings:
        raise ValueError(
            f"Cannot use sequence length {settings.max_seq_length} because the BERT model was "
            f"only trained up to sequence length {bert_config.max_position_embeddings} "
            f"(--max_seq_length vs max_position_embeddings in {settings.bert_config_file})")
    # The validation pass: every input file's framing and first record, before any output.
    from bert_tf.data import pretraining_records

    input_files = []
    for pattern in ([settings.input_file] if settings.do_train else []) + (
            [settings.eval_input_file or settings.input_file] if settings.do_eval else []):
        input_files += pretraining_records.check_record_files(
            pattern, settings.max_seq_length, settings.max_predictions_per_seq,
            vocab_size=bert_config.vocab_size)
    if settings.init_checkpoint:
        # Its names, shapes and data against the config; heads it lacks start new (warned).
        try:
            checkpoints.check_checkpoint(settings.init_checkpoint, bert_config, "pretrainer",
                                         allow_partial=settings.allow_partial_checkpoint)
        except checkpoints.CheckpointMismatchError as error:
            raise checkpoints.CheckpointMismatchError(f"--init_checkpoint: {error}") from error
    tf.io.gfile.makedirs(settings.output_dir)

    model, optimizer = build_pretrainer(strategy, bert_config, settings)
    trainer = training.Trainer(
        strategy, model, optimizer, pretraining_loss, settings.output_dir,
        train_batch_size=settings.train_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        steps_per_loop=settings.iterations_per_loop,
        save_checkpoints_steps=settings.save_checkpoints_steps,
        keep_checkpoint_max=settings.keep_checkpoint_max,
        jit_compile=settings.jit_compile,
    )

    config_copy = os.path.join(settings.output_dir, "bert_config.json")
    if trainer.is_chief and not tf.io.gfile.exists(config_copy):
        bert_config.to_json_file(config_copy)  # lets read_config/load_checkpoint find it

    def load_init_checkpoint():
        if settings.init_checkpoint:
            report = checkpoints.load_checkpoint(model, settings.init_checkpoint,
                                                 allow_partial=settings.allow_partial_checkpoint)
            logging.info("init_checkpoint: %s", report)

    result = {"train": None, "train_history": [], "eval": None, "eval_results_file": None}
    if settings.do_train:
        logging.info("***** Running training *****  batch size %d, %d steps",
                     settings.train_batch_size, settings.num_train_steps)
        dataset_fn = pretraining_dataset_fn(
            settings.input_file, settings.train_batch_size // settings.gradient_accumulation_steps,
            settings.max_seq_length, settings.max_predictions_per_seq, is_training=True,
            seed=settings.seed)
        try:
            result["train"] = trainer.train(dataset_fn, settings.num_train_steps,
                                            init_fn=load_init_checkpoint)
        except tf.errors.DataLossError as error:
            raise _name_corrupt_file(input_files, error) from error
        except tf.errors.InvalidArgumentError as error:
            # A later record that does not parse (the validation pass reads the first of
            # each file): name its file and number instead of TensorFlow's graph error.
            bad = _find_bad_record(input_files, settings)
            if bad is None:
                raise
            raise bad from error
        result["train_history"] = trainer.history
    else:
        if trainer.restore() is None:
            load_init_checkpoint()

    if settings.do_eval:
        logging.info("***** Running evaluation *****  batch size %d, %d steps",
                     settings.eval_batch_size, settings.max_eval_steps)
        if settings.eval_batch_size % strategy.num_replicas_in_sync:
            raise ValueError(f"--eval_batch_size={settings.eval_batch_size} must be divisible "
                             f"by the {strategy.num_replicas_in_sync} replicas")
        eval_fn = pretraining_dataset_fn(
            settings.eval_input_file or settings.input_file, settings.eval_batch_size,
            settings.max_seq_length, settings.max_predictions_per_seq, is_training=False)
        results = trainer.evaluate(eval_fn, settings.max_eval_steps,
                                   metrics_fn=PretrainingMetrics,
                                   batch_size=settings.eval_batch_size)
        result["eval"] = results
        if trainer.is_chief:
            logging.info("***** Eval results *****")
            result["eval_results_file"] = training.write_eval_results(
                os.path.join(settings.output_dir, EVAL_RESULTS_FILE), results)
    result["checkpoint"] = tf.train.latest_checkpoint(settings.output_dir)
    return result
