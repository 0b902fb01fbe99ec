"""bert-convert: any BERT checkpoint bert_tf reads, written in any of four formats.

    bert-convert --init_checkpoint=SRC --output_dir=DST --to=FORMAT
    python -m bert_tf.convert --init_checkpoint=SRC --output_dir=DST --to=FORMAT

SRC is anything `bert_tf.load_checkpoint` accepts: an original TF1 checkpoint (prefix or
folder), a Hugging Face folder (config.json + model.safetensors), a keras-hub preset folder, or
a bert_tf TF2 checkpoint (ckpt-N prefix or its folder). FORMAT is one of:

  original     bert_model.ckpt.{index,data-*}, bert_config.json, vocab.txt: the variable names
               google-research/bert's code reads. Carries every head at once.
  huggingface  config.json, model.safetensors (transformers' tensor names), vocab.txt,
               tokenizer_config.json, special_tokens_map.json. One architecture per file:
               BertForSequenceClassification / BertForTokenClassification when there is a
               classifier, else BertForPreTraining (MLM + NSP), BertForMaskedLM,
               BertForNextSentencePrediction, or BertModel.
  keras_hub    a keras-hub preset: config.json, metadata.json, model.weights.h5, tokenizer.json,
               assets/tokenizer/vocabulary.txt, and for a head task.json + task.weights.h5
               (BertTextClassifier for a sequence classifier, else BertMaskedLM for the MLM head).
  bert_tf      a bert_tf TF2 checkpoint (ckpt-1 + `checkpoint` file) of a BertClassifier,
               BertTokenClassifier, BertPretrainer or BertEncoder, with bert_config.json, vocab.txt.

Every value travels in float32 exactly (no arithmetic: only renaming, transposing and
reshaping). Heads travel when the target format has them; a head the target cannot hold is
named in a warning. The GELU variant is carried in each format's own config field (see
`bert_tf.config`): original `bert_config.json` "gelu" (tanh; an erf GELU is written as
"gelu_exact" with a warning, the original code has no name for it), Hugging Face "gelu_new"
(tanh) or "gelu" (erf), keras-hub's stock BertBackbone (tanh) or, for any other activation,
`bert_tf>BertBackbone` with a `hidden_act` field, and its BertTextClassifier (keras-hub's
`from_preset` loads them after `import bert_tf.convert`). keras-hub's BertMaskedLM head computes
the erf GELU with LayerNorm epsilon 1e-5 whatever the model, so an MLM head is written as
`bert_tf>BertMaskedLM`, which computes BERT's.

The output folder is written under a temporary name beside DST, flushed to disk and renamed
when complete (`bert_tf.files.atomic_directory`): a failed conversion leaves nothing behind.
DST must not exist or be an empty folder.
"""

import sys

if __name__ == "__main__":  # python -m bert_tf.convert: the command, whose --help needs no TensorFlow
    from bert_tf.commands.convert_command import run_main

    run_main()
    sys.exit(0)

import dataclasses
import json
import os
from typing import Tuple

import numpy as np
from absl import logging

from bert_tf import checkpoints, files
from bert_tf.files import atomic_copy, atomic_write

FORMATS = ("original", "huggingface", "keras_hub", "bert_tf")

# bert_tf activation name -> Hugging Face `hidden_act`.
_HF_ACTIVATION = {
    "gelu": "gelu_new",
    "gelu_exact": "gelu",
    "relu": "relu",
    "tanh": "tanh",
    "silu": "silu",
    "swish": "swish",
    "linear": "linear",
}
_SPECIAL_TOKENS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}
ORIGINAL_CHECKPOINT_NAME = "bert_model.ckpt"


@dataclasses.dataclass
class ConversionResult:
    """What `convert` wrote: the folder, its format, the heads carried and those left out."""

    output_dir: str
    format: str
    heads: Tuple[str, ...]
    dropped: Tuple[str, ...]
    architecture: str = ""


