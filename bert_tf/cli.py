"""absl flag definitions shared by the scripts, and turning those flags into library arguments.

A script calls the `define_*` functions at import time (before `app.run`), then in `main`
passes its `flags.FLAGS` to `strategy_from_flags` / `setup_from_flags`. Library code never
reads FLAGS; only these helpers and the scripts do.
"""

import contextlib
import dataclasses
import importlib
import os
import re
import sys
import tempfile

from absl import flags, logging

from bert_tf import distribution


def define_tpu_flags(flag_values=flags.FLAGS):
    """The original BERT scripts' TPU flags, same names, defaults and meaning."""
    flags.DEFINE_bool("use_tpu", False, "Whether to use TPU (same as "
                      "--distribution_strategy=tpu).", flag_values=flag_values)
    flags.DEFINE_string(
        "tpu_name", None,
        "The Cloud TPU to use for training. This should be either the name used when "
        "creating the Cloud TPU, or a grpc://ip.address.of.tpu:8470 url.",
        flag_values=flag_values)
    flags.DEFINE_string(
        "tpu_zone", None,
        "[Optional] GCE zone where the Cloud TPU is located in. If not specified, we will "
        "attempt to automatically detect the GCE project from metadata.",
        flag_values=flag_values)
    flags.DEFINE_string(
        "gcp_project", None,
        "[Optional] Project name for the Cloud TPU-enabled project. If not specified, we "
        "will attempt to automatically detect the GCE project from metadata.",
        flag_values=flag_values)
    flags.DEFINE_string("master", None, "[Optional] TensorFlow master URL (a TPU address "
                        "used when --tpu_name is not given).", flag_values=flag_values)
    flags.DEFINE_integer(
        "num_tpu_cores", 8,
        "Only used if `use_tpu` is True. Total number of TPU cores to use (bert_tf checks it "
        "against the replicas the TPU reports).", flag_values=flag_values)


def define_distribution_flags(flag_values=flags.FLAGS):
    """--distribution_strategy, --num_gpus and the original TPU flags."""
    flags.DEFINE_enum(
        "distribution_strategy", None, list(distribution.STRATEGY_NAMES),
        "tf.distribute strategy. Default: chosen from the devices (TPU address → tpu, "
        "TF_CONFIG with several tasks → multi_worker_mirrored, >1 GPU → mirrored, else "
        "one_device).", flag_values=flag_values)
    flags.DEFINE_integer("num_gpus", None, "GPUs to use (default: all visible; 0: CPU only).",
                         flag_values=flag_values)
    define_tpu_flags(flag_values)


def define_performance_flags(flag_values=flags.FLAGS):
    """--mixed_precision, --jit_compile and --seed."""
    flags.DEFINE_enum(
        "mixed_precision", "none", ["none", "bfloat16", "float16"],
        "Compute dtype: none (float32), bfloat16, or float16 with dynamic loss scaling. "
        "Variables stay float32.", flag_values=flag_values)
    flags.DEFINE_bool("jit_compile", False, "Compile the train/eval steps with XLA.",
                      flag_values=flag_values)
    flags.DEFINE_integer("seed", 12345, "Random seed for weight initialisation, dropout and "
                         "input shuffling (a resumed run restores the exact state).",
                         flag_values=flag_values)


def define_common_flags(flag_values=flags.FLAGS):
    """All of the above."""
    define_distribution_flags(flag_values)
    define_performance_flags(flag_values)


