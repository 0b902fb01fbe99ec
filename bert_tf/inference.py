"""Inference functions with the model's weights frozen into the graph as constants.

A tf.function that reads a model's variables leaves TensorFlow two costs on every call that a
frozen graph does not have:
* oneDNN reorders each MatMul's weight matrix into its blocked layout on every call; only a
  constant weight can have the reordered copy cached (the fused MatMul's `is_weight_const`);
* under mixed precision every float32 weight is cast to bfloat16 on every call; in a frozen
  graph grappler folds those casts into bfloat16 constants once.

Measured on this 2-core machine (benchmarks/profile_encoder.py --systems bert_tf,bert_tf_frozen,
interleaved, batch 32 x 128, see benchmarks/README.md), the frozen encoder forward under
mixed_bfloat16 took 40-50% less CPU time per batch (tiny, small) and 27% less (base); in
float32 it was no faster (within +-5%, both signs). float32 outputs equal the variables'
function within float rounding. Freezing itself costs seconds (a small model: ~10 CPU s for
the conversion and grappler's first pass), so it pays only over many batches.

A frozen function is a snapshot: later changes to the model's weights do not reach it. Build
it after training (bert_tf.finetuning.make_predict_fn does so for eval/predict).

`fast_forward` picks the fastest of three executions measured here for a model's precision
and size: bfloat16 compute frozen; float32 with hidden_size <= XLA_MAX_HIDDEN compiled by XLA
(one fused program instead of hundreds of small TensorFlow ops: batch-1 latency 0.74x (tiny)
and 0.90x (small), batch 32 0.99x / 0.88x of the plain graph's; for BERT-Base it was 1.09x /
1.18x, oneDNN's matrix products win there); otherwise the plain graph.
"""

import time
from typing import Any, Callable, Dict

import tensorflow as tf
from absl import logging
# Semi-private: TensorFlow's own tool for freezing a ConcreteFunction (used by the TFLite
# converter); tests/test_private_apis.py guards it.
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

MODEL_INPUTS = ("input_ids", "input_mask", "segment_ids")
# float32 models up to this hidden size run inference XLA-compiled (see the module docstring).
XLA_MAX_HIDDEN = 512


def model_input_signature() -> Dict[str, tf.TensorSpec]:
    """The three int32 [batch, seq] inputs, both dimensions free (no retracing per shape)."""
    return {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in MODEL_INPUTS}


class FrozenFunction:
    """`fn(inputs)` traced once for `input_signature` with every variable it reads turned into
    a graph constant. Called with the same structure as `input_signature` (e.g. a dict of
    tensors or arrays); returns the same structure `fn` returns."""

    def __init__(self, fn: Callable[[Any], Any], input_signature: Any):
        start = time.time()
        traced = tf.function(fn, input_signature=[input_signature], autograph=False)
        concrete = traced.get_concrete_function()
        self._frozen = convert_variables_to_constants_v2(concrete)
        self._input_signature = input_signature
        self._output_structure = concrete.structured_outputs
        logging.info("Froze an inference function (%d variables -> constants) in %.1f s",
                     len(concrete.graph.variables), time.time() - start)

    @property
    def concrete_function(self):
        """The frozen tf ConcreteFunction (flat tensor arguments in tf.nest order)."""
        return self._frozen

    def __call__(self, inputs):
        tf.nest.assert_same_structure(self._input_signature, inputs, check_types=False)
        flat = [tf.convert_to_tensor(value, spec.dtype) for value, spec in
                zip(tf.nest.flatten(inputs), tf.nest.flatten(self._input_signature))]
        outputs = self._frozen(*flat)
        return tf.nest.pack_sequence_as(self._output_structure, tf.nest.flatten(outputs))


def frozen_forward(model, outputs=None, input_signature=None) -> FrozenFunction:
    """`model(inputs, training=False)` frozen: a callable dict of int32 [batch, seq] inputs ->
    dict of outputs (the model's own, or only the names in `outputs`). Works for every bert_tf
    model taking input_ids / input_mask / segment_ids (BertEncoder, BertClassifier,
    BertTokenTagger, BertPretrainer's encoder)."""
    return FrozenFunction(_forward(model, outputs), input_signature or model_input_signature())


def _forward(model, outputs):
    def forward(inputs):
        result = model(inputs, training=False)
        if outputs is not None:
            result = {name: result[name] for name in outputs}
        return result

    return forward


def execution_for(model) -> str:
    """How `fast_forward` runs `model`: "frozen" (bfloat16 compute), "xla" (float32 with
    hidden_size <= XLA_MAX_HIDDEN) or "graph"."""
    compute_dtype = model.dtype_policy.compute_dtype
    if compute_dtype == "bfloat16":
        return "frozen"
    config = getattr(model, "config", None)
    hidden = getattr(config, "hidden_size", None)
    if compute_dtype == "float32" and hidden is not None and hidden <= XLA_MAX_HIDDEN:
        return "xla"
    return "graph"


def fast_forward(model, outputs=None, input_signature=None):
    """`model(inputs, training=False)` as the fastest callable for its precision and size
    (`execution_for`): dict of int32 [batch, seq] inputs -> dict of outputs (all, or only the
    names in `outputs`). Frozen and XLA functions are snapshots / compiled per input shape:
    build after training."""
    execution = execution_for(model)
    if execution == "frozen":
        return frozen_forward(model, outputs, input_signature)
    return tf.function(_forward(model, outputs),
                       input_signature=[input_signature or model_input_signature()],
                       autograph=False, jit_compile=execution == "xla")
