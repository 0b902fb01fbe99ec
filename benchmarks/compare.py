"""Side by side: bert_tf, keras-hub and Hugging Face transformers (torch) on this machine.

    python -m benchmarks.compare [--quick] [--out results.json] [--plot compare.png]
        [--tasks ceiling,infer,serve,pretrain,finetune] [--sizes tiny,small,base]
        [--systems bert_tf,keras_hub,hf_torch] [--precisions float32,bfloat16]
        [--torch-python /path/to/venv/bin/python]

Every system gets the same configuration (BERT tiny L2/H128, small L4/H512, base L12/H768;
heads = hidden / 64, intermediate = 4 × hidden, vocabulary 30522, tanh GELU, random weights
built from scratch, nothing downloaded), the same batch and sequence length (128) and the same
random token ids, in float32 and in bfloat16:

* infer    encoder forward (inference mode), batch 32 throughput and batch-1 latency;
           bert_tf BertEncoder through bert_tf.inference.fast_forward, what bert_tf's predict
           path runs: frozen into constants (bfloat16), XLA-compiled (float32, hidden <= 512)
           or one tf.function (the model gets checkpoint-like non-zero weights so that
           nothing folds away), keras-hub
           BertBackbone in one tf.function, HF BertModel under torch.inference_mode;
* serve    raw text in, class probabilities out (texts long enough to fill all 128 tokens):
           bert_tf's exported SavedModel (bert_tf.export, `serving_default`), keras-hub
           BertTextClassifierPreprocessor + BertTextClassifier in one tf.function, HF
           BertTokenizerFast + BertForSequenceClassification; batch 1 and 32;
* pretrain one optimizer step of MLM + NSP with 20 masked positions, batch 32 / 16 / 8 for
           tiny / small / base: bert_tf BertPretrainer + create_optimizer (AdamWeightDecay) in
           bert_tf.training.Trainer; keras-hub BertMaskedLM (keras-hub has no NSP head) with
           its default optimizer; HF BertForPreTraining + torch AdamW;
* finetune one classifier training step, batch 32 (small, base): bert_tf BertClassifier in
           the Trainer; keras-hub BertTextClassifier; HF BertForSequenceClassification;
* ceiling  the best measured matmul rate (TensorFlow, and torch when it runs), float32 and
           bfloat16, square sizes up to 4096 and BERT's own [tokens × 768]·[768 × 3072]
           shapes, at the start of the run; every other row's model-FLOPs utilisation (MFU)
           is against each framework's fastest of these shapes timed again between that
           row's own repeats (see MFU below).

bfloat16 is each system's mixed precision: Keras' "mixed_bfloat16" policy for bert_tf
(`bert_tf.distribution.set_mixed_precision`) and keras-hub; torch.autocast for HF training,
and for HF inference too by default (`--hf-bfloat16 autocast`: float32 weights, bfloat16
compute; 1.4x faster than bfloat16 weights in an interleaved check on this machine, tiny,
batch 32) or bfloat16 weights (`--hf-bfloat16 weights`, `model.to(torch.bfloat16)`).

Each system runs in its own worker process (`--worker SYSTEM`, JSON lines on stdin/stdout), so
TensorFlow's and torch's thread pools never compete; only one worker computes at a time. The
hf_torch worker runs under `--torch-python` (or $BERT_TF_BENCH_TORCH_PYTHON; default: this
interpreter). For each (task, size, precision) every system builds its model, then for each
batch warms up (2 calls; the second, timed, picks how many calls make one repeat of
>= --min-time seconds), and
the repeats are interleaved round-robin across systems (the starting system rotates), so load
drift hits all of them alike. A row's figure is the median over repeats. A system that is not
installed or fails gives skipped rows with the reason, never a failed run.

Output: a Markdown table on stdout (and the header with machine, versions and load average), a
PNG plot (throughput against model size, a line per system and precision), and with --out a
JSON list, one object per measurement: task, size, precision, system, batch, seq_len,
seq_per_s, latency_ms, mfu (null where not applicable or skipped), plus flops_per_seq,
samples_ms (per-call ms of every repeat), load_avg (1-minute load average when the row was
done), note, skipped (the reason, or null), and for ceiling rows framework, worker and
gflop_per_s.

MFU: the host this was written on is shared, and its matmul rate moves by 2x within minutes
(the same bfloat16 product at 620 and at 1,300 GFLOP/s in one hour; the maximum over a run's
ceiling rows catches its bursts). So after the ceiling rows, every other row also times each
framework's fastest ceiling shape between its own repeats (interleaved like the systems, same
--min-time): `ceiling_probe` (framework, shape, gflop_per_s, samples_ms of each) and
`ceiling_gflop_per_s` (the best of them). `mfu` is against that; `mfu_run_ceiling` against
the run-start best of the row's precision (the only one when --tasks has no ceiling).
"""

import argparse
import dataclasses
import gc
import io
import json
import math
import os
import platform
import select
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from typing import List

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SEQ_LEN = 128
VOCAB_SIZE = 30522
MASKED_POSITIONS = 20
NUM_LABELS = 2
MAX_POSITIONS = 512
TYPE_VOCAB_SIZE = 2
# name -> (layers, hidden); heads = hidden / 64, intermediate = 4 * hidden (BERT's presets).
SIZES = {"tiny": (2, 128), "small": (4, 512), "base": (12, 768)}
TASKS = ("ceiling", "infer", "serve", "pretrain", "finetune")
SYSTEMS = ("bert_tf", "keras_hub", "hf_torch")
PEERS = ("keras_hub", "hf_torch")
PRECISIONS = ("float32", "bfloat16")
INFER_BATCHES = (32, 1)
PRETRAIN_BATCHES = {"tiny": 32, "small": 16, "base": 8}
FINETUNE_BATCH = 32
FINETUNE_SIZES = ("small", "base")
# Matmul shapes (m, k, n) of the ceiling: squares, and BERT base's own: 32 × 128 tokens through
# the FFN in/out and the attention projections, 8 × 128 tokens (base pretraining batch).
CEILING_SHAPES = ((1024, 1024, 1024), (2048, 2048, 2048), (4096, 4096, 4096),
                  (4096, 768, 3072), (4096, 3072, 768), (4096, 768, 768), (1024, 768, 3072))
QUICK_CEILING_SHAPES = ((2048, 2048, 2048), (4096, 4096, 4096), (4096, 768, 3072))
WARMUP_CALLS = 2
# A worker still holding this much after a case is replaced by a fresh process (run_cases).
RESTART_RESIDENT_MB = 2048
TORCH_PYTHON_ENV = "BERT_TF_BENCH_TORCH_PYTHON"


# ---------------------------------------------------------------------------------------------
# FLOP count (the definition) and model size
# ---------------------------------------------------------------------------------------------


def size_dims(size):
    """(layers, hidden, intermediate) of a size name."""
    layers, hidden = SIZES[size]
    return layers, hidden, 4 * hidden


def matmul_weights(layers, hidden, intermediate, head="encoder", num_labels=NUM_LABELS):
    """Dense-kernel weights outside the embeddings, each multiplied once per token.

    Per block: query, key, value and attention output (4 · H²) and the FFN (2 · H · I); then
    the pooler (H²); the pretrainer adds the MLM transform (H²) and the NSP layer (2 · H); a
    classifier its output layer (H · labels). Biases and LayerNorm are not matmul weights; the
    MLM decoder (tied to the word embeddings) is counted separately, per masked position.
    """
    weights = layers * (4 * hidden * hidden + 2 * hidden * intermediate) + hidden * hidden
    if head == "pretrainer":
        weights += hidden * hidden + 2 * hidden
    elif head == "classifier":
        weights += hidden * num_labels
    elif head != "encoder":
        raise ValueError(f"head must be encoder, pretrainer or classifier, got {head!r}")
    return weights