def define_finetuning_flags(data_help, flag_values=flags.FLAGS):
    """The flags every fine-tuning script (run_classifier.py, run_ner.py) shares: the original
    run_classifier's names, defaults and meaning, bert_tf's additions, and the common flags.
    `data_help` is the script's own text for --data_dir."""

    def string(name, help_text):
        flags.DEFINE_string(name, None, help_text, flag_values=flag_values)

    string("data_dir", data_help)
    string("bert_config_file", "The config json file corresponding to the pre-trained BERT "
           "model (default: the one next to --init_checkpoint).")
    string("vocab_file", "The vocabulary file that the BERT model was trained on (default: the "
           "one next to --init_checkpoint).")
    string("output_dir", "The output directory where the model checkpoints and result files "
           "will be written.")
    string("init_checkpoint", "Initial checkpoint: an original BERT checkpoint (prefix or "
           "directory), a Hugging Face BERT directory, a bert_tf checkpoint or an earlier "
           "fine-tuning run's output_dir.")
    flags.DEFINE_bool("allow_partial_checkpoint", False, "Load what fits of --init_checkpoint "
                      "and start the rest from initial values, with a warning naming them. "
                      "Without it, encoder variables the checkpoint lacks, has in another shape "
                      "or cannot read are an error (a new task head always starts new).",
                      flag_values=flag_values)
    flags.DEFINE_bool("do_lower_case", True, "Whether to lower case the input text. Should be "
                      "True for uncased models and False for cased models (default: what the "
                      "checkpoint's directory says, else True).", flag_values=flag_values)
    flags.DEFINE_integer("max_seq_length", 128, "The maximum total input sequence length after "
                         "WordPiece tokenization.", flag_values=flag_values)
    flags.DEFINE_bool("do_train", False, "Whether to run training.", flag_values=flag_values)
    flags.DEFINE_bool("do_eval", False, "Whether to run eval on the dev set.",
                      flag_values=flag_values)
    flags.DEFINE_bool("do_predict", False, "Whether to run the model in inference mode on the "
                      "test set.", flag_values=flag_values)
    flags.DEFINE_integer("train_batch_size", 32, "Total batch size for training.",
                         flag_values=flag_values)
    flags.DEFINE_integer("eval_batch_size", 8, "Total batch size for eval.",
                         flag_values=flag_values)
    flags.DEFINE_integer("predict_batch_size", 8, "Total batch size for predict.",
                         flag_values=flag_values)
    flags.DEFINE_float("learning_rate", 5e-5, "The initial learning rate for Adam.",
                       flag_values=flag_values)
    flags.DEFINE_float("num_train_epochs", 3.0, "Total number of training epochs to perform.",
                       flag_values=flag_values)
    flags.DEFINE_float("warmup_proportion", 0.1, "Proportion of training to perform linear "
                       "learning rate warmup for. E.g., 0.1 = 10% of training.",
                       flag_values=flag_values)
    flags.DEFINE_integer("save_checkpoints_steps", 1000, "How often to save the model "
                         "checkpoint.", flag_values=flag_values)
    flags.DEFINE_integer("iterations_per_loop", 1000, "How many steps to make in each estimator "
                         "call (bert_tf: steps per host loop between progress reports).",
                         flag_values=flag_values)
    string("export_dir", "If set, export a SavedModel that takes raw text to "
           "EXPORT_DIR/<next integer version>/ (TF Serving layout).")
    flags.DEFINE_bool("export_only", False, "Only export OUTPUT_DIR's newest checkpoint to "
                      "--export_dir (e.g. to redo an export without retraining).",
                      flag_values=flag_values)
    flags.DEFINE_bool("cache_features", True, "Cache tokenized features in "
                      "OUTPUT_DIR/feature_cache (keyed by data file, vocabulary, casing and "
                      "max_seq_length).", flag_values=flag_values)
    flags.DEFINE_integer("pad_to_multiple_of", 8, "Batches are padded to their longest sequence "
                         "rounded up to this multiple (not to max_seq_length).",
                         flag_values=flag_values)
    define_common_flags(flag_values)


def settings_from_flags(settings_class, flag_values=flags.FLAGS):
    """An instance of the dataclass `settings_class` whose fields take the flags of the same
    names. `do_lower_case` is None (detect from the checkpoint) unless the flag was given."""
    values = {}
    for field in dataclasses.fields(settings_class):
        if field.name in flag_values:
            values[field.name] = flag_values[field.name].value
    if "do_lower_case" in values and not flag_values["do_lower_case"].present:
        values["do_lower_case"] = None
    return settings_class(**values)


# TensorFlow's own start-up lines that say nothing to a user (its C++ logging prints them
# before any setting can silence them, once per loaded library).
_TENSORFLOW_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations are on"
    r"|Could not find cuda drivers|cpu_feature_guard|To enable the following instructions"
    r"|failed call to cuInit|oneDNN supports DT_INT64 only")

