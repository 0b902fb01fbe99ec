"""Loading and saving BERT weights: original TF1, Hugging Face and bert_tf TF2 checkpoints.

Every weight BERT has is declared once, in `NAME_TABLE`: its original TF1 variable name, the
attribute path of the bert_tf variable that holds it, and its Hugging Face names. The readers
below only know how to find a table entry in their file format; `load_checkpoint` and
`save_original_checkpoint` are generic over the table.

Layouts: the table's values travel in the ORIGINAL layout (the TF1 variable's shape).
`model_transposed` marks bert_tf variables that hold the transpose (the classifier's Keras Dense
kernel is [H, labels], the original `output_weights` is [labels, H]); `hf_transposed` marks
Hugging Face tensors that hold it (torch Linear weights are [out, in], TF1 kernels [in, out]).

Supported inputs of `load_checkpoint` / `read_config` / `find_vocab_and_casing`:
  * an original google-research/bert checkpoint: the prefix (`.../bert_model.ckpt`) or the
    directory holding it (released folders have no `checkpoint` file: the `*.index` is found);
    Adam slots (`*/adam_m`, `*/adam_v`) and `global_step` are ignored;
  * a Hugging Face BERT directory (`config.json` + `model.safetensors`, possibly sharded), read
    with safetensors' NumPy API (no torch); BertModel files (no `bert.` prefix),
    BertForPreTraining / BertForMaskedLM / BertFor{Sequence,Token}Classification names;
  * a bert_tf TF2 object-based checkpoint written with `tf.train.Checkpoint` (a `ckpt-N`
    prefix or the directory with its `checkpoint` file), whatever the root name of the model;
  * a keras-hub preset folder (`config.json` naming a BertBackbone, `model.weights.h5`, and for
    tasks `task.json` + `task.weights.h5`), read with keras-hub itself.

`read_weights` reads any of them into a `BertWeights` (config, vocabulary, casing and every
table value in the original layout) without building a model for it; `bert_tf.convert` writes
a `BertWeights` to every format.
"""

import dataclasses
import glob
import json
import os
import re
from typing import List, Optional, Tuple

import numpy as np
from absl import logging

from bert_tf.files import publish_files, staging_directory

__all__ = [
    "NAME_TABLE",
    "NameMapping",
    "LoadReport",
    "load_checkpoint",
    "save_original_checkpoint",
    "read_config",
    "find_vocab_and_casing",
    "checkpoint_format",
    "BertWeights",
    "read_weights",
    "weights_of_model",
    "write_original_checkpoint",
]


# =============================================================================================
# The name table
# =============================================================================================


@dataclasses.dataclass(frozen=True)
class NameMapping:
    """One weight: where it lives in each format. `{i}` stands for the transformer layer index.

    original: the google-research/bert TF1 variable name.
    model: attribute path in a bert_tf task model. Paths starting with `encoder.` are relative
      to the encoder (the model itself when it is a BertEncoder); the first attribute of any
      other path names a head, and the entry only applies to models that have that head.
    hf: Hugging Face names, preferred first. Encoder names are given without the `bert.` prefix
      that task-model files add (the prefix is detected per file); head names are absolute.
    keras_hub: variable path in a keras-hub BertBackbone / BertMaskedLM / BertTextClassifier
      (`Variable.path`), or None when keras-hub has no such weight (the NSP head).
    model_transposed / hf_transposed / keras_hub_transposed: that format holds the transpose of
      the original layout.
    keras_hub_heads: keras-hub's attention kernels are split per head: "output" when the output
      axis is split ([H, heads, head_size] for an original [H, H] query/key/value kernel, and
      [heads, head_size] for its bias), "input" when the input axis is ([heads, head_size, H]
      for the attention output kernel).
    """

    original: str
    model: str
    hf: Tuple[str, ...]
    model_transposed: bool = False
    hf_transposed: bool = False
    keras_hub: Optional[str] = None
    keras_hub_transposed: bool = False
    keras_hub_heads: str = ""

    @property
    def part(self):
        """`encoder` or the head attribute (`masked_lm_head`, `next_sentence_head`, `classifier`)."""
        return self.model.split(".", 1)[0]


def _dense(original, model, hf, keras_hub, keras_hub_heads=""):
    """Kernel and bias of a dense layer (Keras and TF1 kernels [in, out]; HF weight [out, in])."""
    return (
        NameMapping(f"{original}/kernel", f"{model}.kernel", (f"{hf}.weight",), hf_transposed=True,
                    keras_hub=f"{keras_hub}/kernel", keras_hub_heads=keras_hub_heads),
        NameMapping(f"{original}/bias", f"{model}.bias", (f"{hf}.bias",), keras_hub=f"{keras_hub}/bias",
                    keras_hub_heads="output" if keras_hub_heads == "output" else ""),
    )


def _layer_norm(original, model, hf, keras_hub):
    """LayerNorm scale and offset; older Hugging Face files call them gamma/beta."""
    return (
        NameMapping(f"{original}/gamma", f"{model}.gamma", (f"{hf}.weight", f"{hf}.gamma"),
                    keras_hub=f"{keras_hub}/gamma"),
        NameMapping(f"{original}/beta", f"{model}.beta", (f"{hf}.bias", f"{hf}.beta"),
                    keras_hub=f"{keras_hub}/beta"),
    )


_LAYER = "encoder.transformer_layers[{i}]"
_KH_LAYER = "transformer_layer_{i}"

