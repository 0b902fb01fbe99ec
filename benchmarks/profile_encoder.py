"""Where bert_tf's time goes: encoder inference and the pretraining step, timed and profiled.

    python -m benchmarks.profile_encoder                               # all rows, both precisions
    python -m benchmarks.profile_encoder --sizes base --precisions bfloat16 --tasks infer \
        --profile base:bfloat16:infer                                  # + op-level table
    python -m benchmarks.profile_encoder --baseline_tree /tmp/bert_tf_before   # before vs after

Rows: `infer` = encoder forward (training=False) of a batch of 32 × 128 inside one tf.function
(graph mode, what serving and predict run); `pretrain` = one optimizer update of BertPretrainer
(MLM with 20 masked positions + NSP, AdamWeightDecay) through bert_tf.training.Trainer's own
train loop, batch 8 × 128. Sizes tiny (L2/H128), small (L4/H512), base (L12/H768); float32 and
mixed_bfloat16. Random ids, full attention mask (speed does not depend on the values).

Systems, timed interleaved inside one process so that load drifts on a shared machine hit all
of them alike (round r: A, B, C, ... each `calls` times; medians over all calls):
  bert_tf           the package on sys.path (e.g. PYTHONPATH=your worktree);
  bert_tf_baseline  with --baseline_tree DIR: the bert_tf package found in DIR, imported into the
                    same process under its own module objects (e.g. an unpacked `git archive`
                    of an older commit), to measure a change before/after side by side;
  bert_tf_frozen    (infer) the same forward as one input_signature concrete function with the
                    variables frozen into constants (convert_variables_to_constants_v2), so
                    grappler can fold the float32->bfloat16 weight casts and oneDNN can cache the
                    reordered weights of constant-weight MatMuls;
  bert_tf_xla       (infer) the same forward compiled by XLA (tf.function(jit_compile=True));
  keras_hub         keras-hub's BertBackbone (infer) / BertMaskedLM + AdamW (pretrain: MLM only,
                    no NSP head), when keras-hub is installed.
Every row prints seq/s from the median wall time per call, the median process CPU seconds per
call (all threads; steadier than wall time when other jobs share the cores), GFLOP/s from the
model FLOPs and the load average seen while the row ran.

Model FLOPs (as benchmarks/compare.py counts them): forward = 2 × matmul weights (embeddings
excluded) × tokens + 4 × layers × seq² × hidden (attention) [+ 2 × hidden × vocab × masked
positions for the MLM decoder]; a training step = 3 × forward.

--profile SIZE:PRECISION:TASK (repeatable) runs the TensorFlow profiler over a few calls of each
bert_tf system and prints the op-level table (TensorFlow op types by self time per call).
"""

import argparse
import contextlib
import glob
import importlib
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

SIZES = {"tiny": (2, 128), "small": (4, 512), "base": (12, 768)}
PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
BATCH = {"infer": 32, "pretrain": 8}
SEQ_LENGTH = 128
MASKED_POSITIONS = 20
VOCAB_SIZE = 30522


# ----------------------------------------------------------------------------- bert_tf imports
def _import_bert_tf(tree=None):
    """The bert_tf modules this benchmark needs, from `tree` (a directory holding bert_tf/) or
    from sys.path. Modules of an earlier import are set aside first, so two versions of the
    package can live in one process side by side."""
    names = ("bert_tf", "bert_tf.config", "bert_tf.models", "bert_tf.training",
             "bert_tf.optimization", "bert_tf.distribution")
    for name in [n for n in sys.modules if n == "bert_tf" or n.startswith("bert_tf.")]:
        del sys.modules[name]
    if tree:
        sys.path.insert(0, os.path.abspath(tree))
    try:
        modules = {name.rpartition(".")[2]: importlib.import_module(name) for name in names}
    finally:
        if tree:
            sys.path.remove(os.path.abspath(tree))
    modules["path"] = os.path.dirname(modules["bert_tf"].__file__)
    return modules


# ----------------------------------------------------------------------------------- FLOPs
def model_flops(size, task, batch, seq=SEQ_LENGTH):
    layers, hidden = SIZES[size]
    intermediate = 4 * hidden
    matmul_weights = layers * (4 * hidden * hidden + 2 * hidden * intermediate) + hidden * hidden
    forward = 2 * matmul_weights * seq + 4 * layers * seq * seq * hidden
    if task == "infer":
        return batch * forward
    forward += 2 * (hidden * hidden + hidden * VOCAB_SIZE) * MASKED_POSITIONS
    return 3 * batch * forward


