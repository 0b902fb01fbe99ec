"""Distributed training: MirroredStrategy over two logical CPUs and two-worker
MultiWorkerMirroredStrategy on localhost, each against a one-device run; strategy selection.

Devices are fixed when TensorFlow starts, so every run happens in a fresh subprocess.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from absl import flags

from bert_tf import cli, distribution

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf
    strategy_name, logical_cpus, model_dir, output = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    accumulation, do_eval = int(sys.argv[5]), sys.argv[6] == "eval"
    if logical_cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus)
    import keras
    from bert_tf import distribution, optimization, training
    from bert_tf.config import BertConfig
    from bert_tf.models import BertPretrainer, PretrainingMetrics, pretraining_loss

    strategy = distribution.get_strategy(strategy_name)
    keras.utils.set_random_seed(7)
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    rng = np.random.default_rng(0)
    n, seq, preds = 64, 32, 4
    ids = rng.integers(5, 64, size=(n, seq)).astype(np.int32)
    positions = np.tile(np.arange(1, 1 + preds), (n, 1)).astype(np.int32)
    data = dict(input_ids=ids, input_mask=np.ones_like(ids), segment_ids=np.zeros_like(ids),
                masked_lm_positions=positions,
                masked_lm_ids=np.take_along_axis(ids, positions + 5, 1),
                masked_lm_weights=np.ones((n, preds), np.float32),
                next_sentence_labels=(ids[:, :1] % 2).astype(np.int32))

    def dataset_fn(ctx):
        ds = tf.data.Dataset.from_tensor_slices(data).repeat()
        # Shard examples (not batches) per worker: the global batch holds the same examples
        # as the one-device batch.
        ds = ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
        return ds.batch(ctx.get_per_replica_batch_size(16 // accumulation), drop_remainder=True)

    with strategy.scope():
        model = BertPretrainer(config)
        optimizer = optimization.create_optimizer(2e-3, 8, 2)
    trainer = training.Trainer(strategy, model, optimizer, pretraining_loss, model_dir,
                               train_batch_size=16, gradient_accumulation_steps=accumulation,
                               steps_per_loop=4, save_checkpoints_steps=4)
    metrics = trainer.train(dataset_fn, 8)
    results = {"loss": np.nan, "masked_lm_accuracy": np.nan}
    if do_eval:
        results = trainer.evaluate(dataset_fn, 3, metrics_fn=PretrainingMetrics,
                                   batch_size=16 // accumulation)
    np.savez(output, *[v.numpy() for v in model.trainable_variables],
             replicas=strategy.num_replicas_in_sync, step=trainer.global_step,
             loss=metrics["loss"], eval_loss=results["loss"],
             eval_mlm_accuracy=results["masked_lm_accuracy"])
    """
)


def _run(tmp_path, name, strategy, logical_cpus, env_extra=None, accumulation=2, do_eval=True):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    env.update(env_extra or {})
    output = tmp_path / f"{name}.npz"
    process = subprocess.Popen(
        [sys.executable, str(script), strategy, str(logical_cpus), str(tmp_path / f"{name}_dir"),
         str(output), str(accumulation), "eval" if do_eval else "no_eval"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    return process, output


def _finish(process, output, timeout=240):
    try:
        log, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        log, _ = process.communicate()
        pytest.fail(f"worker timed out:\n{log[-4000:]}")
    assert process.returncode == 0, log[-4000:]
    return np.load(output)


def _weights(result):
    return [result[f"arr_{i}"] for i in range(len([k for k in result.files if k.startswith("arr_")]))]


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def one_device_result(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("one_device")
    return _finish(*_run(tmp_path, "one", "one_device", 1))


def test_mirrored_over_two_cpus_matches_one_device(tmp_path, one_device_result):
    mirrored = _finish(*_run(tmp_path, "mirrored", "mirrored", 2))
    assert int(mirrored["replicas"]) == 2 and int(one_device_result["replicas"]) == 1
    assert int(mirrored["step"]) == 8
    for a, b in zip(_weights(one_device_result), _weights(mirrored)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert float(mirrored["eval_loss"]) == pytest.approx(float(one_device_result["eval_loss"]), rel=1e-4)
    assert float(mirrored["eval_mlm_accuracy"]) == pytest.approx(
        float(one_device_result["eval_mlm_accuracy"]), abs=1e-6)
    assert os.path.exists(tmp_path / "mirrored_dir" / "ckpt-8.index")


def test_two_workers_on_localhost_end_with_identical_weights(tmp_path, one_device_result):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        processes.append(
            # No accumulation here (the one-device reference uses 2 micro-batches of 8: the
            # same update) and no eval, to keep the two-process test short.
            _run(tmp_path, f"worker{index}", "multi_worker_mirrored", 1, {"TF_CONFIG": tf_config},
                 accumulation=1, do_eval=False)
        )
    # Both worker processes share one model_dir name per worker; the chief's is checked.
    results = [_finish(*p) for p in processes]
    for result in results:
        assert int(result["replicas"]) == 2
        assert int(result["step"]) == 8
    for a, b in zip(_weights(results[0]), _weights(results[1])):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(_weights(one_device_result), _weights(results[0])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert os.path.exists(tmp_path / "worker0_dir" / "ckpt-8.index")
    # The non-chief saved into a temporary directory and removed it.
    assert not os.path.exists(tmp_path / "worker1_dir" / "ckpt-8.index")


def test_default_strategy_choice(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribution.default_strategy_name(num_gpus=0) == "one_device"
    assert distribution.default_strategy_name(num_gpus=4) == "mirrored"
    assert distribution.default_strategy_name(tpu_address="grpc://10.0.0.1:8470") == "tpu"
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}))
    assert distribution.default_strategy_name(num_gpus=0) == "multi_worker_mirrored"
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribution.default_strategy_name(num_gpus=0)


def _flag_values(*argv):
    flag_values = flags.FlagValues()
    cli.define_common_flags(flag_values)
    flag_values(["prog", *argv])
    return flag_values


def test_tpu_flags_map_to_the_tpu_strategy():
    assert cli.strategy_name_from_flags(_flag_values("--use_tpu")) == "tpu"
    assert cli.tpu_address_from_flags(_flag_values("--use_tpu", "--tpu_name=my-tpu")) == "my-tpu"
    assert cli.tpu_address_from_flags(_flag_values("--master=grpc://1.2.3.4:8470")) == "grpc://1.2.3.4:8470"
    with pytest.raises(flags.ValidationError, match="use_tpu"):
        cli.strategy_name_from_flags(_flag_values("--use_tpu", "--distribution_strategy=mirrored"))
    with pytest.raises(ValueError, match="tpu_name"):
        cli.strategy_from_flags(_flag_values("--use_tpu"))
    # No TPU on this machine: a clear error naming the address, not a hang.
    with pytest.raises(RuntimeError, match="could not connect to the TPU 'nonexistent-tpu'"):
        cli.strategy_from_flags(_flag_values("--distribution_strategy=tpu", "--tpu_name=nonexistent-tpu"))


def test_bad_strategy_and_gpu_count_are_clear_errors():
    with pytest.raises(ValueError, match="distribution_strategy='ring'"):
        distribution.get_strategy("ring")
    with pytest.raises(ValueError, match="num_gpus=3"):
        distribution.get_strategy("mirrored", num_gpus=3)
    with pytest.raises(ValueError, match="bfloat16"):
        distribution.set_mixed_precision("int8")