NAME_TABLE: Tuple[NameMapping, ...] = (
    # ---- embeddings
    NameMapping(
        "bert/embeddings/word_embeddings",
        "encoder.embeddings.word_embeddings.embeddings",
        ("embeddings.word_embeddings.weight",),
        keras_hub="token_embedding/embeddings",
    ),
    NameMapping(
        "bert/embeddings/token_type_embeddings",
        "encoder.embeddings.token_type_embeddings.embeddings",
        ("embeddings.token_type_embeddings.weight",),
        keras_hub="segment_embedding/embeddings",
    ),
    NameMapping(
        "bert/embeddings/position_embeddings",
        "encoder.embeddings.position_embeddings.embeddings",
        ("embeddings.position_embeddings.weight",),
        keras_hub="position_embedding/embeddings",
    ),
    *_layer_norm("bert/embeddings/LayerNorm", "encoder.embeddings.layer_norm", "embeddings.LayerNorm",
                "embeddings_layer_norm"),
    # ---- transformer layers
    *_dense(
        "bert/encoder/layer_{i}/attention/self/query",
        f"{_LAYER}.attention.query",
        "encoder.layer.{i}.attention.self.query",
        f"{_KH_LAYER}/self_attention_layer/query",
        keras_hub_heads="output",
    ),
    *_dense(
        "bert/encoder/layer_{i}/attention/self/key",
        f"{_LAYER}.attention.key",
        "encoder.layer.{i}.attention.self.key",
        f"{_KH_LAYER}/self_attention_layer/key",
        keras_hub_heads="output",
    ),
    *_dense(
        "bert/encoder/layer_{i}/attention/self/value",
        f"{_LAYER}.attention.value",
        "encoder.layer.{i}.attention.self.value",
        f"{_KH_LAYER}/self_attention_layer/value",
        keras_hub_heads="output",
    ),
    *_dense(
        "bert/encoder/layer_{i}/attention/output/dense",
        f"{_LAYER}.attention.output_dense",
        "encoder.layer.{i}.attention.output.dense",
        f"{_KH_LAYER}/self_attention_layer/attention_output",
        keras_hub_heads="input",
    ),
    *_layer_norm(
        "bert/encoder/layer_{i}/attention/output/LayerNorm",
        f"{_LAYER}.attention_layer_norm",
        "encoder.layer.{i}.attention.output.LayerNorm",
        f"{_KH_LAYER}/self_attention_layer_norm",
    ),
    *_dense(
        "bert/encoder/layer_{i}/intermediate/dense",
        f"{_LAYER}.intermediate",
        "encoder.layer.{i}.intermediate.dense",
        f"{_KH_LAYER}/feedforward_intermediate_dense",
    ),
    *_dense(
        "bert/encoder/layer_{i}/output/dense",
        f"{_LAYER}.output_dense",
        "encoder.layer.{i}.output.dense",
        f"{_KH_LAYER}/feedforward_output_dense",
    ),
    *_layer_norm(
        "bert/encoder/layer_{i}/output/LayerNorm",
        f"{_LAYER}.output_layer_norm",
        "encoder.layer.{i}.output.LayerNorm",
        f"{_KH_LAYER}/feedforward_layer_norm",
    ),
    # ---- pooler
    *_dense("bert/pooler/dense", "encoder.pooler", "pooler.dense", "pooled_dense"),
    # ---- masked LM head (its decoder is tied to the word embeddings: no variable of its own)
    *_dense(
        "cls/predictions/transform/dense",
        "masked_lm_head.transform",
        "cls.predictions.transform.dense",
        "mlm_head/intermediate_dense",
    ),
    *_layer_norm(
        "cls/predictions/transform/LayerNorm",
        "masked_lm_head.layer_norm",
        "cls.predictions.transform.LayerNorm",
        "mlm_head/intermediate_layer_norm",
    ),
    NameMapping(
        "cls/predictions/output_bias",
        "masked_lm_head.output_bias",
        ("cls.predictions.bias", "cls.predictions.decoder.bias"),
        keras_hub="mlm_head/output_bias",
    ),
    # ---- next sentence head: [2, H] ([out, in]) in the three formats that have it (keras-hub
    # has no next-sentence head)
    NameMapping(
        "cls/seq_relationship/output_weights",
        "next_sentence_head.output_weights",
        ("cls.seq_relationship.weight",),
    ),
    NameMapping("cls/seq_relationship/output_bias", "next_sentence_head.output_bias", ("cls.seq_relationship.bias",)),
    # ---- run_classifier's head: top-level names, [num_labels, H]; bert_tf's Dense kernel is
    # [H, num_labels]. Hugging Face's sequence and token classifiers both use `classifier`;
    # keras-hub's BertTextClassifier (sequence classification only) names its Dense `logits`.
    NameMapping("output_weights", "classifier.kernel", ("classifier.weight",), model_transposed=True,
                keras_hub="logits/kernel", keras_hub_transposed=True),
    NameMapping("output_bias", "classifier.bias", ("classifier.bias",), keras_hub="logits/bias"),
)


# =============================================================================================
# Binding the table to a model
# =============================================================================================


@dataclasses.dataclass
class _Bound:
    """A table entry made concrete for one model: layer index filled in, variable resolved."""

    mapping: NameMapping
    layer: Optional[int]
    original_name: str
    model_path: str
    variable: object  # a Keras variable

    def hf_names(self):
        return [name.format(i=self.layer) for name in self.mapping.hf]

    def keras_hub_name(self):
        keras_hub = self.mapping.keras_hub
        return None if keras_hub is None else keras_hub.format(i=self.layer)

    def model_shape_in_original_layout(self):
        shape = tuple(int(d) for d in self.variable.shape)
        return shape[::-1] if self.mapping.model_transposed else shape


_PATH_PART = re.compile(r"^(\w+)(?:\[(\d+)\])?$")


def _encoder_of(model):
    if hasattr(model, "transformer_layers") and hasattr(model, "embeddings"):
        return model
    encoder = getattr(model, "encoder", None)
    if encoder is None or not hasattr(encoder, "transformer_layers"):
        raise TypeError(
            f"{type(model).__name__} is not a bert_tf model: expected a BertEncoder or a model "
            "with an `.encoder` (BertPretrainer, BertClassifier, BertTokenClassifier)"
        )
    return encoder


def _resolve(root, path):
    obj = root
    for part in path.split("."):
        match = _PATH_PART.match(part)
        if match is None:
            raise ValueError(f"bad model path {path!r} in the checkpoint name table")
        obj = getattr(obj, match.group(1))
        if match.group(2) is not None:
            obj = obj[int(match.group(2))]
    return obj


def _bind(model) -> List[_Bound]:
    """The table entries that apply to `model`, one per model variable, in table order."""
    encoder = _encoder_of(model)
    num_layers = len(encoder.transformer_layers)
    bound = []
    for mapping in NAME_TABLE:
        head, rest = mapping.model.split(".", 1)
        if head == "encoder":
            root = encoder
        else:
            root = getattr(model, head, None)
            if root is None:
                continue  # this model has no such head
        layers = range(num_layers) if "{i}" in mapping.original else [None]
        for i in layers:
            path = rest.format(i=i)
            bound.append(
                _Bound(
                    mapping=mapping,
                    layer=i,
                    original_name=mapping.original.format(i=i),
                    model_path=f"{head}.{path}",
                    variable=_resolve(root, path),
                )
            )
    return bound


# =============================================================================================
# Finding what a path is
# =============================================================================================

ORIGINAL = "original_tf1"
HUGGING_FACE = "hugging_face"
TF2 = "bert_tf_tf2"
KERAS_HUB = "keras_hub"

_HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
_EXPECTED = (
    "expected an original TF1 checkpoint prefix (e.g. .../bert_model.ckpt, beside its .index and "
    ".data-* files) or the directory holding it, a Hugging Face BERT directory (config.json + "
    "model.safetensors), a keras-hub preset directory (config.json + model.weights.h5), or a "
    "bert_tf TF2 checkpoint (ckpt-N prefix or its directory)"
)
_KERAS_HUB_WEIGHT_FILES = ("model.weights.h5", "model.weights.json")


@dataclasses.dataclass(frozen=True)
class _Location:
    format: str
    path: str  # checkpoint prefix, or the Hugging Face directory
    directory: str