def convert(init_checkpoint, output_dir, to, classifier_kind=None, vocab_file=None,
            do_lower_case=None, allow_partial=False) -> ConversionResult:
    """Converts the checkpoint at `init_checkpoint` into a new folder `output_dir` in format `to`.

    Args:
      init_checkpoint: any checkpoint `bert_tf.load_checkpoint` accepts.
      output_dir: the folder to create (must not exist, or be empty).
      to: one of FORMATS.
      classifier_kind: "sequence" or "token" for a classifier head whose source does not record
        it (original and bert_tf checkpoints); default: from the source, else "sequence".
      vocab_file, do_lower_case: override the vocabulary / casing found beside the source.
      allow_partial: leave out (with a warning) a head the source has only part of, or in
        another shape than its config says, instead of failing.

    Raises:
      ValueError: a bad argument (named), an unreadable source, or a shape mismatch; nothing is
        written then.
    """
    if to not in FORMATS:
        raise ValueError(f"--to: expected one of {', '.join(FORMATS)}, got {to!r}")
    if not output_dir:
        raise ValueError("--output_dir: required (the folder to create)")
    output_dir = os.path.abspath(os.path.expanduser(os.fspath(output_dir)))
    _check_new_folder(output_dir)
    if vocab_file is not None and not os.path.isfile(vocab_file):
        raise ValueError(f"--vocab_file: {vocab_file} is not a file; expected a vocab.txt")
    if classifier_kind is not None and classifier_kind not in checkpoints.CLASSIFIER_KINDS:
        raise ValueError(f"--classifier_kind: expected one of {checkpoints.CLASSIFIER_KINDS}, "
                         f"got {classifier_kind!r}")
    checkpoints.checkpoint_format(init_checkpoint)  # a bad path fails before any slow work

    weights = checkpoints.read_weights(init_checkpoint, classifier_kind=classifier_kind,
                                       allow_partial=allow_partial)
    if vocab_file is not None:
        weights.vocab_file = vocab_file
    if do_lower_case is not None:
        weights.do_lower_case = bool(do_lower_case)
    result = write_weights(weights, output_dir, to,
                           extra_files=_sentence_transformers_files(weights.source))
    return result


# sentence-transformers' description of how token states become a sentence vector (bert_tf's
# classifier reads its pooling from it, keras-hub's Hugging Face loader reads the same files):
# copied as they are into every output folder.
_SENTENCE_TRANSFORMERS_FILES = ("modules.json", "sentence_bert_config.json",
                                "config_sentence_transformers.json")


def _sentence_transformers_files(source):
    directory = checkpoints.checkpoint_directory(source)
    found = [f for f in _SENTENCE_TRANSFORMERS_FILES if os.path.isfile(os.path.join(directory, f))]
    if os.path.isfile(os.path.join(directory, "1_Pooling", "config.json")):
        found.append(os.path.join("1_Pooling", "config.json"))
    return [(os.path.join(directory, f), f) for f in found]


def write_weights(weights, output_dir, to, extra_files=()) -> ConversionResult:
    """Writes a `checkpoints.BertWeights` as a new folder `output_dir` in format `to`, atomically.

    `extra_files`: (source path, relative name) pairs copied into the folder as they are.
    """
    if to not in FORMATS:
        raise ValueError(f"--to: expected one of {', '.join(FORMATS)}, got {to!r}")
    output_dir = os.path.abspath(os.path.expanduser(os.fspath(output_dir)))
    _check_new_folder(output_dir)
    if weights.vocab_file is None:
        logging.warning("%s: no vocab.txt found beside the source (pass --vocab_file); the output "
                        "has no vocabulary", weights.source)
    if weights.do_lower_case is None:
        logging.warning("%s: the casing of the vocabulary is unknown (pass --do_lower_case); the "
                        "output does not record it", weights.source)
    with files.atomic_directory(output_dir) as staging:
        result = _WRITERS[to](weights, staging)
        for path, name in extra_files:
            files.atomic_copy(path, os.path.join(staging, name))
    result.output_dir = output_dir
    logging.info(
        "Converted %s (%s) to %s format in %s%s: encoder%s%s", weights.source,
        weights.source_format, to, output_dir,
        f" as {result.architecture}" if result.architecture else "",
        "".join(f" + {h}" for h in result.heads),
        f"; not carried: {', '.join(result.dropped)}" if result.dropped else "",
    )
    return result


def _check_new_folder(output_dir):
    if os.path.exists(output_dir) and (not os.path.isdir(output_dir) or os.listdir(output_dir)):
        raise ValueError(f"--output_dir: {output_dir} already exists and is not an empty folder; "
                         "expected a new folder")


