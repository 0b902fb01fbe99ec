"""BERT fine-tuning for named-entity recognition on CoNLL-style files (entity-level F1).

Flags in run_classifier.py's style (the same model-file, training, distribution, precision
and export flags), on a DATA_DIR holding train.txt, dev.txt and test.txt (or --train_file,
--dev_file, --test_file). See docs/ner.md.

    python run_ner.py --data_dir=conll2003 --init_checkpoint=cased_L-12_H-768_A-12 \\
      --do_train --do_eval --do_predict --output_dir=/tmp/ner --export_dir=/tmp/ner_export
"""

from absl import flags

from bert_tf import cli

FLAGS = flags.FLAGS

cli.define_finetuning_flags("The input data dir holding train.txt, dev.txt and test.txt "
                            "(CoNLL format: a token and its columns per line, the tag last, a "
                            "blank line between sentences).")
flags.adopt_module_key_flags(cli)  # --help lists the shared flags too
flags.DEFINE_string("train_file", None, "Training file (default: DATA_DIR/train.txt).")
flags.DEFINE_string("dev_file", None, "Evaluation file (default: DATA_DIR/dev.txt).")
flags.DEFINE_string("test_file", None, "Prediction file (default: DATA_DIR/test.txt).")
flags.DEFINE_integer("tag_column", -1, "Column of the tag (0 = the token; negative counts "
                     "from the end; default: the last).")
flags.DEFINE_enum("tag_scheme", "auto", ["auto", "IOB1", "BIO", "BIOES"],
                  "Tag scheme of the files: detected from the training file by default. The "
                  "model learns BIO (IOB1 and BIO input) or BIOES; predictions are written in "
                  "the file's scheme.")
flags.DEFINE_bool("group_by_length", True, "Training batches of windows of similar length "
                  "(random groups of 50 batches sorted by length; each epoch still visits every "
                  "window once): far less padding on CoNLL-style data. --nogroup_by_length: a "
                  "plain shuffle.")
flags.DEFINE_integer("window_stride", None, "Sentences longer than max_seq_length are cut "
                     "into windows of max_seq_length - 2 pieces starting every this many pieces "
                     "(default: half a window); each word is predicted once, from the window "
                     "where it has the most context.")


def main(argv):
    from bert_tf.ner import NerSettings, run_ner

    cli.run_with_settings(argv, NerSettings, run_ner, FLAGS)


def run_main():
    cli.run_script(main, __name__)


if __name__ == "__main__":
    run_main()
