"""An independent NumPy implementation of the original BERT forward pass, for tests.

Written from ORIGINAL_BERT_FACTS.md (not from bert_tf's code). Weights are a dict keyed by the
original TF1 checkpoint variable names, e.g. `bert/embeddings/word_embeddings` [vocab, H],
`bert/encoder/layer_0/attention/self/query/kernel` [H, H] (Dense kernels [in, out]),
`cls/seq_relationship/output_weights` [2, H] ([out, in]). Computation is in float64.
"""

import math

import numpy as np

LAYER_NORM_EPSILON = 1e-12
MASK_ADDER = -10000.0


def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def gelu_tanh(x):
    """The original BERT GELU (tanh approximation)."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def gelu_erf(x):
    """Exact GELU: 0.5·x·(1 + erf(x/√2)) (Hugging Face's "gelu")."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


ACTIVATIONS = {
    "gelu": gelu_tanh,
    "gelu_exact": gelu_erf,
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
}


def layer_norm(x, gamma, beta, epsilon=LAYER_NORM_EPSILON):
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * gamma + beta


def softmax(x, axis=-1):
    shifted = x - x.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def _get(config, name):
    return config[name] if isinstance(config, dict) else getattr(config, name)


def _dense(w, prefix, x):
    return x @ w[prefix + "/kernel"] + w[prefix + "/bias"]


def bert_forward(weights, config, input_ids, input_mask, segment_ids, masked_lm_positions=None):
    """The original BERT forward pass (inference: no dropout).

    Args:
      weights: dict original-variable-name -> array.
      config: dict or object with num_hidden_layers, num_attention_heads, hidden_act
        (bert_tf names: "gelu" = tanh approximation, "gelu_exact" = erf) and optionally
        layer_norm_eps (default the original's 1e-12).
      input_ids, input_mask, segment_ids: int arrays [B, T].
      masked_lm_positions: optional int array [B, P]; needs the `cls/predictions/*` weights.
    Returns:
      dict of float64 arrays: embedding_output [B,T,H], encoder_outputs (list of [B,T,H]),
      sequence_output, pooled_output [B,H], and when the cls/* weights are present
      next_sentence_log_probs [B,2] and (with positions) masked_lm_log_probs [B,P,V].
    """
    w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    act = ACTIVATIONS[_get(config, "hidden_act")]
    num_heads = _get(config, "num_attention_heads")
    epsilon = (config.get("layer_norm_eps", LAYER_NORM_EPSILON) if isinstance(config, dict)
               else getattr(config, "layer_norm_eps", LAYER_NORM_EPSILON))

    def layer_norm(x, gamma, beta):
        mean = x.mean(axis=-1, keepdims=True)
        variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return (x - mean) / np.sqrt(variance + epsilon) * gamma + beta

    input_ids = np.asarray(input_ids)
    batch, seq = input_ids.shape

    # Embeddings: word + token type + position[:seq], LayerNorm.
    x = w["bert/embeddings/word_embeddings"][input_ids]
    x = x + w["bert/embeddings/token_type_embeddings"][np.asarray(segment_ids)]
    x = x + w["bert/embeddings/position_embeddings"][:seq][None, :, :]
    x = layer_norm(x, w["bert/embeddings/LayerNorm/gamma"], w["bert/embeddings/LayerNorm/beta"])
    embedding_output = x
    hidden = x.shape[-1]
    head = hidden // num_heads

    # Additive mask [B, 1, 1, T] (every query position sees the same keys).
    adder = (1.0 - np.asarray(input_mask, np.float64))[:, None, None, :] * MASK_ADDER

    def heads(t):  # [B,T,H] -> [B,N,T,d]
        return t.reshape(batch, seq, num_heads, head).transpose(0, 2, 1, 3)

    encoder_outputs = []
    for i in range(_get(config, "num_hidden_layers")):
        p = f"bert/encoder/layer_{i}/"
        q = heads(_dense(w, p + "attention/self/query", x))
        k = heads(_dense(w, p + "attention/self/key", x))
        v = heads(_dense(w, p + "attention/self/value", x))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head) + adder
        context = softmax(scores) @ v  # [B,N,T,d]
        context = context.transpose(0, 2, 1, 3).reshape(batch, seq, hidden)
        attention = _dense(w, p + "attention/output/dense", context)
        attention = layer_norm(
            attention + x,
            w[p + "attention/output/LayerNorm/gamma"],
            w[p + "attention/output/LayerNorm/beta"],
        )
        intermediate = act(_dense(w, p + "intermediate/dense", attention))
        out = _dense(w, p + "output/dense", intermediate)
        x = layer_norm(out + attention, w[p + "output/LayerNorm/gamma"], w[p + "output/LayerNorm/beta"])
        encoder_outputs.append(x)

    pooled = np.tanh(_dense(w, "bert/pooler/dense", x[:, 0, :]))
    result = {
        "embedding_output": embedding_output,
        "encoder_outputs": encoder_outputs,
        "sequence_output": x,
        "pooled_output": pooled,
    }
    if "cls/seq_relationship/output_weights" in w:
        nsp_logits = pooled @ w["cls/seq_relationship/output_weights"].T + w[
            "cls/seq_relationship/output_bias"
        ]
        result["next_sentence_log_probs"] = log_softmax(nsp_logits)
    if masked_lm_positions is not None:
        positions = np.asarray(masked_lm_positions)
        gathered = x[np.arange(batch)[:, None], positions]  # [B,P,H]
        t = act(_dense(w, "cls/predictions/transform/dense", gathered))
        t = layer_norm(
            t,
            w["cls/predictions/transform/LayerNorm/gamma"],
            w["cls/predictions/transform/LayerNorm/beta"],
        )
        logits = t @ w["bert/embeddings/word_embeddings"].T + w["cls/predictions/output_bias"]
        result["masked_lm_log_probs"] = log_softmax(logits)
    return result