def _refuse_pickle(path):
    raise ValueError(
        f"{path}: is a pickle-based PyTorch checkpoint (pytorch_model.bin). bert_tf does not "
        "unpickle files (that needs torch and can execute arbitrary code). Convert it once to "
        "safetensors on a machine with torch and the safetensors package, e.g.\n"
        "  python -c \"import torch; from safetensors.torch import save_file; "
        "sd = torch.load('pytorch_model.bin', map_location='cpu', weights_only=True); "
        "save_file({k: v.contiguous().clone() for k, v in sd.items()}, 'model.safetensors', "
        "metadata={'format': 'pt'})\"\n"
        "(run it inside the model directory; or with transformers: "
        "`AutoModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)`), "
        "then pass the directory holding config.json and model.safetensors."
    )


def _is_hugging_face_dir(directory):
    return os.path.isfile(os.path.join(directory, "config.json")) and (
        any(os.path.isfile(os.path.join(directory, f)) for f in _HF_WEIGHT_FILES)
        or os.path.isfile(os.path.join(directory, "pytorch_model.bin"))
    )


def _is_keras_hub_dir(directory):
    """A keras-hub preset: a Keras-serialized config.json (it has `registered_name`) and weights."""
    config_file = os.path.join(directory, "config.json")
    if not (os.path.isfile(config_file)
            and any(os.path.isfile(os.path.join(directory, f)) for f in _KERAS_HUB_WEIGHT_FILES)):
        return False
    config = _read_json(config_file)
    return isinstance(config, dict) and "registered_name" in config


def _prefix_in_directory(directory):
    """The checkpoint prefix a directory holds: `checkpoint` index file first, else `*.index`."""
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(directory)
    if latest:
        return latest
    prefixes = sorted(p[: -len(".index")] for p in glob.glob(os.path.join(directory, "*.index")))
    if len(prefixes) == 1:
        return prefixes[0]
    if not prefixes:
        return None
    steps = [re.search(r"-(\d+)$", p) for p in prefixes]
    if all(steps):
        return max(prefixes, key=lambda p: int(re.search(r"-(\d+)$", p).group(1)))
    raise ValueError(
        f"{directory}: holds several checkpoints ({', '.join(os.path.basename(p) for p in prefixes)}); "
        "pass the prefix of the one to use (the path without .index)"
    )


def _locate(path) -> _Location:
    path = os.path.expanduser(os.fspath(path))
    if os.path.isdir(path):
        if _is_keras_hub_dir(path):
            return _Location(KERAS_HUB, path, path)
        if _is_hugging_face_dir(path):
            if not any(os.path.isfile(os.path.join(path, f)) for f in _HF_WEIGHT_FILES):
                _refuse_pickle(os.path.join(path, "pytorch_model.bin"))
            return _Location(HUGGING_FACE, path, path)
        prefix = _prefix_in_directory(path)
        if prefix is None:
            raise ValueError(f"{path}: no checkpoint found in this directory; {_EXPECTED}")
    else:
        base = os.path.basename(path)
        if base == "pytorch_model.bin":
            _refuse_pickle(path)
        if base in _HF_WEIGHT_FILES + _KERAS_HUB_WEIGHT_FILES + ("config.json",):
            return _locate(os.path.dirname(path) or ".")
        prefix = re.sub(r"(\.index|\.data-\d+-of-\d+)$", "", path)
        if not os.path.isfile(prefix + ".index"):
            raise ValueError(f"{path}: not found or not a checkpoint; {_EXPECTED}")
    import tensorflow as tf

    try:
        names = dict(tf.train.list_variables(prefix))
    except Exception as e:  # a corrupt or foreign file
        raise ValueError(f"{prefix}: cannot read the checkpoint ({e}); {_EXPECTED}") from e
    fmt = TF2 if "_CHECKPOINTABLE_OBJECT_GRAPH" in names else ORIGINAL
    return _Location(fmt, prefix, os.path.dirname(os.path.abspath(prefix)))


def checkpoint_format(path):
    """`original_tf1`, `hugging_face`, `keras_hub` or `bert_tf_tf2`; ValueError when it is none."""
    return _locate(path).format


# =============================================================================================
# Readers: each finds a table entry in its format and returns it in the original layout
# =============================================================================================


class _OriginalReader:
    """google-research/bert TF1 checkpoints: variables named exactly as in the table."""

    description = "original TF1 checkpoint"

    def __init__(self, location):
        import tensorflow as tf

        self._reader = tf.train.load_checkpoint(location.path)
        self.names = sorted(self._reader.get_variable_to_shape_map())

    def find(self, bound: _Bound):
        name = bound.original_name
        if name in self.names:
            return name, self._reader.get_tensor(name)
        return None

    @staticmethod
    def ignored(name):
        return name == "global_step" or name.endswith(("/adam_m", "/adam_v"))


class _HuggingFaceReader:
    """Hugging Face safetensors (one file or an index of shards), read into NumPy."""

    description = "Hugging Face checkpoint"

    def __init__(self, location):
        from safetensors import safe_open

        directory = location.path
        index_file = os.path.join(directory, "model.safetensors.index.json")
        single_file = os.path.join(directory, "model.safetensors")
        if os.path.isfile(single_file):
            files = {single_file}
            self._file_of = None
        else:
            with open(index_file, "r", encoding="utf-8") as f:
                weight_map = json.load(f)["weight_map"]
            self._file_of = {k: os.path.join(directory, v) for k, v in weight_map.items()}
            files = set(self._file_of.values())
        self._handles = {f: safe_open(f, framework="np") for f in sorted(files)}
        if self._file_of is None:
            self._file_of = {k: single_file for k in self._handles[single_file].keys()}
        self.names = sorted(self._file_of)
        # Task-model files prefix the encoder's names (`bert.`); a bare BertModel file does not.
        suffix = "embeddings.word_embeddings.weight"
        prefixes = [n[: -len(suffix)] for n in self.names if n.endswith(suffix)]
        self._encoder_prefix = prefixes[0] if len(prefixes) == 1 else "bert."

    def _get(self, name):
        return self._handles[self._file_of[name]].get_tensor(name)

    def find(self, bound: _Bound):
        prefix = self._encoder_prefix if bound.mapping.part == "encoder" else ""
        for name in bound.hf_names():
            name = prefix + name
            if name in self._file_of:
                value = self._get(name)
                return name, (value.T if bound.mapping.hf_transposed else value)
        return None

    def ignored(self, name):
        # Buffers (position_ids) and the MLM decoder matrix, which BERT ties to the embeddings.
        return name.endswith(("position_ids", "cls.predictions.decoder.weight"))