def forward_flops(layers, hidden, intermediate, seq_len, head="encoder", vocab_size=VOCAB_SIZE,
                  masked_positions=0, num_labels=NUM_LABELS):
    """FLOPs of one sequence's forward pass: 2 × matmul weights (excluding embeddings) × tokens
    + attention 4 × layers × seq² × hidden (scores and weighted sum) + MLM output
    2 × hidden × vocab × masked positions."""
    flops = 2 * matmul_weights(layers, hidden, intermediate, head, num_labels) * seq_len
    flops += 4 * layers * seq_len * seq_len * hidden
    flops += 2 * hidden * vocab_size * masked_positions
    return flops


def training_step_flops(*args, **kwargs):
    """FLOPs of one sequence's training step: forward + backward = 3 × forward."""
    return 3 * forward_flops(*args, **kwargs)


def flops_per_sequence(task, size, seq_len=SEQ_LEN):
    """The FLOPs a row of `task` does per sequence (None for the ceiling)."""
    dims = size_dims(size)
    if task == "infer":
        return forward_flops(*dims, seq_len, head="encoder")
    if task == "serve":
        return forward_flops(*dims, seq_len, head="classifier")
    if task == "pretrain":
        return training_step_flops(*dims, seq_len, head="pretrainer",
                                   masked_positions=MASKED_POSITIONS)
    if task == "finetune":
        return training_step_flops(*dims, seq_len, head="classifier")
    return None


def encoder_parameters(layers, hidden, intermediate, vocab_size=VOCAB_SIZE,
                       max_positions=MAX_POSITIONS, type_vocab_size=TYPE_VOCAB_SIZE):
    """Parameters of a BERT encoder (embeddings, blocks, pooler): the plot's model size."""
    embeddings = (vocab_size + max_positions + type_vocab_size) * hidden + 2 * hidden
    block = (4 * (hidden * hidden + hidden) + 2 * hidden          # attention + its LayerNorm
             + hidden * intermediate + intermediate + intermediate * hidden + hidden
             + 2 * hidden)                                         # FFN + its LayerNorm
    return embeddings + layers * block + hidden * hidden + hidden


def ceiling_shape_name(shape):
    return "x".join(str(d) for d in shape)


# ---------------------------------------------------------------------------------------------
# Shared inputs: random ids, a vocabulary and texts that fill 128 tokens
# ---------------------------------------------------------------------------------------------


