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
    prefix or the directory with its `checkpoint` file), whatever the root name of the model.
"""

import dataclasses
import glob
import json
import os
import re
import shutil
import tempfile
from typing import List, Optional, Tuple

import numpy as np
from absl import logging

__all__ = [
    "NAME_TABLE",
    "NameMapping",
    "LoadReport",
    "load_checkpoint",
    "save_original_checkpoint",
    "read_config",
    "find_vocab_and_casing",
    "checkpoint_format",
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
    model_transposed / hf_transposed: that format holds the transpose of the original layout.
    """

    original: str
    model: str
    hf: Tuple[str, ...]
    model_transposed: bool = False
    hf_transposed: bool = False

    @property
    def part(self):
        """`encoder` or the head attribute (`masked_lm_head`, `next_sentence_head`, `classifier`)."""
        return self.model.split(".", 1)[0]


def _dense(original, model, hf, **kwargs):
    """Kernel and bias of a dense layer (Keras and TF1 kernels [in, out]; HF weight [out, in])."""
    return (
        NameMapping(f"{original}/kernel", f"{model}.kernel", (f"{hf}.weight",), hf_transposed=True, **kwargs),
        NameMapping(f"{original}/bias", f"{model}.bias", (f"{hf}.bias",)),
    )


def _layer_norm(original, model, hf):
    """LayerNorm scale and offset; older Hugging Face files call them gamma/beta."""
    return (
        NameMapping(f"{original}/gamma", f"{model}.gamma", (f"{hf}.weight", f"{hf}.gamma")),
        NameMapping(f"{original}/beta", f"{model}.beta", (f"{hf}.bias", f"{hf}.beta")),
    )


_LAYER = "encoder.transformer_layers[{i}]"

NAME_TABLE: Tuple[NameMapping, ...] = (
    # ---- embeddings
    NameMapping(
        "bert/embeddings/word_embeddings",
        "encoder.embeddings.word_embeddings.embeddings",
        ("embeddings.word_embeddings.weight",),
    ),
    NameMapping(
        "bert/embeddings/token_type_embeddings",
        "encoder.embeddings.token_type_embeddings.embeddings",
        ("embeddings.token_type_embeddings.weight",),
    ),
    NameMapping(
        "bert/embeddings/position_embeddings",
        "encoder.embeddings.position_embeddings.embeddings",
        ("embeddings.position_embeddings.weight",),
    ),
    *_layer_norm("bert/embeddings/LayerNorm", "encoder.embeddings.layer_norm", "embeddings.LayerNorm"),
    # ---- transformer layers
    *_dense(
        "bert/encoder/layer_{i}/attention/self/query",
        f"{_LAYER}.attention.query",
        "encoder.layer.{i}.attention.self.query",
    ),
    *_dense(
        "bert/encoder/layer_{i}/attention/self/key",
        f"{_LAYER}.attention.key",
        "encoder.layer.{i}.attention.self.key",
    ),
    *_dense(
        "bert/encoder/layer_{i}/attention/self/value",
        f"{_LAYER}.attention.value",
        "encoder.layer.{i}.attention.self.value",
    ),
    *_dense(
        "bert/encoder/layer_{i}/attention/output/dense",
        f"{_LAYER}.attention.output_dense",
        "encoder.layer.{i}.attention.output.dense",
    ),
    *_layer_norm(
        "bert/encoder/layer_{i}/attention/output/LayerNorm",
        f"{_LAYER}.attention_layer_norm",
        "encoder.layer.{i}.attention.output.LayerNorm",
    ),
    *_dense(
        "bert/encoder/layer_{i}/intermediate/dense",
        f"{_LAYER}.intermediate",
        "encoder.layer.{i}.intermediate.dense",
    ),
    *_dense(
        "bert/encoder/layer_{i}/output/dense",
        f"{_LAYER}.output_dense",
        "encoder.layer.{i}.output.dense",
    ),
    *_layer_norm(
        "bert/encoder/layer_{i}/output/LayerNorm",
        f"{_LAYER}.output_layer_norm",
        "encoder.layer.{i}.output.LayerNorm",
    ),
    # ---- pooler
    *_dense("bert/pooler/dense", "encoder.pooler", "pooler.dense"),
    # ---- masked LM head (its decoder is tied to the word embeddings: no variable of its own)
    *_dense(
        "cls/predictions/transform/dense",
        "masked_lm_head.transform",
        "cls.predictions.transform.dense",
    ),
    *_layer_norm(
        "cls/predictions/transform/LayerNorm",
        "masked_lm_head.layer_norm",
        "cls.predictions.transform.LayerNorm",
    ),
    NameMapping(
        "cls/predictions/output_bias",
        "masked_lm_head.output_bias",
        ("cls.predictions.bias", "cls.predictions.decoder.bias"),
    ),
    # ---- next sentence head: [2, H] ([out, in]) in all three formats
    NameMapping(
        "cls/seq_relationship/output_weights",
        "next_sentence_head.output_weights",
        ("cls.seq_relationship.weight",),
    ),
    NameMapping("cls/seq_relationship/output_bias", "next_sentence_head.output_bias", ("cls.seq_relationship.bias",)),
    # ---- run_classifier's head: top-level names, [num_labels, H]; bert_tf's Dense kernel is
    # [H, num_labels]. Hugging Face's sequence and token classifiers both use `classifier`.
    NameMapping("output_weights", "classifier.kernel", ("classifier.weight",), model_transposed=True),
    NameMapping("output_bias", "classifier.bias", ("classifier.bias",)),
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

_HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
_EXPECTED = (
    "expected an original TF1 checkpoint prefix (e.g. .../bert_model.ckpt, beside its .index and "
    ".data-* files) or the directory holding it, a Hugging Face BERT directory (config.json + "
    "model.safetensors), or a bert_tf TF2 checkpoint (ckpt-N prefix or its directory)"
)


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
        if base in _HF_WEIGHT_FILES or base == "config.json":
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
    """`original_tf1`, `hugging_face` or `bert_tf_tf2`; ValueError when it is none of them."""
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
      path: original TF1 checkpoint prefix or directory, Hugging Face directory, or bert_tf TF2
        checkpoint prefix or directory.

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
    Files are written under temporary names and renamed when complete.

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
    import tensorflow as tf

    _ensure_built(model)
    config = config if config is not None else _model_config(model)
    if config is None:
        raise ValueError(
            "save_original_checkpoint: the model has no `config` attribute; pass config=BertConfig(...)"
        )
    prefix = os.path.abspath(os.path.expanduser(os.fspath(prefix)))
    directory = os.path.dirname(prefix)
    os.makedirs(directory, exist_ok=True)

    names, tensors = [], []
    for entry in _bind(model):
        value = np.asarray(entry.variable.numpy() if hasattr(entry.variable, "numpy") else entry.variable)
        value = value.astype(np.float32)
        names.append(entry.original_name)
        tensors.append(tf.constant(value.T if entry.mapping.model_transposed else value))

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

    staging = tempfile.mkdtemp(prefix=".save_original_", dir=directory)
    try:
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
        for staged in sorted(os.listdir(staging)):
            target = os.path.join(directory, staged)
            os.replace(os.path.join(staging, staged), target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logging.info("Wrote original-layout checkpoint %s (%d variables) and bert_config.json", prefix, len(names))
    return prefix


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