# ---------------------------------------------------------------------------------- inputs
def _random_batch(batch, seq=SEQ_LENGTH, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, VOCAB_SIZE, (batch, seq)).astype(np.int32)
    segments = np.repeat([[0] * (seq // 2) + [1] * (seq - seq // 2)], batch, 0).astype(np.int32)
    positions = np.sort(rng.choice(np.arange(1, seq), (batch, MASKED_POSITIONS)), 1).astype(np.int32)
    return dict(
        input_ids=ids,
        input_mask=np.ones_like(ids),
        segment_ids=segments,
        masked_lm_positions=positions,
        masked_lm_ids=rng.integers(1000, VOCAB_SIZE, (batch, MASKED_POSITIONS)).astype(np.int32),
        masked_lm_weights=np.ones((batch, MASKED_POSITIONS), np.float32),
        next_sentence_labels=rng.integers(0, 2, (batch, 1)).astype(np.int32),
    )


def _trained_like(model, seed=0):
    """Give every weight of `model` non-trivial values, as a trained checkpoint has: a fresh
    model's zero biases and LayerNorm betas, unit gammas, would let a frozen graph's constant
    folding drop `x + 0` and `x * 1`, which no real model allows (and which changes which ops
    grappler fuses). Same values for every system built with the same seed."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        shape = tuple(weight.shape)
        weight.assign(rng.normal(1.0 if "gamma" in weight.path else 0.0, 0.02, shape)
                      .astype(weight.dtype))


@contextlib.contextmanager
def _policy(keras, name):
    keras.mixed_precision.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


# ---------------------------------------------------------------------------------- systems
def _encoder_infer(modules, size, policy, batch, variant="graph"):
    """One BertEncoder forward of a random batch, as a zero-argument timed call: `graph` a
    tf.function, `xla` the same compiled by XLA, `frozen` bert_tf.inference.frozen_forward
    (variables as constants; the package under test)."""
    import keras
    import tensorflow as tf

    config = modules["config"].BertConfig.preset(size)
    with _policy(keras, policy):
        model = modules["models"].BertEncoder(config)
    _trained_like(model)
    data = _random_batch(batch)
    inputs = {k: tf.constant(data[k]) for k in ("input_ids", "input_mask", "segment_ids")}
    if variant == "frozen":
        from bert_tf import inference

        frozen = inference.frozen_forward(model, outputs=["sequence_output"])
        return lambda: frozen(inputs)["sequence_output"].numpy()

    @tf.function(jit_compile=variant == "xla")
    def forward(features):
        outputs = model(features, training=False)
        return outputs["sequence_output"], outputs["pooled_output"]

    return lambda: forward(inputs)[0].numpy()


def bert_tf_infer(modules, size, policy, batch):
    return _encoder_infer(modules, size, policy, batch)


def bert_tf_frozen_infer(modules, size, policy, batch):
    """bert_tf_infer's forward, with the model's variables frozen into graph constants."""
    return _encoder_infer(modules, size, policy, batch, "frozen")


def bert_tf_xla_infer(modules, size, policy, batch):
    """bert_tf_infer's forward compiled by XLA."""
    return _encoder_infer(modules, size, policy, batch, "xla")


VARIANTS = {"bert_tf_frozen": bert_tf_frozen_infer, "bert_tf_xla": bert_tf_xla_infer}


def bert_tf_pretrain(modules, size, policy, batch):
    import keras
    import tensorflow as tf

    distribution, training = modules["distribution"], modules["training"]
    config = modules["config"].BertConfig.preset(size)
    data = _random_batch(batch * 4)
    with _policy(keras, policy):
        strategy = distribution.get_strategy("one_device")
        with strategy.scope():
            model = modules["models"].BertPretrainer(config)
            optimizer = modules["optimization"].create_optimizer(1e-4, 10000, 100)
        trainer = training.Trainer(strategy, model, optimizer, modules["models"].pretraining_loss,
                                   model_dir=None, train_batch_size=batch, steps_per_loop=1,
                                   save_checkpoints_steps=10**9)

    def dataset_fn(context):
        return (tf.data.Dataset.from_tensor_slices(data).repeat()
                .batch(context.get_per_replica_batch_size(batch), drop_remainder=True).prefetch(2))

    # Trainer.train's own loop function, called one update at a time (no checkpoints, logs).
    element_spec = trainer._local_element_spec(dataset_fn, batch)
    trainer._loss_names = trainer._probe_loss_names(element_spec)
    trainer._train_metric_names = list(trainer._loss_names)
    iterator = iter(trainer._distribute(dataset_fn, batch))
    loop = trainer._make_train_loop()
    one = tf.constant(1, tf.int32)

    def call():
        result = loop(iterator, one)
        float(result["loss"])

    return call


def keras_hub_infer(size, policy, batch):
    import keras
    import keras_hub
    import tensorflow as tf

    layers, hidden = SIZES[size]
    with _policy(keras, policy):
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=VOCAB_SIZE, num_layers=layers, num_heads=hidden // 64,
            hidden_dim=hidden, intermediate_dim=4 * hidden, max_sequence_length=512)
    data = _random_batch(batch)
    inputs = {"token_ids": tf.constant(data["input_ids"]),
              "segment_ids": tf.constant(data["segment_ids"]),
              "padding_mask": tf.constant(data["input_mask"])}

    @tf.function
    def forward(features):
        outputs = backbone(features, training=False)
        return outputs["sequence_output"], outputs["pooled_output"]

    def call():
        forward(inputs)[0].numpy()

    return call


def keras_hub_pretrain(size, policy, batch):
    import keras
    import keras_hub
    import tensorflow as tf

    layers, hidden = SIZES[size]
    with _policy(keras, policy):
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=VOCAB_SIZE, num_layers=layers, num_heads=hidden // 64,
            hidden_dim=hidden, intermediate_dim=4 * hidden, max_sequence_length=512)
        model = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
        model.compile(optimizer=keras.optimizers.AdamW(1e-4, weight_decay=0.01),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      weighted_metrics=[])
    data = _random_batch(batch)
    x = {"token_ids": tf.constant(data["input_ids"]), "segment_ids": tf.constant(data["segment_ids"]),
         "padding_mask": tf.constant(data["input_mask"]),
         "mask_positions": tf.constant(data["masked_lm_positions"])}
    y = tf.constant(data["masked_lm_ids"])
    weights = tf.constant(data["masked_lm_weights"])

    def call():
        model.train_on_batch(x, y, sample_weight=weights)

    return call


# --------------------------------------------------------------------------------- timing
def _timed(call):
    start, cpu_start = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - start, time.process_time() - cpu_start


def measure_row(calls, rounds, min_round_seconds, warmup):
    """{system: (wall seconds list, cpu seconds list)}; systems interleaved round by round."""
    per_call = {}
    for name, call in calls.items():
        for _ in range(warmup):
            call()
        per_call[name] = _timed(call)[0]
    repeat = {name: max(1, int(min_round_seconds / max(seconds, 1e-6))) for name, seconds in per_call.items()}
    results = {name: ([], []) for name in calls}
    loads = []
    for _ in range(rounds):
        loads.append(os.getloadavg()[0])
        for name, call in calls.items():
            for _ in range(repeat[name]):
                wall, cpu = _timed(call)
                results[name][0].append(wall)
                results[name][1].append(cpu)
    return results, loads


# -------------------------------------------------------------------------------- profiler
def op_table(call, calls=3, top=15):
    """Op types by self time per call: [(type, ms per call, share, ops per call)], total ms."""
    import tensorflow as tf
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as profiler_plugin

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            for _ in range(calls):
                call()
        finally:
            tf.profiler.experimental.stop()
        planes = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))
        data, ok = profiler_plugin.xspace_to_tools_data(planes, "framework_op_stats", {})
    if not ok:
        raise RuntimeError(f"the profiler gave no framework_op_stats: {data[:200]!r}")
    table = json.loads(data)[0]
    columns = [c["id"] for c in table["cols"]]
    by_type = {}
    for row in table["rows"]:
        values = dict(zip(columns, (cell["v"] for cell in row["c"])))
        if values["type"] == "IDLE":
            continue
        entry = by_type.setdefault(values["type"], [0.0, 0])
        entry[0] += values["total_self_time"]
        entry[1] += values["occurrences"]
    total = sum(v[0] for v in by_type.values())
    rows = sorted(by_type.items(), key=lambda kv: -kv[1][0])
    return [(name, us / 1000 / calls, us / total, count / calls) for name, (us, count) in rows[:top]], total / 1000 / calls


