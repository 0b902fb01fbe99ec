"""SavedModel export: raw text in, task outputs out, in TF Serving's version layout.

`export_text_model` writes `EXPORT_DIR/<version>/` (the next integer after the versions already
there; TF Serving loads the highest) with a `serving_default` signature whose inputs are one or
two string tensors [batch] (named e.g. `text_a`, `text_b`). Inside the graph the strings are
tokenized and packed by `bert_tf.preprocessing` (tensorflow-text ops), run through the model,
and turned into the task's outputs by a post-processing function; so the SavedModel loads in a
process that imports only `tensorflow` and `tensorflow_text`. The directory appears atomically:
it is written under a temporary name and renamed when complete.

Sequence tasks pass their model, the text input names and a post-processing
(`classification_postprocess` for run_classifier). A word tagger (run_ner) needs more than a
post-processing, since its texts become several windows and its outputs are per word:
`export_tagger` builds its own serve function (`tagging_serve_function`) and writes it with
`write_serving_model`, which every export shares.
"""

import os
import re
import shutil
import uuid
from typing import Callable, Dict, Optional, Sequence

import keras
import tensorflow as tf

from bert_tf import metrics, preprocessing, word_splitting


class TextPreprocessor(keras.layers.Layer):
    """Strings → model inputs: `BertTokenizer` on each text, `BertPacker` on the segments.

    Called with a list of 1 or 2 string tensors [batch]; returns `input_ids`, `input_mask`,
    `segment_ids` int32 [batch, seq_length] with the original's truncation.
    """

    def __init__(self, vocab, lower_case: bool = True, seq_length: Optional[int] = 128, **kwargs):
        super().__init__(**kwargs)
        self.tokenizer = preprocessing.BertTokenizer(vocab, lower_case=lower_case)
        vocab_ids = self.tokenizer.vocabulary  # token -> id, read once by the tokenizer
        for token in ("[CLS]", "[SEP]", "[PAD]"):
            if token not in vocab_ids:
                raise ValueError(f"vocabulary {vocab!r} has no {token} token")
        self.packer = preprocessing.BertPacker(seq_length, cls_id=vocab_ids["[CLS]"],
                                               sep_id=vocab_ids["[SEP]"],
                                               pad_id=vocab_ids["[PAD]"])

    def call(self, texts):
        segments = [self.tokenizer(text) for text in texts]
        return self.packer(segments[0] if len(segments) == 1 else tuple(segments))


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
    return write_serving_model(export_dir, serve, signature, tracked=(model, preprocessor))


def write_serving_model(export_dir: str, serve: Callable, input_signature: Sequence[tf.TensorSpec],
                        tracked: Sequence[keras.layers.Layer]) -> str:
    """Write `serve` as the `serving_default` signature of a new version; returns its path.

    `tracked`: the built Keras layers/models whose variables and resources `serve` uses.
    The version directory is written under a temporary name and renamed when complete.
    """
    archive = keras.export.ExportArchive()
    for layer in tracked:
        archive.track(layer)
    archive.add_endpoint("serving_default", serve, input_signature=list(input_signature))

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


# ---------------------------------------------------------------------------------------------
# Word tagger (NER): raw text -> one label per word, and the entities they spell
# ---------------------------------------------------------------------------------------------

_TAG_PREFIXES = ("O", "B", "I", "E", "S")
_O, _B, _I, _E, _S = range(len(_TAG_PREFIXES))


def _tag_tables(label_names: Sequence[str]):
    """Per label id: prefix code (index into _TAG_PREFIXES), entity type id (-1 for O), and the
    sorted entity types; the tag grammar is `bert_tf.metrics`' (which `extract_spans` uses)."""
    parts = []
    for index, name in enumerate(label_names):
        try:
            parts.append(metrics._split_tag(name))  # pylint: disable=protected-access
        except ValueError as error:
            raise ValueError(f"label_list[{index}]: {error}") from None
    types = sorted({entity for prefix, entity in parts if prefix != "O"})
    prefixes = [_TAG_PREFIXES.index(prefix) for prefix, _ in parts]
    type_ids = [types.index(entity) if prefix != "O" else -1 for prefix, entity in parts]
    return prefixes, type_ids, types


def _window_count(num_pieces, window: int, stride: int):
    """How many windows the tagger's rule gives a text of `num_pieces` pieces (a tensor).

    The rule: starts = [0]; while starts[-1] + window < num_pieces: starts.append(starts[-1] +
    stride), so 1 + ceil((num_pieces - window) / stride) windows when the text is longer.
    """
    extra = tf.maximum(num_pieces - window, 0)
    return 1 + (extra + stride - 1) // stride


