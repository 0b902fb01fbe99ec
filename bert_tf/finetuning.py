"""What every fine-tuning task shares: the library under run_classifier.py and run_ner.py.

A task (bert_tf.classifier, bert_tf.ner) defines its settings as a subclass of
`FineTuningSettings`, reads its data into features, builds its model, and hands the rest to the
functions here:

* `resolve_model_files`: bert_config.json, vocab.txt and the casing, from the settings or from
  what lies beside `init_checkpoint` (an original release folder, a Hugging Face folder, an
  earlier fine-tuning run's output_dir);
* `FineTuningRun`: the strategy-scoped optimizer and `bert_tf.training.Trainer`, training from
  `init_checkpoint` or resuming from output_dir, restoring for evaluate/predict-only runs, and
  copying the model files so that output_dir is itself a checkpoint a later run can start from;
* `make_predict_fn` / `predict_batches`: batched inference without retracing;
* `write_eval_results`: the original's `eval_results.txt`.

Nothing here reads absl flags: a Python user builds the settings and calls the task's `run_*`
function, exactly as the scripts do.
"""

import dataclasses
import json
import os
import time
from typing import Callable, Dict, List, Optional, Tuple

from absl import logging

from bert_tf import files

EVAL_RESULTS_FILE = "eval_results.txt"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
LABEL_LIST_FILE = "label_list.txt"  # a task's labels, one a line, index = class id


@dataclasses.dataclass
class FineTuningSettings:
    """Settings every fine-tuning task has: the original run_classifier flags' names and
    defaults, plus bert_tf's. `do_lower_case=None` means: what the checkpoint's directory says
    (tokenizer_config.json or the release folder's name), else True."""

    output_dir: Optional[str] = None
    data_dir: Optional[str] = None
    init_checkpoint: Optional[str] = None
    bert_config_file: Optional[str] = None
    vocab_file: Optional[str] = None
    do_lower_case: Optional[bool] = None
    max_seq_length: int = 128
    do_train: bool = False
    do_eval: bool = False
    do_predict: bool = False
    train_batch_size: int = 32
    eval_batch_size: int = 8
    predict_batch_size: int = 8
    learning_rate: float = 5e-5
    num_train_epochs: float = 3.0
    warmup_proportion: float = 0.1
    save_checkpoints_steps: int = 1000
    iterations_per_loop: int = 1000
    # bert_tf additions
    export_dir: Optional[str] = None
    cache_features: bool = True
    pad_to_multiple_of: int = 8
    seed: int = 12345
    jit_compile: bool = False
    export_only: bool = False
    # Load what fits of init_checkpoint and start the rest new (with a warning) instead of
    # failing on missing, mis-shaped or unreadable variables.
    allow_partial_checkpoint: bool = False

    def validate(self):
        """Raises ValueError naming the setting (as its flag) that is wrong. Checks the
        settings and the output paths (no input file is read here)."""
        if not self.output_dir:
            raise ValueError("--output_dir is required")
        if self.export_only:
            if not self.export_dir:
                raise ValueError("--export_only needs --export_dir")
            if self.do_train or self.do_eval or self.do_predict:
                raise ValueError("--export_only exports OUTPUT_DIR's checkpoint; it does not go "
                                 "with --do_train, --do_eval or --do_predict")
        elif not (self.do_train or self.do_eval or self.do_predict):
            raise ValueError("At least one of --do_train, --do_eval or --do_predict must be True "
                             "(or --export_only with --export_dir).")
        model_dir = self.init_checkpoint or _finished_run(self.output_dir)
        if not model_dir and not self.bert_config_file:
            raise ValueError("--bert_config_file is required when --init_checkpoint is not given "
                             "(and --output_dir holds no bert_config.json of an earlier run)")
        if not model_dir and not self.vocab_file:
            raise ValueError("--vocab_file is required when --init_checkpoint is not given "
                             "(and --output_dir holds no vocab.txt of an earlier run)")
        files.check_output_directory(self.output_dir, "--output_dir")
        if self.export_dir:
            files.check_output_directory(self.export_dir, "--export_dir")
        for name in ("max_seq_length", "train_batch_size", "eval_batch_size",
                     "predict_batch_size", "save_checkpoints_steps", "iterations_per_loop"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}")
        if self.max_seq_length < 3:
            raise ValueError(f"--max_seq_length must be at least 3, got {self.max_seq_length}")
        if self.do_train and self.num_train_epochs <= 0:
            raise ValueError(f"--num_train_epochs must be positive, got {self.num_train_epochs}")
        if not 0 <= self.warmup_proportion <= 1:
            raise ValueError(f"--warmup_proportion must be in [0, 1], got {self.warmup_proportion}")
        if self.learning_rate <= 0:
            raise ValueError(f"--learning_rate must be positive, got {self.learning_rate}")