def random_batch(batch, seq_len=SEQ_LEN, seed=0):
    """NumPy int32 inputs: ids, full mask, two segments; 20 sorted masked positions with their
    ids, NSP and class labels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, VOCAB_SIZE, size=(batch, seq_len)).astype(np.int32)
    segments = np.zeros((batch, seq_len), np.int32)
    segments[:, seq_len // 2:] = 1
    positions = np.stack([np.sort(rng.choice(np.arange(1, seq_len - 1), MASKED_POSITIONS,
                                             replace=False)) for _ in range(batch)])
    return {
        "input_ids": ids,
        "input_mask": np.ones((batch, seq_len), np.int32),
        "segment_ids": segments,
        "masked_lm_positions": positions.astype(np.int32),
        "masked_lm_ids": rng.integers(1000, VOCAB_SIZE, size=(batch, MASKED_POSITIONS)
                                      ).astype(np.int32),
        "masked_lm_weights": np.ones((batch, MASKED_POSITIONS), np.float32),
        "next_sentence_labels": rng.integers(0, 2, size=(batch, 1)).astype(np.int32),
        "label_ids": rng.integers(0, NUM_LABELS, size=(batch,)).astype(np.int32),
    }


_CONSONANTS = "bcdfghjklmnprstvwz"
_VOWELS = "aeiou"


def synthetic_vocabulary(size=VOCAB_SIZE):
    """A WordPiece vocabulary of `size` tokens laid out like BERT's uncased one: [PAD] 0,
    [unused*], [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103, characters, then made-up words of
    two and three syllables and "##" syllable continuations (so texts tokenize into real
    pieces without a download)."""
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]",
                                                                "[MASK]"]
    characters = list("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'\"()-")
    tokens += characters + ["##" + c for c in characters]
    syllables = [c + v for c in _CONSONANTS for v in _VOWELS]
    tokens += syllables + ["##" + s for s in syllables]
    for first in syllables:
        for second in syllables:
            tokens.append(first + second)
    for first in syllables:
        for second in syllables:
            for third in syllables:
                if len(tokens) >= size:
                    return tokens[:size]
                tokens.append(first + second + third)
    return tokens[:size]


def synthetic_texts(count, words=120, seed=0):
    """`count` lowercase texts of `words` made-up words (some in the vocabulary, some split
    into pieces), long enough to be truncated at 128 WordPiece tokens."""
    import numpy as np

    rng = np.random.default_rng(seed)
    syllables = [c + v for c in _CONSONANTS for v in _VOWELS]
    texts = []
    for _ in range(count):
        text = []
        for _ in range(words):
            text.append("".join(syllables[i] for i in rng.integers(0, len(syllables),
                                                                   rng.integers(2, 5))))
        texts.append(" ".join(text) + ".")
    return texts


def bench_context(work_dir, hf_bfloat16="autocast"):
    """What every worker's benchmark reads: the synthetic vocab.txt (written into `work_dir`),
    the 32 serving texts, the run's work directory and the HF bfloat16 mode."""
    vocab_file = os.path.join(work_dir, "vocab.txt")
    with open(vocab_file, "w") as writer:
        writer.write("\n".join(synthetic_vocabulary()) + "\n")
    return {"vocab_file": vocab_file, "texts": synthetic_texts(32), "work_dir": work_dir,
            "hf_bfloat16": hf_bfloat16}


# ---------------------------------------------------------------------------------------------
# Worker side: one system per process
# ---------------------------------------------------------------------------------------------


def _tf_sync(value):
    """Wait for a TF result by fetching a scalar of it."""
    import tensorflow as tf

    return float(tf.reshape(value, [-1])[0].numpy())


class _Bench:
    """One (task, size, precision) of one system: `runner(batch)` -> run(k), which does k calls
    and may return its own measured seconds (the Trainer's loop time)."""

    def __init__(self, task, size, precision, context):
        self.task, self.size, self.precision, self.context = task, size, precision, context
        self.bfloat16 = precision == "bfloat16"
        if task != "ceiling":
            self.layers, self.hidden, self.intermediate = size_dims(size)

    def runner(self, batch):
        raise NotImplementedError

    def close(self):
        pass


class TfMatmulBench(_Bench):
    """The matmul ceiling in TensorFlow: one tf.function of tf.linalg.matmul."""

    def __init__(self, task, size, precision, context):
        super().__init__(task, size, precision, context)
        import tensorflow as tf

        m, k, n = (int(d) for d in size.split("x"))
        dtype = tf.bfloat16 if self.bfloat16 else tf.float32
        self.a = tf.cast(tf.random.uniform([m, k], seed=1), dtype)
        self.b = tf.cast(tf.random.uniform([k, n], seed=2), dtype)
        self.matmul = tf.function(tf.linalg.matmul)

    def runner(self, batch):
        def run(calls):
            for _ in range(calls):
                product = self.matmul(self.a, self.b)
            _tf_sync(product)

        return run


class _KerasBench(_Bench):
    """Builds under the Keras dtype policy of the precision, then restores float32."""

    def __init__(self, task, size, precision, context):
        super().__init__(task, size, precision, context)
        import keras

        keras.utils.set_random_seed(0)
        self._set_policy(self.bfloat16)
        try:
            self.build()
        finally:
            self._set_policy(False)

    def _set_policy(self, bfloat16):
        import keras

        keras.mixed_precision.set_dtype_policy("mixed_bfloat16" if bfloat16 else "float32")

    def close(self):
        import keras

        for name in list(vars(self)):
            if name not in ("task", "size", "precision", "context", "bfloat16"):
                delattr(self, name)
        keras.backend.clear_session()


def trained_like(model, seed=0):
    """Every weight of a Keras `model` drawn around a trained checkpoint's values (gammas near
    1, everything else near 0 with std 0.02), as benchmarks/profile_encoder.py does."""
    from benchmarks.profile_encoder import _trained_like

    _trained_like(model, seed)


class BertTfBench(_KerasBench):
    """bert_tf through its public API: BertEncoder through bert_tf.inference.fast_forward (what
    make_predict_fn runs: frozen, XLA or graph by precision and size), the exported raw-text
    SavedModel, BertPretrainer / BertClassifier trained by bert_tf.training.Trainer."""

    def _set_policy(self, bfloat16):
        from bert_tf import distribution

        distribution.set_mixed_precision("bfloat16" if bfloat16 else "none")

    def build(self):
        import tensorflow as tf

        from bert_tf import distribution, optimization
        from bert_tf.config import BertConfig
        from bert_tf.models import BertClassifier, BertEncoder, BertPretrainer

        config = BertConfig.preset(self.size)
        if self.task == "infer":
            model = BertEncoder(config)
            # A checkpoint's weights, not a fresh model's zero biases and unit gammas (a frozen
            # graph would fold `x + 0` away and lose oneDNN's MatMul + bias fusions).
            trained_like(model)
            # bert_tf's inference path (what finetuning.make_predict_fn runs): bfloat16 frozen
            # into constants (oneDNN keeps its weight layouts, the casts fold), small float32
            # models XLA-compiled, others the plain graph (inference.execution_for).
            from bert_tf import inference

            fast = inference.fast_forward(model, outputs=["sequence_output", "pooled_output"])

            def forward(inputs):
                outputs = fast(inputs)
                return outputs["sequence_output"], outputs["pooled_output"]

            self.model, self.forward = model, forward
        elif self.task == "serve":
            from bert_tf import export

            model = BertClassifier(config, num_labels=NUM_LABELS)
            # A checkpoint's weights (see infer): a bfloat16 export is frozen, and a frozen
            # graph would fold a fresh model's zero biases away with their fusions.
            trained_like(model)
            # Under the run's temporary directory: gone at the end even if this worker dies.
            self.export_dir = tempfile.mkdtemp(prefix="bert_tf_export_",
                                               dir=self.context.get("work_dir"))
            # Frozen, as `bert-export --freeze=true` writes (the default freezes only models of
            # up to export.FREEZE_MAX_BYTES; base would not be). context["freeze"] and
            # context["load"] serve benchmarks/export_ab.py.
            self.export_path = export.export_model(
                self.export_dir, model, "classifier", self.context["vocab_file"], warmup=False,
                do_lower_case=True, max_seq_length=SEQ_LEN,
                label_list=[str(i) for i in range(NUM_LABELS)],
                freeze=self.context.get("freeze", True))
            if self.context.get("load", True):
                self.loaded = tf.saved_model.load(self.export_path)
                self.serve = self.loaded.signatures["serving_default"]
        elif self.task in ("pretrain", "finetune"):
            self.strategy = distribution.get_strategy()
            with self.strategy.scope():
                if self.task == "pretrain":
                    self.model = BertPretrainer(config)
                else:
                    self.model = BertClassifier(config, num_labels=NUM_LABELS)
                self.optimizer = optimization.create_optimizer(5e-5, 100000, 1000)
        else:
            raise ValueError(f"bert_tf has no task {self.task!r}")

    def runner(self, batch):
        import tensorflow as tf

        data = random_batch(batch)
        if self.task == "infer":
            inputs = {k: tf.constant(data[k]) for k in ("input_ids", "input_mask", "segment_ids")}

            def run(calls):
                for _ in range(calls):
                    _, pooled = self.forward(inputs)
                _tf_sync(pooled)

            return run
        if self.task == "serve":
            texts = tf.constant(self.context["texts"][:batch])

            def run(calls):
                for _ in range(calls):
                    outputs = self.serve(text=texts)
                _tf_sync(outputs["probabilities"])

            return run
        return self._training_runner(batch, data)

    def _training_runner(self, batch, data):
        import tensorflow as tf

        from bert_tf import training
        from bert_tf.classifier import classification_loss
        from bert_tf.models import pretraining_loss

        if self.task == "pretrain":
            keys = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions",
                    "masked_lm_ids", "masked_lm_weights", "next_sentence_labels")
            loss_fn = pretraining_loss
        else:
            keys = ("input_ids", "input_mask", "segment_ids", "label_ids")

            def loss_fn(features, outputs):
                return tf.reduce_mean(classification_loss(features["label_ids"],
                                                          outputs["logits"], False))
        examples = {k: data[k] for k in keys}

        def dataset_fn(input_context):
            return (tf.data.Dataset.from_tensor_slices(examples).repeat()
                    .batch(input_context.get_per_replica_batch_size(batch), drop_remainder=True)
                    .prefetch(2))

        trainer = training.Trainer(self.strategy, self.model, self.optimizer, loss_fn,
                                   model_dir=None, train_batch_size=batch,
                                   steps_per_loop=10**9, save_checkpoints_steps=10**9)

        def run(steps):
            trainer.train(dataset_fn, trainer.global_step + steps)
            # The Trainer times its training loop itself (its examples/s progress figure);
            # starting the loop (input pipeline, loss-name probe) is outside that time.
            _, metrics = trainer.history[-1]
            return steps * batch / metrics["examples_per_second"]

        return run

    def close(self):
        export_dir = getattr(self, "export_dir", None)
        super().close()
        if export_dir:
            import shutil

            shutil.rmtree(export_dir, ignore_errors=True)


class KerasHubBench(_KerasBench):
    """keras-hub's BERT on the same TensorFlow: BertBackbone / BertMaskedLM /
    BertTextClassifier (+ its preprocessor for raw text), built from the config."""

    def build(self):
        import keras_hub
        import tensorflow as tf

        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=VOCAB_SIZE, num_layers=self.layers, num_heads=self.hidden // 64,
            hidden_dim=self.hidden, intermediate_dim=self.intermediate, dropout=0.1,
            max_sequence_length=MAX_POSITIONS, num_segments=TYPE_VOCAB_SIZE)
        if self.task == "infer":
            self.model = backbone
            self.forward = tf.function(lambda inputs: backbone(inputs, training=False))
        elif self.task == "serve":
            tokenizer = keras_hub.tokenizers.BertTokenizer(
                vocabulary=self.context["vocab_file"], lowercase=True)
            preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
                tokenizer, sequence_length=SEQ_LEN)
            classifier = keras_hub.models.BertTextClassifier(backbone, num_classes=NUM_LABELS,
                                                             preprocessor=None)
            self.model, self.preprocessor = classifier, preprocessor
            self.serve = tf.function(lambda texts: tf.nn.softmax(
                tf.cast(classifier(preprocessor(texts), training=False), tf.float32)))
        elif self.task == "pretrain":
            self.model = keras_hub.models.BertMaskedLM(backbone, preprocessor=None)
            self.model.compile(weighted_metrics=[])  # keras-hub's default optimizer and loss
        elif self.task == "finetune":
            self.model = keras_hub.models.BertTextClassifier(backbone, num_classes=NUM_LABELS,
                                                             preprocessor=None)
            self.model.compile(metrics=[])
        else:
            raise ValueError(f"keras_hub has no task {self.task!r}")

    def runner(self, batch):
        import tensorflow as tf

        data = random_batch(batch)
        inputs = {"token_ids": tf.constant(data["input_ids"]),
                  "segment_ids": tf.constant(data["segment_ids"]),
                  "padding_mask": tf.constant(data["input_mask"] > 0)}
        if self.task == "infer":
            def run(calls):
                for _ in range(calls):
                    outputs = self.forward(inputs)
                _tf_sync(outputs["pooled_output"])

            return run
        if self.task == "serve":
            texts = tf.constant(self.context["texts"][:batch])

            def run(calls):
                for _ in range(calls):
                    probabilities = self.serve(texts)
                _tf_sync(probabilities)

            return run
        if self.task == "pretrain":
            inputs["mask_positions"] = tf.constant(data["masked_lm_positions"])
            labels = tf.constant(data["masked_lm_ids"])
            weights = tf.constant(data["masked_lm_weights"])
        else:
            labels, weights = tf.constant(data["label_ids"]), None

        def run(steps):
            for _ in range(steps):
                self.model.train_on_batch(inputs, labels, sample_weight=weights)

        return run


