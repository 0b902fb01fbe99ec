"""The built-in pretraining demo: `python run_pretraining.py` with no flags.

Runs every stage of a real pretraining, small enough for a laptop CPU in a few minutes:

1. corpus: the language reference that ships with every Python (`pydoc_data.topics`), one
   document per topic, one sentence per line (held-out topics for evaluation);
2. a WordPiece vocabulary learned from it (bert_tf.vocab_learning);
3. pretraining TFRecords (bert_tf.data.pretraining_instances.create_pretraining_data);
4. a tiny BERT pretrained with the real loop (bert_tf.pretraining.run_pretraining);
5. evaluation on the held-out topics (eval_results.txt).
"""

import os
import re
import time

from absl import logging

from bert_tf import files

DEFAULT_OUTPUT_DIR = "bert_tf_demo"

REAL_RUN_FLAGS = """\
A real run takes the original flags, e.g.:
  python run_pretraining.py --bert_config_file=bert_config.json \\
    --input_file='data/*.tfrecord' --output_dir=out --do_train --do_eval \\
    --train_batch_size=256 --learning_rate=1e-4 --num_train_steps=1000000 \\
    --num_warmup_steps=10000 --max_seq_length=128 --max_predictions_per_seq=20
  plus --init_checkpoint, --distribution_strategy, --num_gpus, --mixed_precision,
  --optimizer, --gradient_accumulation_steps, --eval_input_file, --keep_checkpoint_max, --seed
  (see docs/pretraining.md; --helpfull lists all)."""


def no_flags_given(argv):
    """True when the script was started without any argument (the demo's trigger)."""
    return len(argv) <= 1