DEBUG_ENVIRONMENT_VARIABLE = "BERT_TF_DEBUG"


_LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
# Whether the user chose TensorFlow's C++ log level (then bert_tf filters none of its lines).
_USER_SET_LOG_LEVEL = _LOG_LEVEL_VARIABLE in os.environ


def _tensorflow_noise_filtered():
    return os.environ.get(_LOG_LEVEL_VARIABLE) != "0"


@contextlib.contextmanager
def filtered_stderr():
    """Inside: what is written to file descriptor 2 (TensorFlow's C++ logging, Python's
    stderr) is held back; on leaving, TensorFlow's lines that say nothing to a user
    (`_TENSORFLOW_NOISE`) are dropped and the rest is written out. Nothing is filtered when
    the user set TF_CPP_MIN_LOG_LEVEL=0."""
    if not _tensorflow_noise_filtered():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode("utf-8", "replace").splitlines()
                    if line.strip() and not _TENSORFLOW_NOISE.search(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()


def import_tensorflow_quietly():
    """Imports tensorflow and tensorflow_text with TensorFlow's start-up noise hidden.

    C++ logging below errors is switched off (TF_CPP_MIN_LOG_LEVEL=2) unless the user set
    TF_CPP_MIN_LOG_LEVEL. What the import and the device discovery print on stderr before
    that setting takes effect is filtered (`filtered_stderr`): the banner lines (oneDNN, CPU
    features, no CUDA driver, cuInit) are dropped, anything else is passed on.
    TF_CPP_MIN_LOG_LEVEL=0 keeps everything.
    """
    if "tensorflow" in sys.modules:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        return tf
    os.environ.setdefault(_LOG_LEVEL_VARIABLE, "2")
    with filtered_stderr():
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        importlib.import_module("tensorflow_text")  # registers its ops; prints a banner too

        tf.config.list_physical_devices()  # CUDA's probe prints here
    return tf


def hide_onednn_dtype_notice():
    """TensorFlow's oneDNN build logs `oneDNN supports DT_INT64 only on platforms with AVX-512`
    at ERROR level (so TF_CPP_MIN_LOG_LEVEL=2 shows it), once per process, the first time an
    int64 tensor is transposed on the CPU (the ragged ops of the in-graph tokenizer do: every
    export, serving load and bert-predict); it falls back to Eigen and nothing is wrong. This
    transposes one int64 element with the line filtered, so that it does not come later.

    Call after the tf.distribute strategy exists (it runs an op, which fixes the devices).
    Nothing is hidden when the user set TF_CPP_MIN_LOG_LEVEL."""
    global _ONEDNN_NOTICE_HIDDEN
    if _USER_SET_LOG_LEVEL or _ONEDNN_NOTICE_HIDDEN:
        return
    tf = import_tensorflow_quietly()
    with filtered_stderr(), tf.device("/cpu:0"):
        tf.transpose(tf.zeros([1, 1], tf.int64))
    _ONEDNN_NOTICE_HIDDEN = True


_ONEDNN_NOTICE_HIDDEN = False


def _debugging(flag_values):
    if os.environ.get(DEBUG_ENVIRONMENT_VARIABLE, "") not in ("", "0"):
        return True
    try:
        return flag_values["verbosity"].value >= 1
    except (KeyError, flags.Error):
        return False


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


def report_errors(main, flag_values=flags.FLAGS):
    """`main` with bert_tf's error reporting: a usage error (a wrong flag) or bad input (a
    file that cannot be read or parsed) prints one line `error: <what is wrong>` on stderr and
    exits with status 2 (usage) or 1 (data), without a traceback; the traceback comes with
    --verbosity=1 or BERT_TF_DEBUG=1. Other exceptions (bugs) keep their traceback."""
    import functools

    from absl import app

    @functools.wraps(main)
    def wrapped(argv):
        try:
            return main(argv)
        except app.UsageError as error:
            if _debugging(flag_values):
                raise
            sys.stderr.write(f"error: {_one_line(error)}\n")
            sys.exit(2)
        except (ValueError, OSError, UnicodeError) as error:
            if _debugging(flag_values) or not _is_user_error(error):
                raise
            sys.stderr.write(f"error: {_one_line(error)} ({DEBUG_ENVIRONMENT_VARIABLE}=1 shows "
                             f"the traceback)\n")
            sys.exit(1)

    return wrapped


def _is_user_error(error):
    """Bad input as bert_tf reports it (its messages name the file, line or flag), not an
    internal failure that happens to be a ValueError."""
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(error, tf.errors.OpError):
        return isinstance(error, (tf.errors.DataLossError, tf.errors.NotFoundError,
                                  tf.errors.PermissionDeniedError))
    return True


_HELP_FLAGS = ("--help", "-help", "-h", "--helpshort", "--helpfull", "-?")


def describe_flag_error(error, flag_values=flags.FLAGS):
    """absl's flag-parse error `error` as `--flag: what is wrong; what to do` (one line)."""
    text = " ".join(str(error).split())
    see_help = "--help lists the flags"
    if isinstance(error, flags.UnrecognizedFlagError):
        suggestions = re.search(r"Did you mean: (.+?) ?\?$", text)
        if suggestions:
            names = [f"--{name.strip()}" for name in suggestions.group(1).split(",")]
            return f"--{error.flagname}: unknown flag; did you mean {' or '.join(names)}?"
        return f"--{error.flagname}: unknown flag; {see_help}"
    missing = re.fullmatch(r"Missing value for flag (-+[\w.-]+)", text)
    if missing:
        return f"{missing.group(1)}: no value given; write {missing.group(1)}=VALUE"
    negated = re.fullmatch(r"(--no([\w.-]+))=(.*) does not take an argument", text)
    if negated:
        return (f"{negated.group(1)}={negated.group(3)}: a negated flag takes no value; write "
                f"{negated.group(1)} or --{negated.group(2)}=false")
    bad_value = re.fullmatch(r"flag --([\w.-]+)=(.*?): (.*)", text)
    if not bad_value:
        return f"{text}; {see_help}"
    name, value, reason = bad_value.groups()
    flag = flag_values[name] if name in flag_values else None
    if "must have a value other than None" in reason:
        return f"--{name}: missing; this flag is required ({see_help})"
    if flag is None:
        return f"--{name}={value}: {reason}"
    kind = flag.flag_type()
    example = f" such as --{name}={flag.default}" if flag.default is not None else ""
    if kind == "int" and "invalid literal" in reason:
        return f"--{name}={value}: not an integer; write a whole number{example}"
    if kind == "float" and "could not convert" in reason:
        return f"--{name}={value}: not a number; write a number{example}"
    if kind == "bool":
        return f"--{name}={value}: not true or false; write --{name} or --no{name}"
    if "enum" in kind and getattr(flag.parser, "enum_values", None):
        return f"--{name}={value}: expected one of {', '.join(flag.parser.enum_values)}"
    return f"--{name}={value}: {reason}"


def parse_flags(argv, flag_values=flags.FLAGS):
    """`flag_values(argv)` (argv[0] is the program): the arguments left over, or a one-line
    `error: --flag: ...` on stderr and exit status 2 for a flag absl cannot parse (unknown, a
    bad value, a required one missing) instead of absl's two lines."""
    try:
        return flag_values(argv)
    except flags.Error as error:
        message = describe_flag_error(error, flag_values)
    except ValueError as error:  # absl's own for `--noflag=value`
        message = describe_flag_error(error, flag_values)
    sys.stderr.write(f"error: {message}\n")
    sys.exit(2)


def run_script(main, module_name, flag_values=flags.FLAGS):
    """`app.run(main)` for the script module `module_name` (its `__name__`), with
    `report_errors` and one-line flag errors (`parse_flags`). When the script runs as a
    console command (`bert-run-classifier`), absl's --help lists the flags of the command's
    own file, which defines none: the script's key flags are registered for it too."""
    from absl import app

    if module_name != "__main__":
        for flag in flag_values.get_key_flags_for_module(module_name):
            flag_values.register_key_flag_for_module(sys.argv[0], flag)
    app.run(report_errors(main, flag_values),
            flags_parser=lambda argv: parse_flags(argv, flag_values))


def command_help(program, description, flag_values):
    """--help of a command that has its own FlagValues: the description and its flags."""
    lines = [description.strip(), "", f"flags of {program}:",
             flag_values.get_help(prefix="  ", include_special_flags=False)]
    return "\n".join(lines) + "\n"


def run_command(main, flag_values, argv, program, description):
    """The command line of bert-export, bert-predict and bert-convert, whose flags live in a
    FlagValues of their own (`flag_values`, not absl's global FLAGS, so that the commands and
    the scripts can run in one process): --help prints `command_help` (no TensorFlow import)
    and exits 0; the flags are parsed with one-line errors (`parse_flags`); `main(arguments)`
    (the positional arguments, argv[0] first) runs with `report_errors`. `argv` excludes the
    program name (None: sys.argv[1:]). Returns what `main` returns."""
    argv = list(sys.argv[1:] if argv is None else argv)
    options = argv[:argv.index("--")] if "--" in argv else argv
    if any(option in _HELP_FLAGS for option in options):
        sys.stdout.write(command_help(program, description, flag_values))
        sys.exit(0)
    arguments = parse_flags([program] + argv, flag_values)
    return report_errors(main, flag_values)(arguments)


def define_verbosity_flag(flag_values):
    """--verbosity for a command with its own FlagValues (absl's is on the global FLAGS)."""
    flags.DEFINE_integer("verbosity", -1, "Logging level: -1 warnings (default), 0 progress "
                         "(info), 1 debug; with 1 an error also shows its traceback.",
                         flag_values=flag_values)


def run_with_settings(argv, settings_class, run_function, flag_values=flags.FLAGS):
    """The `main` of a task script: no positional arguments; the settings from the flags
    (`settings_from_flags`), checked (a wrong one is a usage error naming its flag); then the
    strategy, seed and precision from the flags; then `run_function(settings, strategy)`."""
    from absl import app

    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    settings = settings_from_flags(settings_class, flag_values)
    try:
        settings.validate()
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    import_tensorflow_quietly()
    return run_function(settings, setup_from_flags(flag_values))


def tpu_address_from_flags(flag_values=flags.FLAGS):
    return flag_values.tpu_name or flag_values.master or None


def strategy_name_from_flags(flag_values=flags.FLAGS):
    """The effective strategy name; --use_tpu means tpu and conflicts with another choice."""
    name = flag_values.distribution_strategy
    if flag_values.use_tpu:
        if name not in (None, "", "tpu"):
            raise flags.ValidationError(
                f"--use_tpu conflicts with --distribution_strategy={name}")
        return "tpu"
    return name


def strategy_from_flags(flag_values=flags.FLAGS):
    """tf.distribute strategy from --distribution_strategy/--num_gpus/--use_tpu/--tpu_*."""
    name = strategy_name_from_flags(flag_values)
    strategy = distribution.get_strategy(
        name,
        num_gpus=flag_values.num_gpus,
        tpu_address=tpu_address_from_flags(flag_values),
        tpu_zone=flag_values.tpu_zone,
        gcp_project=flag_values.gcp_project,
    )
    if name == "tpu" and strategy.num_replicas_in_sync != flag_values.num_tpu_cores:
        logging.warning("--num_tpu_cores=%d but the TPU has %d cores; using %d",
                        flag_values.num_tpu_cores, strategy.num_replicas_in_sync,
                        strategy.num_replicas_in_sync)
    return strategy


def setup_from_flags(flag_values=flags.FLAGS):
    """Seeds everything, sets the mixed-precision policy, builds the strategy.

    Returns the strategy. Call first in `main`, before any model is built.
    """
    import keras

    # The strategy first: MultiWorkerMirroredStrategy must be created before other TF work.
    strategy = strategy_from_flags(flag_values)
    hide_onednn_dtype_notice()  # (an export at the end would print it)
    keras.utils.set_random_seed(flag_values.seed)
    policy = distribution.set_mixed_precision(flag_values.mixed_precision)
    logging.info("Keras dtype policy: %s", policy)
    return strategy