class _TorchBench(_Bench):
    def __init__(self, task, size, precision, context):
        super().__init__(task, size, precision, context)
        import torch

        self.torch = torch
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        torch.manual_seed(0)
        self.build()

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def close(self):
        for name in list(vars(self)):
            if name not in ("task", "size", "precision", "context", "bfloat16"):
                delattr(self, name)


class TorchMatmulBench(_TorchBench):
    """The matmul ceiling in torch (torch.matmul under inference_mode)."""

    def build(self):
        torch = self.torch
        m, k, n = (int(d) for d in self.size.split("x"))
        dtype = torch.bfloat16 if self.bfloat16 else torch.float32
        self.a = torch.rand(m, k, device=self.device).to(dtype)
        self.b = torch.rand(k, n, device=self.device).to(dtype)

    def runner(self, batch):
        def run(calls):
            with self.torch.inference_mode():
                for _ in range(calls):
                    self.torch.matmul(self.a, self.b)
            self.sync()

        return run


class HfTorchBench(_TorchBench):
    """Hugging Face transformers on torch: BertModel / BertForSequenceClassification (+ its
    fast tokenizer for raw text) / BertForPreTraining, random weights from a BertConfig."""

    def build(self):
        import transformers

        torch = self.torch
        config = transformers.BertConfig(
            vocab_size=VOCAB_SIZE, hidden_size=self.hidden, num_hidden_layers=self.layers,
            num_attention_heads=self.hidden // 64, intermediate_size=self.intermediate,
            hidden_act="gelu_new",  # the tanh approximation, as BERT's (and bert_tf's)
            max_position_embeddings=MAX_POSITIONS, type_vocab_size=TYPE_VOCAB_SIZE,
            num_labels=NUM_LABELS)
        inference = self.task in ("infer", "serve")
        classes = {"infer": transformers.BertModel,
                   "serve": transformers.BertForSequenceClassification,
                   "pretrain": transformers.BertForPreTraining,
                   "finetune": transformers.BertForSequenceClassification}
        if self.task not in classes:
            raise ValueError(f"hf_torch has no task {self.task!r}")
        model = classes[self.task](config).to(self.device)
        # bfloat16 inference: bfloat16 weights (mode "weights") or float32 weights under
        # autocast; training always autocasts (mixed precision, float32 weights and Adam).
        self.autocast = self.bfloat16 and not (inference and
                                               self.context["hf_bfloat16"] == "weights")
        if self.bfloat16 and not self.autocast:
            model = model.to(torch.bfloat16)
        self.model = model.eval() if inference else model.train()
        if self.task == "serve":
            self.tokenizer = transformers.BertTokenizerFast(
                vocab_file=self.context["vocab_file"], do_lower_case=True)
        if not inference:
            decay, no_decay = [], []
            for name, parameter in model.named_parameters():
                (no_decay if "LayerNorm" in name or name.endswith("bias") else decay
                 ).append(parameter)
            groups = [{"params": decay, "weight_decay": 0.01},
                      {"params": no_decay, "weight_decay": 0.0}]
            try:
                self.optimizer = torch.optim.AdamW(groups, lr=5e-5, eps=1e-6, fused=True)
            except (RuntimeError, ValueError, TypeError):
                self.optimizer = torch.optim.AdamW(groups, lr=5e-5, eps=1e-6)

    def _autocast(self):
        import contextlib

        if not self.autocast:
            return contextlib.nullcontext()
        return self.torch.autocast(self.device.type, dtype=self.torch.bfloat16)

    def runner(self, batch):
        torch = self.torch
        data = random_batch(batch)
        tensor = lambda key: torch.as_tensor(data[key], dtype=torch.long, device=self.device)
        inputs = {"input_ids": tensor("input_ids"), "attention_mask": tensor("input_mask"),
                  "token_type_ids": tensor("segment_ids")}
        if self.task == "infer":
            def run(calls):
                with torch.inference_mode(), self._autocast():
                    for _ in range(calls):
                        self.model(**inputs)
                self.sync()

            return run
        if self.task == "serve":
            texts = list(self.context["texts"][:batch])

            def run(calls):
                with torch.inference_mode(), self._autocast():
                    for _ in range(calls):
                        encoded = self.tokenizer(texts, padding=True, truncation=True,
                                                 max_length=SEQ_LEN, return_tensors="pt")
                        logits = self.model(**encoded.to(self.device)).logits
                        logits.float().softmax(-1)
                self.sync()

            return run
        if self.task == "pretrain":
            labels = torch.full((batch, SEQ_LEN), -100, dtype=torch.long)
            positions = torch.as_tensor(data["masked_lm_positions"], dtype=torch.long)
            labels.scatter_(1, positions, torch.as_tensor(data["masked_lm_ids"],
                                                          dtype=torch.long))
            inputs["labels"] = labels.to(self.device)
            inputs["next_sentence_label"] = tensor("next_sentence_labels").view(-1)
        else:
            inputs["labels"] = tensor("label_ids")
        parameters = [p for p in self.model.parameters() if p.requires_grad]

        def run(steps):
            for _ in range(steps):
                self.optimizer.zero_grad(set_to_none=True)
                with self._autocast():
                    loss = self.model(**inputs).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(parameters, 1.0)
                self.optimizer.step()
            self.sync()

        return run


def _bench_class(system, task):
    if system in ("bert_tf", "keras_hub"):
        if task == "ceiling":
            return TfMatmulBench
        return BertTfBench if system == "bert_tf" else KerasHubBench
    if system == "hf_torch":
        return TorchMatmulBench if task == "ceiling" else HfTorchBench
    raise ValueError(f"unknown system {system!r}")


def _versions(system):
    """Imports the system's framework (ImportError when missing); returns its versions."""
    import numpy

    versions = {"python": platform.python_version(), "numpy": numpy.__version__}
    if system in ("bert_tf", "keras_hub"):
        import keras
        import tensorflow as tf

        versions.update(tensorflow=tf.__version__, keras=keras.__version__)
        if system == "keras_hub":
            import keras_hub

            versions["keras_hub"] = keras_hub.__version__
        else:
            import bert_tf

            versions["bert_tf"] = bert_tf.__version__
        versions["threads"] = (f"TF inter {tf.config.threading.get_inter_op_parallelism_threads()}"
                               f" intra {tf.config.threading.get_intra_op_parallelism_threads()}"
                               " (0 = all cores)")
    else:
        import torch
        import transformers

        versions.update(torch=torch.__version__, transformers=transformers.__version__,
                        threads=f"torch {torch.get_num_threads()}")
    return versions


def _one_line(error):
    text = f"{type(error).__name__}: {error}".strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]


def _timed(run, calls):
    start = time.perf_counter()
    own = run(calls)
    wall = time.perf_counter() - start
    return (own if own is not None else wall) / calls


def _warm_up(run, min_time):
    """(calls per repeat, seconds per call): WARMUP_CALLS calls of `run`, the last one timed
    to size a repeat of >= min_time seconds."""
    for _ in range(WARMUP_CALLS - 1):
        run(1)
    per_call = _timed(run, 1)
    return max(1, min(10000, math.ceil(min_time / max(per_call, 1e-9)))), per_call


