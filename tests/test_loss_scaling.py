"""float16 dynamic loss scaling in bert_tf.training: growth, backoff, skipped steps.

A one-layer model with loss scaling forced on (float32 compute, so the arithmetic is exact and
fast) and crafted inputs: a "poison" batch whose features are 1e36 makes loss × scale overflow,
as a float16 overflow does. As in NVIDIA's float16 BERT (`new_global_step = tf.cond(
all_are_finite, global_step + 1, global_step)`), a skipped update is not a step.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bert_tf import distribution, optimization, training

BATCH, FEATURES = 4, 3


def batches(pattern):
    """One batch per character: "." ordinary data (the k-th "." is the same batch in every
    pattern), "x" poison (overflows once scaled)."""
    x, y, ordinary = [], [], 0
    for kind in pattern:
        rng = np.random.default_rng(ordinary)
        values = rng.normal(size=(BATCH, FEATURES)).astype(np.float32)
        if kind == "x":
            values = np.full_like(values, 1e36)
        else:
            ordinary += 1
        x.append(values)
        y.append(rng.normal(size=(BATCH, 1)).astype(np.float32))
    return {"x": np.concatenate(x), "y": np.concatenate(y)}


def make_trainer(model_dir, data, total_steps=10, growth_steps=1000, steps_per_loop=1,
                 save_every=1000):
    keras.utils.set_random_seed(0)
    strategy = distribution.get_strategy("one_device")
    with strategy.scope():
        inputs = {"x": keras.Input((FEATURES,), name="x"), "y": keras.Input((1,), name="y")}
        model = keras.Model(inputs, keras.layers.Dense(1, name="dense")(inputs["x"]))
        optimizer = optimization.create_optimizer(0.1, total_steps, 2)

    def loss_fn(features, outputs):
        return tf.reduce_mean(tf.square(outputs - features["y"]))

    trainer = training.Trainer(
        strategy, model, optimizer, loss_fn, str(model_dir), train_batch_size=BATCH,
        steps_per_loop=steps_per_loop, save_checkpoints_steps=save_every, loss_scaling=True,
        loss_scale_growth_steps=growth_steps)

    def dataset_fn(input_context):
        return tf.data.Dataset.from_tensor_slices(data).batch(BATCH, drop_remainder=True).repeat()

    return trainer, dataset_fn


def state_of(trainer):
    return ([v.numpy() for v in trainer.model.trainable_variables]
            + [s.numpy() for slots in trainer.optimizer.slots.values() for s in slots])


def test_scale_doubles_after_growth_steps_finite_updates(tmp_path):
    trainer, dataset_fn = make_trainer(tmp_path, batches("." * 8), growth_steps=3)
    trainer.train(dataset_fn, 7)
    scales = [metrics["loss_scale"] for _, metrics in trainer.history]
    initial = training.LOSS_SCALE_INITIAL
    assert [step for step, _ in trainer.history] == list(range(1, 8))
    # Doubles on every 3rd finite update in a row, and the count starts again after it.
    assert scales == [initial, initial, 2 * initial, 2 * initial, 2 * initial, 4 * initial,
                      4 * initial]
    assert trainer.skipped_steps == 0


def test_overflow_halves_the_scale_and_is_not_a_step(tmp_path):
    poisoned, poisoned_fn = make_trainer(tmp_path / "poisoned", batches(".x.."))
    clean, clean_fn = make_trainer(tmp_path / "clean", batches("..."))
    for a, b in zip(state_of(poisoned), state_of(clean)):
        np.testing.assert_array_equal(a, b)
    poisoned.train(poisoned_fn, 3)
    clean.train(clean_fn, 3)
    # The poison batch changed nothing: same weights and Adam slots as a run that never saw
    # it, with the same learning rates (global_step, hence the schedule, did not move).
    assert poisoned.global_step == clean.global_step == 3
    assert poisoned.skipped_steps == 1 and clean.skipped_steps == 0
    for a, b in zip(state_of(poisoned), state_of(clean)):
        np.testing.assert_array_equal(a, b)
    assert ({step: m["learning_rate"] for step, m in poisoned.history}
            == {step: m["learning_rate"] for step, m in clean.history})
    # One loop per attempt: after the skipped one the logged step is still 1, scale halved.
    assert [(step, m["loss_scale"]) for step, m in poisoned.history] == [
        (1, training.LOSS_SCALE_INITIAL), (1, training.LOSS_SCALE_INITIAL / 2),
        (2, training.LOSS_SCALE_INITIAL / 2), (3, training.LOSS_SCALE_INITIAL / 2)]
    assert float(clean.state.loss_scale.numpy()) == training.LOSS_SCALE_INITIAL


def test_resume_after_a_skipped_step_reads_the_same_data(tmp_path):
    # ckpt-2 is written after the skip: a restart must skip 3 batches of input, not 2.
    first, dataset_fn = make_trainer(tmp_path / "run", batches(".x..."), save_every=1)
    first.train(dataset_fn, 2)
    resumed, dataset_fn = make_trainer(tmp_path / "run", batches(".x..."), save_every=1)
    resumed.train(dataset_fn, 4)
    assert resumed.skipped_steps == 1
    clean, clean_fn = make_trainer(tmp_path / "clean", batches("...."))
    clean.train(clean_fn, 4)
    for a, b in zip(state_of(resumed), state_of(clean)):
        np.testing.assert_array_equal(a, b)


def test_updates_that_never_become_finite_stop_training(tmp_path):
    trainer, dataset_fn = make_trainer(tmp_path, batches("x"), steps_per_loop=32)
    with pytest.raises(FloatingPointError, match=r"64 float16 updates in a row skipped at "
                                                 r"global_step 0: .* loss scale 1 "):
        trainer.train(dataset_fn, 100)
    assert trainer.global_step == 0


def test_checkpoints_from_before_the_skip_count_still_resume(tmp_path):
    # Earlier bert_tf versions saved the loss scale without `skipped_steps`.
    old, _ = make_trainer(tmp_path, batches("."))
    legacy_state = tf.Module()
    legacy_state.loss_scale = tf.Variable(1024.0)
    legacy_state.loss_scale_good_steps = tf.Variable(7, dtype=tf.int64)
    old.optimizer.iterations.assign(5)
    tf.train.Checkpoint(model=old.model, optimizer=old.optimizer,
                        training_state=legacy_state).save(str(tmp_path / "ckpt"))
    resumed, _ = make_trainer(tmp_path, batches("."))
    assert resumed.restore() is not None
    assert resumed.global_step == 5 and resumed.skipped_steps == 0
    assert float(resumed.state.loss_scale.numpy()) == 1024.0
