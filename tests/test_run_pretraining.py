"""run_pretraining.py end to end on tiny TFRecords written here, including kill -9 and resume."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from bert_tf.config import BertConfig
from bert_tf.data.pretraining_instances import create_pretraining_data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "run_pretraining.py")
WORDS = ("the cat dog sat on a mat and ran to house tree big small red blue green "
         "jumped over under quickly slowly happy sad river stone bird sang song").split()
SENTENCES = ["the cat sat on a mat .", "the big dog ran to the house .",
             "a small red bird sang a happy song .", "the blue river ran under a green tree .",
             "a sad cat jumped over the stone .", "the dog quickly ran over the big mat ."]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pretraining_data")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *WORDS]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(40):
        # A few fixed sentences: masked words are predictable from their context.
        for _ in range(rng.integers(3, 7)):
            lines.append(SENTENCES[rng.integers(len(SENTENCES))])
        lines.append("")
    (directory / "corpus.txt").write_text("\n".join(lines) + "\n")
    create_pretraining_data([str(directory / "corpus.txt")], [str(directory / "train.tfrecord")],
                            str(directory / "vocab.txt"), max_seq_length=32,
                            max_predictions_per_seq=5, dupe_factor=2, random_seed=3)
    BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
               intermediate_size=64, max_position_embeddings=32).to_json_file(
        str(directory / "bert_config.json"))
    return directory


def _flags(data_dir, output_dir, **overrides):
    values = dict(
        bert_config_file=data_dir / "bert_config.json", input_file=data_dir / "train.tfrecord",
        output_dir=output_dir, max_seq_length=32, max_predictions_per_seq=5,
        train_batch_size=8, eval_batch_size=4, learning_rate=2e-3, num_train_steps=40,
        num_warmup_steps=4, save_checkpoints_steps=10, iterations_per_loop=5, max_eval_steps=3,
        seed=5,
    )
    values.update(overrides)
    return [f"--{k}={v}" for k, v in values.items()] + ["--do_train", "--do_eval"]


def _env():
    return dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")


def _run(args, timeout=240):
    completed = subprocess.run([sys.executable, SCRIPT, *args], env=_env(), capture_output=True,
                               text=True, timeout=timeout)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed.stderr


def _weights(checkpoint_dir):
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(checkpoint_dir)))
    names = sorted(n for n in reader.get_variable_to_shape_map()
                   if n.startswith("model/") and "seed_generator" not in n)
    return {n: reader.get_tensor(n) for n in names}


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("uninterrupted")
    flagfile = output_dir / "flags.txt"
    flagfile.write_text("\n".join(_flags(data_dir, output_dir)) + "\n")
    log = _run([f"--flagfile={flagfile}"])  # absl flagfiles work
    return output_dir, log


def test_end_to_end_writes_checkpoints_summaries_and_eval_results(uninterrupted):
    output_dir, log = uninterrupted
    assert "step 40/40" in log and "examples/s" in log and "ETA" in log
    assert tf.train.latest_checkpoint(str(output_dir)).endswith("ckpt-40")
    lines = (output_dir / "eval_results.txt").read_text().splitlines()
    keys = [line.split(" = ")[0] for line in lines]
    assert keys == ["global_step", "loss", "masked_lm_accuracy", "masked_lm_loss",
                    "next_sentence_accuracy", "next_sentence_loss"]
    values = {line.split(" = ")[0]: line.split(" = ")[1] for line in lines}
    assert values["global_step"] == "40"
    assert 0.0 <= float(values["masked_lm_accuracy"]) <= 1.0
    # loss is the mean total loss; close to (not equal to) the sum of the running means.
    assert float(values["loss"]) == pytest.approx(
        float(values["masked_lm_loss"]) + float(values["next_sentence_loss"]), rel=0.1)
    # The loss fell from its chance level (ln 33 + ln 2 = 4.19) during 40 steps.
    losses = [float(line.split("loss ")[1].split(",")[0]) for line in log.splitlines()
              if "examples/s, ETA" in line]
    assert losses[-1] < losses[0] - 0.6, losses
    assert os.listdir(output_dir / "train") and os.listdir(output_dir / "eval")
    assert (output_dir / "bert_config.json").exists()


def test_kill_9_then_same_command_resumes_and_matches(data_dir, uninterrupted, tmp_path):
    output_dir = tmp_path / "killed"
    args = _flags(data_dir, output_dir)
    process = subprocess.Popen([sys.executable, SCRIPT, *args], env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    # Killed once the checkpoint is complete: its data, and the state file that names it.
    while tf.train.latest_checkpoint(str(output_dir)) is None:
        assert process.poll() is None, "run ended before it could be killed"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (output_dir / "ckpt-40.index").exists()

    log = _run(args)
    assert "Restored" in log
    assert tf.train.latest_checkpoint(str(output_dir)).endswith("ckpt-40")
    assert "global_step = 40" in (output_dir / "eval_results.txt").read_text()
    # Same weights as the run that was never interrupted (input position, RNG restored).
    reference = _weights(uninterrupted[0])
    resumed = _weights(output_dir)
    assert reference.keys() == resumed.keys() and len(reference) > 20
    for name in reference:
        np.testing.assert_allclose(resumed[name], reference[name], rtol=1e-4, atol=1e-5,
                                   err_msg=name)


def test_missing_required_flag_is_a_clear_usage_error(data_dir, tmp_path):
    completed = subprocess.run(
        [sys.executable, SCRIPT, "--do_train", f"--output_dir={tmp_path}",
         f"--bert_config_file={data_dir / 'bert_config.json'}"],
        env=_env(), capture_output=True, text=True, timeout=120)
    assert completed.returncode != 0
    assert "--input_file is required" in completed.stderr
    from bert_tf.pretraining import PretrainingSettings

    with pytest.raises(ValueError, match="At least one of `do_train` or `do_eval` must be True."):
        PretrainingSettings(input_file="x", output_dir="y",
                            bert_config_file=str(data_dir / "bert_config.json")).validate()
    with pytest.raises(ValueError, match="--gradient_accumulation_steps must be positive"):
        PretrainingSettings(input_file="x", output_dir="y", do_train=True,
                            gradient_accumulation_steps=0,
                            bert_config_file=str(data_dir / "bert_config.json")).validate()
