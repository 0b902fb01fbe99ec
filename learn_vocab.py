"""Learn a WordPiece vocab.txt from text files: the script behind `bert-learn-vocab`.

    python learn_vocab.py --input_file=corpus/*.txt --output_file=vocab.txt --vocab_size=8000

The library function is bert_tf.vocab_learning.learn_wordpiece_vocab; see docs/tokenization.md.
"""

from absl import app, flags

from bert_tf import cli

from bert_tf.vocab_learning import DEFAULT_RESERVED_TOKENS

flags.DEFINE_string("input_file", None,
                    "Input text file(s): path, glob or comma-separated globs; one text a line.")
flags.DEFINE_string("output_file", None, "Where to write vocab.txt.")
flags.DEFINE_alias("vocab_file", "output_file")
flags.DEFINE_integer("vocab_size", 30522,
                     "Maximum vocabulary size, reserved and unused tokens included.")
flags.DEFINE_bool("do_lower_case", True, "Lower-case and strip accents (uncased models).")
flags.DEFINE_integer("num_unused", 0, "Number of [unusedN] tokens after the reserved tokens.")
flags.DEFINE_list("reserved_tokens", list(DEFAULT_RESERVED_TOKENS),
                  "Tokens written first, in order.")
flags.DEFINE_integer("max_unique_chars", 1000, "Maximum alphabet size.")
flags.DEFINE_integer("max_token_length", 50, "Longest learned piece, in characters.")
flags.mark_flags_as_required(["input_file", "output_file"])

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from absl import logging

    from bert_tf.vocab_learning import learn_wordpiece_vocab

    logging.set_verbosity(logging.INFO)
    cli.import_tensorflow_quietly()  # (its file system reads the input)
    learn_wordpiece_vocab(
        FLAGS.input_file,
        FLAGS.vocab_size,
        FLAGS.output_file,
        do_lower_case=FLAGS.do_lower_case,
        reserved_tokens=FLAGS.reserved_tokens,
        num_unused=FLAGS.num_unused,
        max_unique_chars=FLAGS.max_unique_chars,
        max_token_length=FLAGS.max_token_length,
    )


def run_main():
    cli.run_script(main, __name__)


if __name__ == "__main__":
    run_main()
