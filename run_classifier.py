"""BERT fine-tuning for sentence (pair) classification and regression: GLUE, XNLI, your TSV/CSV.

Same flags, defaults and output files as google-research/bert's run_classifier.py, plus
tf.distribute / mixed-precision flags, --seed, --export_dir (a raw-text SavedModel for TF
Serving) and the generic processor's column flags. See docs/classifier.md.

    python run_classifier.py --task_name=MRPC --do_train --do_eval --do_predict \\
      --data_dir=glue/MRPC --init_checkpoint=uncased_L-12_H-768_A-12/bert_model.ckpt \\
      --output_dir=/tmp/mrpc --export_dir=/tmp/mrpc_export
"""

from absl import flags

from bert_tf import cli

FLAGS = flags.FLAGS

cli.define_finetuning_flags("The input data dir. Should contain the .tsv files (or other data "
                            "files) for the task.")
flags.adopt_module_key_flags(cli)  # --help lists the shared flags too
flags.DEFINE_string("task_name", None, "The name of the task to train: cola, sst-2, mrpc, "
                    "sts-b, qqp, mnli, qnli, rte, wnli, xnli, or generic (your own TSV/CSV).")
# bert_tf additions
flags.DEFINE_string("text_a_column", "sentence", "generic task: header name of the first text.")
flags.DEFINE_string("text_b_column", None, "generic task: header name of the second text "
                    "(sentence pairs).")
flags.DEFINE_string("label_column", "label", "generic task: header name of the label.")
flags.DEFINE_bool("regression", False, "generic task: the label is a real-valued score.")
flags.DEFINE_string("xnli_language", "zh", "xnli task: the language to train and evaluate on.")
flags.DEFINE_bool("group_by_length", False, "Training batches of examples of similar length "
                  "(random groups of 50 batches sorted by length): less padding, faster; "
                  "off = the original's plain shuffle.")
flags.DEFINE_enum("classifier_pooling", "auto", ["auto", "pooler", "cls", "mean"],
                  "What the classifier reads: 'pooler' (the original: tanh pooler over [CLS]), "
                  "'cls' ([CLS]'s last hidden state), 'mean' (mean of the tokens' last hidden "
                  "states). 'auto': what OUTPUT_DIR or --init_checkpoint's directory recorded "
                  "from an earlier fine-tuning run, else (single-text tasks) the sentence "
                  "pooling a sentence-transformers checkpoint declares (1_Pooling/config.json), "
                  "else 'pooler'.")


def main(argv):
    from bert_tf.classifier import ClassifierSettings, run_classifier

    cli.run_with_settings(argv, ClassifierSettings, run_classifier, FLAGS)


def run_main():
    cli.run_script(main, __name__)


if __name__ == "__main__":
    run_main()
