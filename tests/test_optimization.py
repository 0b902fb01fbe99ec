"""bert_tf.optimization against hand-computed values and a NumPy transcription of the original."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bert_tf import optimization


def test_schedule_values_hand_computed():
    schedule = optimization.WarmupLinearDecay(1e-3, num_train_steps=100, num_warmup_steps=10)
    expected = {
        0: 0.0,
        5: 5e-4,  # warmup: 1e-3 * 5/10
        9: 9e-4,
        10: 9e-4,  # decay over ALL steps: 1e-3 * (1 - 10/100), not the peak
        55: 4.5e-4,
        99: 1e-5,
        100: 0.0,
        150: 0.0,  # past the end it stays at 0
    }
    for step, value in expected.items():
        assert float(schedule(step)) == pytest.approx(value, abs=1e-9), step


def test_schedule_without_warmup_starts_at_peak():
    schedule = optimization.WarmupLinearDecay(2e-5, num_train_steps=4, num_warmup_steps=0)
    assert [float(schedule(s)) for s in range(5)] == pytest.approx(
        [2e-5, 1.5e-5, 1e-5, 0.5e-5, 0.0], abs=1e-12
    )


def test_weight_decay_exclusions_use_the_full_path():
    opt = optimization.create_optimizer(1e-3, 10, 1)

    class FakeVar:
        def __init__(self, path):
            self.path = path

    assert opt.uses_weight_decay(FakeVar("bert/encoder/layer_0/attention/query/kernel"))
    assert opt.uses_weight_decay(FakeVar("bert/embeddings/word_embeddings/embeddings"))
    assert not opt.uses_weight_decay(FakeVar("bert/encoder/layer_0/attention/query/bias"))
    # A LayerNorm parameter whose short name (gamma/beta) says nothing is still excluded.
    assert not opt.uses_weight_decay(FakeVar("bert/encoder/layer_0/output/LayerNorm/gamma"))
    assert not opt.uses_weight_decay(FakeVar("encoder/transformer/attention_layer_norm/beta"))
    assert not opt.uses_weight_decay(FakeVar("cls/predictions/output_bias"))


def _tiny_model():
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, name="dense")(inputs)
    outputs = keras.layers.LayerNormalization(name="LayerNorm")(hidden)
    return keras.Model(inputs, outputs)


def _numpy_adam_weight_decay(params, grads_per_step, lrs, decay_flags, wd=0.01, b1=0.9,
                             b2=0.999, eps=1e-6, clip=1.0):
    """The original AdamWeightDecayOptimizer + clip_by_global_norm, written from the facts."""
    params = [p.astype(np.float64) for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for grads, lr in zip(grads_per_step, lrs):
        norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads))
        scale = clip / max(norm, clip)
        for i, g in enumerate(grads):
            g = g * scale
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            update = m[i] / (np.sqrt(v[i]) + eps)
            if decay_flags[i]:
                update = update + wd * params[i]
            params[i] = params[i] - lr * update
    return params


def test_adam_weight_decay_two_steps_match_numpy():
    keras.utils.set_random_seed(1)
    model = _tiny_model()
    model.layers[-1].gamma.assign(np.array([1.5, 0.5, 1.0, 2.0], np.float32))
    variables = model.trainable_variables
    paths = [v.path for v in variables]
    assert paths == ["dense/kernel", "dense/bias", "LayerNorm/gamma", "LayerNorm/beta"]
    rng = np.random.default_rng(0)
    # Step 1 has a global norm > 1 (clipped), step 2 < 1 (not clipped).
    grads_per_step = [
        [rng.normal(size=v.shape).astype(np.float32) for v in variables],
        [0.05 * rng.normal(size=v.shape).astype(np.float32) for v in variables],
    ]
    init = [v.numpy() for v in variables]
    opt = optimization.create_optimizer(0.1, num_train_steps=4, num_warmup_steps=0)
    opt.build(variables)
    used_lrs = []
    for grads in grads_per_step:
        used_lrs.append(float(opt.apply_gradients(zip([tf.constant(g) for g in grads], variables))))
    assert used_lrs == pytest.approx([0.1, 0.075])  # 0.1 * (1 - step/4) at steps 0 and 1
    assert int(opt.iterations.numpy()) == 2
    expected = _numpy_adam_weight_decay(
        init, grads_per_step, [0.1, 0.075], decay_flags=[True, False, False, False]
    )
    for variable, want in zip(variables, expected):
        np.testing.assert_allclose(variable.numpy(), want, rtol=1e-5, atol=1e-6)
    # Moments are stored without bias correction.
    assert opt.slots["adam_m"][0].shape == variables[0].shape


def test_lamb_one_step_matches_numpy():
    keras.utils.set_random_seed(2)
    model = _tiny_model()
    variables = model.trainable_variables
    rng = np.random.default_rng(3)
    grads = [0.1 * rng.normal(size=v.shape).astype(np.float32) for v in variables]
    init = [v.numpy().astype(np.float64) for v in variables]
    opt = optimization.create_optimizer(0.01, 10, 0, optimizer_type="lamb")
    opt.build(variables)
    opt.apply_gradients(zip([tf.constant(g) for g in grads], variables))
    b1, b2, eps, wd, lr = 0.9, 0.999, 1e-6, 0.01, 0.01
    norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads))
    assert norm < 1.0
    for i, (variable, w, g) in enumerate(zip(variables, init, grads)):
        m = (1 - b1) * g
        v = (1 - b2) * g * g
        update = (m / (1 - b1)) / (np.sqrt(v / (1 - b2)) + eps)
        adapted = i == 0  # only the kernel: bias/LayerNorm are excluded from decay and ratio
        if adapted:
            update = update + wd * w
            w_norm, u_norm = np.linalg.norm(w), np.linalg.norm(update)
            ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
        else:
            ratio = 1.0
        np.testing.assert_allclose(variable.numpy(), w - lr * ratio * update, rtol=1e-5, atol=1e-6)


def test_should_apply_false_keeps_weights_moments_and_step():
    model = _tiny_model()
    variables = model.trainable_variables
    before = [v.numpy() for v in variables]
    opt = optimization.create_optimizer(0.1, 10, 0)
    opt.build(variables)
    grads = [tf.fill(v.shape, np.float32(np.inf)) for v in variables]
    opt.apply_gradients(zip(grads, variables), should_apply=tf.constant(False))
    for variable, old in zip(variables, before):
        np.testing.assert_array_equal(variable.numpy(), old)
    assert np.all(opt.slots["adam_m"][0].numpy() == 0.0)
    assert int(opt.iterations.numpy()) == 0  # a skipped update is not a step
    opt.apply_gradients(zip([tf.ones_like(v) for v in variables], variables),
                        should_apply=tf.constant(True))
    assert int(opt.iterations.numpy()) == 1
    assert any(not np.array_equal(v.numpy(), old) for v, old in zip(variables, before))


def test_apply_gradients_inside_tf_function():
    model = _tiny_model()
    variables = model.trainable_variables
    opt = optimization.create_optimizer(0.1, 10, 0, weight_decay_rate=0.0)
    opt.build(variables)

    @tf.function
    def step():
        grads = [tf.ones_like(v) for v in variables]
        return opt.apply_gradients(zip(grads, variables))

    before = variables[1].numpy()
    step()
    # Clipped unit gradient g = 1/sqrt(n); Adam without bias correction: m/(sqrt(v)+eps)
    # = 0.1 g / (sqrt(0.001) g + eps) per element.
    n = sum(int(np.prod(v.shape)) for v in variables)
    g = 1.0 / np.sqrt(n)
    expected_step = 0.1 * (0.1 * g) / (np.sqrt(0.001) * g + 1e-6)
    np.testing.assert_allclose(before - variables[1].numpy(), expected_step, rtol=1e-5)


def test_unknown_optimizer_type_is_a_clear_error():
    with pytest.raises(ValueError, match="adamw' or 'lamb"):
        optimization.create_optimizer(1e-3, 10, 1, optimizer_type="sgd")


def test_bert_pretrainer_variables_excluded_from_decay_are_exactly_layernorm_and_biases():
    from bert_tf.config import BertConfig
    from bert_tf.models import BertPretrainer

    model = BertPretrainer(BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=2, intermediate_size=64,
                                      max_position_embeddings=16))
    opt = optimization.create_optimizer(1e-3, 10, 1)
    decayed = {v.path for v in model.trainable_variables if opt.uses_weight_decay(v)}
    excluded = {v.path for v in model.trainable_variables} - decayed
    # 2 blocks x (q,k,v,attention output, intermediate, output) biases + pooler + MLM transform
    # bias + MLM output_bias + NSP output_bias = 16 biases; LayerNorm gamma/beta: embeddings,
    # 2 per block, MLM transform = 6 layers x 2 = 12.
    assert len([p for p in excluded if "layer_norm" in p or "LayerNorm" in p]) == 12
    assert len([p for p in excluded if p.endswith("bias")]) == 16
    assert len(excluded) == 28
    # Kernels, embeddings and the NSP output_weights are decayed, as in the original.
    assert all(p.endswith(("kernel", "embeddings", "output_weights")) for p in decayed), decayed
    assert len(decayed) == 2 * 6 + 3 + 1 + 1 + 1  # block kernels, 3 embeddings, pooler, MLM, NSP


def test_clipping_inside_the_update_equals_tf_clip_by_global_norm_bit_for_bit():
    # The clipping factor is applied inside each variable's fused update: the result must be
    # what TensorFlow's own clip_by_global_norm followed by an unclipped update gives.
    keras.utils.set_random_seed(4)
    rng = np.random.default_rng(5)
    clipped_model, reference_model = _tiny_model(), _tiny_model()
    for a, b in zip(clipped_model.trainable_variables, reference_model.trainable_variables):
        b.assign(a)
    grads = [3.0 * rng.normal(size=v.shape).astype(np.float32)
             for v in clipped_model.trainable_variables]  # global norm well above 1
    clipped = optimization.create_optimizer(0.1, 4, 0)
    unclipped = optimization.create_optimizer(0.1, 4, 0, clip_norm=None)
    clipped.apply_gradients(zip([tf.constant(g) for g in grads],
                                clipped_model.trainable_variables))
    by_tf, norm = tf.clip_by_global_norm([tf.constant(g) for g in grads], 1.0)
    assert float(norm) > 1.0
    unclipped.apply_gradients(zip(by_tf, reference_model.trainable_variables))
    for a, b in zip(clipped_model.trainable_variables, reference_model.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
