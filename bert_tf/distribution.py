"""A `tf.distribute` strategy from plain arguments (the scripts map their flags onto these).

Strategies:
  one_device             one GPU (the first) or the CPU.
  mirrored               synchronous data parallelism over the GPUs of this machine (`num_gpus`),
                         or over all logical CPU devices when there is no GPU.
  multi_worker_mirrored  synchronous data parallelism over the machines listed in the
                         `TF_CONFIG` environment variable (each runs the same command).
  tpu                    a Cloud TPU (`tpu_name`/`master`, `tpu_zone`, `gcp_project`).

The default (None / "") chooses from what is present: a TPU address → tpu; `TF_CONFIG` with
more than one task → multi_worker_mirrored; more than one GPU → mirrored; else one_device.
"""

import json
import os

from absl import logging

STRATEGY_NAMES = ("one_device", "mirrored", "multi_worker_mirrored", "tpu")


def tf_config_num_tasks():
    """Number of tasks in the cluster described by TF_CONFIG (0 if unset)."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {raw[:200]!r}") from error
    return sum(len(tasks) for name, tasks in cluster.items() if name != "evaluator")


def default_strategy_name(num_gpus=None, tpu_address=None):
    """The strategy chosen when none is given (see the module docstring)."""
    import tensorflow as tf  # here, so that --help does not import TensorFlow

    if tpu_address:
        return "tpu"
    if tf_config_num_tasks() > 1:
        return "multi_worker_mirrored"
    if num_gpus is None:
        num_gpus = len(tf.config.list_physical_devices("GPU"))
    return "mirrored" if num_gpus > 1 else "one_device"


def get_strategy(
    distribution_strategy=None,
    num_gpus=None,
    tpu_address=None,
    tpu_zone=None,
    gcp_project=None,
):
    """Returns a tf.distribute.Strategy.

    Args:
      distribution_strategy: one of STRATEGY_NAMES, or None/"" to choose from the devices.
      num_gpus: GPUs to use (None: all visible). 0 forces the CPU.
      tpu_address: TPU name or grpc:// address (for "tpu"); "local" for a TPU VM.
      tpu_zone, gcp_project: where to find a named Cloud TPU.
    """
    import tensorflow as tf  # here, so that --help does not import TensorFlow

    name = (distribution_strategy or "").strip().lower()
    if not name:
        name = default_strategy_name(num_gpus, tpu_address)
    if name not in STRATEGY_NAMES:
        raise ValueError(
            f"--distribution_strategy={distribution_strategy!r}: expected one of "
            f"{', '.join(STRATEGY_NAMES)} (or empty to choose from the devices)"
        )
    gpus = tf.config.list_physical_devices("GPU")
    if num_gpus is not None:
        if num_gpus < 0:
            raise ValueError(f"--num_gpus must be >= 0, got {num_gpus}")
        if num_gpus > len(gpus):
            raise ValueError(f"--num_gpus={num_gpus} but only {len(gpus)} GPU(s) are visible")
        gpus = gpus[:num_gpus]

    if name == "one_device":
        strategy = tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    elif name == "mirrored":
        if gpus:
            devices = [f"/gpu:{i}" for i in range(len(gpus))]
        else:
            devices = [f"/cpu:{i}" for i in range(len(tf.config.list_logical_devices("CPU")))]
        strategy = tf.distribute.MirroredStrategy(devices)
    elif name == "multi_worker_mirrored":
        if tf_config_num_tasks() == 0:
            logging.warning(
                "multi_worker_mirrored without TF_CONFIG: running as a single worker. Set "
                "TF_CONFIG on every worker (see docs/pretraining.md)."
            )
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        strategy = _tpu_strategy(tpu_address, tpu_zone, gcp_project)
    logging.info(
        "Distribution strategy: %s with %d replica(s) in sync",
        type(strategy).__name__,
        strategy.num_replicas_in_sync,
    )
    return strategy


def _tpu_strategy(tpu_address, tpu_zone, gcp_project):
    import tensorflow as tf  # here, so that --help does not import TensorFlow

    if not tpu_address:
        raise ValueError(
            "--distribution_strategy=tpu (or --use_tpu) needs --tpu_name (a Cloud TPU name, "
            "a grpc:// address, or 'local' on a TPU VM)"
        )
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=tpu_address, zone=tpu_zone, project=gcp_project
        )
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, OSError, tf.errors.OpError) as error:
        raise RuntimeError(
            f"could not connect to the TPU {tpu_address!r} (zone={tpu_zone!r}, "
            f"project={gcp_project!r}): {error}"
        ) from error
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy):
    """True on the worker that writes checkpoints, summaries and result files."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "cluster_spec", None):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None:
        return True
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def set_mixed_precision(mixed_precision):
    """Sets the global Keras dtype policy: "none" | "bfloat16" | "float16". Returns its name."""
    import keras

    policies = {"none": "float32", "": "float32", "float32": "float32",
                "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
    key = (mixed_precision or "none").strip().lower()
    if key not in policies:
        raise ValueError(
            f"--mixed_precision={mixed_precision!r}: expected none, bfloat16 or float16"
        )
    keras.mixed_precision.set_dtype_policy(policies[key])
    return policies[key]