def _finished_run(output_dir):
    """`output_dir` when an earlier run left its model files there (bert_config.json and
    vocab.txt), else None: it then stands in for --init_checkpoint's directory."""
    if output_dir and all(os.path.isfile(os.path.join(output_dir, name))
                          for name in ("bert_config.json", "vocab.txt")):
        return output_dir
    return None


@dataclasses.dataclass
class ModelFiles:
    """The model description a fine-tuning run starts from."""

    config: "object"  # bert_tf.config.BertConfig
    vocab_file: str
    do_lower_case: bool


def resolve_model_files(settings: FineTuningSettings) -> ModelFiles:
    """The settings' bert_config_file / vocab_file / do_lower_case, each falling back to what
    lies beside `init_checkpoint` (or, without one, in output_dir from an earlier run); the
    casing is checked against a published release's name, the vocabulary against the config's
    vocab_size and max_seq_length against max_position_embeddings."""
    from bert_tf import checkpoints
    from bert_tf.config import BertConfig
    from bert_tf.tokenization import load_vocab, validate_case_matches_checkpoint

    ckpt = settings.init_checkpoint
    model_dir = ckpt or _finished_run(settings.output_dir)
    if settings.bert_config_file:
        config, config_source = (BertConfig.from_json_file(settings.bert_config_file),
                                 settings.bert_config_file)
    elif model_dir:
        config, config_source = checkpoints.read_config(model_dir), model_dir
    else:
        raise ValueError("--bert_config_file is required when --init_checkpoint is not given")
    found_vocab, found_case = (checkpoints.find_vocab_and_casing(model_dir) if model_dir
                               else (None, None))
    vocab_file = settings.vocab_file or found_vocab
    if not vocab_file:
        raise ValueError(f"--vocab_file is required: no vocab.txt found next to "
                         f"--init_checkpoint={ckpt}")
    do_lower_case = settings.do_lower_case
    if do_lower_case is None:
        do_lower_case = True if found_case is None else found_case
    if ckpt:
        validate_case_matches_checkpoint(do_lower_case, ckpt)
    vocab_size = max(load_vocab(vocab_file).values(), default=-1) + 1  # ids are line numbers
    if vocab_size > config.vocab_size:
        raise ValueError(f"{vocab_file}: {vocab_size} tokens, but the model's vocab_size is "
                         f"{config.vocab_size} ({config_source}); ids past it have no "
                         f"embedding. Use the vocab.txt the model was trained with")
    if settings.max_seq_length > config.max_position_embeddings:
        raise ValueError(f"--max_seq_length={settings.max_seq_length} exceeds the model's "
                         f"max_position_embeddings={config.max_position_embeddings} "
                         f"({config_source})")
    return ModelFiles(config=config, vocab_file=vocab_file, do_lower_case=bool(do_lower_case))


def check_init_checkpoint(settings: FineTuningSettings, config, kind: str, num_labels: int,
                          pooling: str = "pooler"):
    """The validation pass for `init_checkpoint`: its variables' names, shapes and data against
    the model that `config` and the task will build (`kind`: classifier or token_classifier),
    before any output is written. Raises CheckpointMismatchError naming every problem and the
    file (a warning with `allow_partial_checkpoint`, logged when the weights load)."""
    if not settings.init_checkpoint or settings.export_only:
        return None
    from bert_tf import checkpoints

    try:
        return checkpoints.check_checkpoint(settings.init_checkpoint, config, kind,
                                            num_labels=num_labels, pooling=pooling,
                                            allow_partial=settings.allow_partial_checkpoint)
    except checkpoints.CheckpointMismatchError as error:
        raise checkpoints.CheckpointMismatchError(f"--init_checkpoint: {error}") from error


