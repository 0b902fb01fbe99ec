"""Run masked LM/next sentence masked_lm pre-training for BERT (the original script's flags).

With no flags at all it runs the built-in demo (bert_tf/demo.py): a complete small
pretraining on the documentation that ships with Python. See docs/pretraining.md.
"""

import sys

from absl import app, flags, logging

from bert_tf import cli

flags.DEFINE_string(
    "bert_config_file", None,
    "The config json file corresponding to the pre-trained BERT model. "
    "This specifies the model architecture.")
flags.DEFINE_string(
    "input_file", None,
    "Input TF example files (can be a glob or comma separated).")
flags.DEFINE_string(
    "output_dir", None,
    "The output directory where the model checkpoints will be written.")
flags.DEFINE_string(
    "init_checkpoint", None,
    "Initial checkpoint (usually from a pre-trained BERT model): an original TF1 checkpoint, "
    "a Hugging Face directory or a bert_tf checkpoint. Weights only.")
flags.DEFINE_integer(
    "max_seq_length", 128,
    "The maximum total input sequence length after WordPiece tokenization. "
    "Sequences longer than this will be truncated, and sequences shorter "
    "than this will be padded. Must match data generation.")
flags.DEFINE_integer(
    "max_predictions_per_seq", 20,
    "Maximum number of masked LM predictions per sequence. Must match data generation.")
flags.DEFINE_bool("do_train", False, "Whether to run training.")
flags.DEFINE_bool("do_eval", False, "Whether to run eval on the dev set.")
flags.DEFINE_integer("train_batch_size", 32, "Total batch size for training (one optimizer "
                     "update, over all replicas and accumulation steps).")
flags.DEFINE_integer("eval_batch_size", 8, "Total batch size for eval.")
flags.DEFINE_float("learning_rate", 5e-5, "The initial learning rate for Adam.")
flags.DEFINE_integer("num_train_steps", 100000, "Number of training steps (optimizer updates).")
flags.DEFINE_integer("num_warmup_steps", 10000, "Number of warmup steps.")
flags.DEFINE_integer("save_checkpoints_steps", 1000, "How often to save the model checkpoint.")
flags.DEFINE_integer("iterations_per_loop", 1000,
                     "How many steps to make in each estimator call (steps per tf.function "
                     "call and between progress lines).")
flags.DEFINE_integer("max_eval_steps", 100, "Maximum number of eval steps.")
# bert_tf additions
flags.DEFINE_enum("optimizer", "adamw", ["adamw", "lamb"],
                  "adamw: the original AdamWeightDecay; lamb: LAMB.")
flags.DEFINE_integer("gradient_accumulation_steps", 1,
                     "Micro-batches per optimizer update (train_batch_size is divided by it).")
flags.DEFINE_string("eval_input_file", None,
                    "TFRecords for --do_eval (default: --input_file, as the original).")
flags.DEFINE_integer("keep_checkpoint_max", 5, "Checkpoints to keep in output_dir.")
flags.DEFINE_bool("allow_partial_checkpoint", False,
                  "Load what fits of --init_checkpoint and start the rest from initial values, "
                  "with a warning naming them (default: encoder variables it lacks, has in "
                  "another shape or cannot read are an error; missing MLM/NSP heads start new "
                  "with a warning).")
cli.define_common_flags()
flags.adopt_module_key_flags(cli)  # --help lists the shared flags too

FLAGS = flags.FLAGS


def main(argv):
    from bert_tf import demo

    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.INFO)
    if demo.no_flags_given(sys.argv):
        cli.import_tensorflow_quietly()  # the demo is the first thing a new user runs: no banner
        demo.run_demo()
        return
    from bert_tf.pretraining import PretrainingSettings, run_pretraining

    cli.run_with_settings(argv, PretrainingSettings, run_pretraining, FLAGS)


def run_main():
    cli.run_script(main, __name__)


if __name__ == "__main__":
    run_main()