_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+(?=[A-Z\"'(\[])")


def python_docs_documents():
    """Documents (lists of sentences) from pydoc_data.topics, in sorted topic order."""
    from pydoc_data.topics import topics

    documents = []
    for name in sorted(topics):
        sentences = []
        for paragraph in re.split(r"\n\s*\n", topics[name]):
            lines = [line.strip() for line in paragraph.splitlines()]
            # Drop reStructuredText underlines (*****, =====, -----).
            lines = [line for line in lines if line and not re.fullmatch(r"[*=\-~^]{3,}", line)]
            if not lines:
                continue
            text = " ".join(lines)
            sentences.extend(s.strip() for s in _SENTENCE_END.split(text) if s.strip())
        if len(sentences) >= 2:
            documents.append(sentences)
    return documents


def write_corpus(documents, path):
    """One sentence per line, a blank line between documents (create_pretraining_data's input)."""
    text = "".join("".join(sentence + "\n" for sentence in document) + "\n"
                   for document in documents)
    files.atomic_write(path, text)
    return path


def run_demo(output_dir=DEFAULT_OUTPUT_DIR, vocab_size=2000, max_seq_length=64,
             max_predictions_per_seq=10, num_train_steps=600, train_batch_size=32,
             learning_rate=3e-4, seed=12345):
    """Runs the whole demo; returns the result dict of run_pretraining plus the paths."""
    import keras

    from bert_tf import distribution
    from bert_tf.config import BertConfig
    from bert_tf.data.pretraining_instances import create_pretraining_data
    from bert_tf.pretraining import PretrainingSettings, run_pretraining
    from bert_tf.vocab_learning import learn_wordpiece_vocab

    started = time.time()
    logging.info("=" * 78)
    logging.info("run_pretraining.py was started without flags: running the BUILT-IN DEMO.")
    logging.info("It pretrains a tiny BERT on the Python documentation in a few minutes,")
    logging.info("writing everything under %s/.", os.path.abspath(output_dir))
    for line in REAL_RUN_FLAGS.splitlines():
        logging.info("%s", line)
    logging.info("=" * 78)

    data_dir = os.path.join(output_dir, "data")
    model_dir = os.path.join(output_dir, "model")
    os.makedirs(data_dir, exist_ok=True)

    logging.info("[1/5] Corpus: pydoc_data.topics (the Python language reference)")
    documents = python_docs_documents()
    eval_documents = documents[::10]
    train_documents = [d for i, d in enumerate(documents) if i % 10]
    train_text = write_corpus(train_documents, os.path.join(data_dir, "train_corpus.txt"))
    eval_text = write_corpus(eval_documents, os.path.join(data_dir, "eval_corpus.txt"))
    logging.info("  %d training documents (%d sentences), %d held-out documents",
                 len(train_documents), sum(map(len, train_documents)), len(eval_documents))

    logging.info("[2/5] WordPiece vocabulary (%d tokens) learned from the training corpus",
                 vocab_size)
    vocab_file = os.path.join(data_dir, "vocab.txt")
    tokens = learn_wordpiece_vocab([train_text], vocab_size, vocab_file, do_lower_case=True)
    logging.info("  %s: %d tokens", vocab_file, len(tokens))

    logging.info("[3/5] Pretraining TFRecords (max_seq_length %d, %d predictions)",
                 max_seq_length, max_predictions_per_seq)
    train_records = os.path.join(data_dir, "train.tfrecord")
    eval_records = os.path.join(data_dir, "eval.tfrecord")
    common = dict(do_lower_case=True, max_seq_length=max_seq_length,
                  max_predictions_per_seq=max_predictions_per_seq, random_seed=seed)
    summary = create_pretraining_data([train_text], [train_records], vocab_file, dupe_factor=5,
                                      **common)
    logging.info("  %s: %s", train_records, summary)
    summary = create_pretraining_data([eval_text], [eval_records], vocab_file, dupe_factor=1,
                                      **common)
    logging.info("  %s: %s", eval_records, summary)

    logging.info("[4/5] Pretraining a tiny BERT (2 layers, hidden 128) for %d steps",
                 num_train_steps)
    keras.utils.set_random_seed(seed)
    distribution.set_mixed_precision("none")
    config = BertConfig.preset("tiny", vocab_size=len(tokens),
                               max_position_embeddings=max_seq_length)
    config_file = os.path.join(data_dir, "bert_config.json")
    config.to_json_file(config_file)
    settings = PretrainingSettings(
        bert_config_file=config_file, input_file=train_records, eval_input_file=eval_records,
        output_dir=model_dir, max_seq_length=max_seq_length,
        max_predictions_per_seq=max_predictions_per_seq, do_train=True, do_eval=True,
        train_batch_size=train_batch_size, eval_batch_size=32, learning_rate=learning_rate,
        num_train_steps=num_train_steps, num_warmup_steps=num_train_steps // 10,
        save_checkpoints_steps=num_train_steps // 2, iterations_per_loop=25, max_eval_steps=20,
        seed=seed,
    )
    strategy = distribution.get_strategy(None)
    result = run_pretraining(settings, strategy)
    # The model directory then holds all a later command needs (bert-predict, bert-export,
    # --init_checkpoint): checkpoint, bert_config.json, vocab.txt and the casing.
    files.atomic_copy(vocab_file, os.path.join(model_dir, "vocab.txt"))
    files.atomic_write(os.path.join(model_dir, "tokenizer_config.json"),
                       '{"do_lower_case": true}\n')

    logging.info("[5/5] Evaluated on the held-out topics (%d batches)", settings.max_eval_steps)
    elapsed = time.time() - started
    logging.info("=" * 78)
    logging.info("Demo finished in %.0f s.", elapsed)
    logging.info("  vocabulary:      %s", vocab_file)
    logging.info("  TFRecords:       %s, %s", train_records, eval_records)
    logging.info("  BERT config:     %s", config_file)
    logging.info("  checkpoint:      %s", result["checkpoint"])
    logging.info("  eval results:    %s", result["eval_results_file"])
    logging.info("  TensorBoard:     tensorboard --logdir %s", model_dir)
    history = result["train_history"]
    if history:
        import math

        chance = math.log(len(tokens)) + math.log(2)
        (first_step, first), (last_step, last) = history[0], history[-1]
        logging.info("  train loss:      %.3f (mean of steps 1-%d) -> %.3f (steps %d-%d); "
                     "chance level %.2f", first["loss"], first_step, last["loss"],
                     history[-2][0] + 1 if len(history) > 1 else 1, last_step, chance)
    if result["eval"]:
        logging.info("  eval:            loss %.3f, masked LM accuracy %.3f, next sentence "
                     "accuracy %.3f", result["eval"]["loss"], result["eval"]["masked_lm_accuracy"],
                     result["eval"]["next_sentence_accuracy"])
    logging.info("Run it again and it resumes from the checkpoint (nothing left to train); "
                 "delete %s/ to start over.", output_dir)
    logging.info("=" * 78)
    result.update(vocab_file=vocab_file, train_records=train_records,
                  eval_records=eval_records, config_file=config_file)
    return result