class Worker:
    """The request loop of a worker process: hello, setup, prepare, measure, probe_setup,
    probe_measure, teardown, exit."""

    def __init__(self, system):
        self.system = system
        self.bench = None
        self.runs = {}  # batch -> (run, calls per repeat)
        self.probe = None  # (matmul bench, run, calls per repeat) of the interleaved ceiling

    def reply(self, request):
        """The reply to one request: its results with ok=True, or ok=False and the error."""
        try:
            return dict(self.handle(request), ok=True)
        except Exception as error:  # reported to the coordinator as a skipped row
            traceback.print_exc()
            sys.stderr.flush()
            return {"ok": False, "error": _one_line(error)}

    def handle(self, request):
        op = request["op"]
        if op == "hello":
            return {"versions": _versions(self.system)}
        if op == "setup":
            self.teardown()
            start = time.perf_counter()
            cls = _bench_class(self.system, request["task"])
            self.bench = cls(request["task"], request["size"], request["precision"],
                             request["context"])
            return {"seconds": time.perf_counter() - start}
        if op == "prepare":
            batch = request["batch"]
            run = self.bench.runner(batch)
            calls, per_call = _warm_up(run, request["min_time"])
            self.runs[batch] = (run, calls)
            return {"calls": calls, "seconds": per_call}
        if op == "measure":
            run, calls = self.runs[request["batch"]]
            return {"seconds": _timed(run, calls), "calls": calls}
        if op == "probe_setup":
            # A matmul of the ceiling, held beside the case's model and timed between its
            # repeats (run_cases: the ceiling a row's MFU is measured against).
            self.probe = None
            cls = _bench_class(self.system, "ceiling")
            bench = cls("ceiling", request["size"], request["precision"], {})
            run = bench.runner(1)
            calls, per_call = _warm_up(run, request["min_time"])
            self.probe = (bench, run, calls)
            return {"calls": calls, "seconds": per_call}
        if op == "probe_measure":
            _, run, calls = self.probe
            return {"seconds": _timed(run, calls), "calls": calls}
        if op == "teardown":
            self.teardown()
            return {"rss_mb": _resident_mb()}
        raise ValueError(f"unknown request {op!r}")

    def teardown(self):
        self.runs.clear()
        if self.probe is not None:
            self.probe[0].close()
            self.probe = None
        if self.bench is not None:
            self.bench.close()
            self.bench = None
        gc.collect()


def _resident_mb():
    """This process' resident memory now, MiB (None where /proc is not there)."""
    try:
        with open("/proc/self/statm") as reader:
            pages = int(reader.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker_main(system):
    """Serves JSON-line requests on stdin; replies on the original stdout, while everything
    the libraries print goes to stderr (the coordinator's log file)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    worker = Worker(system)
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "exit":
            break
        protocol.write(json.dumps(worker.reply(request)) + "\n")
    worker.teardown()


# ---------------------------------------------------------------------------------------------
# Coordinator side
# ---------------------------------------------------------------------------------------------


class WorkerDied(RuntimeError):
    pass


class WorkerProcess:
    """A `--worker SYSTEM` subprocess; `call` sends one request and waits for its reply."""

    def __init__(self, system, python, log_dir, timeout=None):
        self.system, self.python, self.timeout = system, python, timeout
        self.log_path = os.path.join(log_dir, f"{system}.log")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [REPO_ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   TOKENIZERS_PARALLELISM="false")
        self._log = open(self.log_path, "a")  # a restarted worker appends
        self.process = subprocess.Popen(
            [python, "-m", "benchmarks.compare", "--worker", system], cwd=REPO_ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True,
            bufsize=1)
        self.dead = None  # the reason, once it is unusable

    def call(self, op, **request):
        if self.dead:
            raise WorkerDied(self.dead)
        try:
            self.process.stdin.write(json.dumps(dict(request, op=op)) + "\n")
            self.process.stdin.flush()
            if self.timeout and not select.select([self.process.stdout], [], [],
                                                  self.timeout)[0]:
                self.process.kill()
                self.process.wait()
                self.dead = (f"{self.system} worker gave no answer to {op!r} within "
                             f"{self.timeout:.0f} s (--call-timeout); killed")
                raise WorkerDied(self.dead)
            line = self.process.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            self.process.wait()
            status = self.process.returncode
            why = ("killed by SIGKILL, e.g. the kernel's out-of-memory killer"
                   if status == -9 else self.log_tail())
            self.dead = f"{self.system} worker exited with status {status} ({why})"
            raise WorkerDied(self.dead)
        return json.loads(line)

    def log_tail(self):
        self._log.flush()
        try:
            with open(self.log_path, errors="replace") as reader:
                lines = [line.strip() for line in reader if line.strip()]
        except OSError:
            return "no log"
        return lines[-1][:200] if lines else "no output"

    def close(self):
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps({"op": "exit"}) + "\n")
                self.process.stdin.flush()
                self.process.wait(timeout=60)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self._log.close()


class LocalWorker:
    """A Worker in this process behind WorkerProcess' interface (for tests and debugging:
    no process isolation, so never for the comparison itself)."""

    def __init__(self, system):
        self.system, self.dead = system, None
        self.worker = Worker(system)

    def call(self, op, **request):
        return self.worker.reply(dict(request, op=op))

    def close(self):
        self.worker.teardown()


@dataclasses.dataclass
class Case:
    """One (task, size, precision): the systems build its model once, then run each batch."""

    task: str
    size: str
    precision: str
    batches: List[int]
    systems: List[str]


def plan_cases(tasks, sizes, precisions, systems, quick=False):
    """The cases in running order: ceiling first (every MFU needs it), then by task, size,
    precision."""
    cases = []
    if "ceiling" in tasks:
        shapes = QUICK_CEILING_SHAPES if quick else CEILING_SHAPES
        # The ceiling's own systems: TensorFlow (in the bert_tf or keras_hub worker) and torch.
        tf_system = "bert_tf" if "bert_tf" in systems else "keras_hub"
        ceiling_systems = [s for s in (tf_system, "hf_torch") if s in systems]
        for precision in precisions:
            for shape in shapes:
                cases.append(Case("ceiling", ceiling_shape_name(shape), precision, [1],
                                  ceiling_systems))
    for task in TASKS[1:]:
        if task not in tasks:
            continue
        for size in sizes:
            if task == "finetune" and size not in FINETUNE_SIZES:
                continue
            if task in ("infer", "serve"):
                batches = list(INFER_BATCHES)
            elif task == "pretrain":
                batches = [PRETRAIN_BATCHES[size]]
            else:
                batches = [FINETUNE_BATCH]
            for precision in precisions:
                cases.append(Case(task, size, precision, batches, list(systems)))
    return cases


NOTES = {
    ("pretrain", "keras_hub"): "keras-hub BertMaskedLM: MLM only (keras-hub has no NSP head)",
    ("pretrain", "hf_torch"): ("HF BertForPreTraining computes MLM logits at all 128 positions "
                               "(the FLOP count uses 20)"),
}


def _row(case, system, batch, **values):
    row = {"task": case.task, "size": case.size, "precision": case.precision,
           "system": "ceiling" if case.task == "ceiling" else system, "batch": batch,
           "seq_len": None if case.task == "ceiling" else SEQ_LEN, "seq_per_s": None,
           "latency_ms": None, "mfu": None,
           "flops_per_seq": flops_per_sequence(case.task, case.size)
           if case.task != "ceiling" else None,
           "samples_ms": [], "load_avg": round(os.getloadavg()[0], 2),
           "note": NOTES.get((case.task, system)), "skipped": None}
    if case.task == "ceiling":
        row["framework"] = "torch" if system == "hf_torch" else "tensorflow"
        row["worker"] = system
        row["batch"] = None
        row["gflop_per_s"] = None
    row.update(values)
    return row


def _rotate(items, shift):
    if not items:
        return items
    shift %= len(items)
    return items[shift:] + items[:shift]


def _ask(worker, op, failed="failed", **request):
    """(reply, None) when the worker did `op`, else (None, why its rows are skipped)."""
    try:
        reply = worker.call(op, **request)
    except WorkerDied as died:
        return None, str(died)
    if not reply["ok"]:
        return None, f"{worker.system} {failed}: {reply['error']}"
    return reply, None


def _best_ceiling_shapes(rows, precision):
    """system -> (shape, GFLOP/s): the fastest ceiling shape each worker measured so far."""
    best = {}
    for row in rows:
        if (row["task"] == "ceiling" and row["precision"] == precision
                and row.get("gflop_per_s") and row.get("worker")):
            if row["worker"] not in best or row["gflop_per_s"] > best[row["worker"]][1]:
                best[row["worker"]] = (row["size"], row["gflop_per_s"])
    return best


def _set_up_probes(case, rows, workers, min_time, log):
    """system -> shape: the ceiling probes of a (non-ceiling) case, set up in their workers.

    Each framework's fastest ceiling shape of the case's precision, timed between the row's
    repeats: on a shared host a matmul's rate moves by 2x within minutes, so a row's MFU is
    against the ceiling measured while the row ran (the run-start ceiling stays in the rows).
    """
    probes = {}
    if case.task == "ceiling":
        return probes
    for system, (shape, _) in sorted(_best_ceiling_shapes(rows, case.precision).items()):
        worker = workers.get(system)
        if worker is None or worker.dead:
            continue
        _, why = _ask(worker, "probe_setup", "failed to set up its ceiling probe", size=shape,
                      precision=case.precision, min_time=min_time)
        if why:
            log(f"  {case.task} {case.size} {case.precision}: no ceiling probe ({why})")
        else:
            probes[system] = shape
    return probes


def _probe_results(probes, samples):
    """The probes' medians as [{framework, shape, gflop_per_s, samples_ms}]."""
    results = []
    for system, shape in probes.items():
        if not samples.get(system):
            continue
        m, k, n = (int(d) for d in shape.split("x"))
        seconds = statistics.median(samples[system])
        results.append({"framework": "torch" if system == "hf_torch" else "tensorflow",
                        "shape": shape, "gflop_per_s": 2 * m * k * n / seconds / 1e9,
                        "samples_ms": [round(t * 1e3, 3) for t in samples[system]]})
    return results


