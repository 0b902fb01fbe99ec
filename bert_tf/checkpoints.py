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

from bert_tf import files
from bert_tf.files import publish_files, staging_directory

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "check_checkpoint",
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
    shape: the original-layout shape, each dimension a BertConfig field name, "num_labels"
      (the classifier's) or a number; what a checkpoint's shapes are checked against.
    """

    original: str
    model: str
    hf: Tuple[str, ...]
    model_transposed: bool = False
    hf_transposed: bool = False
    keras_hub: Optional[str] = None
    keras_hub_transposed: bool = False
    keras_hub_heads: str = ""
    shape: Tuple = ()

    @property
    def part(self):
        """`encoder` or the head attribute (`masked_lm_head`, `next_sentence_head`, `classifier`)."""
        return self.model.split(".", 1)[0]


_H, _I = "hidden_size", "intermediate_size"


def _dense(original, model, hf, keras_hub, keras_hub_heads="", shape=(_H, _H)):
    """Kernel and bias of a dense layer (Keras and TF1 kernels [in, out]; HF weight [out, in])."""
    return (
        NameMapping(f"{original}/kernel", f"{model}.kernel", (f"{hf}.weight",), hf_transposed=True,
                    keras_hub=f"{keras_hub}/kernel", keras_hub_heads=keras_hub_heads, shape=shape),
        NameMapping(f"{original}/bias", f"{model}.bias", (f"{hf}.bias",), keras_hub=f"{keras_hub}/bias",
                    keras_hub_heads="output" if keras_hub_heads == "output" else "",
                    shape=shape[1:]),
    )


def _layer_norm(original, model, hf, keras_hub):
    """LayerNorm scale and offset; older Hugging Face files call them gamma/beta."""
    return (
        NameMapping(f"{original}/gamma", f"{model}.gamma", (f"{hf}.weight", f"{hf}.gamma"),
                    keras_hub=f"{keras_hub}/gamma", shape=(_H,)),
        NameMapping(f"{original}/beta", f"{model}.beta", (f"{hf}.bias", f"{hf}.beta"),
                    keras_hub=f"{keras_hub}/beta", shape=(_H,)),
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
        shape=("vocab_size", _H),
    ),
    NameMapping(
        "bert/embeddings/token_type_embeddings",
        "encoder.embeddings.token_type_embeddings.embeddings",
        ("embeddings.token_type_embeddings.weight",),
        keras_hub="segment_embedding/embeddings",
        shape=("type_vocab_size", _H),
    ),
    NameMapping(
        "bert/embeddings/position_embeddings",
        "encoder.embeddings.position_embeddings.embeddings",
        ("embeddings.position_embeddings.weight",),
        keras_hub="position_embedding/embeddings",
        shape=("max_position_embeddings", _H),
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
        shape=(_H, _I),
    ),
    *_dense(
        "bert/encoder/layer_{i}/output/dense",
        f"{_LAYER}.output_dense",
        "encoder.layer.{i}.output.dense",
        f"{_KH_LAYER}/feedforward_output_dense",
        shape=(_I, _H),
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
        shape=("vocab_size",),
    ),
    # ---- next sentence head: [2, H] ([out, in]) in the three formats that have it (keras-hub
    # has no next-sentence head)
    NameMapping(
        "cls/seq_relationship/output_weights",
        "next_sentence_head.output_weights",
        ("cls.seq_relationship.weight",),
        shape=(2, _H),
    ),
    NameMapping("cls/seq_relationship/output_bias", "next_sentence_head.output_bias", ("cls.seq_relationship.bias",),
                shape=(2,)),
    # ---- run_classifier's head: top-level names, [num_labels, H]; bert_tf's Dense kernel is
    # [H, num_labels]. Hugging Face's sequence and token classifiers both use `classifier`;
    # keras-hub's BertTextClassifier (sequence classification only) names its Dense `logits`.
    NameMapping("output_weights", "classifier.kernel", ("classifier.weight",), model_transposed=True,
                keras_hub="logits/kernel", keras_hub_transposed=True, shape=("num_labels", _H)),
    NameMapping("output_bias", "classifier.bias", ("classifier.bias",), keras_hub="logits/bias",
                shape=("num_labels",)),
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
    except (tf.errors.OpError, OSError, ValueError) as e:  # a corrupt or foreign index file
        raise CheckpointError(f"{prefix}.index: cannot read the checkpoint index "
                              f"({type(e).__name__}: {_first_line(e)}); the file is damaged or "
                              f"not a TensorFlow checkpoint; {_EXPECTED}") from e
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

        self.path = location.path
        self._reader = tf.train.load_checkpoint(location.path)
        self._shapes = self._reader.get_variable_to_shape_map()
        self.names = sorted(self._shapes)

    def locate(self, bound: _Bound):
        name = bound.original_name
        return name if name in self._shapes else None

    def shape(self, name, bound: _Bound):
        return tuple(int(d) for d in self._shapes[name])

    def value(self, name, bound: _Bound):
        return self._reader.get_tensor(name)

    @staticmethod
    def ignored(name):
        return name == "global_step" or name.endswith(("/adam_m", "/adam_v"))


class _HuggingFaceReader:
    """Hugging Face safetensors (one file or an index of shards), read into NumPy."""

    description = "Hugging Face checkpoint"

    def __init__(self, location):
        from safetensors import SafetensorError, safe_open

        directory = location.path
        index_file = os.path.join(directory, "model.safetensors.index.json")
        single_file = os.path.join(directory, "model.safetensors")
        if os.path.isfile(single_file):
            files = {single_file}
            self._file_of = None
            self.path = single_file
        else:
            self.path = index_file
            weight_map = _read_json(index_file)
            weight_map = weight_map.get("weight_map") if isinstance(weight_map, dict) else None
            if not isinstance(weight_map, dict):
                raise CheckpointError(f"{index_file}: expected a JSON object with a "
                                      f"\"weight_map\" of tensor name -> shard file")
            self._file_of = {k: os.path.join(directory, v) for k, v in weight_map.items()}
            files = set(self._file_of.values())
        self._handles = {}
        for file in sorted(files):
            try:
                self._handles[file] = safe_open(file, framework="np")
            except (SafetensorError, OSError) as e:  # a truncated or foreign file
                raise CheckpointError(
                    f"{file}: cannot read the safetensors file ({type(e).__name__}: "
                    f"{_first_line(e)}); the file is damaged or incomplete, re-download it"
                ) from e
        if self._file_of is None:
            self._file_of = {k: single_file for k in self._handles[single_file].keys()}
        self.names = sorted(self._file_of)
        # Task-model files prefix the encoder's names (`bert.`); a bare BertModel file does not.
        suffix = "embeddings.word_embeddings.weight"
        prefixes = [n[: -len(suffix)] for n in self.names if n.endswith(suffix)]
        self._encoder_prefix = prefixes[0] if len(prefixes) == 1 else "bert."

    def locate(self, bound: _Bound):
        prefix = self._encoder_prefix if bound.mapping.part == "encoder" else ""
        for name in bound.hf_names():
            if prefix + name in self._file_of:
                return prefix + name
        return None

    def shape(self, name, bound: _Bound):
        shape = tuple(int(d) for d in self._handles[self._file_of[name]].get_slice(name).get_shape())
        return shape[::-1] if bound.mapping.hf_transposed else shape

    def value(self, name, bound: _Bound):
        value = self._handles[self._file_of[name]].get_tensor(name)
        return value.T if bound.mapping.hf_transposed else value

    def file_of(self, name):
        return self._file_of[name]

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

        self.path = location.path
        self._reader = tf.train.load_checkpoint(location.path)
        self._shapes = self._reader.get_variable_to_shape_map()
        self._key_of = {}  # display name -> checkpoint key
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
            # Every object here is a trackable reached from the model: a failure is a bug (or a
            # TensorFlow change) to report, never a reason to leave variables out unnoticed.
            children = tf.train.TrackableView.children(obj)
            for name, child in children.items():
                child_path = path + (name,)
                if isinstance(child, tf.Variable) or hasattr(child, "assign") and hasattr(child, "shape"):
                    paths.setdefault(id(child), []).append(child_path)
                    continue
                if id(child) not in seen:
                    seen.add(id(child))
                    queue.append((child, child_path))
        return paths

    def locate(self, bound: _Bound):
        if self._root is None:
            return None
        for path in self._paths_of.get(id(bound.variable), []):
            node = self._follow(self._root, path)
            if node in self._value_key:
                name = self._display_name.get(node, self._name_of[node])
                self._key_of[name] = self._value_key[node]
                return name
        return None

    def shape(self, name, bound: _Bound):
        shape = tuple(int(d) for d in self._shapes[self._key_of[name]])
        return shape[::-1] if bound.mapping.model_transposed else shape

    def value(self, name, bound: _Bound):
        value = self._reader.get_tensor(self._key_of[name])
        return value.T if bound.mapping.model_transposed else value

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
        self.path = location.path
        try:
            self._values = _keras_hub_values(location.path)
        except CheckpointError:
            raise
        except (OSError, ValueError) as e:  # e.g. a truncated model.weights.h5
            raise CheckpointError(f"{location.path}: cannot load the keras-hub preset "
                                  f"({type(e).__name__}: {_first_line(e)})") from e
        self.names = sorted(self._values)

    def locate(self, bound: _Bound):
        name = bound.keras_hub_name()
        return name if name is not None and name in self._values else None

    def shape(self, name, bound: _Bound):
        return tuple(self.value(name, bound).shape)

    def value(self, name, bound: _Bound):
        return _from_keras_hub_layout(bound.mapping, self._values[name])

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
        """keras-hub's BertBackbone with the feed-forward activation of `hidden_act` and the
        LayerNorm epsilon `layer_norm_eps` (keras-hub's is always 1e-12)."""

        def __init__(self, *args, hidden_act="gelu", layer_norm_eps=1e-12, **kwargs):
            super().__init__(*args, **kwargs)
            self.hidden_act = hidden_act
            self.layer_norm_eps = layer_norm_eps
            activation = get_activation(hidden_act)
            # The functional graph calls each layer again at run time, so replacing the
            # activation (or epsilon) of the already-built layers changes what it computes.
            self.embeddings_layer_norm.epsilon = layer_norm_eps
            for layer in self.transformer_layers:
                layer.activation = activation
                layer._feedforward_intermediate_dense.activation = activation
                layer.layer_norm_epsilon = layer_norm_eps
                layer._self_attention_layer_norm.epsilon = layer_norm_eps
                layer._feedforward_layer_norm.epsilon = layer_norm_eps

        def get_config(self):
            config = super().get_config()
            config["hidden_act"] = self.hidden_act
            if self.layer_norm_eps != 1e-12:
                config["layer_norm_eps"] = self.layer_norm_eps
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
            epsilon = getattr(backbone, "layer_norm_eps", 1e-12)
            head.layer_norm_epsilon = epsilon
            head._intermediate_layer_norm.epsilon = epsilon

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
    import random

    # Building keras-hub's model draws initializer seeds from Python's random state: restored,
    # so reading a preset (e.g. in a validation pass) changes no later initialisation.
    state = random.getstate()
    try:
        _, model = _keras_hub_preset(directory)
    finally:
        random.setstate(state)
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
            layer_norm_eps=values.get("layer_norm_eps", 1e-12),
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


class CheckpointError(files.DataFormatError):
    """A checkpoint that cannot be read (a damaged, truncated or foreign file); the message
    names the file."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint that does not fit the model: variables the model needs that the checkpoint
    lacks, shapes other than the model's, transformer layers the model does not have, or
    variables whose data cannot be read. The message names the checkpoint and each variable
    (with both shapes where they differ), in one line. `allow_partial=True`
    (`--allow_partial_checkpoint`) turns it into a warning."""


@dataclasses.dataclass
class LoadReport:
    """What `load_checkpoint` did (or what `check_checkpoint` found it would do).

    loaded: original names of the model variables set from the checkpoint.
    missing: original names of model variables the checkpoint lacks.
    mismatched: original names whose shape in the checkpoint is not the model's.
    unreadable: original names whose data in the checkpoint cannot be read.
    new: original names of the model variables left at their initial values: the heads the
      checkpoint does not have (a classifier on a pretrained encoder; the MLM / NSP heads of
      an encoder-only checkpoint), a pooler the model does not use, and with allow_partial
      also everything missing, mismatched or unreadable.
    new_heads: heads of the model (masked_lm_head, next_sentence_head, classifier) of which the
      checkpoint has no variable at all.
    unused: checkpoint names (in the checkpoint's own naming) that went into no variable.
    ignored: checkpoint names skipped on purpose (optimizer slots, global_step, buffers).
    """

    path: str
    format: str
    loaded: List[str] = dataclasses.field(default_factory=list)
    missing: List[str] = dataclasses.field(default_factory=list)
    mismatched: List[str] = dataclasses.field(default_factory=list)
    unreadable: List[str] = dataclasses.field(default_factory=list)
    new: List[str] = dataclasses.field(default_factory=list)
    new_heads: List[str] = dataclasses.field(default_factory=list)
    unused: List[str] = dataclasses.field(default_factory=list)
    ignored: List[str] = dataclasses.field(default_factory=list)

    def __str__(self):
        return (
            f"{self.format} checkpoint {self.path}: {len(self.loaded)} variables loaded, "
            f"{len(self.new)} start from their initial values, {len(self.unused)} unused, "
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


def _read_errors():
    """What reading one tensor of a damaged file raises (TensorFlow, safetensors, NumPy)."""
    import tensorflow as tf

    # TensorFlow's checkpoint reader raises IndexError for a data file cut short.
    errors = [tf.errors.OpError, OSError, ValueError, IndexError]
    try:
        from safetensors import SafetensorError

        errors.append(SafetensorError)
    except ImportError:
        pass
    return tuple(errors)


@dataclasses.dataclass
class _Match:
    """Each table entry of a model looked up in a checkpoint (`_match`)."""

    values: dict  # original name -> value (original layout) or None when not read
    names: dict  # original name -> checkpoint name
    missing: list  # _Bound
    mismatched: list  # (_Bound, checkpoint name, checkpoint shape, model shape)
    unreadable: list  # (_Bound, checkpoint name, exception)
    consumed: set  # checkpoint names that belong to an entry


def _match(reader, entries, expected_shapes, read_values=True, keep_values=True) -> _Match:
    """Finds every entry in `reader`: its shape checked against `expected_shapes` (original
    name -> shape in the original layout), its value read when `read_values` (and kept when
    `keep_values`; else dropped at once, so a check holds one tensor at a time). Nothing is
    skipped: an entry is found, missing, mismatched or unreadable."""
    errors = _read_errors()
    match = _Match({}, {}, [], [], [], set())
    for entry in entries:
        name = reader.locate(entry)
        if name is None:
            match.missing.append(entry)
            continue
        match.consumed.add(name)
        try:
            shape = reader.shape(name, entry)
            value = np.asarray(reader.value(name, entry)) if read_values else None
        except errors as error:
            match.unreadable.append((entry, name, error))
            continue
        if value is not None:
            shape = tuple(value.shape)
        expected = tuple(expected_shapes[entry.original_name])
        if shape != expected:
            match.mismatched.append((entry, name, shape, expected))
            continue
        match.values[entry.original_name] = value if keep_values else None
        match.names[entry.original_name] = name
    return match


def _expected_shape(mapping, config, num_labels=None):
    """The original-layout shape the table declares for `mapping` under `config`."""
    return tuple(d if isinstance(d, int) else (num_labels if d == "num_labels" else getattr(config, d))
                 for d in mapping.shape)


MODEL_KINDS = ("encoder", "pretrainer", "classifier", "token_classifier")


def _kind_of(model):
    """(kind, classifier pooling) of a bert_tf model."""
    from bert_tf.models import BertClassifier, BertEncoder, BertPretrainer, BertTokenClassifier

    if isinstance(model, BertPretrainer):
        return "pretrainer", None
    if isinstance(model, BertClassifier):
        return "classifier", model.pooling
    if isinstance(model, BertTokenClassifier):
        return "token_classifier", None
    if isinstance(model, BertEncoder):
        return "encoder", None
    raise TypeError(f"{type(model).__name__} is not a bert_tf model: expected a BertEncoder, "
                    "BertPretrainer, BertClassifier or BertTokenClassifier")


def _uses_pooler(kind, pooling, new_heads):
    """Whether the model's outputs depend on the pooler (else it may start new)."""
    if kind == "pretrainer":
        return "next_sentence_head" not in new_heads  # only the NSP head reads it
    if kind == "classifier":
        return pooling == "pooler"
    return kind == "encoder"  # its pooled_output


def _names(names, limit=10):
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _first_line(error):
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _data_files(reader, names):
    """The files holding the checkpoint names `names` (for messages)."""
    if hasattr(reader, "file_of"):
        return sorted({reader.file_of(n) for n in names})
    found = sorted(glob.glob(glob.escape(reader.path) + ".data-*"))
    return found or [reader.path]


def _judge(match, entries, kind, pooling, reader, path, target, extra_layers, allow_partial,
           log=True):
    """Splits what the checkpoint lacks into what may start new (a head the checkpoint has
    none of; a pooler the model does not use) and problems; raises CheckpointMismatchError
    listing every problem unless `allow_partial`, which logs them as a warning instead.
    Returns (new, new_heads, problem names)."""
    missing = {e.original_name for e in match.missing}
    new_heads = []
    for head in HEADS:
        names = [e.original_name for e in entries if e.mapping.part == head]
        if names and all(n in missing for n in names):
            new_heads.append(head)
    allowed = {e.original_name for e in entries if e.mapping.part in new_heads}
    if not _uses_pooler(kind, pooling, new_heads):
        allowed.update(POOLER_NAMES)
    lacking = [e.original_name for e in match.missing if e.original_name not in allowed]
    new = [e.original_name for e in match.missing if e.original_name in allowed]

    problems = []
    if lacking:
        problems.append(f"it lacks {len(lacking)} variable{'s' if len(lacking) > 1 else ''} the "
                        f"model needs: {_names(lacking)}")
    if match.mismatched:
        shown = "; ".join(f"{e.original_name} checkpoint {list(found)} vs model {list(expected)}"
                          for e, _, found, expected in match.mismatched[:10])
        more = len(match.mismatched) - 10
        problems.append(f"{len(match.mismatched)} shape{'s' if len(match.mismatched) > 1 else ''} "
                        f"differ{'' if len(match.mismatched) > 1 else 's'}: {shown}"
                        + (f"; and {more} more" if more > 0 else "") + _shape_hint(match.mismatched))
    if match.unreadable:
        unreadable_names = [e.original_name for e, _, _ in match.unreadable]
        first = match.unreadable[0][2]
        problems.append(
            f"{len(unreadable_names)} variable{'s' if len(unreadable_names) > 1 else ''} cannot be "
            f"read from {', '.join(_data_files(reader, [n for _, n, _ in match.unreadable]))}: "
            f"{_names(unreadable_names)} ({type(first).__name__}: {_first_line(first)}); the file "
            "is damaged or incomplete, re-copy it")
    if extra_layers:
        problems.append(f"it has more transformer layers than the model's {extra_layers[0]} "
                        f"(e.g. {extra_layers[1]}): num_hidden_layers differs")
    problem_names = (lacking + [e.original_name for e, _, _, _ in match.mismatched]
                     + [e.original_name for e, _, _ in match.unreadable])
    if problems and not allow_partial:
        if target == "its own config":
            advice = "The checkpoint and its config disagree: re-copy or re-create them"
        else:
            advice = ("Use the checkpoint's own config (bert_tf.checkpoints.read_config), or pass "
                      "--allow_partial_checkpoint (allow_partial=True) to load what fits and start "
                      "the rest from its initial values")
        raise CheckpointMismatchError(
            f"{path}: the checkpoint does not fit {target}: {'; '.join(problems)}. {advice}"
        ) from (match.unreadable[0][2] if match.unreadable else None)
    if problems and log:
        logging.warning("%s: allow_partial: %s. These %d variables start from their initial "
                        "values: %s", path, "; ".join(problems), len(problem_names),
                        _names(problem_names, limit=len(problem_names)))
    return new + problem_names, new_heads, problem_names


def _shape_hint(mismatched):
    hints = []
    for entry, _, found, expected in mismatched:
        if found[:1] == expected[:1]:
            continue
        if entry.mapping.original == "bert/embeddings/word_embeddings":
            hints.append(f"vocab_size differs: checkpoint {found[0]}, model {expected[0]}")
        elif entry.mapping.original == "output_weights":
            hints.append(f"num_labels differs: checkpoint {found[0]}, model {expected[0]}")
        elif entry.mapping.original == "bert/embeddings/LayerNorm/gamma":
            hints.append(f"hidden_size differs: checkpoint {found[0]}, model {expected[0]}")
    return f" ({'; '.join(hints)})" if hints else ""


def _report_of_match(location, reader, match) -> "LoadReport":
    """A LoadReport listing the checkpoint's variables `match` did not consume (ignored or
    unused); a checkpoint of which nothing fits is an error (load and validation alike)."""
    report = LoadReport(path=location.path, format=location.format)
    for name in reader.names:
        if name not in match.consumed:
            (report.ignored if reader.ignored(name) else report.unused).append(name)
    if not match.values and not match.mismatched and not match.unreadable:
        raise CheckpointMismatchError(
            f"{location.path}: this {reader.description} holds none of the model's variables "
            f"(it has {len(reader.names)} variables, e.g. {reader.names[:3]}); {_EXPECTED}")
    return report


def _extra_layers(reader, location, num_layers, unused):
    """(model's num_hidden_layers, a checkpoint name of layer `num_layers`) when the checkpoint
    has more transformer layers than the model, else None."""
    if location.format == TF2:
        pattern = re.compile(rf"/transformer_layers/{num_layers}/")
        found = [n for n in unused if pattern.search(n)]
        return (num_layers, found[0]) if found else None
    probe = next(m for m in NAME_TABLE if m.original.endswith("attention/self/query/kernel"))
    name = reader.locate(_Bound(probe, num_layers, probe.original.format(i=num_layers),
                                probe.model.format(i=num_layers), None))
    return (num_layers, name) if name is not None else None


def load_checkpoint(model, path, allow_partial=False) -> LoadReport:
    """Sets `model`'s variables from a checkpoint at `path` (any supported format).

    Every value is read and checked before any variable is assigned, so an error leaves the
    model untouched. Only the heads the checkpoint has none of (a classifier on a pretrained
    encoder; the MLM / NSP heads of a checkpoint without them, with a warning) and a pooler
    the model does not use start from their initial values; they are logged by name.

    Args:
      model: a bert_tf BertEncoder, BertPretrainer, BertClassifier or BertTokenClassifier
        (built: its variables exist).
      path: original TF1 checkpoint prefix or directory, Hugging Face directory, keras-hub
        preset directory, or bert_tf TF2 checkpoint prefix or directory.
      allow_partial: load what fits and leave the rest (variables the checkpoint lacks, has
        in another shape, or cannot read) at their initial values, with a warning naming them,
        instead of raising CheckpointMismatchError.

    Returns:
      A LoadReport.

    Raises:
      CheckpointMismatchError (a ValueError): variables the model needs that the checkpoint
        lacks, shape mismatches (both shapes given), extra transformer layers, unreadable data;
        every one named, with the file.
      CheckpointError / ValueError: an unrecognised or unreadable path; a checkpoint sharing no
        variable with the model.
    """
    location = _locate(path)
    _ensure_built(model)
    kind, pooling = _kind_of(model)
    bound = _bind(model)
    reader = _open_reader(location, model)
    expected = {entry.original_name: entry.model_shape_in_original_layout() for entry in bound}
    match = _match(reader, bound, expected)
    report = _report_of_match(location, reader, match)
    extra = _extra_layers(reader, location, len(_encoder_of(model).transformer_layers), report.unused)
    report.new, report.new_heads, _ = _judge(
        match, bound, kind, pooling, reader, location.path, f"the {type(model).__name__} of this config",
        extra, allow_partial)
    report.missing = [e.original_name for e in match.missing]
    report.mismatched = [e.original_name for e, _, _, _ in match.mismatched]
    report.unreadable = [e.original_name for e, _, _ in match.unreadable]
    if not match.values:
        raise CheckpointMismatchError(f"{location.path}: no variable of this {reader.description} "
                                      f"fits the model, even with allow_partial")
    for entry in bound:
        value = match.values.get(entry.original_name)
        if value is None:
            continue
        if entry.mapping.model_transposed:
            value = value.T
        entry.variable.assign(value.astype(_numpy_dtype(entry.variable)))
        report.loaded.append(entry.original_name)

    _log_report(report, bound, kind)
    _warn_if_activation_differs(model, location)
    return report


def check_checkpoint(path, config, kind="encoder", num_labels=None, pooling="pooler",
                     allow_partial=False, read_values=True) -> LoadReport:
    """What `load_checkpoint` would find loading `path` into a model of `kind` built from
    `config`, without building that model: the validation pass of the scripts, run before any
    slow work. Raises the errors `load_checkpoint` raises (every missing, mis-shaped or
    unreadable variable named, with the file); with `read_values` the data is read too (a
    damaged data file is found here rather than after the data preparation), one variable at
    a time.

    Args:
      path: any checkpoint `load_checkpoint` accepts.
      config: the BertConfig the model will be built from.
      kind: one of MODEL_KINDS.
      num_labels: the classifier's outputs (classifier, token_classifier).
      pooling: the classifier's pooling ("pooler" uses the pooler).
      allow_partial: as in `load_checkpoint` (no warning is logged here: the load logs it).
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"check_checkpoint: kind must be one of {MODEL_KINDS}, got {kind!r}")
    location = _locate(path)
    structural = _structural_model(config, kind) if location.format == TF2 else None
    if structural is not None:
        # bert_tf's object graphs are matched through a model of the same structure (a copy
        # with tiny dimensions has the same attribute paths; the shapes come from `config`).
        entries = _bind(structural)
    else:
        heads = {"pretrainer": ("masked_lm_head", "next_sentence_head"),
                 "classifier": ("classifier",), "token_classifier": ("classifier",)}.get(kind, ())
        entries = [e for e in _entries(config) if e.mapping.part in ("encoder",) + heads]
    reader = _open_reader(location, structural)
    expected = {e.original_name: _expected_shape(e.mapping, config, num_labels) for e in entries}
    match = _match(reader, entries, expected, read_values=read_values, keep_values=False)
    report = _report_of_match(location, reader, match)
    extra = _extra_layers(reader, location, config.num_hidden_layers, report.unused)
    model_name = {"encoder": "BertEncoder", "pretrainer": "BertPretrainer",
                  "classifier": "BertClassifier", "token_classifier": "BertTokenClassifier"}[kind]
    report.new, report.new_heads, _ = _judge(match, entries, kind, pooling, reader, location.path,
                                             f"the {model_name} of this config", extra,
                                             allow_partial, log=False)
    if not match.values:
        raise CheckpointMismatchError(f"{location.path}: no variable of this {reader.description} "
                                      f"fits the model, even with allow_partial")
    report.loaded = list(match.names)
    report.missing = [e.original_name for e in match.missing]
    report.mismatched = [e.original_name for e, _, _, _ in match.mismatched]
    report.unreadable = [e.original_name for e, _, _ in match.unreadable]
    return report


def _structural_model(config, kind):
    """A model of `kind` with `config`'s number of layers and activation but dimensions of 1:
    the same variable paths as the real model, almost no memory. Python's random state, from
    which Keras draws initializer and dropout seeds, is restored afterwards, so building it
    changes no later initialisation."""
    import random

    from bert_tf import models
    from bert_tf.config import BertConfig

    tiny = BertConfig(vocab_size=1, hidden_size=1, num_hidden_layers=config.num_hidden_layers,
                      num_attention_heads=1, intermediate_size=1, hidden_act=config.hidden_act,
                      max_position_embeddings=1, type_vocab_size=1)
    state = random.getstate()
    try:
        if kind == "pretrainer":
            return models.BertPretrainer(tiny)
        if kind == "classifier":
            return models.BertClassifier(tiny, num_labels=1)
        if kind == "token_classifier":
            return models.BertTokenClassifier(tiny, num_labels=1)
        return models.BertEncoder(tiny)
    finally:
        random.setstate(state)


def _numpy_dtype(variable):
    dtype = variable.dtype
    return np.dtype(getattr(dtype, "as_numpy_dtype", dtype))


def _ensure_built(model):
    if not model.weights:
        raise ValueError(
            f"{type(model).__name__} has no variables yet: call it once on a batch (or build it) "
            "before loading a checkpoint"
        )


_HEAD_EFFECTS = {
    "masked_lm_head": "masked-LM (fill-mask) predictions are random until it is trained",
    "next_sentence_head": "next-sentence predictions are random until it is trained",
}


def _log_report(report, bound, kind):
    logging.info("%s", report)
    part_of = {b.original_name: b.mapping.part for b in bound}
    for head in report.new_heads:
        names = [n for n in report.new if part_of.get(n) == head]
        if head in _HEAD_EFFECTS:
            logging.warning("%s: the checkpoint has no %s (%s): it starts from random initial "
                            "values; %s", report.path, head, ", ".join(names), _HEAD_EFFECTS[head])
        else:
            logging.info("%s: the checkpoint has no %s head: it starts from its initial values "
                         "(a new task head): %s", report.path, head, ", ".join(names))
    pooler = [n for n in report.new if n in POOLER_NAMES and n not in report.mismatched
              and n not in report.unreadable]
    if pooler:
        logging.info("%s: the checkpoint has no pooler, which this %s does not use: it starts "
                     "from its initial values: %s", report.path, kind, ", ".join(pooler))
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


def read_weights(path, classifier_kind=None, allow_partial=False) -> BertWeights:
    """Reads the checkpoint at `path` (any format `load_checkpoint` accepts) into a BertWeights.

    Every value is checked against the shape the checkpoint's own config gives it. A head is
    kept when all of its variables are present and fit; a partial or mis-shaped head is an
    error (with `allow_partial`: left out, named in a warning). A missing pooler (Hugging Face
    BertForMaskedLM / BertForTokenClassification files have none) and checkpoint variables
    that belong to no table entry are named in a warning.

    Args:
      path: original TF1 prefix or directory, Hugging Face directory, keras-hub preset
        directory, or bert_tf TF2 checkpoint prefix or directory.
      classifier_kind: "sequence" or "token" for a classifier head; None to take it from the
        source where it says (Hugging Face `architectures`, keras-hub's task) and otherwise
        assume "sequence" (original and bert_tf checkpoints do not record it).

    Raises:
      CheckpointMismatchError: an encoder variable the checkpoint lacks, has in another shape
        than its config says or cannot read; a partial head (unless `allow_partial`).
      ValueError: unrecognised path, missing config.
    """
    if classifier_kind is not None and classifier_kind not in CLASSIFIER_KINDS:
        raise ValueError(f"classifier_kind must be one of {CLASSIFIER_KINDS}, got {classifier_kind!r}")
    location = _locate(path)
    config = _read_config(location)
    if location.format == TF2:
        values, unused = _read_tf2_values(location, config, allow_partial)
    else:
        reader = _open_reader(location, None)
        entries = list(_entries(config))
        values, unused = _read_model_free(reader, entries, config, location, allow_partial)
    _check_complete(values, config, location.path, unused, allow_partial)

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


def _read_model_free(reader, entries, config, location, allow_partial):
    """(values, unused checkpoint names) of every table entry `reader` has; the classifier's
    number of labels is the checkpoint's. Unreadable and mis-shaped variables are errors;
    with `allow_partial` those of a head only drop that head (`_check_complete` says so)."""
    classifier_bias = next(e for e in entries if e.original_name == "output_bias")
    found = reader.locate(classifier_bias)
    num_labels = reader.shape(found, classifier_bias)[0] if found is not None else None
    expected = {e.original_name: _expected_shape(e.mapping, config, num_labels) for e in entries}
    match = _match(reader, entries, expected)
    problems = _Match({}, {}, [], [e for e in match.mismatched if e[0].mapping.part == "encoder"
                                    or not allow_partial],
                      [e for e in match.unreadable if e[0].mapping.part == "encoder" or not allow_partial],
                      set())
    if problems.mismatched or problems.unreadable:
        _judge(problems, entries, "encoder", "pooler", reader, location.path,
               "its own config", None, allow_partial=False)
    unused = [n for n in reader.names if n not in match.consumed and not reader.ignored(n)]
    return match.values, unused


def _read_tf2_values(location, config, allow_partial):
    """(values, unused checkpoint names) of a bert_tf TF2 checkpoint.

    The object graph is matched against a BertPretrainer (encoder, MLM and NSP heads) and a
    BertClassifier (its classifier head, whatever the number of labels), of the checkpoint's
    structure.
    """
    values = {}
    used = set()
    names = set()
    candidates = (("pretrainer", None), ("encoder", ("encoder",)), ("classifier", ("classifier",)))
    for kind, parts in candidates:
        if kind == "encoder" and "bert/embeddings/word_embeddings" in values:
            continue
        model = _structural_model(config, kind)
        reader = _TF2Reader(location, model)
        names.update(n for n in reader.names if not reader.ignored(n))
        entries = [e for e in _bind(model) if parts is None or e.mapping.part in parts]
        if kind == "classifier":
            bias = next(e for e in entries if e.original_name == "output_bias")
            found = reader.locate(bias)
            if found is None:
                continue
            num_labels = reader.shape(found, bias)[0]
        else:
            num_labels = None
        expected = {e.original_name: _expected_shape(e.mapping, config, num_labels) for e in entries}
        match = _match(reader, entries, expected)
        bad = _Match({}, {}, [], [m for m in match.mismatched if m[0].mapping.part == "encoder"
                                  or not allow_partial],
                     [m for m in match.unreadable if m[0].mapping.part == "encoder" or not allow_partial],
                     set())
        if bad.mismatched or bad.unreadable:
            _judge(bad, entries, "encoder", "pooler", reader, location.path, "its own config",
                   None, allow_partial=False)
        used.update(match.consumed)
        values.update(match.values)
    return values, sorted(names - used)


POOLER_NAMES = ("bert/pooler/dense/kernel", "bert/pooler/dense/bias")


def _check_complete(values, config, path, unused, allow_partial=False):
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
        raise CheckpointMismatchError(
            f"{path}: the checkpoint lacks {len(missing_encoder)} encoder variables: "
            f"{_names(missing_encoder)}; expected a complete BERT encoder"
        )
    for head in HEADS:
        names = [e.original_name for e in entries if e.mapping.part == head]
        present = [n for n in names if n in values]
        if present and len(present) != len(names):
            lacking = [n for n in names if n not in values]
            if not allow_partial:
                raise CheckpointMismatchError(
                    f"{path}: head {head} is incomplete: it has {', '.join(present)} but lacks "
                    f"{', '.join(lacking)}; pass --allow_partial_checkpoint (allow_partial=True) "
                    f"to convert without it")
            logging.warning("%s: head %s is incomplete (has %s, lacks %s): not converted",
                            path, head, ", ".join(present), ", ".join(lacking))
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
            raise CheckpointMismatchError(
                f"{weights.source}: {entry.original_name} has shape {list(value.shape)} but the "
                f"{type(model).__name__} expects {list(entry.model_shape_in_original_layout())}")
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
