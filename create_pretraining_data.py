"""Creates BERT pretraining TFRecords from raw text (the original script's flags and output).

Input: one sentence per line, a blank line between documents. Example:

    python create_pretraining_data.py --input_file='corpus/*.txt' \\
        --output_file=out/train-0.tfrecord,out/train-1.tfrecord --vocab_file=vocab.txt \\
        --num_workers=2

See docs/pretraining_data.md for the algorithm, the streaming mode and its differences.
"""

import signal

from absl import flags
from absl import logging

from bert_tf import cli

FLAGS = flags.FLAGS

flags.DEFINE_string("input_file", None,
                    "Input raw text file (or comma-separated list of files; globs allowed).")
flags.DEFINE_string("output_file", None,
                    "Output TFRecord file (or comma-separated list of files; records are "
                    "written round-robin).")
flags.DEFINE_string("vocab_file", None, "The vocabulary file that the BERT model was trained on.")
flags.DEFINE_bool("do_lower_case", True,
                  "Whether to lower case the input text. Should be True for uncased models and "
                  "False for cased models.")
flags.DEFINE_bool("do_whole_word_mask", False,
                  "Whether to use whole word masking rather than per-WordPiece masking.")
flags.DEFINE_integer("max_seq_length", 128, "Maximum sequence length.")
flags.DEFINE_integer("max_predictions_per_seq", 20,
                     "Maximum number of masked LM predictions per sequence.")
flags.DEFINE_integer("random_seed", 12345, "Random seed for data generation.")
flags.DEFINE_integer("dupe_factor", 10,
                     "Number of times to duplicate the input data (with different masks).")
flags.DEFINE_float("masked_lm_prob", 0.15, "Masked LM probability.")
flags.DEFINE_float("short_seq_prob", 0.1,
                   "Probability of creating sequences which are shorter than the maximum length.")
# bert_tf additions.
flags.DEFINE_integer("num_workers", 1,
                     "Processes. Default mode: tokenization and encoding run in parallel and the "
                     "output is byte-identical for any value.")
flags.DEFINE_bool("streaming", False,
                  "Bounded memory for corpora larger than RAM: documents are shuffled and paired "
                  "within windows of --streaming_window_documents (differs from the original; "
                  "see docs/pretraining_data.md).")
flags.DEFINE_integer("streaming_window_documents", 10000,
                     "Documents per window in --streaming mode.")
flags.DEFINE_integer("streaming_window_bytes", 16 << 20,
                     "--streaming: a window also ends, at the next document break, once it holds "
                     "this many bytes of input (memory is about 30x this per window in flight).")
flags.DEFINE_integer("streaming_max_document_bytes", 1 << 20,
                     "--streaming: a document longer than this (e.g. a corpus without blank lines "
                     "between documents) is cut, after the line that reaches this size, into "
                     "pieces treated as separate documents; a warning says so.")
flags.DEFINE_integer("max_line_bytes", 1 << 20,
                     "A longer input line is an error naming the file and line (the input needs "
                     "one sentence per line); 0: no limit. The default mode holds the whole "
                     "tokenized corpus in memory, as the original does: use --streaming for "
                     "corpora near the size of RAM.")
flags.DEFINE_bool("gzip", False, "Write GZIP-compressed TFRecords.")
flags.DEFINE_enum("unicode_errors", "strict", ["strict", "replace", "ignore"],
                  "Invalid UTF-8 in the input: 'strict' stops with the file and line number; "
                  "'replace'/'ignore' decode it as Python does.")

flags.mark_flags_as_required(["input_file", "output_file", "vocab_file"])


def _exit_on_sigterm(signum, frame):
    del frame
    # An exception, unlike the default action, lets the library delete its temporary files.
    raise SystemExit(128 + signum)


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    from bert_tf.data.pretraining_instances import create_pretraining_data  # pylint: disable=import-outside-toplevel

    create_pretraining_data(
        FLAGS.input_file, FLAGS.output_file, FLAGS.vocab_file,
        do_lower_case=FLAGS.do_lower_case, do_whole_word_mask=FLAGS.do_whole_word_mask,
        max_seq_length=FLAGS.max_seq_length,
        max_predictions_per_seq=FLAGS.max_predictions_per_seq,
        random_seed=FLAGS.random_seed, dupe_factor=FLAGS.dupe_factor,
        masked_lm_prob=FLAGS.masked_lm_prob, short_seq_prob=FLAGS.short_seq_prob,
        num_workers=FLAGS.num_workers, streaming=FLAGS.streaming,
        streaming_window_documents=FLAGS.streaming_window_documents, gzip=FLAGS.gzip,
        unicode_errors=FLAGS.unicode_errors, streaming_window_bytes=FLAGS.streaming_window_bytes,
        streaming_max_document_bytes=FLAGS.streaming_max_document_bytes,
        max_line_bytes=FLAGS.max_line_bytes)


def run_main():
    cli.run_script(main, __name__)


if __name__ == "__main__":
    run_main()