class _TF2Reader:
    """bert_tf's object-based checkpoints (`tf.train.Checkpoint(model=..., optimizer=...)`).

    Such a checkpoint stores an object graph: each variable is one node, reachable by
    attribute paths, and saved under the key of whichever path the saver met first (often
    `optimizer/_trainable_variables/N`, since a Keras 3 optimizer tracks the model's
    variables). So variables are matched through the graph, not by key: the model's own
    object graph gives each variable's attribute paths, and the checkpoint node under which
    the model was stored (`model`, or `model/encoder` when an encoder is taken from a
    pretrainer) is the one from which most of those paths lead to a saved variable.
    """

    description = "bert_tf TF2 checkpoint"

    def __init__(self, location, model):
        import tensorflow as tf
        from tensorflow.core.protobuf import trackable_object_graph_pb2

        self._reader = tf.train.load_checkpoint(location.path)
        graph = trackable_object_graph_pb2.TrackableObjectGraph()
        graph.ParseFromString(self._reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
        self._children = [{c.local_name: c.node_id for c in node.children} for node in graph.nodes]
        self._value_key = {
            i: a.checkpoint_key
            for i, node in enumerate(graph.nodes)
            for a in node.attributes
            if a.name == "VARIABLE_VALUE"
        }
        self._name_of, parent_top = self._breadth_first_names()

        paths_of = self._variable_paths(model)
        if getattr(model, "encoder", None) is not None:
            # A checkpoint of a bare BertEncoder (bert-convert writes one for a model without
            # heads) also fills the encoder of a task model: match paths below `encoder` too.
            for paths in paths_of.values():
                paths.extend([path[1:] for path in paths if path[:1] == ("encoder",)])
        self._paths_of = paths_of

        def matches(root):
            return sum(
                any(self._follow(root, path) in self._value_key for path in paths)
                for paths in paths_of.values()
            )

        scores = {root: matches(root) for root in self._name_of if root not in self._value_key}
        best = max(scores.values(), default=0)
        self._root = min((r for r, n in scores.items() if n == best), key=self._bfs_rank) if best else None
        # Variables are named by their path under the top-level object holding the model
        # (e.g. `model/masked_lm_head/output_bias`), whatever key the saver gave them; unused
        # ones are reported within that object only (not the optimizer's own variables).
        top = parent_top.get(self._root)
        self._display_name = {}
        if top is not None:
            queue = [(top, self._name_of[top])]
            seen = {top}
            for node, name in queue:
                if node in self._value_key:
                    self._display_name[node] = name
                for local_name, child in self._children[node].items():
                    if child not in seen:
                        seen.add(child)
                        queue.append((child, f"{name}/{local_name}"))
        self.names = sorted(self._display_name.values())

    def _breadth_first_names(self):
        """node id -> first path from the root; node id -> its top-level ancestor."""
        names, top, order = {0: ""}, {0: None}, [0]
        for node in order:
            for local_name, child in self._children[node].items():
                if child not in names:
                    names[child] = f"{names[node]}/{local_name}" if names[node] else local_name
                    top[child] = child if node == 0 else top[node]
                    order.append(child)
        self._rank = {node: i for i, node in enumerate(order)}
        return names, top

    def _bfs_rank(self, node):
        return self._rank[node]

    def _follow(self, node, path):
        for local_name in path:
            node = self._children[node].get(local_name)
            if node is None:
                return None
        return node

    @staticmethod
    def _variable_paths(model):
        """id(variable) -> every attribute path (tuple of names) from the model reaching it."""
        import tensorflow as tf

        paths = {}
        seen = {id(model)}
        queue = [(model, ())]
        while queue:
            obj, path = queue.pop(0)
            try:
                children = tf.train.TrackableView.children(obj)
            except Exception:
                continue
            for name, child in children.items():
                child_path = path + (name,)
                if isinstance(child, tf.Variable) or hasattr(child, "assign") and hasattr(child, "shape"):
                    paths.setdefault(id(child), []).append(child_path)
                    continue
                if id(child) not in seen:
                    seen.add(id(child))
                    queue.append((child, child_path))
        return paths

    def find(self, bound: _Bound):
        if self._root is None:
            return None
        for path in self._paths_of.get(id(bound.variable), []):
            node = self._follow(self._root, path)
            if node in self._value_key:
                value = self._reader.get_tensor(self._value_key[node])
                name = self._display_name.get(node, self._name_of[node])
                return name, (value.T if bound.mapping.model_transposed else value)
        return None

    @staticmethod
    def ignored(name):
        # Dropout RNG states are not weights.
        return "seed_generator" in name


class _KerasHubReader:
    """keras-hub preset folders, loaded with keras-hub itself (backbone, and task when present).

    Variables are found by their keras-hub `Variable.path`; attention kernels and biases,
    which keras-hub splits per head, are flattened back to the original 2-D / 1-D layout.
    """

    description = "keras-hub preset"

    def __init__(self, location):
        self._values = _keras_hub_values(location.path)
        self.names = sorted(self._values)

    def find(self, bound: _Bound):
        name = bound.keras_hub_name()
        if name is None or name not in self._values:
            return None
        return name, _from_keras_hub_layout(bound.mapping, self._values[name])

    @staticmethod
    def ignored(name):
        return "seed_generator" in name


def _from_keras_hub_layout(mapping, value):
    value = np.asarray(value)
    if mapping.keras_hub_heads == "output":
        value = value.reshape(value.shape[0], -1) if value.ndim == 3 else value.reshape(-1)
    elif mapping.keras_hub_heads == "input":
        value = value.reshape(-1, value.shape[-1])
    return value.T if mapping.keras_hub_transposed else value


def to_keras_hub_layout(mapping, value, shape):
    """A table value (original layout) in the layout of keras-hub's variable of `shape`."""
    value = np.asarray(value)
    if mapping.keras_hub_transposed:
        value = value.T
    return value.reshape(shape)


_KERAS_HUB_CLASSES = {}


def keras_hub_classes():
    """keras-hub BERT classes that also honour `hidden_act`, registered with Keras once.

    keras-hub's BertBackbone always computes the tanh GELU, and BertMaskedLM's head the erf
    GELU with LayerNorm epsilon 1e-5. A preset of a model with another activation (e.g. the
    erf GELU of Hugging Face's "gelu"), or with an MLM head, names these subclasses, registered as `bert_tf>BertBackbone`, `bert_tf>BertMaskedLM`
    and `bert_tf>BertTextClassifier`, and records `hidden_act` (bert_tf's names) in the
    backbone's config; keras-hub's own `from_preset` loads them once this function has run
    (`import bert_tf.convert` runs it).

    Returns: dict with keys "backbone", "masked_lm", "text_classifier".
    """
    if _KERAS_HUB_CLASSES:
        return _KERAS_HUB_CLASSES
    import keras
    import keras_hub

    from bert_tf.layers.activations import get_activation

    @keras.saving.register_keras_serializable(package="bert_tf", name="BertBackbone")
    class BertBackboneWithActivation(keras_hub.models.BertBackbone):
        """keras-hub's BertBackbone with the feed-forward activation of `hidden_act`."""

        def __init__(self, *args, hidden_act="gelu", **kwargs):
            super().__init__(*args, **kwargs)
            self.hidden_act = hidden_act
            activation = get_activation(hidden_act)
            # The functional graph calls each layer again at run time, so replacing the
            # activation of the already-built Dense changes what the model computes.
            for layer in self.transformer_layers:
                layer.activation = activation
                layer._feedforward_intermediate_dense.activation = activation

        def get_config(self):
            config = super().get_config()
            config["hidden_act"] = self.hidden_act
            return config

    @keras.saving.register_keras_serializable(package="bert_tf", name="BertMaskedLM")
    class BertMaskedLMWithActivation(keras_hub.models.BertMaskedLM):
        """keras-hub's BertMaskedLM computing BERT's MLM transform: the backbone's activation
        (keras-hub's head always uses the erf GELU) and LayerNorm epsilon 1e-12 (not 1e-5)."""

        backbone_cls = BertBackboneWithActivation

        def __init__(self, backbone, *args, **kwargs):
            super().__init__(backbone, *args, **kwargs)
            activation = get_activation(getattr(backbone, "hidden_act", "gelu"))
            head = self.masked_lm_head
            head.intermediate_activation = activation
            head._intermediate_dense.activation = activation
            head.layer_norm_epsilon = 1e-12
            head._intermediate_layer_norm.epsilon = 1e-12

    @keras.saving.register_keras_serializable(package="bert_tf", name="BertTextClassifier")
    class BertTextClassifierWithActivation(keras_hub.models.BertTextClassifier):
        """keras-hub's BertTextClassifier on a BertBackboneWithActivation."""

        backbone_cls = BertBackboneWithActivation

    _KERAS_HUB_CLASSES.update(backbone=BertBackboneWithActivation, masked_lm=BertMaskedLMWithActivation,
                              text_classifier=BertTextClassifierWithActivation)
    return _KERAS_HUB_CLASSES


def _keras_hub_preset(directory):
    """(backbone config dict, task or backbone model) of a keras-hub BERT preset folder."""
    import keras_hub
    from keras_hub.src.utils import preset_utils

    keras_hub_classes()  # so that presets naming bert_tf>BertBackbone & co. load
    config_file = os.path.join(directory, "config.json")
    config = _read_json(config_file)
    try:
        backbone_class = preset_utils.check_config_class(config)
    except ValueError as e:
        raise ValueError(f"{config_file}: {e}") from None
    if not issubclass(backbone_class, keras_hub.models.BertBackbone):
        raise ValueError(
            f"{config_file}: names {config.get('registered_name')}, expected a keras-hub BertBackbone preset"
        )
    loader = preset_utils.get_preset_loader(directory)
    task_file = os.path.join(directory, "task.json")
    if os.path.isfile(task_file):
        task_class = preset_utils.check_config_class(_read_json(task_file))
        model = loader.load_task(task_class, load_weights=True, load_task_weights=True, preprocessor=None)
    else:
        model = loader.load_backbone(backbone_class, load_weights=True)
    return config.get("config", {}), model


def _keras_hub_values(directory):
    _, model = _keras_hub_preset(directory)
    return {variable.path: np.asarray(variable.numpy()) for variable in model.weights}


def _keras_hub_config(directory):
    from bert_tf.config import BertConfig

    config_file = os.path.join(directory, "config.json")
    values = _read_json(config_file).get("config", {})
    try:
        return BertConfig(
            vocab_size=values["vocabulary_size"],
            hidden_size=values["hidden_dim"],
            num_hidden_layers=values["num_layers"],
            num_attention_heads=values["num_heads"],
            intermediate_size=values["intermediate_dim"],
            hidden_act=values.get("hidden_act", "gelu"),
            hidden_dropout_prob=values.get("dropout", 0.1),
            attention_probs_dropout_prob=values.get("dropout", 0.1),
            max_position_embeddings=values.get("max_sequence_length", 512),
            type_vocab_size=values.get("num_segments", 2),
        )
    except KeyError as e:
        raise ValueError(f"{config_file}: BertBackbone config lacks {e.args[0]!r}") from None


def _keras_hub_tokenizer(directory):
    """(vocabulary file or None, lowercase or None) of a keras-hub preset's BertTokenizer."""
    vocab = os.path.join(directory, "assets", "tokenizer", "vocabulary.txt")
    vocab = vocab if os.path.isfile(vocab) else None
    lowercase = None
    tokenizer_file = os.path.join(directory, "tokenizer.json")
    if os.path.isfile(tokenizer_file):
        value = (_read_json(tokenizer_file).get("config") or {}).get("lowercase")
        lowercase = value if isinstance(value, bool) else None
    return vocab, lowercase


# =============================================================================================
# Loading
# =============================================================================================


@dataclasses.dataclass
class LoadReport:
    """What `load_checkpoint` did.

    loaded: original names of the model variables set from the checkpoint.
    missing: original names of model variables the checkpoint lacks (they keep their
      initial values; normal for a new head such as a classifier on a pretrained encoder).
    unused: checkpoint names (in the checkpoint's own naming) that went into no variable.
    ignored: checkpoint names skipped on purpose (optimizer slots, global_step, buffers).
    """

    path: str
    format: str
    loaded: List[str] = dataclasses.field(default_factory=list)
    missing: List[str] = dataclasses.field(default_factory=list)
    unused: List[str] = dataclasses.field(default_factory=list)
    ignored: List[str] = dataclasses.field(default_factory=list)

    def __str__(self):
        return (
            f"{self.format} checkpoint {self.path}: {len(self.loaded)} variables loaded, "
            f"{len(self.missing)} missing from the checkpoint, {len(self.unused)} unused, "
            f"{len(self.ignored)} ignored"
        )


def _open_reader(location, model):
    if location.format == ORIGINAL:
        return _OriginalReader(location)
    if location.format == HUGGING_FACE:
        return _HuggingFaceReader(location)
    if location.format == KERAS_HUB:
        return _KerasHubReader(location)
    return _TF2Reader(location, model)


def _shape_error(bound, checkpoint_name, checkpoint_shape, model_shape, path):
    message = (
        f"{path}: variable {bound.original_name} (checkpoint name {checkpoint_name}, bert_tf "
        f"{bound.model_path}) has shape {list(checkpoint_shape)} in the checkpoint but "
        f"{list(model_shape)} in the model (both in the original layout)"
    )
    if bound.mapping.original == "bert/embeddings/word_embeddings":
        message += (
            f"; vocab_size differs: checkpoint {checkpoint_shape[0]}, model {model_shape[0]} — "
            "build the model from the checkpoint's config (bert_tf.checkpoints.read_config) "
            "and use the checkpoint's vocab.txt"
        )
    elif bound.mapping.original == "output_weights":
        message += "; num_labels differs"
    return ValueError(message)


def load_checkpoint(model, path) -> LoadReport:
    """Sets `model`'s variables from a checkpoint at `path` (any supported format).

    Every value is read and shape-checked before any variable is assigned, so a mismatch
    leaves the model untouched.

    Args:
      model: a bert_tf BertEncoder, BertPretrainer, BertClassifier or BertTokenClassifier
        (built: its variables exist).
      path: original TF1 checkpoint prefix or directory, Hugging Face directory, keras-hub
        preset directory, or bert_tf TF2 checkpoint prefix or directory.

    Returns:
      A LoadReport.

    Raises:
      ValueError: unrecognised path; a shape (or vocabulary size) mismatch, naming the variable
        and both shapes; a checkpoint sharing no variable with the model.
    """
    location = _locate(path)
    _ensure_built(model)
    bound = _bind(model)
    reader = _open_reader(location, model)
    report = LoadReport(path=location.path, format=location.format)
    consumed = set()
    assignments = []
    for entry in bound:
        found = reader.find(entry)
        if found is None:
            report.missing.append(entry.original_name)
            continue
        name, value = found
        value = np.asarray(value)
        model_shape = entry.model_shape_in_original_layout()
        if tuple(value.shape) != model_shape:
            raise _shape_error(entry, name, value.shape, model_shape, location.path)
        consumed.add(name)
        assignments.append((entry, value.T if entry.mapping.model_transposed else value))
        report.loaded.append(entry.original_name)
    for name in reader.names:
        if name in consumed:
            continue
        (report.ignored if reader.ignored(name) else report.unused).append(name)
    if not assignments:
        raise ValueError(
            f"{location.path}: this {reader.description} holds none of the model's variables "
            f"(it has {len(reader.names)} variables, e.g. {reader.names[:3]}); {_EXPECTED}"
        )
    for entry, value in assignments:
        entry.variable.assign(value.astype(_numpy_dtype(entry.variable)))

    _log_report(report, bound)
    _warn_if_activation_differs(model, location)
    return report


def _numpy_dtype(variable):
    dtype = variable.dtype
    return np.dtype(getattr(dtype, "as_numpy_dtype", dtype))


def _ensure_built(model):
    if not model.weights:
        raise ValueError(
            f"{type(model).__name__} has no variables yet: call it once on a batch (or build it) "
            "before loading a checkpoint"
        )


def _log_report(report, bound):
    logging.info("%s", report)
    part_of = {b.original_name: b.mapping.part for b in bound}
    missing_encoder = [n for n in report.missing if part_of.get(n) == "encoder"]
    missing_heads = sorted({part_of[n] for n in report.missing if part_of.get(n) != "encoder"})
    if missing_heads:
        logging.info(
            "Checkpoint has no weights for %s: initialised fresh (a new head).", ", ".join(missing_heads)
        )
    if missing_encoder:
        logging.warning(
            "Checkpoint lacks %d encoder variables, left at their initial values: %s",
            len(missing_encoder),
            ", ".join(missing_encoder[:10]) + (" ..." if len(missing_encoder) > 10 else ""),
        )
    if report.unused:
        logging.info(
            "Checkpoint variables not used by %d-variable model: %s",
            len(bound),
            ", ".join(report.unused[:10]) + (" ..." if len(report.unused) > 10 else ""),
        )


# =============================================================================================
# Saving in the original TF1 layout
# =============================================================================================

_ORIGINAL_ACTIVATIONS = ("gelu", "relu", "tanh", "linear")


def _model_config(model):
    for obj in (model, getattr(model, "encoder", None)):
        config = getattr(obj, "config", None)
        if config is not None and hasattr(config, "to_dict"):
            return config
    return None


def save_original_checkpoint(model, prefix, config=None):
    """Writes `model`'s weights as an original google-research/bert TF1 checkpoint.

    Creates `<prefix>.index` and `<prefix>.data-00000-of-00001` with the original variable
    names and layouts, and `bert_config.json` beside them (keys of the original file only).
    All files are written and flushed to disk under temporary names, then renamed into place
    together, `bert_config.json` and the data file first and the `.index` last
    (`bert_tf.files.publish_files`): a failure while writing leaves an existing checkpoint at
    `prefix` untouched, a crash between the renames leaves no `.index` (an error to load),
    never a new data file beside an old index.

    An activation the original code cannot express (e.g. "gelu_exact", the erf GELU of a
    Hugging Face config) is written under its bert_tf name with a logged warning: bert_tf reads
    it back exactly, the original code would fail on it rather than silently change numerics.

    Args:
      model: a built bert_tf model.
      prefix: e.g. "out/bert_model.ckpt".
      config: the BertConfig to write; defaults to the model's own `config`.

    Returns:
      The prefix written.
    """
    _ensure_built(model)
    config = config if config is not None else _model_config(model)
    if config is None:
        raise ValueError(
            "save_original_checkpoint: the model has no `config` attribute; pass config=BertConfig(...)"
        )
    values = {}
    for entry in _bind(model):
        value = np.asarray(entry.variable.numpy() if hasattr(entry.variable, "numpy") else entry.variable)
        values[entry.original_name] = value.T if entry.mapping.model_transposed else value
    return _write_original(values, config, prefix)


def write_original_checkpoint(weights, prefix):
    """Writes a `BertWeights` as an original TF1 checkpoint (`prefix.*` + bert_config.json)."""
    return _write_original(weights.values, weights.config, prefix)


def _write_original(values, config, prefix):
    import tensorflow as tf

    prefix = os.path.abspath(os.path.expanduser(os.fspath(prefix)))
    directory = os.path.dirname(prefix)
    names = list(values)
    tensors = [tf.constant(np.asarray(values[name], dtype=np.float32)) for name in names]

    config_dict = {key: value for key, value in config.to_dict().items() if key in config.field_names()}
    if config_dict["hidden_act"] not in _ORIGINAL_ACTIVATIONS:
        logging.warning(
            "%s: hidden_act %r has no equivalent in the original BERT code (its 'gelu' is the tanh "
            "approximation); bert_config.json records it explicitly as %r, which bert_tf reads "
            "but the original run_*.py scripts will reject.",
            prefix,
            config_dict["hidden_act"],
            config_dict["hidden_act"],
        )

    with staging_directory(directory, os.path.basename(prefix)) as staging:
        staged_prefix = os.path.join(staging, os.path.basename(prefix))
        tf.raw_ops.SaveV2(
            prefix=staged_prefix,
            tensor_names=names,
            shape_and_slices=[""] * len(names),
            tensors=tensors,
        )
        with open(os.path.join(staging, "bert_config.json"), "w", encoding="utf-8") as writer:
            json.dump(config_dict, writer, indent=2)
            writer.write("\n")
        # The .index is what makes the prefix a checkpoint: renamed last (an old one removed
        # first), so no crash leaves new data files readable through an old index.
        index = os.path.basename(prefix) + ".index"
        staged = sorted(os.listdir(staging), key=lambda name: (name == index, name))
        publish_files([(os.path.join(staging, name), os.path.join(directory, name))
                       for name in staged], commit_marker=True)
    logging.info("Wrote original-layout checkpoint %s (%d variables) and bert_config.json", prefix, len(names))
    return prefix


# =============================================================================================
# Model-free weights: what bert-convert carries between formats
# =============================================================================================

HEADS = ("masked_lm_head", "next_sentence_head", "classifier")
CLASSIFIER_KINDS = ("sequence", "token")


@dataclasses.dataclass
class BertWeights:
    """A BERT checkpoint independent of its format.

    config: the BertConfig (bert_tf activation names).
    values: original TF1 variable name -> float32 array in the original layout; the whole
      encoder, plus each head of HEADS that the source had completely.
    vocab_file, do_lower_case: the vocabulary and casing found beside the source (or None).
    classifier_kind: "sequence" or "token" when `values` has the classifier (`output_weights`).
    """

    config: object
    values: dict
    vocab_file: Optional[str] = None
    do_lower_case: Optional[bool] = None
    classifier_kind: Optional[str] = None
    source: str = ""
    source_format: str = ""

    @property
    def heads(self):
        """The heads of HEADS present, in that order."""
        present = {m.part for m in NAME_TABLE if m.original.format(i=0) in self.values}
        return tuple(head for head in HEADS if head in present)

    @property
    def has_pooler(self):
        return all(name in self.values for name in POOLER_NAMES)

    @property
    def num_labels(self):
        return int(self.values["output_bias"].shape[0]) if "output_bias" in self.values else None


def _entries(config):
    """Every table entry for `config`, as model-free _Bound objects (no variable)."""
    for mapping in NAME_TABLE:
        layers = range(config.num_hidden_layers) if "{i}" in mapping.original else [None]
        for i in layers:
            yield _Bound(mapping, i, mapping.original.format(i=i), mapping.model.format(i=i), None)


def read_weights(path, classifier_kind=None) -> BertWeights:
    """Reads the checkpoint at `path` (any format `load_checkpoint` accepts) into a BertWeights.

    A head is kept only when every one of its variables is present; a partial head, and any
    checkpoint variable that belongs to no table entry, is named in a warning.

    Args:
      path: original TF1 prefix or directory, Hugging Face directory, keras-hub preset
        directory, or bert_tf TF2 checkpoint prefix or directory.
      classifier_kind: "sequence" or "token" for a classifier head; None to take it from the
        source where it says (Hugging Face `architectures`, keras-hub's task) and otherwise
        assume "sequence" (original and bert_tf checkpoints do not record it).

    Raises:
      ValueError: unrecognised path, missing config, or an encoder variable the checkpoint lacks.
    """
    if classifier_kind is not None and classifier_kind not in CLASSIFIER_KINDS:
        raise ValueError(f"classifier_kind must be one of {CLASSIFIER_KINDS}, got {classifier_kind!r}")
    location = _locate(path)
    config = _read_config(location)
    values = {}
    if location.format == TF2:
        unused = _read_tf2_values(location, config, values)
    else:
        reader = _open_reader(location, None)
        consumed = set()
        for entry in _entries(config):
            found = reader.find(entry)
            if found is not None:
                consumed.add(found[0])
                values[entry.original_name] = np.asarray(found[1], dtype=np.float32)
        unused = [n for n in reader.names if n not in consumed and not reader.ignored(n)]
    _check_complete(values, config, location.path, unused)

    vocab_file, do_lower_case = find_vocab_and_casing(location.path)
    weights = BertWeights(
        config=config,
        values=values,
        vocab_file=vocab_file,
        do_lower_case=do_lower_case,
        source=location.path,
        source_format=location.format,
    )
    if "classifier" in weights.heads:
        weights.classifier_kind = classifier_kind or _recorded_classifier_kind(location) or "sequence"
    return weights


def _read_tf2_values(location, config, values):
    """Fills `values` from a bert_tf TF2 checkpoint; returns the checkpoint names left unused.

    The object graph is matched against a BertPretrainer (encoder, MLM and NSP heads) and a
    BertClassifier (its classifier head, whatever the number of labels).
    """
    from bert_tf.models import BertClassifier, BertEncoder, BertPretrainer

    used = set()
    names = set()
    candidates = (
        (lambda: BertPretrainer(config), None),
        (lambda: BertEncoder(config), ("encoder",)),  # a checkpoint of a bare encoder
        (lambda: BertClassifier(config, num_labels=1), ("classifier",)),
    )
    for build, parts in candidates:
        if parts == ("encoder",) and "bert/embeddings/word_embeddings" in values:
            continue
        model = build()
        reader = _TF2Reader(location, model)
        names.update(n for n in reader.names if not reader.ignored(n))
        for entry in _bind(model):
            if parts is not None and entry.mapping.part not in parts:
                continue
            found = reader.find(entry)
            if found is not None:
                used.add(found[0])
                values[entry.original_name] = np.asarray(found[1], dtype=np.float32)
    return sorted(names - used)


POOLER_NAMES = ("bert/pooler/dense/kernel", "bert/pooler/dense/bias")


def _check_complete(values, config, path, unused):
    entries = list(_entries(config))
    missing_encoder = [e.original_name for e in entries
                       if e.mapping.part == "encoder" and e.original_name not in values]
    if missing_encoder and set(missing_encoder) <= set(POOLER_NAMES):
        # transformers' BertForMaskedLM / BertForTokenClassification have no pooler.
        logging.warning("%s: the checkpoint has no pooler (e.g. a Hugging Face BertForMaskedLM or "
                        "BertForTokenClassification file): it is not converted", path)
        for name in missing_encoder:
            values.pop(name, None)
        missing_encoder = []
    if missing_encoder:
        raise ValueError(
            f"{path}: the checkpoint lacks {len(missing_encoder)} encoder variables "
            f"(e.g. {', '.join(missing_encoder[:3])}); expected a complete BERT encoder"
        )
    for head in HEADS:
        names = [e.original_name for e in entries if e.mapping.part == head]
        present = [n for n in names if n in values]
        if present and len(present) != len(names):
            logging.warning(
                "%s: head %s is incomplete (has %s, lacks %s): not converted",
                path, head, ", ".join(present),
                ", ".join(n for n in names if n not in values),
            )
            for name in present:
                del values[name]
    if unused:
        logging.warning(
            "%s: %d checkpoint variables belong to no BERT weight bert_tf knows and are not "
            "converted: %s", path, len(unused), ", ".join(unused[:10]) + (" ..." if len(unused) > 10 else ""),
        )


def _recorded_classifier_kind(location):
    if location.format == KERAS_HUB:
        return "sequence"  # keras-hub's BERT classifier task is BertTextClassifier
    if location.format == HUGGING_FACE:
        architectures = _read_json(os.path.join(location.directory, "config.json")).get("architectures") or []
        if any("TokenClassification" in a for a in architectures):
            return "token"
        if any("SequenceClassification" in a for a in architectures):
            return "sequence"
    return None


def weights_of_model(model, vocab_file=None, do_lower_case=None) -> BertWeights:
    """The BertWeights of a built bert_tf model (its config and every variable it has)."""
    from bert_tf.models import BertTokenClassifier

    _ensure_built(model)
    config = _model_config(model)
    if config is None:
        raise ValueError(f"{type(model).__name__} has no `config`: expected a bert_tf model")
    values = {}
    for entry in _bind(model):
        value = np.asarray(entry.variable.numpy(), dtype=np.float32)
        values[entry.original_name] = value.T if entry.mapping.model_transposed else value
    weights = BertWeights(config=config, values=values, vocab_file=vocab_file,
                          do_lower_case=do_lower_case, source=type(model).__name__, source_format="model")
    if "classifier" in weights.heads:
        weights.classifier_kind = "token" if isinstance(model, BertTokenClassifier) else "sequence"
    return weights


def set_model_weights(model, weights: BertWeights):
    """Assigns every variable of `model` from `weights` (shapes checked first); returns the
    original names of the model's variables that `weights` has no value for."""
    _ensure_built(model)
    assignments, missing = [], []
    for entry in _bind(model):
        if entry.original_name not in weights.values:
            missing.append(entry.original_name)
            continue
        value = weights.values[entry.original_name]
        if tuple(value.shape) != entry.model_shape_in_original_layout():
            raise _shape_error(entry, entry.original_name, value.shape,
                               entry.model_shape_in_original_layout(), weights.source)
        assignments.append((entry, value.T if entry.mapping.model_transposed else value))
    for entry, value in assignments:
        entry.variable.assign(np.asarray(value).astype(_numpy_dtype(entry.variable)))
    return missing


# =============================================================================================
# Config, vocabulary and casing from a checkpoint path
# =============================================================================================


def read_config(path):
    """The BertConfig of the checkpoint at `path`.

    Original checkpoints: `bert_config.json` beside the prefix. Hugging Face directories:
    `config.json` (its activation names translated). bert_tf TF2 checkpoints: `bert_config.json`
    in the checkpoint's directory or its parent.
    """
    return _read_config(_locate(path))


def _read_config(location):
    from bert_tf.config import BertConfig

    if location.format == KERAS_HUB:
        return _keras_hub_config(location.directory)
    if location.format == HUGGING_FACE:
        # A Hugging Face folder's config.json means HF semantics ("gelu" = erf) even when it
        # lacks the HF-only keys that auto-detection looks for.
        return BertConfig.from_json_file(
            os.path.join(location.directory, "config.json"), source="hugging_face"
        )
    candidates = [os.path.join(location.directory, "bert_config.json")]
    if location.format == TF2:
        candidates.append(os.path.join(os.path.dirname(location.directory), "bert_config.json"))
    for candidate in candidates:
        if os.path.isfile(candidate):
            return BertConfig.from_json_file(candidate, source="original")
    raise ValueError(
        f"{location.path}: no bert_config.json found (looked for {', '.join(candidates)}); "
        "an original checkpoint keeps it in the same directory"
    )


def _warn_if_activation_differs(model, location):
    """Weights trained with one GELU silently give different outputs under the other."""
    model_config = _model_config(model)
    if model_config is None:
        return
    try:
        checkpoint_config = _read_config(location)
    except ValueError:
        return
    if checkpoint_config.hidden_act != model_config.hidden_act:
        logging.warning(
            "%s: the checkpoint's config says hidden_act=%r but the model uses %r (bert_tf names: "
            "'gelu' = tanh approximation, 'gelu_exact' = erf); outputs will differ from the "
            "source model. Build the model from read_config(path) unless this is intended.",
            location.path,
            checkpoint_config.hidden_act,
            model_config.hidden_act,
        )


def find_vocab_and_casing(path):
    """(vocab.txt path or None, do_lower_case or None) for the checkpoint at `path`.

    Casing comes from a Hugging Face `tokenizer_config.json` when there is one, else from the
    original release folder names (`uncased_L-12_H-768_A-12` lower-cases, `cased_...` and
    `multi_cased_...` do not; `multilingual_L-...` and `chinese_L-...` lower-case).
    """
    directory = checkpoint_directory(path)
    vocab = os.path.join(directory, "vocab.txt")
    vocab = vocab if os.path.isfile(vocab) else None
    if vocab is None and _is_keras_hub_dir(directory):
        vocab, do_lower_case = _keras_hub_tokenizer(directory)
        if do_lower_case is not None:
            return vocab, do_lower_case

    do_lower_case = None
    tokenizer_config = os.path.join(directory, "tokenizer_config.json")
    if os.path.isfile(tokenizer_config):
        with open(tokenizer_config, "r", encoding="utf-8") as f:
            value = json.load(f).get("do_lower_case")
        if isinstance(value, bool):
            do_lower_case = value
    if do_lower_case is None:
        do_lower_case = _casing_from_name(os.path.basename(os.path.normpath(directory)))
    return vocab, do_lower_case


def checkpoint_directory(path):
    """The directory holding the checkpoint at `path` (a directory or a checkpoint prefix)."""
    path = os.path.expanduser(os.fspath(path))
    return path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))