def original_variable_shapes(config):
    """Original checkpoint variable name -> shape for a config (encoder + pretraining heads)."""
    H = _get(config, "hidden_size")
    inter = _get(config, "intermediate_size")
    shapes = {
        "bert/embeddings/word_embeddings": (_get(config, "vocab_size"), H),
        "bert/embeddings/token_type_embeddings": (_get(config, "type_vocab_size"), H),
        "bert/embeddings/position_embeddings": (_get(config, "max_position_embeddings"), H),
        "bert/embeddings/LayerNorm/gamma": (H,),
        "bert/embeddings/LayerNorm/beta": (H,),
        "bert/pooler/dense/kernel": (H, H),
        "bert/pooler/dense/bias": (H,),
        "cls/predictions/transform/dense/kernel": (H, H),
        "cls/predictions/transform/dense/bias": (H,),
        "cls/predictions/transform/LayerNorm/gamma": (H,),
        "cls/predictions/transform/LayerNorm/beta": (H,),
        "cls/predictions/output_bias": (_get(config, "vocab_size"),),
        "cls/seq_relationship/output_weights": (2, H),
        "cls/seq_relationship/output_bias": (2,),
    }
    for i in range(_get(config, "num_hidden_layers")):
        p = f"bert/encoder/layer_{i}/"
        for name in ("query", "key", "value"):
            shapes[p + f"attention/self/{name}/kernel"] = (H, H)
            shapes[p + f"attention/self/{name}/bias"] = (H,)
        shapes[p + "attention/output/dense/kernel"] = (H, H)
        shapes[p + "attention/output/dense/bias"] = (H,)
        shapes[p + "intermediate/dense/kernel"] = (H, inter)
        shapes[p + "intermediate/dense/bias"] = (inter,)
        shapes[p + "output/dense/kernel"] = (inter, H)
        shapes[p + "output/dense/bias"] = (H,)
        for norm in ("attention/output/LayerNorm", "output/LayerNorm"):
            shapes[p + norm + "/gamma"] = (H,)
            shapes[p + norm + "/beta"] = (H,)
    return shapes


def random_original_weights(config, seed=0, scale=0.2):
    """Random float32 weights under the original names: every value distinct and non-trivial
    (LayerNorm gammas around 1, biases non-zero) so that a misplaced weight shows."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in sorted(original_variable_shapes(config).items()):
        values = rng.normal(0.0, scale, size=shape)
        if name.endswith("/gamma"):
            values = 1.0 + values
        weights[name] = values.astype(np.float32)
    return weights