def copy_model_files(output_dir: str, model_files: ModelFiles):
    """bert_config.json, vocab.txt and the casing (tokenizer_config.json) beside the fine-tuned
    checkpoints, so that output_dir itself works as an --init_checkpoint later."""
    model_files.config.to_json_file(os.path.join(output_dir, "bert_config.json"))
    files.atomic_copy(model_files.vocab_file, os.path.join(output_dir, "vocab.txt"))
    files.atomic_write(os.path.join(output_dir, TOKENIZER_CONFIG_FILE),
                       json.dumps({"do_lower_case": model_files.do_lower_case}) + "\n")


def write_label_list(output_dir: str, labels: List[str]) -> str:
    """OUTPUT_DIR/label_list.txt, so evaluate/predict/export runs know the classes."""
    return files.atomic_write(os.path.join(output_dir, LABEL_LIST_FILE),
                              "".join(f"{label}\n" for label in labels))


def read_label_list(directory: str) -> Optional[List[str]]:
    """The labels a training run wrote to `directory`, or None when it has no label_list.txt."""
    path = os.path.join(directory, LABEL_LIST_FILE)
    if not os.path.isfile(path):
        return None
    labels = [line.rstrip("\r\n") for line in files.read_text(path).splitlines()]
    labels = [label for label in labels if label]
    if not labels:
        raise ValueError(f"{path}: no labels; expected one label a line")
    return labels


def num_train_steps_of(num_examples: int, settings: FineTuningSettings) -> int:
    """The original's int(examples / batch * epochs); ValueError when that is 0."""
    steps = int(num_examples / settings.train_batch_size * settings.num_train_epochs)
    if steps < 1:
        raise ValueError(f"{num_examples} training examples, batch {settings.train_batch_size} "
                         f"and {settings.num_train_epochs} epochs give 0 training steps")
    return steps


class FineTuningRun:
    """The optimizer and Trainer of one fine-tuning run, created under `strategy`'s scope.

    `model` must have been built under the same scope. `loss_fn(features, outputs)` returns the
    scalar training loss. With `num_train_steps` None (no training), the optimizer is created
    for one step, as the original does for evaluate/predict-only runs.
    """

    def __init__(self, strategy, model, settings: FineTuningSettings, loss_fn: Callable,
                 num_train_steps: Optional[int] = None):
        from bert_tf import optimization, training

        self.strategy = strategy
        self.model = model
        self.settings = settings
        self.num_train_steps = num_train_steps or 1
        self.num_warmup_steps = int(self.num_train_steps * settings.warmup_proportion)
        with strategy.scope():
            optimizer = optimization.create_optimizer(settings.learning_rate, self.num_train_steps,
                                                      self.num_warmup_steps)
        self.trainer = training.Trainer(
            strategy, model, optimizer, loss_fn, model_dir=settings.output_dir,
            train_batch_size=settings.train_batch_size,
            steps_per_loop=min(settings.iterations_per_loop, 100),
            save_checkpoints_steps=settings.save_checkpoints_steps,
            jit_compile=settings.jit_compile)

    def load_init_checkpoint(self):
        """Loads `init_checkpoint`'s weights (the task's new head stays initialised)."""
        if not self.settings.init_checkpoint:
            return
        from bert_tf import checkpoints

        report = checkpoints.load_checkpoint(self.model, self.settings.init_checkpoint,
                                             allow_partial=self.settings.allow_partial_checkpoint)
        logging.info("init_checkpoint %s: %d variables loaded; start from their initial values "
                     "(not in the checkpoint): %s", self.settings.init_checkpoint,
                     len(report.loaded), report.new)

    def train_or_restore(self, train_dataset_fn=None) -> Optional[float]:
        """With `train_dataset_fn` (do_train): trains to num_train_steps, resuming from
        output_dir, and returns the seconds taken. Without: restores output_dir's newest
        checkpoint (which --export_only requires), else loads init_checkpoint; returns None."""
        if train_dataset_fn is None:
            if self.trainer.restore() is None:
                if self.settings.export_only:
                    raise ValueError(f"--export_only: no checkpoint in --output_dir="
                                     f"{self.settings.output_dir} to export (train there first)")
                self.load_init_checkpoint()
            return None
        start = time.time()
        self.trainer.train(train_dataset_fn, self.num_train_steps,
                           init_fn=self.load_init_checkpoint)
        return time.time() - start

    def predict_fn(self):
        """`make_predict_fn` for this run's model."""
        import tensorflow as tf

        # Frozen constants live on one device: not under a TPU strategy.
        return make_predict_fn(self.model, jit_compile=self.settings.jit_compile,
                               freeze_after=None if isinstance(self.strategy, tf.distribute.TPUStrategy)
                               else FREEZE_AFTER_CALLS)

    @property
    def length_buckets(self) -> Optional[Tuple[int, ...]]:
        """`sequence_length_buckets` of this run's settings and strategy."""
        return sequence_length_buckets(self.settings, self.strategy)

    @property
    def global_step(self) -> int:
        return self.trainer.global_step


