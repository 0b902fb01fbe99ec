"""SavedModel export: raw text in, task outputs out, in TF Serving's version layout.

`export_text_model` writes `EXPORT_DIR/<version>/` (the next integer after the versions already
there; TF Serving loads the highest) with a `serving_default` signature whose inputs are one or
two string tensors [batch] (named e.g. `text_a`, `text_b`). Inside the graph the strings are
tokenized and packed by `bert_tf.preprocessing` (tensorflow-text ops), run through the model,
and turned into the task's outputs by a post-processing function; so the SavedModel loads in a
process that imports only `tensorflow` and `tensorflow_text`. The directory appears atomically:
it is written under a temporary name and renamed when complete.

It is generic: any task script passes its model, the text input names and a post-processing
(`classification_postprocess` for run_classifier; a tagger passes its own).
"""

import os
import re
import shutil
import uuid
from typing import Callable, Dict, Optional, Sequence

import keras
import tensorflow as tf

from bert_tf import preprocessing


class TextPreprocessor(keras.layers.Layer):
    """Strings → model inputs: `BertTokenizer` on each text, `BertPacker` on the segments.

    Called with a list of 1 or 2 string tensors [batch]; returns `input_ids`, `input_mask`,
    `segment_ids` int32 [batch, seq_length] with the original's truncation.
    """

    def __init__(self, vocab, lower_case: bool = True, seq_length: Optional[int] = 128, **kwargs):
        super().__init__(**kwargs)
        self.tokenizer = preprocessing.BertTokenizer(vocab, lower_case=lower_case)
        vocab_ids = _vocab_ids(vocab)
        for token in ("[CLS]", "[SEP]", "[PAD]"):
            if token not in vocab_ids:
                raise ValueError(f"vocabulary {vocab!r} has no {token} token")
        self.packer = preprocessing.BertPacker(seq_length, cls_id=vocab_ids["[CLS]"],
                                               sep_id=vocab_ids["[SEP]"],
                                               pad_id=vocab_ids["[PAD]"])

    def call(self, texts):
        segments = [self.tokenizer(text) for text in texts]
        return self.packer(segments[0] if len(segments) == 1 else tuple(segments))


def _vocab_ids(vocab):
    if isinstance(vocab, str):
        from bert_tf.tokenization import load_vocab

        return dict(load_vocab(vocab))
    return {token: i for i, token in enumerate(vocab)}


def classification_postprocess(label_names: Sequence[str], is_regression: bool = False
                               ) -> Callable[[Dict[str, tf.Tensor]], Dict[str, tf.Tensor]]:
    """Model outputs → `probabilities` [B, C] (softmax of `logits`), `label` [B] (the most
    probable label's name), `label_id` [B] and `label_names` [B, C]; or, for regression,
    `score` [B]."""
    names = [str(name) for name in label_names]

    def postprocess(outputs):
        logits = tf.cast(outputs["logits"], tf.float32)
        if is_regression:
            return {"score": logits[:, 0]}
        probabilities = tf.nn.softmax(logits, axis=-1)
        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        table = tf.constant(names)
        batch = tf.shape(logits)[0]
        return {
            "probabilities": probabilities,
            "label_id": label_id,
            "label": tf.gather(table, label_id),
            "label_names": tf.tile(table[tf.newaxis, :], [batch, 1]),
        }

    return postprocess


def next_version(export_dir: str) -> int:
    """1 + the largest integer-named subdirectory of `export_dir` (1 when there is none)."""
    versions = [int(name) for name in (os.listdir(export_dir) if os.path.isdir(export_dir) else [])
                if re.fullmatch(r"\d+", name) and os.path.isdir(os.path.join(export_dir, name))]
    return max(versions, default=0) + 1


def export_text_model(export_dir: str, model: keras.Model, preprocessor: keras.layers.Layer,
                      postprocess: Callable[[Dict[str, tf.Tensor]], Dict[str, tf.Tensor]],
                      input_names: Sequence[str] = ("text_a",)) -> str:
    """Write `model` behind a raw-text `serving_default` signature; returns the version path.

    `preprocessor(list_of_string_tensors)` → model input dict (e.g. `TextPreprocessor`);
    `postprocess(model_outputs)` → dict of output tensors, each with the batch as first axis.
    """
    input_names = list(input_names)
    if not 1 <= len(input_names) <= 2:
        raise ValueError(f"expected one or two text inputs, got {input_names}")
    signature = [tf.TensorSpec([None], tf.string, name=name) for name in input_names]

    def serve(*texts):
        inputs = preprocessor(list(texts))
        outputs = model(inputs, training=False)
        return postprocess(outputs)

    if not preprocessor.built:  # Builds it and its sub-layers (ExportArchive requires that).
        preprocessor([tf.constant(["a"])] * len(input_names))
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(preprocessor)
    archive.add_endpoint("serving_default", serve, input_signature=signature)

    os.makedirs(export_dir, exist_ok=True)
    tmp = os.path.join(export_dir, f".tmp-{uuid.uuid4().hex}")
    try:
        archive.write_out(tmp, verbose=False)
        while True:
            final = os.path.join(export_dir, str(next_version(export_dir)))
            try:
                os.rename(tmp, final)  # Atomic; fails if a concurrent export took the number.
                return final
            except OSError:
                if not os.path.isdir(final):
                    raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