def print_op_table(label, call, top):
    rows, total_ms = op_table(call, top=top)
    print(f"\nOp types by self time, {label} (sum of op self times {total_ms:.1f} ms per call; "
          "ops on parallel threads overlap)\n")
    print("| op type | ms per call | share | profiler events per call |")
    print("|---|---:|---:|---:|")
    for name, ms, share, count in rows:
        print(f"| {name} | {ms:.1f} | {share:.1%} | {count:.0f} |")
    sys.stdout.flush()


# ------------------------------------------------------------------------------------ main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="tiny,small,base")
    parser.add_argument("--precisions", default="float32,bfloat16")
    parser.add_argument("--tasks", default="infer,pretrain")
    parser.add_argument("--systems", default="bert_tf,keras_hub",
                        help="some of bert_tf, bert_tf_frozen, bert_tf_xla (infer only), keras_hub "
                             "(bert_tf_baseline is added by --baseline_tree)")
    parser.add_argument("--baseline_tree", default=None,
                        help="a directory holding another bert_tf/ package to time beside this one")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min_round_seconds", type=float, default=1.0,
                        help="each system runs enough calls per round to fill this")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--profile", action="append", default=[],
                        help="SIZE:PRECISION:TASK to profile (op-level table); repeatable")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow intra- and inter-op threads (0 = TensorFlow's default); 1 "
                             "makes CPU s/call a steady measure of work on a loaded machine")
    args = parser.parse_args(argv)

    sizes = [s for s in args.sizes.split(",") if s]
    precisions = [p for p in args.precisions.split(",") if p]
    tasks = [t for t in args.tasks.split(",") if t]
    systems = [s for s in args.systems.split(",") if s]
    for value, allowed, flag in ((sizes, SIZES, "--sizes"), (precisions, PRECISIONS, "--precisions"),
                                 (tasks, BATCH, "--tasks"), (systems, ("bert_tf", "keras_hub", *VARIANTS), "--systems")):
        bad = [v for v in value if v not in allowed]
        if bad:
            parser.error(f"{flag}: unknown {bad}; expected some of {', '.join(allowed)}")
    profiles = set()
    for spec in args.profile:
        parts = tuple(spec.split(":"))
        if len(parts) != 3 or parts[0] not in SIZES or parts[1] not in PRECISIONS or parts[2] not in BATCH:
            parser.error(f"--profile {spec!r}: expected SIZE:PRECISION:TASK, e.g. base:bfloat16:infer")
        profiles.add(parts)
    if args.baseline_tree and not os.path.isfile(os.path.join(args.baseline_tree, "bert_tf", "__init__.py")):
        parser.error(f"--baseline_tree {args.baseline_tree}: no bert_tf/__init__.py there")

    versions = {}
    if args.baseline_tree:
        versions["bert_tf_baseline"] = _import_bert_tf(args.baseline_tree)
    if "bert_tf" in systems or any(name in systems for name in VARIANTS):
        versions["bert_tf"] = _import_bert_tf()
    if "keras_hub" in systems and importlib.util.find_spec("keras_hub") is None:
        print("keras_hub: skipped (keras-hub is not installed)")
        systems.remove("keras_hub")

    import keras
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs; "
          + ", ".join(f"{name} from {m['path']}" for name, m in versions.items()))
    print(f"\nseq {SEQ_LENGTH}; batch {BATCH['infer']} (infer), {BATCH['pretrain']} (pretrain); "
          f"{args.rounds} interleaved rounds of >= {args.min_round_seconds} s per system; "
          f"threads {args.threads or 'default'}\n")
    print("| task | size | precision | system | seq/s | ms/call | CPU s/call | GFLOP/s | load |")
    print("|---|---|---|---|---:|---:|---:|---:|---|")
    sys.stdout.flush()
    records = []
    for task in tasks:
        for size in sizes:
            for precision in precisions:
                batch, policy = BATCH[task], PRECISIONS[precision]
                calls = {}
                for name, modules in versions.items():
                    if name == "bert_tf" and "bert_tf" not in systems:
                        continue
                    builder = bert_tf_infer if task == "infer" else bert_tf_pretrain
                    calls[name] = builder(modules, size, policy, batch)
                for name in (n for n in VARIANTS if n in systems and task == "infer"):
                    calls[name] = VARIANTS[name](versions["bert_tf"], size, policy, batch)
                if "keras_hub" in systems:
                    builder = keras_hub_infer if task == "infer" else keras_hub_pretrain
                    calls["keras_hub"] = builder(size, policy, batch)
                results, loads = measure_row(calls, args.rounds, args.min_round_seconds, args.warmup)
                flops = model_flops(size, task, batch)
                for name, (walls, cpus) in results.items():
                    wall, cpu = statistics.median(walls), statistics.median(cpus)
                    record = dict(task=task, size=size, precision=precision, system=name, batch=batch,
                                  seq_len=SEQ_LENGTH, seq_per_s=batch / wall, ms_per_call=1000 * wall,
                                  cpu_s_per_call=cpu, gflop_per_s=flops / wall / 1e9, calls=len(walls),
                                  load=[min(loads), max(loads)])
                    records.append(record)
                    print(f"| {task} | {size} | {precision} | {name} | {record['seq_per_s']:.1f} | "
                          f"{record['ms_per_call']:.1f} | {cpu:.3f} | {record['gflop_per_s']:.0f} | "
                          f"{min(loads):.1f}–{max(loads):.1f} |")
                sys.stdout.flush()
                if (size, precision, task) in profiles:
                    for name in (n for n in calls if n != "keras_hub"):
                        print_op_table(f"{name} {task} {size} {precision}", calls[name], args.top)
                    print("\n| task | size | precision | system | seq/s | ms/call | CPU s/call | GFLOP/s | load |")
                    print("|---|---|---|---|---:|---:|---:|---:|---|")
                del calls
                keras.backend.clear_session()
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump(records, f, indent=1)
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