def sequence_length_buckets(settings: FineTuningSettings, strategy) -> Optional[Tuple[int, ...]]:
    """The lengths batches are padded to (`bert_tf.data.batching`): under a TPU strategy only
    max_seq_length (TPUs need static shapes), with `jit_compile` the few
    `static_length_buckets` (XLA compiles one program per shape), else None: each batch to
    its own longest sequence, the least work on CPUs and GPUs."""
    import tensorflow as tf

    from bert_tf.data import batching

    if isinstance(strategy, tf.distribute.TPUStrategy):
        return (settings.max_seq_length,)
    if settings.jit_compile:
        return batching.static_length_buckets(settings.max_seq_length)
    return None


# Freezing costs a fixed ~10 CPU s (small model: conversion + grappler's first pass over the
# constants) and then saves ~0.3 CPU s per batch of 8 x 128 in bfloat16 (measured, see
# benchmarks/README.md): worth it only for a long run of batches.
FREEZE_AFTER_CALLS = 64


def make_predict_fn(model, jit_compile: bool = False,
                    freeze_after: Optional[int] = FREEZE_AFTER_CALLS):
    """A function inputs -> float32 `logits` that does not retrace for new batch shapes.

    `freeze_after` (bfloat16 compute only, not with jit_compile; None: never): after that
    many calls the model's weights are frozen into graph constants
    (bert_tf.inference.FrozenFunction), about twice as fast in bfloat16 on CPU; in float32 it
    measured no faster (within ±5%), so float32 models are never frozen. The frozen function
    is a snapshot of the weights at that call: build and use it after training. Short float32
    calls of small models run XLA-compiled (bert_tf.inference.execution_for: measured faster
    for them), unless jit_compile already compiles every call."""
    import tensorflow as tf

    from bert_tf import inference

    spec = {name: tf.TensorSpec([None, None], tf.int32, name=name)
            for name in ("input_ids", "input_mask", "segment_ids")}

    def logits(inputs):
        return tf.cast(model(inputs, training=False)["logits"], tf.float32)

    plain = tf.function(logits, input_signature=[spec], jit_compile=jit_compile)
    if not jit_compile and inference.execution_for(model, inference.XLA_MAX_TOKENS) == "xla":
        xla = tf.function(logits, input_signature=[spec], jit_compile=True)

        def dispatch(inputs):
            short = inference.input_tokens(inputs) <= inference.XLA_MAX_TOKENS
            return (xla if short else plain)(inputs)

        return dispatch
    if freeze_after is None or jit_compile or model.dtype_policy.compute_dtype != "bfloat16":
        return plain

    state = {"calls": 0, "frozen": None}

    def predict(inputs):
        if state["frozen"] is None and state["calls"] >= freeze_after:
            state["frozen"] = inference.FrozenFunction(logits, spec)
        state["calls"] += 1
        return (state["frozen"] or plain)(inputs)

    predict.is_frozen = lambda: state["frozen"] is not None
    return predict


MODEL_INPUTS = ("input_ids", "input_mask", "segment_ids")


def predict_batches(predict_fn, dataset) -> List:
    """The predict_fn's NumPy output for every batch of `dataset`, in order."""
    return [predict_fn({k: batch[k] for k in MODEL_INPUTS}).numpy() for batch in dataset]


def write_eval_results(output_dir: str, results: Dict[str, float]) -> str:
    """output_dir/eval_results.txt as the original writes it (sorted `key = value` lines)."""
    from bert_tf import training

    return training.write_eval_results(os.path.join(output_dir, EVAL_RESULTS_FILE), results)


def log_timings(timings: Dict[str, float]):
    logging.info("Timings: %s", ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
