"""bert-export: a checkpoint (original TF1, Hugging Face folder or bert_tf output dir) as a
raw-text SavedModel in TF Serving's layout, EXPORT_DIR/<version>/.

    bert-export --checkpoint=CHECKPOINT --kind=KIND --export_dir=EXPORT_DIR
    python -m bert_tf.export --checkpoint=CHECKPOINT --kind=KIND --export_dir=EXPORT_DIR

The library functions are bert_tf.export.export_checkpoint and load_for_serving; see
docs/serving.md.
"""

import os
import sys

from absl import app, flags, logging

from bert_tf import cli, files

# bert_tf.export.KINDS, here so that --help and the checks need no TensorFlow.
KINDS = ("classifier", "encoder", "ner", "pretrainer", "regression")
SENTENCE_POOLINGS = ("cls", "mean")


class _TrueOrFalse(flags.ArgumentParser):
    """A flag that takes true/false (also yes/no, 1/0) as its value, `--flag=false` or
    `--flag false`, and stays None (found beside the checkpoint) when not given."""

    def parse(self, argument):
        if argument is None or isinstance(argument, bool):
            return argument
        lowered = str(argument).lower()
        if lowered in ("1", "true", "yes"):
            return True
        if lowered in ("0", "false", "no"):
            return False
        raise ValueError(f"expected true or false, got {argument!r}")

    def flag_type(self):
        return "true or false"


def define_checkpoint_flags(flag_values):
    """The flags of `bert_tf.export.CheckpointSettings` (bert-export and bert-predict)."""

    def string(name, help_text):
        flags.DEFINE_string(name, None, help_text, flag_values=flag_values)

    def true_or_false(name, help_text):
        flags.DEFINE(_TrueOrFalse(), name, None, help_text, serializer=flags.ArgumentSerializer(),
                     flag_values=flag_values)

    flags.DEFINE_enum("kind", None, list(KINDS), "The model kind to serve.",
                      flag_values=flag_values)
    string("vocab_file", "Default: vocab.txt beside the checkpoint.")
    true_or_false("do_lower_case", "true/false; default: the checkpoint's tokenizer_config.json "
                  "or folder name, else true.")
    flags.DEFINE_integer("max_seq_length", None, "Longer texts are truncated as at training "
                         "time (default 128, or the checkpoint's max_position_embeddings if "
                         "smaller).", flag_values=flag_values)
    string("label_list", "Comma-separated label names (classifier, ner); default: "
           "label_list.txt beside the checkpoint.")
    flags.DEFINE_bool("pair", False, "classifier/regression of sentence pairs: inputs text_a, "
                      "text_b.", flag_values=flag_values)
    flags.DEFINE_integer("top_k", 5, "pretrainer: tokens predicted per [MASK].",
                         flag_values=flag_values)
    string("classifier_pooling", "pooler, cls or mean; default: classifier_config.json beside "
           "the checkpoint, else pooler.")
    flags.DEFINE_enum("sentence_pooling", None, list(SENTENCE_POOLINGS), "encoder: default the "
                      "sentence-transformers Pooling module beside the checkpoint, else cls.",
                      flag_values=flag_values)
    true_or_false("normalize", "encoder: L2-normalize sentence_embedding (true/false); default: "
                  "whether modules.json lists a Normalize module.")
    cli.define_verbosity_flag(flag_values)


def check_checkpoint_flags(flag_values, checkpoint, checkpoint_flag="--checkpoint"):
    """The checks that need neither TensorFlow nor the checkpoint's contents (app.UsageError)."""
    if not os.path.exists(checkpoint) and not os.path.exists(checkpoint + ".index"):
        raise app.UsageError(f"{checkpoint_flag}={checkpoint}: no such file or directory")
    if flag_values.vocab_file is not None and not os.path.isfile(flag_values.vocab_file):
        raise app.UsageError(f"--vocab_file={flag_values.vocab_file}: no such file")
    if flag_values.max_seq_length is not None and flag_values.max_seq_length < 3:
        raise app.UsageError(f"--max_seq_length={flag_values.max_seq_length}: expected at "
                             f"least 3 ([CLS] text [SEP])")
    if flag_values.top_k < 1:
        raise app.UsageError(f"--top_k={flag_values.top_k}: expected a positive number")


def resolve_settings(flag_values, checkpoint):
    """CheckpointSettings from the flags, checked against the files beside the checkpoint;
    a wrong flag is an app.UsageError. Imports TensorFlow (quietly)."""
    cli.import_tensorflow_quietly()
    cli.hide_onednn_dtype_notice()
    from bert_tf import export

    settings = export.settings_from_arguments(flag_values, checkpoint)
    try:
        export.resolve_checkpoint_settings(settings)
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    return settings


def define_flags():
    flag_values = flags.FlagValues()
    flags.DEFINE_string("checkpoint", None, "Checkpoint prefix or directory, or a Hugging Face "
                        "folder.", flag_values=flag_values)
    flags.DEFINE_string("export_dir", None, "Versions are written below it.",
                        flag_values=flag_values)
    flags.DEFINE_bool("no_warmup", False, "Do not write TF Serving warmup requests.",
                      flag_values=flag_values)
    flags.DEFINE(_TrueOrFalse(), "freeze", None, "true/false: the weights as graph constants "
                 "(classifier, regression, pretrainer, encoder): faster, above all in bfloat16, "
                 "but a server holds several copies of them (base: ~9 GiB against ~1.6). "
                 "Default: true for models of up to 128 MiB of float32 weights.",
                 serializer=flags.ArgumentSerializer(), flag_values=flag_values)
    define_checkpoint_flags(flag_values)
    flags.mark_flags_as_required(["checkpoint", "export_dir"], flag_values=flag_values)
    return flag_values


def main(argv=None):
    """bert-export with `argv` (without the program name; None: sys.argv[1:]). Prints and
    returns the version directory written."""
    flag_values = define_flags()

    def export_main(arguments):
        if len(arguments) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(arguments[1:])}")
        if flag_values.kind is None:
            raise app.UsageError(f"--kind is required: one of {', '.join(KINDS)}")
        if flag_values.freeze and flag_values.kind == "ner":
            raise app.UsageError("--freeze=true: the ner kind's serving function cannot be "
                                 "frozen; leave --freeze unset")
        check_checkpoint_flags(flag_values, flag_values.checkpoint)
        try:
            files.check_output_directory(flag_values.export_dir, "--export_dir")
        except ValueError as error:
            raise app.UsageError(str(error)) from error
        logging.set_verbosity(flag_values.verbosity)
        settings = resolve_settings(flag_values, flag_values.checkpoint)
        from bert_tf import export

        path = export.export_checkpoint(settings, flag_values.export_dir,
                                        warmup=not flag_values.no_warmup,
                                        freeze=flag_values.freeze)
        print(path)
        return path

    return cli.run_command(export_main, flag_values, argv, "bert-export", __doc__)


def run_main():
    main(sys.argv[1:])


if __name__ == "__main__":
    run_main()