def run_cases(cases, workers, repeats, min_time, context, log=None, restart=None,
              restart_mb=RESTART_RESIDENT_MB):
    """Runs every case with the repeats interleaved across systems; returns the rows.

    Each non-ceiling case also times each framework's fastest ceiling matmul
    (of the ceiling rows measured before it) between its repeats: the row's
    `ceiling_gflop_per_s`, which its MFU is against (add_mfu).

    `restart(system)` -> a fresh worker: called for a worker still holding more than
    `restart_mb` MiB after a case's teardown (TensorFlow keeps graphs, XLA and oneDNN caches of
    every model a process built; a full run's bert_tf worker grew past 9 GiB and was killed),
    and before the next case for a worker that died (its own case's rows are skipped with the
    reason; a later case should not lose its rows to it).
    """
    log = log or (lambda message: None)
    rows = []
    for number, case in enumerate(cases, 1):
        label = f"{case.task} {case.size} {case.precision}"
        log(f"[{number}/{len(cases)}] {label}: setting up {', '.join(case.systems)}")
        if restart is not None:
            for system in case.systems:
                if workers.get(system) is not None and workers[system].dead:
                    _replace_worker(workers, system, restart, log,
                                    f"died ({workers[system].dead[:120]})")
        ready, skipped = [], {}
        for system in case.systems:
            worker = workers.get(system)
            if worker is None or worker.dead:
                skipped[system] = worker.dead if worker else f"{system} not started"
                continue
            reply, why = _ask(worker, "setup", "failed to build", task=case.task,
                              size=case.size, precision=case.precision, context=context)
            if why:
                skipped[system] = why
            else:
                ready.append(system)
        probes = _set_up_probes(case, rows, workers, min_time, log)
        for batch in case.batches:
            prepared, batch_skipped = [], dict(skipped)
            for system in ready:
                reply, why = _ask(workers[system], "prepare", batch=batch, min_time=min_time)
                if why:
                    batch_skipped[system] = why
                else:
                    prepared.append(system)
            samples = {system: [] for system in prepared}
            probe_samples = {system: [] for system in probes}
            for repeat in range(repeats):
                # The row's systems and the ceiling probes, in an order that rotates.
                order = [("row", s) for s in prepared] + [("probe", s) for s in probes]
                for kind, system in _rotate(order, repeat):
                    if kind == "probe":
                        if system in probes:
                            reply, why = _ask(workers[system], "probe_measure")
                            if why:
                                log(f"  {label}: ceiling probe of {system} dropped ({why})")
                                del probes[system]
                            else:
                                probe_samples[system].append(reply["seconds"])
                        continue
                    if system in batch_skipped:
                        continue
                    reply, why = _ask(workers[system], "measure", batch=batch)
                    if why:
                        batch_skipped[system] = why
                    else:
                        samples[system].append(reply["seconds"])
            probe_rows = _probe_results(probes, probe_samples)
            for system in case.systems:
                if system in batch_skipped:
                    rows.append(_row(case, system, batch, skipped=batch_skipped[system]))
                    log(f"  {label} batch {batch} {system}: skipped ({batch_skipped[system]})")
                    continue
                seconds = statistics.median(samples[system])
                row = _row(case, system, batch,
                           samples_ms=[round(s * 1e3, 3) for s in samples[system]],
                           latency_ms=seconds * 1e3)
                if case.task == "ceiling":
                    m, k, n = (int(d) for d in case.size.split("x"))
                    row["gflop_per_s"] = 2 * m * k * n / seconds / 1e9
                    log(f"  {label} {row['framework']}: {row['gflop_per_s']:.0f} GFLOP/s")
                else:
                    row["seq_per_s"] = batch / seconds
                    if probe_rows:
                        row["ceiling_probe"] = probe_rows
                        row["ceiling_gflop_per_s"] = max(p["gflop_per_s"] for p in probe_rows)
                    log(f"  {label} batch {batch} {system}: {row['seq_per_s']:.2f} seq/s, "
                        f"{seconds * 1e3:.1f} ms per call")
                rows.append(row)
            if probe_rows:
                log(f"  {label} batch {batch} ceiling during the row: " + ", ".join(
                    f"{p['framework']} {p['shape']} {p['gflop_per_s']:.0f}" for p in probe_rows)
                    + " GFLOP/s")
        for system in ready:
            reply, why = _ask(workers[system], "teardown")
            if why:
                continue
            resident = reply.get("rss_mb")
            if restart is not None and resident is not None and resident > restart_mb:
                _replace_worker(workers, system, restart, log,
                                f"holds {resident:.0f} MiB after {label}")
    return rows


def _replace_worker(workers, system, restart, log, why):
    log(f"  {system} worker {why}: restarting it")
    workers[system].close()
    workers[system] = restart(system)


# ---------------------------------------------------------------------------------------------
# Results: MFU, ratios, Markdown, plot, JSON
# ---------------------------------------------------------------------------------------------


def ceilings(rows):
    """precision -> the best measured matmul GFLOP/s row."""
    best = {}
    for row in rows:
        if row["task"] == "ceiling" and row.get("gflop_per_s"):
            if row["precision"] not in best or row["gflop_per_s"] > best[row["precision"]][
                    "gflop_per_s"]:
                best[row["precision"]] = row
    return best


