"""BertConfig: the 11 `bert_config.json` hyperparameters, read from original or Hugging Face files.

The original `bert_config.json` and a Hugging Face BERT `config.json` share key names but not
all meanings: `"hidden_act": "gelu"` is the tanh approximation in the original code and the
exact erf GELU in Hugging Face (whose tanh form is `"gelu_new"`). bert_tf therefore uses its own
activation names internally and translates each source's names when reading:

    bert_tf name   meaning                                   original json   Hugging Face json
    "gelu"         0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3)))   "gelu"          "gelu_new", "gelu_pytorch_tanh", "gelu_fast"
    "gelu_exact"   0.5x(1+erf(x/sqrt(2)))                    (none)          "gelu"
    "relu", "tanh", "silu"/"swish", "linear"                 same names      same names
"""

import copy
import dataclasses
import json
from typing import Any, Dict

# What BertClassifier's head can read (see bert_tf.models.BertClassifier); here so that
# settings can be checked without importing TensorFlow.
CLASSIFIER_POOLINGS = ("pooler", "cls", "mean")

ACTIVATIONS = ("gelu", "gelu_exact", "relu", "tanh", "silu", "swish", "linear")

# Keys only Hugging Face writes; any one of them marks a config.json as Hugging Face's.
_HF_MARKER_KEYS = frozenset(
    {
        "model_type",
        "architectures",
        "transformers_version",
        "position_embedding_type",
        "pad_token_id",
        "_name_or_path",
        "torch_dtype",
    }
)

# Hugging Face activation name -> bert_tf activation name.
_HF_ACTIVATIONS = {
    "gelu": "gelu_exact",
    "gelu_new": "gelu",
    "gelu_pytorch_tanh": "gelu",
    "gelu_fast": "gelu",
    "relu": "relu",
    "tanh": "tanh",
    "silu": "silu",
    "swish": "swish",
    "linear": "linear",
}

_POSITIVE_INT_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
)
_PROBABILITY_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob")

# The original's LayerNorm epsilon (Hugging Face's `layer_norm_eps` default too).
DEFAULT_LAYER_NORM_EPS = 1e-12

# name -> (num_hidden_layers, hidden_size) of the published BERT sizes.
PRESETS = {
    "tiny": (2, 128),
    "mini": (4, 256),
    "small": (4, 512),
    "medium": (8, 512),
    "base": (12, 768),
    "large": (24, 1024),
}


