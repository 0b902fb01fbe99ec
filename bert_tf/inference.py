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

`fast_forward` picks the fastest of three executions measured here for a model's precision,
size and call ("short": at most XLA_MAX_TOKENS tokens, batch x sequence):
* bfloat16 compute: frozen, for every model and call (a tiny model's batch-1 call: 0.75x of
  the plain graph's time; the 0.6 ms a frozen call used to cost more was FrozenFunction's own
  Python, gone with FlatCall);
* float32 short calls, hidden_size <= XLA_MAX_HIDDEN: XLA-compiled (one fused program instead
  of a few hundred small TensorFlow ops, whose fixed costs dominate a short call: batch-1 x 128
  latency 0.74x of the plain graph's for tiny, 0.90x for small; at batch 4-32 XLA measured
  0.99-1.10x for small and 1.09-1.18x for BERT-Base, where oneDNN's matrix products win);
* float32 short calls on larger models: frozen (an exported BERT-Base classifier's batch-1 call
  took 141.6 ms frozen against 158.6 ms with variables; at batch 32 frozen was 7% slower);
* everything else: the plain graph.
Every execution is called through `FlatCall`, which skips tf.function's per-call argument
binding (~0.45 ms): batch-1 calls measured 0.82-0.86x of the ordinary call's time for tiny
models, 0.90x small bfloat16, 0.985x small float32 (benchmarks/README.md, round 4).
"""

import time
from typing import Any, Callable, Dict

import tensorflow as tf
from absl import logging
# Semi-private: TensorFlow's own tool for freezing a ConcreteFunction (used by the TFLite
# converter), and whether a gradient tape may be recording (FlatCall's fast path runs only
# when none is); tests/test_private_apis.py guards both.
from tensorflow.python.eager import record
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from bert_tf.layers.attention import head_major_inference

MODEL_INPUTS = ("input_ids", "input_mask", "segment_ids")
# float32 calls of up to XLA_MAX_TOKENS tokens on models up to XLA_MAX_HIDDEN hidden units run
# XLA-compiled (see the module docstring).
XLA_MAX_HIDDEN = 512
XLA_MAX_TOKENS = 256


def model_input_signature() -> Dict[str, tf.TensorSpec]:
    """The three int32 [batch, seq] inputs, both dimensions free (no retracing per shape)."""
    return {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in MODEL_INPUTS}


class FlatCall:
    """A ConcreteFunction called with flat tensors the way its own `__call__` ends up calling it.

    `ConcreteFunction.__call__` and a `tf.function` bind the Python arguments to the traced
    signature on every call: about 0.3-0.5 ms of Python here, against 0.1 ms for running the
    function's graph itself (tf.function with a dict of three tensors: 0.56 ms per call of an
    identity function; the same graph through its inference function: 0.08 ms). On a tiny
    model's batch of one (3-4 ms) that is a seventh of the call. `FlatCall(concrete)(flat)` skips
    the binding: it hands the tensors in `tf.nest.flatten` order of the signature, and the
    function's captured inputs (variable handles), straight to the inference function, and
    packs the flat outputs into `structure` (default `concrete.structured_outputs`). Under a
    gradient tape, or while tracing, it calls `fallback(flat)` instead: the ordinary call."""

    def __init__(self, concrete, fallback: Callable[[Any], Any], structure=None):
        # Private: the AtomicFunction that ConcreteFunction._call_flat runs when no tape
        # records (tests/test_private_apis.py).
        self._atomic = concrete._inference_function
        self._captured = list(concrete.captured_inputs)
        self._structure = concrete.structured_outputs if structure is None else structure
        self._fallback = fallback

    def __call__(self, flat):
        if not tf.executing_eagerly() or record.could_possibly_record():
            return self._fallback(flat)
        outputs = self._atomic.call_flat(*flat, *self._captured)
        return tf.nest.pack_sequence_as(self._structure, outputs)


def flatten_inputs(signature, inputs):
    """`inputs` (the structure of `signature`: arrays, lists or tensors) as tensors of the
    signature's dtypes, in tf.nest.flatten order."""
    tf.nest.assert_same_structure(signature, inputs, check_types=False)
    return [value if isinstance(value, tf.Tensor) and value.dtype == spec.dtype
            else tf.convert_to_tensor(value, spec.dtype)
            for value, spec in zip(tf.nest.flatten(inputs), tf.nest.flatten(signature))]


