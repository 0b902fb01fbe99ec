"""bert_tf: BERT for TensorFlow 2 and Keras 3, numerically identical to the original.

Public names are imported lazily so that `import bert_tf` stays cheap and a script that only
needs the Python tokenizer does not pay for TensorFlow's import.
"""

import importlib

__version__ = "0.1.0"

_PUBLIC_NAMES = {
    "BertConfig": "bert_tf.config",
    "BertEncoder": "bert_tf.models",
    "BertPretrainer": "bert_tf.models",
    "BertClassifier": "bert_tf.models",
    "BertTokenClassifier": "bert_tf.models",
    "load_checkpoint": "bert_tf.checkpoints",
    "save_original_checkpoint": "bert_tf.checkpoints",
    "FullTokenizer": "bert_tf.tokenization",
    "BertTokenizer": "bert_tf.preprocessing",
    "BertPacker": "bert_tf.preprocessing",
}

__all__ = sorted(_PUBLIC_NAMES)


def __getattr__(name):
    module_name = _PUBLIC_NAMES.get(name)
    if module_name is None:
        raise AttributeError(f"module 'bert_tf' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC_NAMES))