def tagging_serve_function(model: keras.Model, preprocessor: TextPreprocessor,
                           label_names: Sequence[str]
                           ) -> Callable[[tf.Tensor], Dict[str, tf.Tensor]]:
    """The tagger's `serve(text)`: tf.string [batch] -> the outputs `export_tagger` documents.

    `preprocessor` supplies the WordPiece tokenizer and the packer (its seq_length is the
    model's max_seq_length); `model` maps packed inputs to `logits` [windows, seq, labels].
    """
    label_names = [str(name) for name in label_names]
    prefix_of, type_of, entity_types = _tag_tables(label_names)
    tokenizer, packer = preprocessor.tokenizer, preprocessor.packer
    if packer.seq_length is None:
        raise ValueError("the tagger's preprocessor needs a fixed seq_length (max_seq_length)")
    unk_id = tokenizer.token_to_id(tokenizer.unk_token)
    window = packer.seq_length - 2
    stride = max(1, window // 2)
    # A piece lies in at most ceil(window / stride) windows: the candidates for its context.
    max_candidates = -(-window // stride)

    def serve(text):
        text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace",
                                            replacement_char=0xFFFD)
        words, word_start, word_end = word_splitting.split_words_with_offsets_in_graph(text)
        word_text = tf.cast(words.value_rowids(), tf.int32)  # [words]
        num_words = tf.cast(words.row_lengths(), tf.int32)  # [batch]

        # WordPiece each word; a word with no pieces (only accents or control characters, say)
        # gets one [UNK] so that it still gets a label.
        pieces = tokenizer(words.flat_values)  # [words, (pieces)]
        no_pieces = tf.equal(pieces.row_lengths(), 0)
        unknown = tf.RaggedTensor.from_row_lengths(
            tf.fill([tf.reduce_sum(tf.cast(no_pieces, tf.int32))], tf.constant(unk_id, tf.int32)),
            tf.cast(no_pieces, tf.int64))
        pieces = tf.concat([pieces, unknown], axis=1)
        text_pieces = words.with_flat_values(pieces).merge_dims(1, 2)  # [batch, (pieces)]
        num_pieces = tf.cast(text_pieces.row_lengths(), tf.int32)
        piece_offset = tf.cast(text_pieces.row_starts(), tf.int32)  # text -> its first piece
        # Each word's first piece, counted within its text.
        pieces_per_word = tf.cast(pieces.row_lengths(), tf.int32)
        first_piece = (tf.math.cumsum(pieces_per_word, exclusive=True)
                       - tf.gather(piece_offset, word_text))

        # All windows of all texts, one batch: [CLS] pieces[start : start + length] [SEP].
        num_windows = _window_count(num_pieces, window, stride)  # [batch]
        window_offset = tf.math.cumsum(num_windows, exclusive=True)  # text -> its first window
        window_text = tf.repeat(tf.range(tf.size(num_windows)), num_windows)
        window_start = tf.ragged.range(num_windows).flat_values * stride
        window_length = tf.minimum(window, tf.gather(num_pieces, window_text) - window_start)
        begin = tf.gather(piece_offset, window_text) + window_start
        window_pieces = tf.RaggedTensor.from_row_lengths(
            tf.gather(text_pieces.flat_values,
                      tf.ragged.range(begin, begin + window_length).flat_values),
            tf.cast(window_length, tf.int64))
        logits = tf.cast(model(packer(window_pieces), training=False)["logits"], tf.float32)

        # Each word reads its first piece in the window where that piece has the most context:
        # run_squad's _check_is_max_context score, in float64 as in Python; ties -> earlier.
        text_windows = tf.gather(num_windows, word_text)
        text_length = tf.gather(num_pieces, word_text)
        lowest = tf.maximum(0, tf.math.floordiv(first_piece - window, stride) + 1)
        highest = tf.minimum(text_windows - 1, first_piece // stride)
        scores, candidates = [], []
        for j in range(max_candidates):
            k = lowest + j
            start = k * stride
            length = tf.minimum(window, text_length - start)
            context = tf.minimum(first_piece - start, start + length - 1 - first_piece)
            score = tf.cast(context, tf.float64) + tf.constant(0.01, tf.float64) * tf.cast(
                length, tf.float64)
            scores.append(tf.where(k <= highest, score, tf.constant(-float("inf"), tf.float64)))
            candidates.append(k)
        scores, candidates = tf.stack(scores, axis=1), tf.stack(candidates, axis=1)
        is_best = tf.equal(scores, tf.reduce_max(scores, axis=1, keepdims=True))
        chosen = tf.reduce_min(tf.where(is_best, candidates, tf.int32.max), axis=1)  # [words]
        position = first_piece - chosen * stride + 1  # + 1 for [CLS]
        word_logits = tf.gather_nd(
            logits, tf.stack([tf.gather(window_offset, word_text) + chosen, position], axis=1))
        probabilities = tf.nn.softmax(word_logits, axis=-1)
        label_id = tf.argmax(word_logits, axis=-1, output_type=tf.int32)
        probability = tf.gather(probabilities, label_id, batch_dims=1)

        # Entities: conlleval's chunk rules (bert_tf.metrics.extract_spans, "conlleval"), which
        # depend only on each word's tag and the previous one (O before the first word).
        prefix = tf.gather(tf.constant(prefix_of, tf.int32), label_id)
        entity = tf.gather(tf.constant(type_of, tf.int32), label_id)
        index_in_text = tf.ragged.range(num_words).flat_values
        is_first = tf.equal(index_in_text, 0)
        is_last = tf.equal(index_in_text, tf.gather(num_words, word_text) - 1)
        outside = tf.constant(_O, tf.int32)
        prev_prefix = tf.where(is_first, outside, tf.roll(prefix, 1, axis=0))
        prev_entity = tf.where(is_first, -1, tf.roll(entity, 1, axis=0))
        next_prefix = tf.where(is_last, outside, tf.roll(prefix, -1, axis=0))
        next_entity = tf.where(is_last, -1, tf.roll(entity, -1, axis=0))

        def one_of(codes, *wanted):
            return tf.reduce_any(tf.stack([tf.equal(codes, w) for w in wanted]), axis=0)

        starts_chunk = one_of(prefix, _B, _S) | (
            one_of(prefix, _I, _E)
            & (one_of(prev_prefix, _E, _S, _O) | tf.not_equal(entity, prev_entity)))
        ends_chunk = one_of(prefix, _E, _S) | (
            one_of(prefix, _B, _I)
            & (one_of(next_prefix, _B, _S, _O) | tf.not_equal(next_entity, entity)))
        word_index = tf.range(tf.size(label_id))
        first_word = tf.ragged.boolean_mask(words.with_flat_values(word_index),
                                            words.with_flat_values(starts_chunk))
        last_word = tf.ragged.boolean_mask(words.with_flat_values(word_index),
                                           words.with_flat_values(ends_chunk))
        entity_start = tf.gather(word_start.flat_values, first_word.flat_values)
        entity_end = tf.gather(word_end.flat_values, last_word.flat_values)
        entity_text = tf.strings.substr(
            tf.gather(text, tf.gather(word_text, first_word.flat_values)),
            entity_start, entity_end - entity_start, unit="UTF8_CHAR")
        entity_type = tf.gather(tf.constant(entity_types or [""]),
                                tf.maximum(tf.gather(entity, first_word.flat_values), 0))

        def per_text(values, like, padding):
            return like.with_flat_values(values).to_tensor(default_value=padding)

        return {
            "words": words.to_tensor(default_value=""),
            "word_start": word_start.to_tensor(default_value=-1),
            "word_end": word_end.to_tensor(default_value=-1),
            "labels": per_text(tf.gather(tf.constant(label_names), label_id), words, ""),
            "label_ids": per_text(label_id, words, -1),
            "probabilities": per_text(probability, words, 0.0),
            "num_words": num_words,
            "entity_type": per_text(entity_type, first_word, ""),
            "entity_text": per_text(entity_text, first_word, ""),
            "entity_start": per_text(entity_start, first_word, -1),
            "entity_end": per_text(entity_end, first_word, -1),
            "num_entities": tf.cast(first_word.row_lengths(), tf.int32),
        }

    return serve


def export_tagger(export_dir: str, model: keras.Model, vocab_file: str, do_lower_case: bool,
                  max_seq_length: int, label_list: Sequence[str]) -> str:
    """Export a `BertTokenClassifier` behind a raw-text `serving_default`; returns the version path.

    Input `text` tf.string [batch]. Each text is split into words (`bert_tf.word_splitting`),
    each word WordPieced (at least one piece), and the pieces cut into windows of
    max_seq_length - 2 with stride half of that; each word is labelled by the argmax of the
    logits at its first piece, in the window where that piece has the most context. Outputs,
    padded per text: `words` string, `word_start`/`word_end` int32 (code points, end exclusive;
    -1), `labels` string, `label_ids` int32 (-1), `probabilities` float32 (of the chosen label;
    0) [batch, max_words]; `num_words` int32 [batch]; the entities of the labels by conlleval's
    rules: `entity_type`, `entity_text` string, `entity_start`/`entity_end` int32 (-1)
    [batch, max_entities]; `num_entities` int32 [batch].

    label_list: the model's label names, index = class id (BIO or BIOES tags).
    """
    label_list = [str(name) for name in label_list]
    if not label_list:
        raise ValueError("label_list is empty")
    _tag_tables(label_list)  # Rejects a label that is not O or B-/I-/E-/S-<type>, before any work.
    num_labels = getattr(model, "num_labels", None)
    if num_labels is not None and num_labels != len(label_list):
        raise ValueError(f"label_list has {len(label_list)} labels but the model predicts "
                         f"{num_labels}")
    if int(max_seq_length) < 3:
        raise ValueError(f"max_seq_length must be at least 3, got {max_seq_length}")
    preprocessor = TextPreprocessor(vocab_file, lower_case=do_lower_case,
                                    seq_length=int(max_seq_length))
    # ExportArchive requires built layers.
    packed = preprocessor([tf.constant(["a"])])
    if not model.built:
        model(packed, training=False)
    serve = tagging_serve_function(model, preprocessor, label_list)
    signature = [tf.TensorSpec([None], tf.string, name="text")]
    return write_serving_model(export_dir, serve, signature, tracked=(model, preprocessor))