class FrozenFunction:
    """`fn(inputs)` traced once for `input_signature` with every variable it reads turned into
    a graph constant. Called with the same structure as `input_signature` (e.g. a dict of
    tensors or arrays); returns the same structure `fn` returns."""

    def __init__(self, fn: Callable[[Any], Any], input_signature: Any):
        start = time.time()
        traced = tf.function(fn, input_signature=[input_signature], autograph=False)
        with head_major_inference():  # no attention transposes once frozen (float32, small)
            concrete = traced.get_concrete_function()
        self._frozen = convert_variables_to_constants_v2(concrete)
        self._input_signature = input_signature
        self._output_structure = concrete.structured_outputs
        # The frozen function of the flat input tensors (tf.nest.flatten order of the
        # signature), without per-call argument binding.
        self.call_flat = FlatCall(self._frozen, self._call_frozen, self._output_structure)
        logging.info("Froze an inference function (%d variables -> constants) in %.1f s",
                     len(concrete.graph.variables), time.time() - start)

    @property
    def concrete_function(self):
        """The frozen tf ConcreteFunction (flat tensor arguments in tf.nest order)."""
        return self._frozen

    def _call_frozen(self, flat):
        outputs = self._frozen(*flat)
        return tf.nest.pack_sequence_as(self._output_structure, tf.nest.flatten(outputs))

    def __call__(self, inputs):
        return self.call_flat(flatten_inputs(self._input_signature, inputs))


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


def execution_for(model, tokens=None) -> str:
    """How `fast_forward` runs `model` on a call of `tokens` (batch x sequence; None: any):
    "frozen" (bfloat16 compute; float32 short calls on models above XLA_MAX_HIDDEN), "xla"
    (float32 short calls, tokens <= XLA_MAX_TOKENS, on models up to XLA_MAX_HIDDEN) or
    "graph"."""
    compute_dtype = model.dtype_policy.compute_dtype
    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    short = tokens is not None and tokens <= XLA_MAX_TOKENS and hidden is not None
    if compute_dtype == "bfloat16":
        return "frozen"
    if compute_dtype == "float32" and short:
        return "xla" if hidden <= XLA_MAX_HIDDEN else "frozen"
    return "graph"


def input_tokens(inputs) -> int:
    """batch x sequence of a dict of [batch, seq] model inputs (arrays or eager tensors)."""
    shape = tuple(inputs["input_ids"].shape)
    return int(shape[0]) * int(shape[1])


class FastForward:
    """`fast_forward`'s callable: per call, the execution `execution_for` names for its size."""

    def __init__(self, model, outputs=None, input_signature=None):
        self._model, self._outputs = model, outputs
        self._signature = input_signature or model_input_signature()
        self._functions = {}

    def function_for(self, execution):
        """A callable of the flat input tensors (tf.nest.flatten order of the signature)."""
        if execution not in self._functions:
            forward = _forward(self._model, self._outputs)
            if execution == "frozen":
                self._functions[execution] = FrozenFunction(forward, self._signature).call_flat
            else:
                function = tf.function(forward, input_signature=[self._signature],
                                       autograph=False, jit_compile=execution == "xla")
                signature = self._signature
                self._functions[execution] = FlatCall(
                    function.get_concrete_function(),
                    lambda flat: function(tf.nest.pack_sequence_as(signature, flat)))
        return self._functions[execution]

    def __call__(self, inputs):
        flat = flatten_inputs(self._signature, inputs)
        return self.function_for(execution_for(self._model, input_tokens(inputs)))(flat)


def fast_forward(model, outputs=None, input_signature=None) -> FastForward:
    """`model(inputs, training=False)` run the fastest way for its precision, size and each
    call's shape (`execution_for`): a callable dict of int32 [batch, seq] inputs -> dict of
    outputs (all, or only the names in `outputs`). Frozen functions are snapshots of the
    weights: build it after training."""
    return FastForward(model, outputs, input_signature)
