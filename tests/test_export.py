"""Raw-text SavedModel: TF Serving version layout, and a fresh process with only tensorflow +
tensorflow_text gets the probabilities of the Python path (FullTokenizer + features + model)."""

import json
import os
import subprocess
import sys

import numpy as np

from bert_tf import export
from bert_tf.config import BertConfig
from bert_tf.data import classification as cls_data
from bert_tf.models import BertClassifier
from bert_tf.tokenization import FullTokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "dog",
         "ran", "##s", "a", ",", ".", "!", "big", "small", "é"]
PAIRS = [("The cat sat on the mat.", "A dog ran!"),
         ("Cats, dogs", "the BIG mat sat on a small small cat cat cat cat cat dog dog"),
         ("unknownword é", "mat")]

LOADER = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the ops the SavedModel uses)
model = tf.saved_model.load(sys.argv[1])
serve = model.signatures["serving_default"]
pairs = json.loads(sys.argv[2])
out = serve(text_a=tf.constant([a for a, _ in pairs]), text_b=tf.constant([b for _, b in pairs]))
assert not any(m.startswith("bert_tf") for m in sys.modules), "the SavedModel needed bert_tf"
print(json.dumps({k: v.numpy().tolist() for k, v in out.items()}, default=lambda b: b.decode()))
"""


def test_next_version_layout(tmp_path):
    assert export.next_version(str(tmp_path / "missing")) == 1
    for name in ("1", "3", "junk", "12a"):
        os.makedirs(tmp_path / name)
    (tmp_path / "7").write_text("a file, not a version")
    assert export.next_version(str(tmp_path)) == 4


def test_export_loads_in_a_fresh_process_and_matches_python(tmp_path):
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=64)
    # Mean pooling: the served graph pads to max_seq_length, the Python path below does not pad,
    # so equal probabilities also show that padding is left out of the mean.
    model = BertClassifier(config, num_labels=3, pooling="mean")
    labels = ["contradiction", "entailment", "neutral"]
    max_seq_length = 16  # The second pair is truncated.

    export_dir = str(tmp_path / "export")
    os.makedirs(os.path.join(export_dir, "2"))
    preprocessor = export.TextPreprocessor(str(vocab_file), lower_case=True,
                                           seq_length=max_seq_length)
    path = export.export_text_model(export_dir, model, preprocessor,
                                    export.classification_postprocess(labels),
                                    input_names=("text_a", "text_b"))
    assert path == os.path.join(export_dir, "3")
    assert sorted(os.listdir(export_dir)) == ["2", "3"]  # No temporary directory left behind.
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))

    # The Python path: original tokenizer and truncation, then the Keras model.
    tokenizer = FullTokenizer(str(vocab_file), do_lower_case=True)
    examples = [cls_data.InputExample(str(i), a, b, None) for i, (a, b) in enumerate(PAIRS)]
    features = cls_data.convert_examples_to_features(examples, labels, max_seq_length, tokenizer)
    assert features.num_truncated == 1
    # One example per batch: no padding at all on the Python path.
    batches = cls_data.classification_dataset(features, 1, is_training=False, pad_to_multiple_of=1)
    logits = np.concatenate([
        model({k: batch[k] for k in ("input_ids", "input_mask", "segment_ids")},
              training=False)["logits"].numpy() for batch in batches])
    assert logits.shape == (3, 3)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", LOADER, path, json.dumps(PAIRS)], env=env,
                            capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(served["probabilities"], expected, atol=1e-5)
    assert served["label"] == [labels[i] for i in expected.argmax(axis=1)]
    assert served["label_id"] == expected.argmax(axis=1).tolist()
    assert served["label_names"] == [labels] * 3

    # A second export gets the next version.
    single = export.export_text_model(export_dir, model,
                                      export.TextPreprocessor(VOCAB, seq_length=max_seq_length),
                                      export.classification_postprocess(labels, is_regression=True),
                                      input_names=("text_a",))
    assert single == os.path.join(export_dir, "4")
