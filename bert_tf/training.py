"""A task-agnostic custom training loop around `strategy.run`, used by every bert_tf script.

Why not `keras.Model.fit`: it does not work with MultiWorkerMirroredStrategy
(keras-team/keras#20585) nor with `steps_per_execution` under MirroredStrategy, and Keras'
built-in gradient accumulation fails under strategies. This loop gives, on every strategy:

* the global batch split across replicas (`train_batch_size` = examples of ONE optimizer
  update, summed over replicas and gradient-accumulation micro-batches; steps count updates);
* gradient accumulation in per-replica accumulators, one cross-replica sum per update;
* float16 dynamic loss scaling (×2 after 2000 finite updates, ÷2 and skip on overflow);
  a skipped update does not advance `global_step` (nor the learning-rate schedule), as in
  NVIDIA's float16 BERT; its micro-batches are consumed all the same; bfloat16 needs none;
* `steps_per_loop` steps per `tf.function` call (the original's iterations_per_loop);
* optional XLA (`jit_compile`) for the forward/backward computation;
* checkpoints every `save_checkpoints_steps` (tf.train.CheckpointManager, keep
  `keep_checkpoint_max`) with the model, optimizer slots, global step, loss scale and the
  dropout RNG states; a new run in the same `model_dir` resumes from the newest one;
* TensorBoard summaries under `model_dir/train` and `model_dir/eval`, progress lines with
  step, loss, examples/s and ETA through absl logging;
* an evaluation loop with running means over all batches.

Resume semantics: distributed iterators cannot be checkpointed, so the input must be
deterministic (seeded shuffles, deterministic interleave) and the loop re-creates it and skips
the micro-batches already consumed ((global_step + float16 updates skipped for overflow) ×
gradient_accumulation_steps per replica; the skipped count is checkpointed with the loss scale).
With that, a killed run restarted with the same command ends with the same weights as one
that was never interrupted.

Usage::

    strategy = bert_tf.distribution.get_strategy(...)
    with strategy.scope():
        model = BertPretrainer(config)
        optimizer = create_optimizer(lr, num_train_steps, num_warmup_steps)
    trainer = Trainer(strategy, model, optimizer, loss_fn=pretraining_loss,
                      model_dir="out", train_batch_size=32)
    trainer.train(dataset_fn, num_train_steps)          # dataset_fn(input_context) -> tf.data
    results = trainer.evaluate(eval_dataset_fn, steps=100, metrics_fn=...)

`loss_fn(features, outputs)` returns a scalar loss, a dict with a "loss" entry (the others are
logged as metrics), or a `(loss, metrics_dict)` pair. `dataset_fn(input_context)` returns a
dataset of per-replica batches of `input_context.get_per_replica_batch_size(global_batch)`
examples, where global_batch is `train_batch_size // gradient_accumulation_steps` for training.
"""

import math
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from bert_tf import distribution, files

LOSS_SCALE_INITIAL = 2.0**15
LOSS_SCALE_GROWTH_STEPS = 2000
# float16 updates skipped in a row after which training stops if the loss scale has reached its
# floor of 1 (15 halvings from the initial 2**15): the gradient itself is not finite.
MAX_SKIPPED_IN_A_ROW = 64
_SCALAR_METADATA = tf.compat.v1.SummaryMetadata(  # the proto, exported under compat.v1
    plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="scalars")
).SerializeToString()


def _normalize_loss_output(result):
    """loss_fn result -> dict with "loss" first, all float32 scalars."""
    if isinstance(result, dict):
        if "loss" not in result:
            raise ValueError(f"loss_fn returned a dict without 'loss': {sorted(result)}")
        metrics = dict(result)
    elif isinstance(result, (tuple, list)) and len(result) == 2:
        loss, extra = result
        metrics = {"loss": loss, **dict(extra or {})}
    else:
        metrics = {"loss": result}
    return {name: tf.cast(value, tf.float32) for name, value in metrics.items()}


class _TrainingState(tf.Module):
    """State the loop needs besides model and optimizer: loss scale, dropout RNG states."""

    def __init__(self, rng_states, use_loss_scale):
        super().__init__(name="training_state")
        self.rng_states = list(rng_states)
        if use_loss_scale:
            self.loss_scale = tf.Variable(
                LOSS_SCALE_INITIAL, dtype=tf.float32, trainable=False, name="loss_scale",
                aggregation=tf.VariableAggregation.NONE,
            )
            self.loss_scale_good_steps = tf.Variable(
                0, dtype=tf.int64, trainable=False, name="loss_scale_good_steps",
                aggregation=tf.VariableAggregation.NONE,
            )
            # Updates skipped for overflow: they consumed input but did not advance the step.
            self.skipped_steps = tf.Variable(
                0, dtype=tf.int64, trainable=False, name="skipped_steps",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )


