"""bert-convert: any BERT checkpoint bert_tf reads, written in any of four formats.

    bert-convert --init_checkpoint=SRC --output_dir=DST --to=FORMAT
    python -m bert_tf.convert --init_checkpoint=SRC --output_dir=DST --to=FORMAT

FORMAT: original, huggingface, keras_hub or bert_tf. The library function is
bert_tf.convert.convert; see docs/convert.md.
"""

import os
import sys

from absl import app, flags, logging

from bert_tf import checkpoints, cli

# bert_tf.convert.FORMATS, here so that --help and the checks need no TensorFlow.
FORMATS = ("original", "huggingface", "keras_hub", "bert_tf")


def define_flags():
    flag_values = flags.FlagValues()
    flags.DEFINE_string("init_checkpoint", None, "The checkpoint to convert: original TF1 "
                        "prefix or folder, Hugging Face folder, keras-hub preset folder, or "
                        "bert_tf checkpoint or output dir.", flag_values=flag_values)
    flags.DEFINE_string("output_dir", None, "The folder to create (must not exist, or be "
                        "empty).", flag_values=flag_values)
    flags.DEFINE_enum("to", None, list(FORMATS), "Output format.", flag_values=flag_values)
    flags.DEFINE_enum("classifier_kind", None, list(checkpoints.CLASSIFIER_KINDS),
                      "A classifier head is a sequence or token (NER) classifier. Default: what "
                      "the source records (Hugging Face architectures), else sequence.",
                      flag_values=flag_values)
    flags.DEFINE_string("vocab_file", None, "vocab.txt to ship (default: the one beside the "
                        "source).", flag_values=flag_values)
    flags.DEFINE_bool("do_lower_case", None, "Casing to record (default: from the source).",
                      flag_values=flag_values)
    flags.DEFINE_bool("allow_partial_checkpoint", False, "Leave out, with a warning, a head the "
                      "source has only part of or in another shape (default: an error).",
                      flag_values=flag_values)
    cli.define_verbosity_flag(flag_values)
    flags.mark_flags_as_required(["init_checkpoint", "output_dir", "to"],
                                 flag_values=flag_values)
    return flag_values


def main(argv=None):
    """bert-convert with `argv` (without the program name; None: sys.argv[1:])."""
    flag_values = define_flags()

    def convert_main(arguments):
        if len(arguments) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(arguments[1:])}")
        source, output_dir = flag_values.init_checkpoint, flag_values.output_dir
        if not os.path.exists(source) and not os.path.exists(source + ".index"):
            raise app.UsageError(f"--init_checkpoint={source}: not found or not a checkpoint")
        if os.path.exists(output_dir) and (not os.path.isdir(output_dir)
                                           or os.listdir(output_dir)):
            raise app.UsageError(f"--output_dir: {output_dir} already exists and is not an "
                                 f"empty folder; expected a new folder")
        vocab_file = flag_values.vocab_file
        if vocab_file is not None and not os.path.isfile(vocab_file):
            raise app.UsageError(f"--vocab_file: {vocab_file} is not a file; expected a "
                                 f"vocab.txt")
        logging.set_verbosity(flag_values.verbosity)
        cli.import_tensorflow_quietly()
        cli.hide_onednn_dtype_notice()
        from bert_tf import convert

        return convert.convert(source, output_dir, flag_values.to,
                               classifier_kind=flag_values.classifier_kind,
                               vocab_file=vocab_file, do_lower_case=flag_values.do_lower_case,
                               allow_partial=flag_values.allow_partial_checkpoint)

    return cli.run_command(convert_main, flag_values, argv, "bert-convert", __doc__)


def run_main():
    main(sys.argv[1:])


if __name__ == "__main__":
    run_main()