@dataclasses.dataclass
class BertConfig:
    """Hyperparameters of a BERT model, with the original field names and defaults.

    `extra` holds keys the file had that are not among the 11 (kept so that writing the config
    back loses nothing; bert_tf ignores them). Use `from_json_file` / `from_dict` to read files,
    which detect the Hugging Face format and translate its activation names.
    """

    vocab_size: int
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 16
    initializer_range: float = 0.02
    # Not in the original's bert_config.json (it hard-codes 1e-12); written only when it differs.
    layer_norm_eps: float = DEFAULT_LAYER_NORM_EPS
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    def __post_init__(self):
        self.validate()

    # ---------------------------------------------------------------- validation
    def validate(self):
        """Raises ValueError naming the first field that is out of range."""
        for name in _POSITIVE_INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31:
                raise ValueError(
                    f"BertConfig field '{name}' must be a positive integer (below 2**31), got "
                    f"{value!r}"
                )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"BertConfig field 'hidden_size' ({self.hidden_size}) must be divisible by "
                f"'num_attention_heads' ({self.num_attention_heads})"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(
                f"BertConfig field 'hidden_act' must be one of {', '.join(ACTIVATIONS)}, "
                f"got {self.hidden_act!r}"
            )
        for name in _PROBABILITY_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                0.0 <= value < 1.0
            ):
                raise ValueError(
                    f"BertConfig field '{name}' must be a probability in [0, 1), got {value!r}"
                )
        value = self.initializer_range
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not 0 < value < float("inf")):  # (NaN fails too)
            raise ValueError(
                f"BertConfig field 'initializer_range' must be a positive number, got {value!r}"
            )
        value = self.layer_norm_eps
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ValueError(
                f"BertConfig field 'layer_norm_eps' must be a number in (0, 1), got {value!r}"
            )

    @property
    def head_size(self):
        return self.hidden_size // self.num_attention_heads

    # ---------------------------------------------------------------- dicts and files
    @classmethod
    def field_names(cls):
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "extra")

    @staticmethod
    def is_hugging_face_dict(json_object):
        """True when the dict looks like a Hugging Face config.json rather than bert_config.json."""
        return bool(_HF_MARKER_KEYS & set(json_object))

    @classmethod
    def from_dict(cls, json_object, source="auto"):
        """Builds a config from a parsed JSON dict.

        Args:
          json_object: the dict (original bert_config.json or Hugging Face config.json keys).
          source: "original", "hugging_face", or "auto" (detect by Hugging Face-only keys).
        """
        if not isinstance(json_object, dict):
            raise ValueError(f"BertConfig: expected a JSON object, got {type(json_object).__name__}")
        if source == "auto":
            source = "hugging_face" if cls.is_hugging_face_dict(json_object) else "original"
        if source not in ("original", "hugging_face"):
            raise ValueError(f"BertConfig.from_dict: unknown source {source!r}")
        values = dict(json_object)
        extra = dict(values.pop("extra", None) or {})
        if source == "hugging_face":
            _check_hugging_face_compatible(values)
            if "hidden_act" in values:
                act = values["hidden_act"]
                if act not in _HF_ACTIVATIONS:
                    raise ValueError(
                        f"BertConfig field 'hidden_act': Hugging Face activation {act!r} is not "
                        f"supported; expected one of {', '.join(sorted(_HF_ACTIVATIONS))}"
                    )
                values["hidden_act"] = _HF_ACTIVATIONS[act]
        if "vocab_size" not in values:
            raise ValueError("BertConfig field 'vocab_size' is missing (it has no default)")
        known = {name: values.pop(name) for name in cls.field_names() if name in values}
        extra.update(values)
        return cls(**known, extra=extra)

    def to_dict(self):
        """The original bert_config.json keys (bert_tf activation names) plus kept unknown keys.

        Hugging Face-only keys (model_type, layer_norm_eps, ...) stay in `extra` but are not
        written: they would make the output read back as a Hugging Face config, whose "gelu"
        means something else. `layer_norm_eps` is written only when it is not the original's
        1e-12, so a file of an original-numerics model keeps exactly the original's keys.
        """
        output = {
            key: copy.deepcopy(value)
            for key, value in self.extra.items()
            if key not in _HF_MARKER_KEYS
        }
        for name in self.field_names():
            if name == "layer_norm_eps" and self.layer_norm_eps == DEFAULT_LAYER_NORM_EPS:
                continue
            output[name] = getattr(self, name)
        return output

    def to_json_string(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json_file(cls, json_file, source="auto"):
        """Reads an original bert_config.json or a Hugging Face config.json (detected)."""
        from bert_tf.files import DataFormatError, decode_utf8

        try:
            with open(json_file, "rb") as reader:
                text = decode_utf8(reader.read(), json_file)
        except OSError as e:
            raise ValueError(f"{json_file}: cannot read BERT config: {e}") from e
        try:
            json_object = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataFormatError(f"{json_file}: line {e.lineno}: not valid JSON: {e.msg}") from e
        except RecursionError:
            raise DataFormatError(f"{json_file}: not valid JSON: nested too deeply; expected a "
                                  f"JSON object of config fields") from None
        try:
            return cls.from_dict(json_object, source=source)
        except (ValueError, TypeError) as e:
            raise DataFormatError(f"{json_file}: {e}") from e

    def to_json_file(self, json_file):
        """Writes bert_config.json atomically (temporary file renamed when complete)."""
        from bert_tf import files

        files.atomic_write(json_file, self.to_json_string())

    # ---------------------------------------------------------------- presets
    @classmethod
    def preset(cls, name, **overrides):
        """A published BERT size: tiny, mini, small, medium, base or large.

        Intermediate size 4H, H/64 heads, vocab 30522 and the released configs' other values
        (type_vocab_size 2, 512 positions, dropout 0.1, tanh GELU); `overrides` replace fields.
        """
        if name not in PRESETS:
            raise ValueError(
                f"BertConfig.preset: unknown preset {name!r}; expected one of {', '.join(PRESETS)}"
            )
        layers, hidden = PRESETS[name]
        values = dict(
            vocab_size=30522,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=hidden // 64,
            intermediate_size=4 * hidden,
            hidden_act="gelu",
            hidden_dropout_prob=0.1,
            attention_probs_dropout_prob=0.1,
            max_position_embeddings=512,
            type_vocab_size=2,
            initializer_range=0.02,
        )
        unknown = set(overrides) - set(values)
        if unknown:
            raise ValueError(f"BertConfig.preset: unknown fields {sorted(unknown)}")
        values.update(overrides)
        return cls(**values)


def _check_hugging_face_compatible(values):
    """Refuses Hugging Face options bert_tf's numerics do not implement."""
    position_type = values.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ValueError(
            f"BertConfig field 'position_embedding_type': only 'absolute' is supported, "
            f"got {position_type!r}"
        )