class Trainer:
    """Custom training / evaluation loop; see the module docstring."""

    def __init__(
        self,
        strategy,
        model,
        optimizer,
        loss_fn,
        model_dir,
        train_batch_size,
        gradient_accumulation_steps=1,
        steps_per_loop=100,
        save_checkpoints_steps=1000,
        keep_checkpoint_max=5,
        jit_compile=False,
        loss_scaling=None,
        loss_scale_growth_steps=LOSS_SCALE_GROWTH_STEPS,
    ):
        """Args:
          strategy: the tf.distribute strategy the model and optimizer were created under.
          model: a built Keras model taking the feature dict (extra keys are fine).
          optimizer: a bert_tf.optimization optimizer (AdamWeightDecay / Lamb).
          loss_fn: (features, outputs) -> loss | dict with "loss" | (loss, metrics).
          model_dir: checkpoints, summaries (created; a checkpoint there is resumed).
          train_batch_size: global examples per optimizer update.
          gradient_accumulation_steps: micro-batches per update (divides train_batch_size).
          steps_per_loop: updates per tf.function call, between progress lines.
          save_checkpoints_steps: checkpoint every this many updates (and at the end).
          keep_checkpoint_max: checkpoints kept.
          jit_compile: XLA for the forward/backward pass.
          loss_scaling: None = dynamic loss scaling iff the Keras global policy computes in
            float16; True/False to force.
          loss_scale_growth_steps: finite updates in a row after which the loss scale doubles.
        """
        self.strategy = strategy
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.model_dir = model_dir
        self.train_batch_size = int(train_batch_size)
        self.accumulation_steps = int(gradient_accumulation_steps)
        self.steps_per_loop = max(1, int(steps_per_loop))
        self.save_checkpoints_steps = max(1, int(save_checkpoints_steps))
        self.keep_checkpoint_max = keep_checkpoint_max
        self.jit_compile = bool(jit_compile)
        if self.accumulation_steps < 1:
            raise ValueError(f"gradient_accumulation_steps must be >= 1, got {gradient_accumulation_steps}")
        replicas = strategy.num_replicas_in_sync
        if self.train_batch_size % (self.accumulation_steps * replicas):
            raise ValueError(
                f"train_batch_size={train_batch_size} must be divisible by "
                f"gradient_accumulation_steps ({self.accumulation_steps}) x replicas "
                f"({replicas})"
            )
        self.micro_batch_size = self.train_batch_size // self.accumulation_steps
        if loss_scaling is None:
            loss_scaling = keras.mixed_precision.dtype_policy().compute_dtype == "float16"
        self.loss_scaling = bool(loss_scaling)
        self.loss_scale_growth_steps = int(loss_scale_growth_steps)
        if self.loss_scale_growth_steps < 1:
            raise ValueError(f"loss_scale_growth_steps must be >= 1, got {loss_scale_growth_steps}")
        self.is_chief = distribution.is_chief(strategy)

        if not model.trainable_variables:
            raise ValueError("Trainer needs a built model (its variables must exist)")
        self._trainable = list(model.trainable_variables)
        weight_ids = {id(v) for v in model.weights}
        rng_states = [v for v in model.variables if id(v) not in weight_ids]
        with strategy.scope():
            optimizer.build(self._trainable)
            self.state = _TrainingState(rng_states, self.loss_scaling)
            self._accumulators = []
            if self.accumulation_steps > 1:
                for variable in self._trainable:
                    tf_var = variable.value if isinstance(variable, keras.Variable) else variable
                    with strategy.extended.colocate_vars_with(tf_var):
                        self._accumulators.append(
                            tf.Variable(
                                tf.zeros(variable.shape, variable.dtype),
                                trainable=False,
                                synchronization=tf.VariableSynchronization.ON_READ,
                                aggregation=tf.VariableAggregation.SUM,
                                name="grad_accumulator",
                            )
                        )
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=optimizer, training_state=self.state
        )
        self._manager = None
        self._train_loop_fn = None
        self._eval_loop_fn = None
        self._forward_backward_fn = None
        self._writers = {}
        # (global_step, metrics dict) after every training loop of this process.
        self.history = []

    # ------------------------------------------------------------------ checkpoints

    @property
    def global_step(self):
        return int(self.optimizer.iterations.numpy())

    @property
    def skipped_steps(self):
        """float16 updates skipped for overflow (not counted in global_step)."""
        return int(self.state.skipped_steps.numpy()) if self.loss_scaling else 0

    def _checkpoint_dir(self):
        if self.is_chief:
            return self.model_dir
        # Non-chief workers must take part in saving (collectives) but write elsewhere.
        task_id = getattr(getattr(self.strategy, "cluster_resolver", None), "task_id", 0)
        return os.path.join(self.model_dir, f".worker_{task_id}_tmp")

    @property
    def checkpoint_manager(self):
        if self._manager is None:
            self._manager = tf.train.CheckpointManager(
                self.checkpoint,
                directory=self._checkpoint_dir(),
                max_to_keep=self.keep_checkpoint_max,
                step_counter=self.optimizer.iterations,
            )
        return self._manager

    def restore(self):
        """Restores the newest checkpoint of model_dir; returns its path or None."""
        latest = tf.train.latest_checkpoint(self.model_dir)
        if latest is None:
            return None
        status = self.checkpoint.restore(latest)
        if self.loss_scaling and not tf.train.load_checkpoint(latest).has_tensor(
                "training_state/skipped_steps/.ATTRIBUTES/VARIABLE_VALUE"):
            # Written before skipped updates were counted (they advanced global_step then).
            status.assert_nontrivial_match()
        else:
            status.assert_existing_objects_matched()
        logging.info("Restored %s (global_step %d)", latest, self.global_step)
        return latest

    def save(self):
        path = self.checkpoint_manager.save(checkpoint_number=self.optimizer.iterations)
        if not self.is_chief:
            shutil.rmtree(self._checkpoint_dir(), ignore_errors=True)
            return None
        _flush_checkpoint(path)
        logging.info("Saved checkpoint %s", path)
        return path

    # ------------------------------------------------------------------ summaries

    def _writer(self, name):
        if name not in self._writers:
            if self.is_chief and self.model_dir:
                self._writers[name] = tf.summary.create_file_writer(
                    os.path.join(self.model_dir, name)
                )
            else:
                self._writers[name] = tf.summary.create_noop_writer()
        return self._writers[name]

    def _write_summaries(self, name, values, step):
        writer = self._writer(name)
        with writer.as_default(step=step):
            for key, value in values.items():
                # tf.summary.scalar lives in the tensorboard package, which is not a
                # dependency; this writes the identical event (scalars plugin, float32).
                tf.summary.write(
                    key, tf.constant(value, tf.float32), metadata=_SCALAR_METADATA
                )
        writer.flush()

    # ------------------------------------------------------------------ replica functions

    def _loss_scale(self):
        return self.state.loss_scale if self.loss_scaling else None

    def _forward_backward(self, features):
        with tf.GradientTape() as tape:
            outputs = self.model(features, training=True)
            metrics = _normalize_loss_output(self.loss_fn(features, outputs))
            # Replica's share of the mean over replicas and accumulation micro-batches.
            loss = metrics["loss"] / float(
                self.strategy.num_replicas_in_sync * self.accumulation_steps
            )
            if self.loss_scaling:
                loss = loss * self.state.loss_scale
        grads = tape.gradient(loss, self._trainable)
        grads = [None if g is None else tf.convert_to_tensor(g) for g in grads]
        return grads, metrics

    def _get_forward_backward(self):
        if self._forward_backward_fn is None:
            fn = self._forward_backward
            if self.jit_compile:
                fn = tf.function(fn, jit_compile=True)
            self._forward_backward_fn = fn
        return self._forward_backward_fn

    def _replica_accumulate(self, features):
        grads, metrics = self._get_forward_backward()(features)
        for accumulator, grad in zip(self._accumulators, grads):
            if grad is not None:
                accumulator.assign_add(grad)
        return metrics

    def _replica_apply(self, features):
        grads, metrics = self._get_forward_backward()(features)
        if self._accumulators:
            summed = []
            for accumulator, grad in zip(self._accumulators, grads):
                total = accumulator.read_value()
                summed.append(total if grad is None else total + grad)
            with tf.control_dependencies(summed):
                for accumulator in self._accumulators:
                    accumulator.assign(tf.zeros_like(accumulator))
            grads = summed
        pairs = [(g, v) for g, v in zip(grads, self._trainable) if g is not None]
        grads = [g for g, _ in pairs]
        variables = [v for _, v in pairs]
        context = tf.distribute.get_replica_context()
        if context.num_replicas_in_sync > 1:
            grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        should_apply = None
        if self.loss_scaling:
            scale = self.state.loss_scale.read_value()
            grads = [g / scale for g in grads]
            should_apply = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        learning_rate = self.optimizer.apply_gradients(
            zip(grads, variables), all_reduce=False, should_apply=should_apply
        )
        if self.loss_scaling:
            self._update_loss_scale(should_apply)
            metrics["loss_scale"] = self.state.loss_scale.read_value()
        metrics["learning_rate"] = tf.cast(learning_rate, tf.float32)
        return metrics

    def _update_loss_scale(self, finite):
        good = self.state.loss_scale_good_steps.read_value()
        scale = self.state.loss_scale.read_value()
        grow = tf.logical_and(finite, good + 1 >= self.loss_scale_growth_steps)
        new_scale = tf.where(
            finite, tf.where(grow, scale * 2.0, scale), tf.maximum(scale / 2.0, 1.0)
        )
        new_good = tf.where(tf.logical_and(finite, tf.logical_not(grow)), good + 1, 0)
        self.state.loss_scale.assign(new_scale)
        self.state.loss_scale_good_steps.assign(new_good)
        self.state.skipped_steps.assign_add(1 - tf.cast(finite, tf.int64))

    # ------------------------------------------------------------------ cross-replica steps

    def _reduce_mean(self, per_replica):
        return {
            k: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
            for k, v in per_replica.items()
        }

    def _train_step(self, iterator):
        """One optimizer update (accumulation micro-batches included); mean metrics."""
        sums = None
        if self.accumulation_steps > 1:
            sums = {k: tf.zeros((), tf.float32) for k in self._loss_names}
            for _ in tf.range(self.accumulation_steps - 1):
                metrics = self._reduce_mean(
                    self.strategy.run(self._replica_accumulate, args=(next(iterator),))
                )
                sums = {k: sums[k] + metrics[k] for k in sums}
        metrics = self._reduce_mean(self.strategy.run(self._replica_apply, args=(next(iterator),)))
        if sums is not None:
            for k in sums:
                metrics[k] = (sums[k] + metrics[k]) / float(self.accumulation_steps)
        return metrics

    def _make_train_loop(self):
        @tf.function
        def train_loop(iterator, num_steps):
            sums = {k: tf.zeros((), tf.float32) for k in self._train_metric_names}
            for _ in tf.range(num_steps):
                metrics = self._train_step(iterator)
                sums = {k: sums[k] + metrics[k] for k in sums}
            count = tf.cast(num_steps, tf.float32)
            means = {k: v / count for k, v in sums.items()}
            # The rate and loss scale are reported as of the last update, not averaged.
            means["learning_rate"] = self.optimizer.current_learning_rate(
                tf.maximum(self.optimizer.iterations - 1, 0)
            )
            if self.loss_scaling:
                means["loss_scale"] = tf.identity(self.state.loss_scale)
            return means

        return train_loop

    def _probe_loss_names(self, element_spec):
        """Names returned by loss_fn, found by tracing the forward pass (nothing runs)."""

        @tf.function
        def probe(features):
            outputs = self.model(features, training=False)
            return _normalize_loss_output(self.loss_fn(features, outputs))

        return list(probe.get_concrete_function(element_spec).structured_outputs)

    # ------------------------------------------------------------------ datasets

    def _distribute(self, dataset_fn, global_batch_size, skip_steps=0, micro_batches_per_step=1):
        def fn(input_context):
            dataset = dataset_fn(input_context)
            if skip_steps:
                per_pipeline = input_context.num_replicas_in_sync // input_context.num_input_pipelines
                dataset = dataset.skip(skip_steps * micro_batches_per_step * per_pipeline)
            return dataset

        return self.strategy.distribute_datasets_from_function(fn)

    def _local_element_spec(self, dataset_fn, global_batch_size):
        context = tf.distribute.InputContext(
            num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=1
        )
        return dataset_fn(context).element_spec

    # ------------------------------------------------------------------ public API

    def train(self, dataset_fn, num_train_steps, init_fn=None):
        """Trains until global_step == num_train_steps, resuming from model_dir if possible.

        Args:
          dataset_fn: input_context -> deterministic, repeating dataset of per-replica
            micro-batches (`input_context.get_per_replica_batch_size(micro_batch_size)`).
          num_train_steps: optimizer updates in total (including those already done).
          init_fn: called when no checkpoint was restored (e.g. load an init_checkpoint).

        Returns the metrics of the last loop (dict of floats), {} if nothing was left to do.
        """
        if self.model_dir:
            os.makedirs(self.model_dir, exist_ok=True)
        restored = self.restore() if self.model_dir else None
        if restored is None and init_fn is not None:
            init_fn()
        start = self.global_step
        skipped = self.skipped_steps
        if start >= num_train_steps:
            logging.info("global_step %d >= num_train_steps %d: nothing to train", start, num_train_steps)
            return {}
        element_spec = self._local_element_spec(dataset_fn, self.micro_batch_size)
        batch_dim = tf.nest.flatten(element_spec)[0].shape[0]
        if batch_dim is not None and batch_dim != self.micro_batch_size:
            raise ValueError(
                f"dataset_fn yields batches of {batch_dim} examples for one replica; expected "
                f"input_context.get_per_replica_batch_size({self.micro_batch_size}) "
                f"(train_batch_size {self.train_batch_size} / gradient_accumulation_steps "
                f"{self.accumulation_steps})"
            )
        self._loss_names = self._probe_loss_names(element_spec)
        self._train_metric_names = list(self._loss_names)
        dataset = self._distribute(
            dataset_fn, self.micro_batch_size, skip_steps=start + skipped,
            micro_batches_per_step=self.accumulation_steps,
        )
        iterator = iter(dataset)
        if self._train_loop_fn is None:
            self._train_loop_fn = self._make_train_loop()
        logging.info(
            "Training from step %d to %d: global batch %d (%d replica(s) x %d example(s) x %d "
            "accumulation step(s)), %s",
            start, num_train_steps, self.train_batch_size, self.strategy.num_replicas_in_sync,
            self.micro_batch_size // self.strategy.num_replicas_in_sync,
            self.accumulation_steps,
            "float16 dynamic loss scaling" if self.loss_scaling else
            keras.mixed_precision.dtype_policy().name,
        )
        step = start
        skipped_in_a_row = 0
        first_loop = True
        metrics = {}
        run_start = time.time()
        run_start_step = start
        while step < num_train_steps:
            next_checkpoint = (step // self.save_checkpoints_steps + 1) * self.save_checkpoints_steps
            num_steps = min(self.steps_per_loop, num_train_steps - step, next_checkpoint - step)
            loop_start = time.time()
            result = self._train_loop_fn(iterator, tf.constant(num_steps, tf.int32))
            metrics = {k: float(v) for k, v in result.items()}
            elapsed = time.time() - loop_start
            previous_step, step = step, self.global_step
            if self.loss_scaling and self.skipped_steps > skipped:
                logging.info("%d float16 update(s) skipped for overflow (gradient not finite; "
                             "loss scale now %g): global_step stays at %d, %d skipped in all",
                             self.skipped_steps - skipped, metrics["loss_scale"], step,
                             self.skipped_steps)
                skipped = self.skipped_steps
            skipped_in_a_row = skipped_in_a_row + num_steps if step == previous_step else 0
            if skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW and metrics["loss_scale"] <= 1.0:
                raise FloatingPointError(
                    f"{skipped_in_a_row} float16 updates in a row skipped at global_step "
                    f"{step}: the gradient is not finite even at loss scale "
                    f"{metrics['loss_scale']:g} (the model diverged; lower the learning "
                    f"rate, or train in float32 or bfloat16)")
            if not all(math.isfinite(metrics[k]) for k in self._loss_names):
                logging.warning("non-finite loss at step %d: %s", step, metrics)
            examples_per_second = num_steps * self.train_batch_size / max(elapsed, 1e-9)
            if first_loop:  # includes tracing; do not let it dominate the ETA
                run_start, run_start_step = time.time(), step
                first_loop = False
            overall = time.time() - run_start
            steps_done = step - run_start_step
            rate = steps_done / overall if steps_done > 0 and overall > 0 else num_steps / max(elapsed, 1e-9)
            eta = (num_train_steps - step) / max(rate, 1e-9)
            metrics["examples_per_second"] = examples_per_second
            names = sorted(self._loss_names, key=lambda k: k != "loss")  # "loss" first
            losses = ", ".join(f"{k} {metrics[k]:.4f}" for k in names)
            logging.info(
                "step %d/%d: %s, lr %.3g, %.1f examples/s, ETA %s",
                step, num_train_steps, losses,
                metrics.get("learning_rate", float("nan")), examples_per_second,
                _format_seconds(eta),
            )
            self.history.append((step, dict(metrics)))
            self._write_summaries("train", metrics, step)
            if step % self.save_checkpoints_steps == 0 or step >= num_train_steps:
                if self.model_dir:
                    self.save()
        return metrics

    def evaluate(self, dataset_fn, steps, metrics_fn=None, batch_size=None):
        """Runs `steps` eval batches; returns running means over all of them.

        Args:
          dataset_fn: input_context -> dataset of per-replica eval batches (should repeat if
            `steps` may exceed one pass, as the original does).
          steps: number of (global) eval batches.
          metrics_fn: optional factory of an object with update_state(features, outputs),
            result() -> dict, reset_state() (Keras-metric-like, e.g. PretrainingMetrics);
            created under the strategy scope, so its variables aggregate across replicas.
          batch_size: global eval batch (only for logging examples/s).

        Returns dict name -> float: the running mean of every loss_fn output over the
        batches, overridden by metrics_fn's results, plus "global_step".
        """
        element_spec = self._local_element_spec(dataset_fn, batch_size)
        self._loss_names = self._probe_loss_names(element_spec)
        metrics = None
        if metrics_fn is not None:
            with self.strategy.scope():
                metrics = metrics_fn()
        iterator = iter(self._distribute(dataset_fn, batch_size))

        def replica_eval(features):
            outputs = self.model(features, training=False)
            values = _normalize_loss_output(self.loss_fn(features, outputs))
            if metrics is not None:
                # Keras metrics are written for eager/graph code already; autograph
                # re-converting them breaks their constructors.
                tf.autograph.experimental.do_not_convert(metrics.update_state)(features, outputs)
            return values

        @tf.function
        def eval_loop(iterator, num_steps):
            sums = {k: tf.zeros((), tf.float32) for k in self._loss_names}
            for _ in tf.range(num_steps):
                values = self._reduce_mean(self.strategy.run(replica_eval, args=(next(iterator),)))
                sums = {k: sums[k] + values[k] for k in sums}
            return sums

        totals = {k: 0.0 for k in self._loss_names}
        done = 0
        start = time.time()
        while done < steps:
            num_steps = min(self.steps_per_loop, steps - done)
            sums = eval_loop(iterator, tf.constant(num_steps, tf.int32))
            for k, v in sums.items():
                totals[k] += float(v)
            done += num_steps
            elapsed = time.time() - start
            logging.info(
                "eval batch %d/%d: loss %.4f%s", done, steps, totals["loss"] / done,
                f", {done * batch_size / max(elapsed, 1e-9):.1f} examples/s" if batch_size else "",
            )
        results = {k: v / max(done, 1) for k, v in totals.items()}
        if metrics is not None:
            results.update({k: float(v) for k, v in metrics.result().items()})
        global_step = self.global_step
        self._write_summaries("eval", results, global_step)
        results["global_step"] = global_step
        return results


def write_eval_results(path, results):
    """Writes `key = value` lines sorted by key, like the original scripts (atomically).

    Integers (global_step) are written as integers, floats like the original's str() of a
    NumPy float32.
    """
    lines = []
    for key in sorted(results):
        value = results[key]
        if isinstance(value, (bool, np.bool_)):
            text = str(bool(value))
        elif isinstance(value, (int, np.integer)):
            text = str(int(value))
        else:
            text = str(np.float32(value))
        lines.append(f"{key} = {text}\n")
        logging.info("  %s = %s", key, text)
    files.atomic_write(path, "".join(lines))
    return path


def _flush_checkpoint(path):
    """Makes the checkpoint `path` (a CheckpointManager's newest) durable.

    TensorFlow already makes it atomic against crashes: the data file is written under a
    temporary name and renamed, the `.index` has a new name per checkpoint, and the
    `checkpoint` state file that names the newest one is replaced last (temporary + rename),
    so a run killed mid-save resumes from the previous checkpoint. It never fsyncs, though:
    after a power loss the state file could name files whose data never reached the disk.
    """
    if "://" in path:  # remote file systems have no fsync
        return
    directory = os.path.dirname(os.path.abspath(path))
    for name in os.listdir(directory):
        if name.startswith(os.path.basename(path) + ".") or name == "checkpoint":
            files.fsync_file(os.path.join(directory, name))
    files.fsync_directory(directory)


def _format_seconds(seconds):
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:d}:{secs:02d}"
