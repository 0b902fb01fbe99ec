"""Data: pretraining instance creation, TFRecord schemas and readers, task processors."""

import importlib

_PUBLIC_NAMES = {
    "pretraining_dataset": "bert_tf.data.pretraining_records",
}

__all__ = sorted(_PUBLIC_NAMES)


def __getattr__(name):
    module_name = _PUBLIC_NAMES.get(name)
    if module_name is None:
        raise AttributeError(f"module 'bert_tf.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