def add_mfu(rows):
    """Sets every measured row's mfu = seq/s × FLOPs per sequence ÷ its ceiling: the best
    matmul rate measured interleaved with the row (`ceiling_gflop_per_s`) when it has one,
    else its precision's best ceiling row. `mfu_run_ceiling` is always against the latter."""
    best = ceilings(rows)
    for row in rows:
        if row["task"] == "ceiling" or not row["seq_per_s"]:
            continue
        flops = row["seq_per_s"] * row["flops_per_seq"]
        ceiling = best.get(row["precision"])
        row["mfu_run_ceiling"] = flops / (ceiling["gflop_per_s"] * 1e9) if ceiling else None
        if row.get("ceiling_gflop_per_s"):
            row["mfu"] = flops / (row["ceiling_gflop_per_s"] * 1e9)
        else:
            row["mfu"] = row["mfu_run_ceiling"]
    return rows


def ratios(rows):
    """(task, size, precision, batch) -> bert_tf seq/s ÷ the best peer's (None when bert_tf or
    every peer is missing)."""
    groups = {}
    for row in rows:
        if row["task"] != "ceiling" and row["seq_per_s"]:
            key = (row["task"], row["size"], row["precision"], row["batch"])
            groups.setdefault(key, {})[row["system"]] = row["seq_per_s"]
    result = {}
    for key, rates in groups.items():
        peers = [rates[p] for p in PEERS if p in rates]
        result[key] = rates["bert_tf"] / max(peers) if "bert_tf" in rates and peers else None
    return result


def _number(value):
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(row):
    if row is None:
        return "–"
    if row["skipped"]:
        return "skipped¹"
    if row["batch"] == 1:
        text = f"{row['latency_ms']:.1f} ms"
    else:
        text = f"{_number(row['seq_per_s'])}/s"
    if row["mfu"] is not None:
        text += f" ({row['mfu']:.0%})"
    return text


def markdown_table(rows, systems=SYSTEMS):
    """The results as Markdown: the ceiling, then one line per (task, size, precision, batch)
    with each system's throughput (batch 1: latency) and MFU, and bert_tf ÷ best peer."""
    lines = []
    best = ceilings(rows)
    ceiling_rows = [r for r in rows if r["task"] == "ceiling"]
    if ceiling_rows:
        lines.append("Matmul ceiling at the start of the run (GFLOP/s, median). A row's MFU is "
                     "against the fastest shape of each framework timed again between the "
                     "row's own repeats (its last column); against the best here when it has "
                     "none:")
        lines.append("")
        lines.append("| precision | shape m×k×n | framework | GFLOP/s |")
        lines.append("|---|---|---|---|")
        for row in ceiling_rows:
            value = "skipped¹" if row["skipped"] else f"{row['gflop_per_s']:,.0f}"
            mark = " **best**" if best.get(row["precision"]) is row else ""
            lines.append(f"| {row['precision']} | {row['size']} | {row['framework']} | "
                         f"{value}{mark} |")
        lines.append("")
    measured = [r for r in rows if r["task"] != "ceiling"]
    if measured:
        table_ratios = ratios(rows)
        lines.append("| task | size | precision | batch | " + " | ".join(systems)
                     + " | bert_tf ÷ best peer | ceiling during row |")
        lines.append("|---|---|---|---|" + "---|" * (len(systems) + 2))
        keys = []
        for row in measured:
            key = (row["task"], row["size"], row["precision"], row["batch"])
            if key not in keys:
                keys.append(key)
        for key in keys:
            by_system = {r["system"]: r for r in measured
                         if (r["task"], r["size"], r["precision"], r["batch"]) == key}
            ratio = table_ratios.get(key)
            during = [r["ceiling_gflop_per_s"] for r in by_system.values()
                      if r.get("ceiling_gflop_per_s")]
            lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | "
                         + " | ".join(_cell(by_system.get(s)) for s in systems)
                         + f" | {'–' if ratio is None else f'{ratio:.2f}'}"
                         + f" | {f'{max(during):,.0f}' if during else '–'} |")
    reasons = sorted({f"{r['system']}: {r['skipped']}" for r in rows if r["skipped"]})
    notes = sorted({f"{r['system']} {r['task']}: {r['note']}" for r in rows if r["note"]})
    if reasons:
        lines.append("")
        lines.append("¹ skipped: " + "; ".join(reasons))
    if notes:
        lines.append("")
        lines.extend(f"- {note}" for note in notes)
    return "\n".join(lines)


PLOT_TASKS = (("infer", 32, "encoder inference, batch 32"),
              ("serve", 32, "raw-text serving, batch 32"),
              ("pretrain", None, "pretraining step (batch 32/16/8)"),
              ("finetune", 32, "classifier training step, batch 32"))