def _select_heads(weights, supported, to):
    """(heads to write, heads dropped) for a one-architecture target holding `supported` heads.

    A classifier excludes the pretraining heads (a fine-tuned model is used for its task);
    every head left out is named in a warning.
    """
    heads = [h for h in weights.heads if h in supported]
    if "classifier" in heads:
        heads = ["classifier"]
    dropped = [h for h in weights.heads if h not in heads]
    if dropped:
        logging.warning(
            "%s format cannot hold %s of %s together with %s: not converted",
            to, ", ".join(dropped), weights.source, ", ".join(["the encoder", *heads]),
        )
    return tuple(heads), tuple(dropped)


def _write_vocab_and_casing(weights, directory, vocab_name="vocab.txt"):
    if weights.vocab_file is not None:
        atomic_copy(weights.vocab_file, os.path.join(directory, vocab_name))


def _write_casing(weights, directory):
    if weights.do_lower_case is not None:
        _write_json(os.path.join(directory, "tokenizer_config.json"),
                    {"do_lower_case": weights.do_lower_case})


def _write_json(path, value):
    atomic_write(path, json.dumps(value, indent=2) + "\n")


# ------------------------------------------------------------------------------ original TF1
def _write_original(weights, directory):
    heads = weights.heads  # the original layout holds every head at once
    checkpoints.write_original_checkpoint(weights, os.path.join(directory, ORIGINAL_CHECKPOINT_NAME))
    _write_vocab_and_casing(weights, directory)
    _write_casing(weights, directory)
    return ConversionResult(directory, "original", heads, ())


# ------------------------------------------------------------------------------ Hugging Face
def hugging_face_architecture(heads, classifier_kind=None):
    """The transformers class whose state dict holds exactly these heads."""
    if "classifier" in heads:
        return "BertForTokenClassification" if classifier_kind == "token" else "BertForSequenceClassification"
    if "masked_lm_head" in heads and "next_sentence_head" in heads:
        return "BertForPreTraining"
    if "masked_lm_head" in heads:
        return "BertForMaskedLM"
    if "next_sentence_head" in heads:
        return "BertForNextSentencePrediction"
    return "BertModel"


# transformers builds these classes without a pooler (`add_pooling_layer=False`) and reports
# pooler tensors in their files as unexpected.
HUGGING_FACE_WITHOUT_POOLER = ("BertForMaskedLM", "BertForTokenClassification")


def hugging_face_tensors(weights, heads, architecture):
    """transformers' name -> array (HF layout) for the encoder and `heads`."""
    prefix = "" if architecture == "BertModel" else "bert."
    tensors = {}
    for entry in checkpoints._entries(weights.config):
        part = entry.mapping.part
        if part != "encoder" and part not in heads:
            continue
        if entry.original_name not in weights.values:
            continue  # an absent pooler (named when read)
        if architecture in HUGGING_FACE_WITHOUT_POOLER and entry.original_name in checkpoints.POOLER_NAMES:
            continue
        value = weights.values[entry.original_name]
        name = entry.hf_names()[0]
        if part == "encoder":
            name = prefix + name
        tensors[name] = np.ascontiguousarray(value.T if entry.mapping.hf_transposed else value,
                                             dtype=np.float32)
    return tensors


def hugging_face_config(weights, architecture):
    c = weights.config
    config = {
        "architectures": [architecture],
        "model_type": "bert",
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "intermediate_size": c.intermediate_size,
        "hidden_act": _HF_ACTIVATION[c.hidden_act],
        "hidden_dropout_prob": c.hidden_dropout_prob,
        "attention_probs_dropout_prob": c.attention_probs_dropout_prob,
        "max_position_embeddings": c.max_position_embeddings,
        "type_vocab_size": c.type_vocab_size,
        "initializer_range": c.initializer_range,
        "layer_norm_eps": c.layer_norm_eps,
        "position_embedding_type": "absolute",
        "pad_token_id": 0,
        "classifier_dropout": None,
        "use_cache": True,
        "torch_dtype": "float32",
    }
    if architecture in ("BertForSequenceClassification", "BertForTokenClassification"):
        labels = weights.num_labels
        config["id2label"] = {str(i): f"LABEL_{i}" for i in range(labels)}
        config["label2id"] = {f"LABEL_{i}": i for i in range(labels)}
        if architecture == "BertForSequenceClassification" and labels == 1:
            config["problem_type"] = "regression"
    return config


