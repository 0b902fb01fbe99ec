"""bert-predict: raw texts through a SavedModel or a checkpoint, one JSON line per text.

    bert-predict MODEL "The capital of France is [MASK]."        # fill-mask: top tokens
    bert-predict MODEL --input_file=texts.txt --output_file=out.jsonl --batch_size=64
    echo "some text" | bert-predict MODEL

MODEL is a SavedModel written by bert-export (its version directory, or the export directory:
the highest version is used) or anything bert-export takes as --checkpoint (then --kind and
the other checkpoint flags apply). For pair models every text is text_a<TAB>text_b. The
library function is bert_tf.predict.write_predictions; see docs/serving.md.
"""

import os
import sys

from absl import app, flags, logging

from bert_tf import cli, files
from bert_tf.commands import export_command

BATCH_SIZE = 32  # bert_tf.predict.BATCH_SIZE


def define_flags():
    flag_values = flags.FlagValues()
    flags.DEFINE_string("input_file", None, "One text per line (default: the texts given as "
                        "arguments, else stdin).", flag_values=flag_values)
    flags.DEFINE_string("output_file", None, "JSON lines (default: stdout); written under a "
                        "temporary name and renamed when complete.", flag_values=flag_values)
    flags.DEFINE_integer("batch_size", BATCH_SIZE, "Texts per model call.",
                         flag_values=flag_values)
    export_command.define_checkpoint_flags(flag_values)
    return flag_values


def read_texts(texts, input_file):
    """The texts: the arguments, else --input_file's lines, else stdin's."""
    if texts and input_file:
        raise app.UsageError("give texts as arguments or --input_file, not both")
    if texts:
        return list(texts)
    if input_file:
        if not os.path.isfile(input_file):
            raise app.UsageError(f"--input_file={input_file}: no such file")
        return files.read_text(input_file).splitlines()
    return sys.stdin.read().splitlines()


def main(argv=None):
    """bert-predict with `argv` (without the program name; None: sys.argv[1:])."""
    flag_values = define_flags()

    def predict_main(arguments):
        if len(arguments) < 2:
            raise app.UsageError("MODEL is required: a SavedModel or checkpoint (bert-predict "
                                 "MODEL [TEXT ...])")
        model, texts = arguments[1], arguments[2:]
        if flag_values.batch_size < 1:
            raise app.UsageError(f"--batch_size={flag_values.batch_size}: expected a positive "
                                 f"number")
        if not os.path.exists(model) and not os.path.exists(model + ".index"):
            raise app.UsageError(f"MODEL {model}: no such file or directory")
        if flag_values.output_file:
            try:
                files.check_output_directory(
                    os.path.dirname(os.path.abspath(flag_values.output_file)), "--output_file")
            except ValueError as error:
                raise app.UsageError(str(error)) from error
        from bert_tf import predict

        is_checkpoint = predict.find_saved_model(model) is None
        if is_checkpoint:
            export_command.check_checkpoint_flags(flag_values, model, "MODEL")
        texts = read_texts(texts, flag_values.input_file)
        logging.set_verbosity(flag_values.verbosity)
        cli.import_tensorflow_quietly()
        cli.hide_onednn_dtype_notice()
        if is_checkpoint:
            if flag_values.kind is None:
                flag_values.kind = predict.guess_kind(model, texts)
            export_command.resolve_settings(flag_values, model)

        def write(out):
            predict.write_predictions(model, texts, flag_values, out, flag_values.batch_size,
                                      source=flag_values.input_file or "texts",
                                      show_progress=bool(flag_values.input_file))

        if flag_values.output_file:
            with files.atomic_open(flag_values.output_file) as out:  # whole or not at all
                write(out)
        else:
            write(sys.stdout)

    return cli.run_command(predict_main, flag_values, argv, "bert-predict", __doc__)


def run_main():
    main(sys.argv[1:])


if __name__ == "__main__":
    run_main()