def plot_png(rows):
    """PNG bytes: sequences/s against encoder parameters, one panel per task, a line per
    system and precision; None when nothing was measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    panels = [(task, batch, title) for task, batch, title in PLOT_TASKS
              if any(r["task"] == task and r["seq_per_s"] for r in rows)]
    if not panels:
        return None
    columns = min(2, len(panels))
    figure, axes = plt.subplots((len(panels) + 1) // 2, columns, squeeze=False,
                                figsize=(5.2 * columns, 3.6 * ((len(panels) + 1) // 2)), dpi=80)
    colors = {"bert_tf": "tab:red", "keras_hub": "tab:blue", "hf_torch": "tab:green"}
    styles = {"float32": "--", "bfloat16": "-"}
    for axis, (task, batch, title) in zip(axes.flat, panels):
        for system in SYSTEMS:
            for precision in PRECISIONS:
                points = sorted(
                    (encoder_parameters(*size_dims(r["size"])) / 1e6, r["seq_per_s"], r["size"])
                    for r in rows if r["task"] == task and r["system"] == system
                    and r["precision"] == precision and r["seq_per_s"]
                    and (batch is None or r["batch"] == batch))
                if points:
                    axis.plot([p[0] for p in points], [p[1] for p in points], styles[precision],
                              color=colors[system], marker="o", markersize=4,
                              label=f"{system} {precision}")
        axis.set_xscale("log")
        axis.set_yscale("log")
        sizes = [s for s in SIZES if any(r["size"] == s and r["task"] == task for r in rows)]
        ticks = [encoder_parameters(*size_dims(s)) / 1e6 for s in sizes]
        axis.set_xticks(ticks, [f"{s}\n{t:.1f}M" for s, t in zip(sizes, ticks)], fontsize=7)
        axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        axis.yaxis.set_major_locator(matplotlib.ticker.LogLocator(10, subs=(1.0, 2.0, 5.0)))
        axis.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
            lambda value, _: f"{value:g}"))
        axis.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.tick_params(axis="y", which="both", labelsize=7)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("model size: encoder parameters", fontsize=8)
        axis.set_ylabel("sequences / s (seq 128)", fontsize=8)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=6)
    for axis in list(axes.flat)[len(panels):]:
        axis.set_visible(False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def machine_description():
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as reader:
            for line in reader:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}"


def header(versions, load_start, load_end, seconds, command, settings):
    lines = [f"Machine: {machine_description()}",
             f"Command: `{command}`",
             f"Settings: {settings}",
             f"Load average (1/5/15 min) at start {' / '.join(f'{x:.2f}' for x in load_start)}, "
             f"at end {' / '.join(f'{x:.2f}' for x in load_end)}; wall time {seconds / 60:.1f} min"]
    for system, info in versions.items():
        lines.append(f"{system}: " + (", ".join(f"{k} {v}" for k, v in info.items())
                                      if isinstance(info, dict) else str(info)))
    return "\n".join(f"- {line}" for line in lines)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"error: {message} (see --help)\n")


def _choices(flag, allowed):
    def parse(text):
        values = [v.strip() for v in text.split(",") if v.strip()]
        unknown = [v for v in values if v not in allowed]
        if unknown or not values:
            raise argparse.ArgumentTypeError(
                f"{flag}={text!r}: expected a comma-separated subset of {', '.join(allowed)}")
        return [v for v in allowed if v in values]

    return parse


def parse_args(argv):
    parser = _Parser(prog="python -m benchmarks.compare",
                     description=__doc__.split("\n\n", 1)[0],
                     epilog="See the module docstring (benchmarks/compare.py) for what each "
                            "system runs.")
    parser.add_argument("--quick", action="store_true",
                        help="tiny and small only, 3 repeats of >= 0.3 s (under 10 minutes)")
    parser.add_argument("--tasks", type=_choices("--tasks", TASKS),
                        help=f"comma-separated subset of {','.join(TASKS)} (default all)",
                        default=list(TASKS))
    parser.add_argument("--sizes", type=_choices("--sizes", tuple(SIZES)), default=None,
                        help="default tiny,small,base (--quick: tiny,small)")
    parser.add_argument("--systems", type=_choices("--systems", SYSTEMS),
                        help=f"comma-separated subset of {','.join(SYSTEMS)} (default all)",
                        default=list(SYSTEMS))
    parser.add_argument("--precisions", type=_choices("--precisions", PRECISIONS),
                        help=f"comma-separated subset of {','.join(PRECISIONS)} (default all)",
                        default=list(PRECISIONS))
    parser.add_argument("--repeats", type=int, default=None,
                        help="interleaved repeats per row, median reported (default 5; "
                             "--quick 3)")
    parser.add_argument("--min-time", type=float, default=None,
                        help="seconds of calls per repeat, at least one call (default 1.0; "
                             "--quick 0.3)")
    parser.add_argument("--out", default=None, help="write the rows as a JSON list here")
    parser.add_argument("--plot", default="compare.png",
                        help="write the PNG plot here ('' for none; default %(default)s)")
    parser.add_argument("--torch-python", default=os.environ.get(TORCH_PYTHON_ENV),
                        help="the Python that runs the hf_torch worker (with torch and "
                             f"transformers); default ${TORCH_PYTHON_ENV}, else this one")
    parser.add_argument("--hf-bfloat16", choices=("autocast", "weights"), default="autocast",
                        help="HF bfloat16 inference: torch.autocast (default) or bfloat16 "
                             "weights")
    parser.add_argument("--call-timeout", type=float, default=3600.0,
                        help="seconds a worker may take for one request (build, warm-up or "
                             "one repeat) before it is killed and its rows skipped")
    parser.add_argument("--from-json", default=None, metavar="FILE",
                        help="measure nothing: print the table and write the plot of the rows "
                             "a previous --out wrote")
    parser.add_argument("--worker", choices=SYSTEMS, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return args
    if args.sizes is None:
        args.sizes = ["tiny", "small"] if args.quick else list(SIZES)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    if args.min_time is None:
        args.min_time = 0.3 if args.quick else 1.0
    if args.repeats < 1:
        parser.error(f"--repeats={args.repeats}: expected at least 1")
    if not args.call_timeout > 0:
        parser.error(f"--call-timeout={args.call_timeout}: expected a positive number of "
                     "seconds")
    if not args.min_time > 0:
        parser.error(f"--min-time={args.min_time}: expected a positive number of seconds")
    if args.from_json and not os.path.isfile(args.from_json):
        parser.error(f"--from-json={args.from_json!r}: no such file")
    if args.torch_python and not os.access(args.torch_python, os.X_OK):
        parser.error(f"--torch-python={args.torch_python!r}: not an executable file")
    for flag, path in (("--out", args.out), ("--plot", args.plot)):
        if path:
            directory = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(directory):
                parser.error(f"{flag}={path!r}: directory {directory} does not exist")
            if os.path.isdir(path):
                parser.error(f"{flag}={path!r} is a directory; expected a file name")
    return args


def _start_worker(args, system, log_dir):
    python = sys.executable
    if system == "hf_torch" and args.torch_python:
        python = args.torch_python
    return python, WorkerProcess(system, python, log_dir, args.call_timeout)


def _start_workers(args, needed, log_dir, log):
    """system -> WorkerProcess for every needed system; unavailable ones come back dead with
    the reason (their rows are skipped)."""
    workers, versions = {}, {}
    for system in needed:
        python, worker = _start_worker(args, system, log_dir)
        try:
            reply = worker.call("hello")
        except WorkerDied as died:
            reply = {"ok": False, "error": str(died)}
        if reply["ok"]:
            versions[system] = reply["versions"]
            log(f"{system} worker ({python}): {reply['versions']}")
        else:
            hint = ""
            if "ImportError" in reply["error"] or "ModuleNotFoundError" in reply["error"]:
                hint = (f" (pass --torch-python or ${TORCH_PYTHON_ENV} for a Python with torch "
                        "and transformers)" if system == "hf_torch" else
                        " (pip install -e .[bench] in this Python)")
            worker.dead = f"{system} not available under {python}: {reply['error']}{hint}"
            versions[system] = worker.dead
            log(worker.dead)
        workers[system] = worker
    return workers, versions


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.worker:
        worker_main(args.worker)
        return 0
    from absl import logging

    from bert_tf.files import atomic_write

    logging.set_verbosity(logging.INFO)
    logging.use_absl_handler()
    log = logging.info
    if args.from_json:
        rows = read_rows(args.from_json)
        print(markdown_table(rows, [s for s in SYSTEMS if s in args.systems]), flush=True)
        write_plot(args.plot, rows, log)
        return 0
    start, load_start = time.time(), os.getloadavg()
    cases = plan_cases(args.tasks, args.sizes, args.precisions, args.systems, args.quick)
    needed = sorted({s for case in cases for s in case.systems}, key=SYSTEMS.index)
    log(f"{len(cases)} cases, systems {', '.join(needed)}, {args.repeats} repeats of "
        f">= {args.min_time} s; load average {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="bert_tf_compare_") as work_dir:
        context = bench_context(work_dir, args.hf_bfloat16)
        workers, versions = _start_workers(args, needed, work_dir, log)
        try:
            def restart(system):
                return _start_worker(args, system, work_dir)[1]

            rows = run_cases(cases, workers, args.repeats, args.min_time, context, log,
                             restart=restart)
        finally:
            for worker in workers.values():
                worker.close()
    add_mfu(rows)
    command = "python -m benchmarks.compare " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    settings = (f"seq {SEQ_LEN}, {args.repeats} interleaved repeats of >= {args.min_time} s "
                f"(median), HF bfloat16 inference: {args.hf_bfloat16}")
    text = header(versions, load_start, os.getloadavg(), time.time() - start, command.strip(),
                  settings)
    text += "\n\n" + markdown_table(rows, [s for s in SYSTEMS if s in args.systems]) + "\n"
    print(text, flush=True)
    if args.out:
        atomic_write(args.out, json.dumps(rows, indent=1) + "\n")
        log(f"wrote {len(rows)} rows to {args.out}")
    write_plot(args.plot, rows, log)
    return 0


def read_rows(path):
    """The rows of a --out JSON file (one-line error when it is not one)."""
    with open(path, encoding="utf-8") as reader:
        try:
            rows = json.load(reader)
        except json.JSONDecodeError as error:
            raise SystemExit(f"error: {path}:{error.lineno}: not JSON ({error.msg}); expected "
                             "the list benchmarks.compare --out writes")
    required = {"task", "size", "precision", "system", "batch", "seq_per_s", "mfu", "skipped"}
    for number, row in enumerate(rows if isinstance(rows, list) else [None]):
        if not isinstance(row, dict) or not required <= set(row):
            raise SystemExit(f"error: {path}: row {number} is not a benchmarks.compare row "
                             f"(expected the keys {', '.join(sorted(required))})")
        row.setdefault("note", None)
    return rows


def write_plot(path, rows, log):
    if not path:
        return
    try:
        png = plot_png(rows)
    except ImportError:
        log("no plot: matplotlib is not installed (pip install -e .[bench])")
        return
    if png:
        from bert_tf.files import atomic_write

        atomic_write(path, png)
        log(f"wrote the plot to {path}")


if __name__ == "__main__":
    sys.exit(main())