# sentence-transformers' Pooling config keys -> bert_tf BertClassifier pooling.
_SENTENCE_POOLING_MODES = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean"}


def find_sentence_pooling(path):
    """"mean", "cls" or None: how the sentence-transformers model whose weights are at `path`
    pools token states into its sentence vector, from its Pooling module's config.json (the
    module `modules.json` names, else `1_Pooling/`). None when the directory has no Pooling
    module (an original or plain Hugging Face BERT checkpoint).

    Raises ValueError naming the file when it is not valid JSON or declares a pooling that a
    single [hidden] vector cannot reproduce (max, mean-sqrt-len, weighted, last token, or
    several modes concatenated).
    """
    directory = checkpoint_directory(path)
    module_dir = os.path.join(directory, "1_Pooling")
    modules_file = os.path.join(directory, "modules.json")
    if os.path.isfile(modules_file):
        modules = _read_json(modules_file)
        for module in modules if isinstance(modules, list) else []:
            if (isinstance(module, dict) and str(module.get("type", "")).endswith(".Pooling")
                    and module.get("path")):
                module_dir = os.path.join(directory, module["path"])
                break
    config_file = os.path.join(module_dir, "config.json")
    if not os.path.isfile(config_file):
        return None
    config = _read_json(config_file)
    if not isinstance(config, dict):
        raise ValueError(f"{config_file}: expected a JSON object of pooling_mode_* flags")
    declared = sorted(k for k, v in config.items() if k.startswith("pooling_mode_") and v)
    if len(declared) != 1 or declared[0] not in _SENTENCE_POOLING_MODES:
        raise ValueError(f"{config_file}: sentence pooling {declared or 'none'} is not one "
                         f"bert_tf can reproduce (exactly one of "
                         f"{sorted(_SENTENCE_POOLING_MODES)} must be true); choose the "
                         f"classifier's pooling explicitly")
    return _SENTENCE_POOLING_MODES[declared[0]]


def find_sentence_normalization(path) -> bool:
    """True when the sentence-transformers `modules.json` beside the checkpoint at `path`
    lists a Normalize module (the sentence embedding is then L2-normalized)."""
    modules_file = os.path.join(checkpoint_directory(path), "modules.json")
    if not os.path.isfile(modules_file):
        return False
    modules = _read_json(modules_file)
    if not isinstance(modules, list):
        raise ValueError(f"{modules_file}: expected a JSON list of modules")
    return any(isinstance(m, dict) and str(m.get("type", "")).endswith(".Normalize")
               for m in modules)


def _read_json(path):
    with open(path, "r", encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None


def _casing_from_name(folder):
    name = folder.lower()
    if re.search(r"(^|[_\-])uncased([_\-]|$)", name):
        return True
    if re.search(r"(^|[_\-])cased([_\-]|$)", name):
        return False
    if re.match(r"(multilingual|chinese)_l-\d+", name):
        return True
    return None
