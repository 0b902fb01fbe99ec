"""BertConfig: file formats, activation translation, validation errors, presets."""

import json

import pytest

from bert_tf.config import BertConfig

ORIGINAL_BASE_JSON = {
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "type_vocab_size": 2,
    "vocab_size": 30522,
}


def _write(tmp_path, name, obj):
    path = tmp_path / name
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return str(path)


def test_original_json_round_trip_keeps_unknown_keys(tmp_path):
    source = dict(ORIGINAL_BASE_JSON, directionality="bidi", pooler_type="first_token_transform")
    config = BertConfig.from_json_file(_write(tmp_path, "bert_config.json", source))
    assert config.hidden_act == "gelu"  # the original's "gelu" is the tanh approximation
    assert config.num_hidden_layers == 12 and config.type_vocab_size == 2
    assert config.extra == {"directionality": "bidi", "pooler_type": "first_token_transform"}
    out = str(tmp_path / "out" / "bert_config.json")
    (tmp_path / "out").mkdir()
    config.to_json_file(out)
    with open(out) as f:
        written = json.load(f)
    assert written == source
    assert BertConfig.from_json_file(out) == config
    assert not [p for p in (tmp_path / "out").iterdir() if p.name != "bert_config.json"]


def test_original_defaults_match_original_bert_config_class():
    config = BertConfig(vocab_size=100)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (768, 12, 12)
    assert config.intermediate_size == 3072 and config.hidden_act == "gelu"
    assert config.hidden_dropout_prob == 0.1 and config.attention_probs_dropout_prob == 0.1
    assert config.max_position_embeddings == 512 and config.type_vocab_size == 16
    assert config.initializer_range == 0.02


@pytest.mark.parametrize(
    "hf_act, expected",
    [
        ("gelu", "gelu_exact"),
        ("gelu_new", "gelu"),
        ("gelu_pytorch_tanh", "gelu"),
        ("relu", "relu"),
        ("silu", "silu"),
    ],
)
def test_hugging_face_activation_names_translated(tmp_path, hf_act, expected):
    hf = dict(ORIGINAL_BASE_JSON, hidden_act=hf_act, model_type="bert", layer_norm_eps=1e-12)
    config = BertConfig.from_json_file(_write(tmp_path, "config.json", hf))
    assert config.hidden_act == expected


def test_hugging_face_minilm_config(minilm_dir):
    config = BertConfig.from_json_file(f"{minilm_dir}/config.json")
    assert config.hidden_size == 384 and config.num_hidden_layers == 6
    assert config.num_attention_heads == 12 and config.intermediate_size == 1536
    assert config.hidden_act == "gelu_exact"
    assert config.extra["model_type"] == "bert"


def test_config_from_hugging_face_writes_back_as_original(tmp_path):
    hf = dict(ORIGINAL_BASE_JSON, hidden_act="gelu_new", model_type="bert", use_cache=True)
    config = BertConfig.from_dict(hf)
    written = config.to_dict()
    assert "model_type" not in written and written["use_cache"] is True
    again = BertConfig.from_dict(written)
    assert again.hidden_act == "gelu"  # still tanh, not re-read as Hugging Face's erf "gelu"
    exact = BertConfig.from_dict(dict(hf, hidden_act="gelu"))
    assert BertConfig.from_dict(exact.to_dict()).hidden_act == "gelu_exact"


def test_source_can_be_forced():
    assert BertConfig.from_dict(dict(ORIGINAL_BASE_JSON), source="hugging_face").hidden_act == (
        "gelu_exact"
    )
    with pytest.raises(ValueError, match="source"):
        BertConfig.from_dict(dict(ORIGINAL_BASE_JSON), source="pytorch")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("hidden_size", 100, "'hidden_size' \\(100\\) must be divisible by 'num_attention_heads'"),
        ("vocab_size", 0, "'vocab_size' must be a positive integer"),
        ("num_hidden_layers", -1, "'num_hidden_layers' must be a positive integer"),
        ("intermediate_size", 3.5, "'intermediate_size' must be a positive integer"),
        ("max_position_embeddings", True, "'max_position_embeddings' must be a positive integer"),
        ("type_vocab_size", 0, "'type_vocab_size' must be a positive integer"),
        ("hidden_act", "gelu_new", "'hidden_act' must be one of"),
        ("hidden_dropout_prob", 1.0, "'hidden_dropout_prob' must be a probability in \\[0, 1\\)"),
        ("attention_probs_dropout_prob", -0.1, "'attention_probs_dropout_prob' must be a probability"),
        ("initializer_range", 0.0, "'initializer_range' must be a positive number"),
    ],
)
def test_validation_errors_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        BertConfig.from_dict(dict(ORIGINAL_BASE_JSON, **{field: value}))


def test_unknown_hugging_face_activation_rejected():
    with pytest.raises(ValueError, match="'hidden_act'.*'quick_gelu'"):
        BertConfig.from_dict(dict(ORIGINAL_BASE_JSON, hidden_act="quick_gelu", model_type="bert"))


def test_relative_positions_rejected():
    with pytest.raises(ValueError, match="position_embedding_type"):
        BertConfig.from_dict(
            dict(ORIGINAL_BASE_JSON, model_type="bert", position_embedding_type="relative_key")
        )


def test_file_errors_name_the_file(tmp_path):
    bad_json = _write(tmp_path, "bert_config.json", '{\n "hidden_size": 12,\n oops\n}')
    with pytest.raises(ValueError, match=r"bert_config.json: line 3"):
        BertConfig.from_json_file(bad_json)
    missing_vocab = _write(tmp_path, "b.json", {"hidden_size": 12, "num_attention_heads": 2})
    with pytest.raises(ValueError, match=r"b.json: .*'vocab_size' is missing"):
        BertConfig.from_json_file(missing_vocab)
    bad_value = _write(tmp_path, "c.json", dict(ORIGINAL_BASE_JSON, num_attention_heads=7))
    with pytest.raises(ValueError, match=r"c.json: .*'hidden_size'"):
        BertConfig.from_json_file(bad_value)
    with pytest.raises(ValueError, match="nonexistent.json"):
        BertConfig.from_json_file(str(tmp_path / "nonexistent.json"))


@pytest.mark.parametrize(
    "name, layers, hidden, heads",
    [
        ("tiny", 2, 128, 2),
        ("mini", 4, 256, 4),
        ("small", 4, 512, 8),
        ("medium", 8, 512, 8),
        ("base", 12, 768, 12),
        ("large", 24, 1024, 16),
    ],
)
def test_presets(name, layers, hidden, heads):
    config = BertConfig.preset(name)
    assert config.num_hidden_layers == layers and config.hidden_size == hidden
    assert config.num_attention_heads == heads and config.intermediate_size == 4 * hidden
    assert config.vocab_size == 30522 and config.hidden_act == "gelu"
    assert config.type_vocab_size == 2 and config.max_position_embeddings == 512


def test_preset_base_equals_released_base_config():
    assert BertConfig.preset("base") == BertConfig.from_dict(ORIGINAL_BASE_JSON)


def test_preset_overrides_and_errors():
    config = BertConfig.preset("tiny", vocab_size=99, hidden_dropout_prob=0.0)
    assert config.vocab_size == 99 and config.hidden_dropout_prob == 0.0
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        BertConfig.preset("huge")
    with pytest.raises(ValueError, match="unknown fields"):
        BertConfig.preset("tiny", num_layers=3)