def _write_hugging_face(weights, directory):
    from safetensors.numpy import save_file

    heads, dropped = _select_heads(
        weights, {"masked_lm_head", "next_sentence_head", "classifier"}, "huggingface")
    architecture = hugging_face_architecture(heads, weights.classifier_kind)
    if architecture in HUGGING_FACE_WITHOUT_POOLER and weights.has_pooler:
        logging.warning("transformers' %s has no pooler: the pooler of %s is not converted",
                        architecture, weights.source)
        dropped = dropped + ("pooler",)
    elif not weights.has_pooler and architecture not in HUGGING_FACE_WITHOUT_POOLER:
        logging.warning("%s has no pooler: transformers' %s will initialise bert.pooler freshly",
                        weights.source, architecture)
    tensors = hugging_face_tensors(weights, heads, architecture)
    save_file(tensors, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    _write_json(os.path.join(directory, "config.json"), hugging_face_config(weights, architecture))
    _write_vocab_and_casing(weights, directory)
    tokenizer_config = {"tokenizer_class": "BertTokenizer",
                        "model_max_length": weights.config.max_position_embeddings,
                        "tokenize_chinese_chars": True, "strip_accents": None, **_SPECIAL_TOKENS}
    if weights.do_lower_case is not None:
        tokenizer_config["do_lower_case"] = weights.do_lower_case
    _write_json(os.path.join(directory, "tokenizer_config.json"), tokenizer_config)
    _write_json(os.path.join(directory, "special_tokens_map.json"), _SPECIAL_TOKENS)
    return ConversionResult(directory, "huggingface", heads, dropped, architecture)


# ------------------------------------------------------------------------------ keras-hub
def build_keras_hub_model(weights, heads):
    """A keras-hub BertBackbone (or a task on it) holding `weights`' encoder and `heads`."""
    import keras_hub

    c = weights.config
    classes = checkpoints.keras_hub_classes()
    if c.hidden_act == "gelu" and c.layer_norm_eps == 1e-12:
        # keras-hub's own classes: its BertBackbone computes the tanh GELU, LayerNorm eps 1e-12
        backbone_class, classifier_class = keras_hub.models.BertBackbone, keras_hub.models.BertTextClassifier
        extra = {}
    else:
        backbone_class, classifier_class = classes["backbone"], classes["text_classifier"]
        extra = {"hidden_act": c.hidden_act}
        if c.layer_norm_eps != 1e-12:
            extra["layer_norm_eps"] = c.layer_norm_eps
        logging.warning(
            "keras-hub's BertBackbone computes the tanh GELU and LayerNorm epsilon 1e-12 only; "
            "this model uses %r and %r, so the preset names bert_tf>BertBackbone (a BertBackbone "
            "subclass recording hidden_act and layer_norm_eps) and its tasks: keras-hub's "
            "from_preset loads them after `import bert_tf.convert`", c.hidden_act, c.layer_norm_eps)
    if c.attention_probs_dropout_prob != c.hidden_dropout_prob:
        logging.warning("keras-hub's BertBackbone has one dropout rate: using hidden_dropout_prob "
                        "%s (attention_probs_dropout_prob %s is not carried)",
                        c.hidden_dropout_prob, c.attention_probs_dropout_prob)
    backbone = backbone_class(
        vocabulary_size=c.vocab_size,
        num_layers=c.num_hidden_layers,
        num_heads=c.num_attention_heads,
        hidden_dim=c.hidden_size,
        intermediate_dim=c.intermediate_size,
        dropout=c.hidden_dropout_prob,
        max_sequence_length=c.max_position_embeddings,
        num_segments=c.type_vocab_size,
        **extra,
    )
    if "classifier" in heads:
        model = classifier_class(backbone, num_classes=weights.num_labels, preprocessor=None)
    elif "masked_lm_head" in heads:
        model = classes["masked_lm"](backbone, preprocessor=None)
        logging.warning(
            "keras-hub's BertMaskedLM computes its MLM transform with the erf GELU and LayerNorm "
            "epsilon 1e-5, not BERT's; the preset's task names bert_tf>BertMaskedLM, which computes "
            "BERT's (keras-hub's BertMaskedLM.from_preset loads it after `import bert_tf.convert`)")
    else:
        model = backbone
    variables = {v.path: v for v in model.weights}
    assigned = set()
    if not weights.has_pooler:
        logging.warning("%s has no pooler; keras-hub's BertBackbone needs one: written with its "
                        "fresh initial values", weights.source)
    for entry in checkpoints._entries(c):
        part = entry.mapping.part
        name = entry.keras_hub_name()
        if name is None or (part != "encoder" and part not in heads):
            continue
        if entry.original_name not in weights.values:  # the absent pooler
            assigned.add(name)
            continue
        variable = variables[name]
        variable.assign(checkpoints.to_keras_hub_layout(
            entry.mapping, weights.values[entry.original_name], tuple(variable.shape)))
        assigned.add(name)
    left = [p for p in variables if p not in assigned and "seed_generator" not in p]
    if left:
        raise ValueError(f"keras-hub {type(model).__name__} variables without a value: {left}")
    return model


def _write_keras_hub(weights, directory):
    import keras_hub

    # keras-hub has BertMaskedLM and BertTextClassifier, but no NSP head and no token classifier.
    supported = {"masked_lm_head"} | ({"classifier"} if weights.classifier_kind != "token" else set())
    heads, dropped = _select_heads(weights, supported, "keras_hub")
    model = build_keras_hub_model(weights, heads)
    model.save_to_preset(directory)
    if weights.vocab_file is not None:
        lowercase = bool(weights.do_lower_case)
        # The original uncased tokenizer also strips accents; keras-hub's flag is separate.
        tokenizer = keras_hub.models.BertTokenizer(vocabulary=weights.vocab_file, lowercase=lowercase,
                                                   strip_accents=lowercase)
        tokenizer.save_to_preset(directory)
    import keras

    architecture = keras.saving.get_registered_name(type(model))  # e.g. keras_hub>BertTextClassifier
    return ConversionResult(directory, "keras_hub", heads, dropped, architecture)


# ------------------------------------------------------------------------------ bert_tf
def build_bert_tf_model(weights):
    """(bert_tf model holding `weights`, heads carried, heads dropped)."""
    from bert_tf import models

    present = weights.heads
    if "classifier" in present:
        cls = models.BertTokenClassifier if weights.classifier_kind == "token" else models.BertClassifier
        model, heads = cls(weights.config, num_labels=weights.num_labels), ("classifier",)
    elif "masked_lm_head" in present and "next_sentence_head" in present:
        model, heads = models.BertPretrainer(weights.config), ("masked_lm_head", "next_sentence_head")
    else:
        model, heads = models.BertEncoder(weights.config), ()
    dropped = tuple(h for h in present if h not in heads)
    if dropped:
        logging.warning("bert_tf %s cannot hold %s of %s: not converted (a BertPretrainer has "
                        "both MLM and NSP heads, a classifier neither)",
                        type(model).__name__, ", ".join(dropped), weights.source)
    missing = checkpoints.set_model_weights(model, weights)
    if set(missing) - set(checkpoints.POOLER_NAMES):  # the model was chosen from the heads present
        raise ValueError(f"{weights.source}: no value for {', '.join(missing)}")
    if missing:
        logging.warning("%s has no pooler; a bert_tf %s needs one: written with its fresh "
                        "initial values", weights.source, type(model).__name__)
    return model, heads, dropped


def _write_bert_tf(weights, directory):
    import tensorflow as tf

    model, heads, dropped = build_bert_tf_model(weights)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), directory, max_to_keep=1)
    manager.save(checkpoint_number=1)
    weights.config.to_json_file(os.path.join(directory, "bert_config.json"))
    _write_vocab_and_casing(weights, directory)
    _write_casing(weights, directory)
    return ConversionResult(directory, "bert_tf", heads, dropped, type(model).__name__)


_WRITERS = {
    "original": _write_original,
    "huggingface": _write_hugging_face,
    "keras_hub": _write_keras_hub,
    "bert_tf": _write_bert_tf,
}

# Presets naming bert_tf>BertBackbone & co. load in any process that imported this module.
try:
    checkpoints.keras_hub_classes()
except ImportError:  # keras-hub not installed: only the keras_hub format is unavailable
    pass


# ------------------------------------------------------------------------------ command line
def main(argv=None):
    """bert-convert's command line (bert_tf/commands/convert_command.py); `argv` excludes the
    program name."""
    from bert_tf.commands import convert_command

    return convert_command.main(argv)


def run_main():
    """The console script of an installation made before bert_tf.commands existed."""
    from bert_tf.commands.convert_command import run_main as command

    command()
