"""bert_tf.training: the custom loop on a tiny BERT and in-memory data (one device).

Multi-replica behaviour is in test_distributed.py (it needs a fresh TensorFlow process).
"""

import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from bert_tf import distribution, optimization, training
from bert_tf.config import BertConfig
from bert_tf.models import BertPretrainer, PretrainingMetrics, pretraining_loss

SEQ, PREDS, VOCAB = 32, 5, 64


def tiny_config(dropout=0.1):
    return BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=SEQ,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )


def tiny_data(num_examples=64, seed=0, ragged_weights=False):
    """Pretraining features with a learnable MLM target and NSP label."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, VOCAB, size=(num_examples, SEQ)).astype(np.int32)
    positions = np.sort(
        np.stack([rng.choice(np.arange(1, SEQ), PREDS, replace=False) for _ in range(num_examples)]), 1
    ).astype(np.int32)
    targets = np.take_along_axis(ids, positions, 1)
    masked = ids.copy()
    np.put_along_axis(masked, positions, 4, 1)  # [MASK]
    weights = np.ones((num_examples, PREDS), np.float32)
    if ragged_weights:
        for i in range(num_examples):
            weights[i, rng.integers(1, PREDS + 1):] = 0.0
    return {
        "input_ids": masked,
        "input_mask": np.ones_like(ids),
        "segment_ids": np.zeros_like(ids),
        "masked_lm_positions": positions,
        "masked_lm_ids": targets,
        "masked_lm_weights": weights,
        # Label = parity of the first token: learnable from [CLS]'s neighbourhood.
        "next_sentence_labels": (ids[:, :1] % 2).astype(np.int32),
    }


def dataset_fn_for(data, micro_batch):
    def dataset_fn(input_context):
        batch = input_context.get_per_replica_batch_size(micro_batch)
        return tf.data.Dataset.from_tensor_slices(data).repeat().batch(batch, drop_remainder=True)

    return dataset_fn


def make_trainer(model_dir, batch=8, accumulation=1, total_steps=40, dropout=0.1, seed=1,
                 lr=1e-3, steps_per_loop=10, save_every=1000, warmup=4, jit=False):
    keras.utils.set_random_seed(seed)
    strategy = distribution.get_strategy("one_device")
    with strategy.scope():
        model = BertPretrainer(tiny_config(dropout))
        optimizer = optimization.create_optimizer(lr, total_steps, warmup)
    trainer = training.Trainer(
        strategy, model, optimizer, pretraining_loss, str(model_dir), train_batch_size=batch,
        gradient_accumulation_steps=accumulation, steps_per_loop=steps_per_loop,
        save_checkpoints_steps=save_every, jit_compile=jit,
    )
    return trainer, dataset_fn_for(tiny_data(), batch // accumulation)


def weights_of(model):
    return [v.numpy() for v in model.weights]


def test_loss_falls_and_checkpoints_and_summaries_are_written(tmp_path):
    trainer, dataset_fn = make_trainer(tmp_path, total_steps=40, save_every=20)
    losses = []
    for end in (10, 40):
        losses.append(trainer.train(dataset_fn, end)["loss"])
    assert trainer.global_step == 40
    assert losses[1] < 0.85 * losses[0], losses
    assert losses[1] < math.log(VOCAB) + math.log(2) - 0.7  # well below chance level
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-40")
    assert os.path.exists(str(tmp_path / "ckpt-20.index"))
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path / "train"))


def test_gradient_accumulation_matches_the_larger_batch(tmp_path):
    big, dataset_big = make_trainer(tmp_path / "big", batch=8, accumulation=1, dropout=0.0,
                                    total_steps=6, steps_per_loop=6)
    small, dataset_small = make_trainer(tmp_path / "acc", batch=8, accumulation=4, dropout=0.0,
                                        total_steps=6, steps_per_loop=6)
    for a, b in zip(weights_of(big.model), weights_of(small.model)):
        np.testing.assert_array_equal(a, b)
    big.train(dataset_big, 6)
    small.train(dataset_small, 6)
    assert small.global_step == big.global_step == 6  # steps count updates, not micro-batches
    moved = 0.0
    for a, b, start in zip(weights_of(big.model), weights_of(small.model),
                           weights_of(make_trainer(tmp_path / "init", dropout=0.0)[0].model)):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)
        moved = max(moved, float(np.max(np.abs(a - start))))
    assert moved > 1e-3  # the comparison is not between two untrained models


def test_interrupted_then_resumed_run_ends_with_the_same_weights(tmp_path):
    # Uninterrupted: 30 steps in one go.
    full, dataset_fn = make_trainer(tmp_path / "full", total_steps=30, save_every=10)
    full.train(dataset_fn, 30)
    # Interrupted: a first process stops after step 20 (its last checkpoint) ...
    first, dataset_fn = make_trainer(tmp_path / "resumed", total_steps=30, save_every=10)
    first.train(dataset_fn, 20)
    # ... a new process (fresh model with a different init seed: everything must come from
    # the checkpoint, dropout RNG and input position included) resumes to the end.
    second, dataset_fn = make_trainer(tmp_path / "resumed", total_steps=30, save_every=10, seed=99)
    second.train(dataset_fn, 30)
    assert second.global_step == 30
    for a, b in zip(weights_of(full.model), weights_of(second.model)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
    slot_full = full.optimizer.slots["adam_v"][0].numpy()
    np.testing.assert_allclose(second.optimizer.slots["adam_v"][0].numpy(), slot_full, rtol=1e-4, atol=1e-9)


def _numpy_eval_reference(model, data, batch, steps):
    """Running means written from ORIGINAL_BERT_FACTS.md, over `steps` repeating batches."""
    n = len(data["input_ids"])
    sums = dict(mlm_correct=0.0, mlm_nll=0.0, weight=0.0, nsp_correct=0.0, nsp_nll=0.0,
                examples=0.0, loss=0.0)
    for step in range(steps):
        index = [(step * batch + i) % n for i in range(batch)]
        features = {k: v[index] for k, v in data.items()}
        out = model({k: tf.constant(v) for k, v in features.items()}, training=False)
        mlm_logits = out["masked_lm_logits"].numpy().astype(np.float64)
        log_probs = mlm_logits - np.log(np.sum(np.exp(mlm_logits - mlm_logits.max(-1, keepdims=True)), -1, keepdims=True)) - mlm_logits.max(-1, keepdims=True)
        ids, w = features["masked_lm_ids"], features["masked_lm_weights"].astype(np.float64)
        nll = -np.take_along_axis(log_probs, ids[..., None], -1)[..., 0]
        sums["mlm_nll"] += np.sum(w * nll)
        sums["mlm_correct"] += np.sum(w * (np.argmax(mlm_logits, -1) == ids))
        sums["weight"] += np.sum(w)
        nsp_logits = out["next_sentence_logits"].numpy().astype(np.float64)
        nsp_lp = nsp_logits - np.log(np.sum(np.exp(nsp_logits), -1, keepdims=True))
        labels = features["next_sentence_labels"][:, 0]
        nsp_nll = -nsp_lp[np.arange(batch), labels]
        sums["nsp_nll"] += np.sum(nsp_nll)
        sums["nsp_correct"] += np.sum(np.argmax(nsp_logits, -1) == labels)
        sums["examples"] += batch
        batch_mlm = np.sum(w * nll) / (np.sum(w) + 1e-5)
        sums["loss"] += batch_mlm + np.mean(nsp_nll)
    return {
        "masked_lm_accuracy": sums["mlm_correct"] / sums["weight"],
        "masked_lm_loss": sums["mlm_nll"] / sums["weight"],
        "next_sentence_accuracy": sums["nsp_correct"] / sums["examples"],
        "next_sentence_loss": sums["nsp_nll"] / sums["examples"],
        "loss": sums["loss"] / steps,
    }


def test_evaluate_running_means_and_eval_results_file(tmp_path):
    trainer, dataset_fn = make_trainer(tmp_path, total_steps=10, steps_per_loop=10)
    trainer.train(dataset_fn, 10)
    data = tiny_data(num_examples=12, seed=5, ragged_weights=True)
    batch, steps = 8, 5  # 40 examples from 12: the input repeats, batches straddle the end

    def eval_fn(ctx):
        return tf.data.Dataset.from_tensor_slices(data).repeat().batch(ctx.get_per_replica_batch_size(batch))

    results = trainer.evaluate(eval_fn, steps, metrics_fn=PretrainingMetrics, batch_size=batch)
    expected = _numpy_eval_reference(trainer.model, data, batch, steps)
    for key, value in expected.items():
        assert results[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
    assert results["global_step"] == 10
    path = training.write_eval_results(str(tmp_path / "eval_results.txt"), results)
    lines = open(path).read().splitlines()
    keys = [line.split(" = ")[0] for line in lines]
    assert keys == ["global_step", "loss", "masked_lm_accuracy", "masked_lm_loss",
                    "next_sentence_accuracy", "next_sentence_loss"]
    assert lines[0] == "global_step = 10"
    for line in lines[1:]:
        key, value = line.split(" = ")
        assert float(value) == pytest.approx(expected[key], rel=1e-4, abs=1e-5)
    assert not [n for n in os.listdir(tmp_path) if ".tmp" in n]


@pytest.fixture
def restore_policy():
    yield
    keras.mixed_precision.set_dtype_policy("float32")


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_losses_are_finite(tmp_path, restore_policy, policy):
    keras.mixed_precision.set_dtype_policy(policy)
    trainer, dataset_fn = make_trainer(tmp_path, total_steps=6, steps_per_loop=3)
    assert trainer.loss_scaling == (policy == "mixed_float16")
    first = trainer.train(dataset_fn, 3)
    last = trainer.train(dataset_fn, 6)
    assert math.isfinite(first["loss"]) and math.isfinite(last["loss"])
    assert all(np.all(np.isfinite(w)) for w in weights_of(trainer.model))
    start = weights_of(make_trainer(tmp_path / "init", total_steps=6)[0].model)
    assert any(not np.allclose(a, b) for a, b in zip(weights_of(trainer.model), start))
    assert all(v.dtype == "float32" for v in trainer.model.trainable_variables)
    if policy == "mixed_float16":
        assert last["loss_scale"] == training.LOSS_SCALE_INITIAL  # no overflow, < 2000 steps


def test_float16_overflow_skips_the_update_and_halves_the_scale(tmp_path, restore_policy):
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    trainer, dataset_fn = make_trainer(tmp_path, total_steps=4, steps_per_loop=1, warmup=0)
    trainer.state.loss_scale.assign(2.0**24)  # the float16 gradients overflow
    before = weights_of(trainer.model)
    result = trainer.train(dataset_fn, 1)
    # Each overflowing attempt halved the scale and was not a step (tests/test_loss_scaling.py
    # checks that skipped attempts change no weight); the first finite one is step 1.
    skipped = trainer.skipped_steps
    assert skipped >= 1 and trainer.global_step == 1
    assert [step for step, _ in trainer.history] == [0] * skipped + [1]
    assert result["loss_scale"] == 2.0**24 / 2**skipped
    assert any(not np.array_equal(a, b) for a, b in zip(weights_of(trainer.model), before))


def test_batch_not_divisible_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        make_trainer(tmp_path, batch=10, accumulation=4)


def test_dataset_with_the_wrong_batch_size_is_a_clear_error(tmp_path):
    trainer, _ = make_trainer(tmp_path, batch=8, accumulation=2)
    wrong = dataset_fn_for(tiny_data(), 8)  # the full batch instead of one micro-batch
    with pytest.raises(ValueError, match="get_per_replica_batch_size\\(4\\)"):
        trainer.train(wrong, 2)


def test_jit_compile_gives_the_same_update(tmp_path):
    plain, dataset_fn = make_trainer(tmp_path / "plain", dropout=0.0, total_steps=2, steps_per_loop=2)
    xla, _ = make_trainer(tmp_path / "xla", dropout=0.0, total_steps=2, steps_per_loop=2, jit=True)
    plain.train(dataset_fn, 2)
    xla.train(dataset_fn, 2)
    for a, b in zip(weights_of(plain.model), weights_of(xla.model)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
