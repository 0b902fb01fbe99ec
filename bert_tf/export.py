"""SavedModel export for every model kind: raw text in, task outputs out, TF Serving's layout.

`export_model` (Python) and `bert-export` / `python -m bert_tf.export` (a checkpoint plus
`--kind`) write `EXPORT_DIR/<version>/` (the next integer after the versions already there; TF
Serving loads the highest). Every kind has the same three signatures:

* `serving_default`: tf.string [batch] inputs `text` (or `text_a` and `text_b` for sentence
  pairs) -> the kind's outputs (see `KINDS` and docs/serving.md);
* `serve_ids`: int32 [batch, seq] `input_ids`, `input_mask`, `segment_ids` -> the same outputs
  computed on the client's own tokenization (token-level for the NER tagger);
* `serve_examples`: tf.string [batch] `examples`, serialized `tf.train.Example`s with a bytes
  feature per text input -> `serving_default`'s outputs.

Inside the graph the strings are tokenized and packed by `bert_tf.preprocessing`
(tensorflow-text ops) exactly as at training time (the original's truncation; empty strings
give `[CLS] [SEP]`), so a SavedModel loads in a process that imports only `tensorflow` and
`tensorflow_text`. The padding is trimmed to the longest text of the request, which changes no
output (every model masks padding) and makes short requests cheap. The vocabulary is an asset
(`assets/vocab.txt`); TF Serving warmup requests for all three signatures go to
`assets.extra/tf_serving_warmup_requests` when `tensorflow-serving-api` is installed (the
`serving` extra). The version directory appears atomically: it is written under a hidden
temporary name inside EXPORT_DIR, flushed to disk and renamed when complete. An existing
EXPORT_DIR keeps everything in it and gets the next version number (nothing is overwritten);
a failed export leaves nothing behind, not even the EXPORT_DIR it created.

One mechanism serves every kind (`ServingFunctions`): a function from packed ids to outputs
(`serve_ids`), and the raw-text function that tokenizes first. The word tagger (run_ner) has
its own raw-text function (`tagging_serve_function`), since its texts become several windows
and its outputs are per word. `predict.py` calls the same functions in process.
"""

import sys

if __name__ == "__main__":  # python -m bert_tf.export: the command, whose --help needs no TensorFlow
    from bert_tf.commands.export_command import run_main

    run_main()
    sys.exit(0)

import dataclasses
import os
import re
import sys
import tempfile
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

from absl import logging
import keras
import tensorflow as tf

from bert_tf import files, metrics, preprocessing, word_splitting
from bert_tf.config import BertConfig

# The model kinds and what `serving_default` returns for each (docs/serving.md has the shapes).
KINDS = {
    "classifier": "probabilities, label, label_id, label_names",
    "regression": "score",
    "ner": "words, word_start, word_end, labels, label_ids, probabilities, num_words, "
           "entity_type, entity_text, entity_start, entity_end, num_entities",
    "pretrainer": "mask_positions, num_masks, top_token_ids, top_tokens, top_probabilities",
    "encoder": "pooled_output, sequence_output, input_mask, sentence_embedding",
}
MASK_TOKEN = "[MASK]"
ID_INPUTS = ("input_ids", "input_mask", "segment_ids")
EXAMPLES_INPUT = "examples"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
WARMUP_TEXTS = ("The capital of France is [MASK].", "")


class TextPreprocessor(keras.layers.Layer):
    """Strings → model inputs: `BertTokenizer` on each text, `BertPacker` on the segments.

    Called with a list of 1 or 2 string tensors [batch]; returns `input_ids`, `input_mask`,
    `segment_ids` int32 [batch, seq_length] with the original's truncation. `special_tokens`
    (e.g. ["[MASK]"]) are kept whole where they appear in the text.
    """

    def __init__(self, vocab, lower_case: bool = True, seq_length: Optional[int] = 128,
                 special_tokens: Sequence[str] = (), **kwargs):
        super().__init__(**kwargs)
        self.tokenizer = preprocessing.BertTokenizer(vocab, lower_case=lower_case,
                                                     special_tokens=special_tokens)
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

    def id_to_token(self):
        """The vocabulary as a list, index = id ("" for ids no token has)."""
        vocabulary = self.tokenizer.vocabulary
        tokens = [""] * (max(vocabulary.values()) + 1)
        for token, index in vocabulary.items():
            tokens[index] = token
        return tokens


def trim_padding(inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Cuts the packed inputs [batch, seq_length] to the longest sequence of the batch (at
    least 2, the length of an empty text, so that an empty batch still has a [CLS] column)."""
    lengths = tf.reduce_sum(tf.cast(inputs["input_mask"], tf.int32), axis=1)
    longest = tf.reduce_max(tf.concat([lengths, [2]], axis=0))
    return {name: value[:, :longest] for name, value in inputs.items()}


# ---------------------------------------------------------------------------------------------
# Per kind: packed ids -> outputs
# ---------------------------------------------------------------------------------------------


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


def fill_mask_function(model: keras.Model, mask_id: int, id_to_token: Sequence[str],
                       top_k: int = 5) -> Callable[[Dict[str, tf.Tensor]], Dict[str, tf.Tensor]]:
    """A `BertPretrainer`'s masked-LM head on every `[MASK]` of each sequence.

    Outputs, padded per text to the batch's most masks M: `mask_positions` int32 [B, M]
    (position in the packed sequence; -1), `num_masks` int32 [B], and for the k most probable
    tokens at each mask, most probable first: `top_token_ids` int32 [B, M, k] (-1),
    `top_tokens` string [B, M, k] (""), `top_probabilities` float32 [B, M, k] (0).
    A [MASK] cut off by truncation gets no prediction.
    """
    if not 1 <= top_k <= len(id_to_token):
        raise ValueError(f"top_k must be between 1 and the vocabulary size {len(id_to_token)}, "
                         f"got {top_k}")
    tokens = tf.constant(list(id_to_token))

    def run(inputs):
        ids = tf.cast(inputs["input_ids"], tf.int32)
        is_mask = tf.equal(ids, mask_id) & tf.not_equal(tf.cast(inputs["input_mask"], tf.int32), 0)
        every_position = tf.broadcast_to(tf.range(tf.shape(ids)[1]), tf.shape(ids))
        positions = tf.ragged.boolean_mask(every_position, is_mask)
        num_masks = tf.cast(positions.row_lengths(), tf.int32)
        padded = positions.to_tensor(default_value=0)  # [B, M]
        valid = tf.sequence_mask(num_masks, tf.shape(padded)[1])
        outputs = model(dict(inputs, masked_lm_positions=padded), training=False)
        probabilities = tf.nn.softmax(tf.cast(outputs["masked_lm_logits"], tf.float32), axis=-1)
        top_probabilities, top_ids = tf.math.top_k(probabilities, k=top_k)
        valid_k = tf.broadcast_to(valid[:, :, tf.newaxis], tf.shape(top_ids))
        return {
            "mask_positions": tf.where(valid, padded, -1),
            "num_masks": num_masks,
            "top_token_ids": tf.where(valid_k, top_ids, -1),
            "top_tokens": tf.where(valid_k, tf.gather(tokens, top_ids), ""),
            "top_probabilities": tf.where(valid_k, top_probabilities, 0.0),
        }

    return run


SENTENCE_POOLINGS = ("cls", "mean")


def encoder_function(model: keras.Model, sentence_pooling: str = "cls", normalize: bool = False
                     ) -> Callable[[Dict[str, tf.Tensor]], Dict[str, tf.Tensor]]:
    """A `BertEncoder`'s outputs plus `sentence_embedding` float32 [B, hidden].

    The embedding is sentence-transformers' definition: "mean" = the mean of `sequence_output`
    over the input mask (sum / max(count, 1e-9)), "cls" = `sequence_output[:, 0]`; then, with
    `normalize`, divided by max(L2 norm, 1e-12). Also returns `pooled_output` [B, hidden],
    `sequence_output` [B, seq, hidden] and `input_mask` int32 [B, seq].
    """
    if sentence_pooling not in SENTENCE_POOLINGS:
        raise ValueError(f"sentence_pooling must be one of {SENTENCE_POOLINGS}, "
                         f"got {sentence_pooling!r}")

    def run(inputs):
        outputs = model(inputs, training=False)
        sequence = tf.cast(outputs["sequence_output"], tf.float32)
        input_mask = tf.cast(inputs["input_mask"], tf.int32)
        if sentence_pooling == "mean":
            weights = tf.cast(input_mask, tf.float32)[:, :, tf.newaxis]
            embedding = (tf.reduce_sum(sequence * weights, axis=1)
                         / tf.maximum(tf.reduce_sum(weights, axis=1), 1e-9))
        else:
            embedding = sequence[:, 0]
        if normalize:
            embedding /= tf.maximum(tf.norm(embedding, axis=-1, keepdims=True), 1e-12)
        return {
            "pooled_output": tf.cast(outputs["pooled_output"], tf.float32),
            "sequence_output": sequence,
            "input_mask": input_mask,
            "sentence_embedding": embedding,
        }

    return run


def token_tagging_function(model: keras.Model, label_names: Sequence[str]
                           ) -> Callable[[Dict[str, tf.Tensor]], Dict[str, tf.Tensor]]:
    """A tagger on the client's tokens: `label_ids` int32, `labels` string and `probabilities`
    float32 (of the chosen label) [B, seq], -1 / "" / 0 at padding positions."""
    table = tf.constant([str(name) for name in label_names])

    def run(inputs):
        logits = tf.cast(model(inputs, training=False)["logits"], tf.float32)
        label_id = tf.argmax(logits, axis=-1, output_type=tf.int32)
        probability = tf.reduce_max(tf.nn.softmax(logits, axis=-1), axis=-1)
        real = tf.not_equal(tf.cast(inputs["input_mask"], tf.int32), 0)
        return {
            "label_ids": tf.where(real, label_id, -1),
            "labels": tf.where(real, tf.gather(table, label_id), ""),
            "probabilities": tf.where(real, probability, 0.0),
        }

    return run


# ---------------------------------------------------------------------------------------------
# The generic mechanism: serving functions -> a versioned SavedModel with three signatures
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ServingFunctions:
    """What an export writes (and `bert_tf.predict` calls in process).

    text_inputs: names of the tf.string [batch] inputs of `serving_default`.
    serve_text: (*text tensors) -> dict of outputs, batch first.
    serve_ids: dict with int32 `input_ids`, `input_mask`, `segment_ids` -> dict of outputs.
    preprocessor: the `TextPreprocessor` (its vocabulary becomes the `vocab.txt` asset); the
      only layer an export tracks, for its vocabulary table. Not the model: the variables the
      functions read are saved with them, and Keras' ExportArchive would store a tracked
      model's variables a second time (an unfrozen export was twice the model's size).
    notes: warnings every answer must carry (a pretrainer whose masked-LM head was not in
      the checkpoint answers at random); `export_checkpoint` refuses to write such a model.
    """

    text_inputs: Tuple[str, ...]
    serve_text: Callable[..., Dict[str, tf.Tensor]]
    serve_ids: Callable[[Dict[str, tf.Tensor]], Dict[str, tf.Tensor]]
    preprocessor: TextPreprocessor
    notes: Tuple[str, ...] = ()
    # The model whose forward `serve_ids` is, when serve_text = serve_ids(packed text) (the
    # packed kinds: classifier, regression, pretrainer, encoder); lets the export freeze it.
    packed_model: Optional[keras.Model] = None

    def serve_examples(self, examples):
        """Serialized tf.train.Examples (a bytes feature per text input) -> `serve_text`."""
        features = {name: tf.io.FixedLenFeature([], tf.string, default_value="")
                    for name in self.text_inputs}
        parsed = tf.io.parse_example(examples, features)
        return self.serve_text(*[parsed[name] for name in self.text_inputs])


def packed_serving_functions(run: Callable[[Dict[str, tf.Tensor]], Dict[str, tf.Tensor]],
                             preprocessor: TextPreprocessor, model: keras.Model,
                             text_inputs: Sequence[str] = ("text",)) -> ServingFunctions:
    """`run(packed ids) -> outputs` behind both the raw-text and the ids signature."""
    text_inputs = tuple(text_inputs)
    if not 1 <= len(text_inputs) <= 2:
        raise ValueError(f"expected one or two text inputs, got {list(text_inputs)}")

    def serve_text(*texts):
        return run(trim_padding(preprocessor(list(texts))))

    _build(preprocessor, model, len(text_inputs))
    return ServingFunctions(text_inputs, serve_text, run, preprocessor, packed_model=model)


# Largest model (float32 parameter bytes) whose served graph is frozen by default. A frozen
# SavedModel holds the weights as constants in saved_model.pb, and TensorFlow copies those
# constants into every function that calls the frozen forward (the three signatures and their
# wrappers), when writing and again when loading: a process serving a frozen export held
# 2.8-3.0 GiB for small (112 MiB of weights) and 9.2-9.8 GiB for base (420 MiB), against 1.0-1.1
# and 1.5-1.6 GiB with variables, and writing one peaked at 4.3 / 13.1 GiB against 1.2 / 1.6
# (benchmarks/export_ab.py freeze). 128 MiB keeps tiny, small and MiniLM-L6 frozen; base and
# larger are frozen only when asked (`freeze=True`, bert-export --freeze=true).
FREEZE_MAX_BYTES = 128 << 20
# protobuf's limit on saved_model.pb, which a frozen export's constants go into.
FREEZE_LIMIT_BYTES = 2 << 30


def _weight_bytes(model) -> int:
    return sum(int(w.shape.num_elements()) * 4 for w in model.weights)


def should_freeze(functions: ServingFunctions) -> bool:
    """Whether `write_serving_model` freezes by default: a packed model of up to
    FREEZE_MAX_BYTES of float32 weights. Frozen ÷ with variables, served raw text, interleaved
    (benchmarks/export_ab.py freeze, 2026-12-01): bfloat16 tiny / small / base took 0.85 / 0.63
    / 0.54 of the time at batch 1 and 0.72 / 0.65 / 0.66 at batch 32 (oneDNN keeps the constant
    bfloat16 weights in its own layout, the per-call casts fold away); float32 0.92 / 0.88 /
    0.91 at batch 1 and 0.96 / 1.03 / 1.02 at batch 32."""
    model = functions.packed_model
    return model is not None and _weight_bytes(model) <= FREEZE_MAX_BYTES


def frozen_serving_functions(functions: ServingFunctions) -> ServingFunctions:
    """`functions` with the model's forward frozen into constants (bert_tf.inference): the
    SavedModel then holds no variables, only the tokenizer's vocabulary table."""
    from bert_tf import inference

    if functions.packed_model is None:
        raise ValueError("only the packed kinds (classifier, regression, pretrainer, encoder) "
                         "can be frozen")
    weight_bytes = _weight_bytes(functions.packed_model)
    if weight_bytes > FREEZE_LIMIT_BYTES:
        raise ValueError(f"the model's {weight_bytes / 2**30:.1f} GiB of weights cannot be frozen: "
                         f"saved_model.pb holds at most {FREEZE_LIMIT_BYTES / 2**30:.0f} GiB; "
                         f"export it with variables")
    frozen = inference.FrozenFunction(functions.serve_ids, _id_signature())
    preprocessor = functions.preprocessor

    def serve_text(*texts):
        return frozen(trim_padding(preprocessor(list(texts))))

    return dataclasses.replace(functions, serve_text=serve_text, serve_ids=frozen)


def _build(preprocessor, model, num_texts):
    """ExportArchive requires built layers: run both once on a tiny batch."""
    from bert_tf import models

    packed = preprocessor([tf.constant(["a"])] * num_texts)
    if isinstance(model, keras.Model) and not model.built:
        if isinstance(model, models.BertPretrainer):
            packed = dict(packed, masked_lm_positions=tf.zeros([1, 1], tf.int32))
        model(packed, training=False)


def next_version(export_dir: str) -> int:
    """1 + the largest integer-named subdirectory of `export_dir` (1 when there is none)."""
    versions = [int(name) for name in (os.listdir(export_dir) if os.path.isdir(export_dir) else [])
                if re.fullmatch(r"\d+", name) and os.path.isdir(os.path.join(export_dir, name))]
    return max(versions, default=0) + 1


def export_text_model(export_dir: str, model: keras.Model, preprocessor: keras.layers.Layer,
                      postprocess: Callable[[Dict[str, tf.Tensor]], Dict[str, tf.Tensor]],
                      input_names: Sequence[str] = ("text_a",), warmup: bool = True) -> str:
    """Write a sequence model (classifier, regression) behind the three signatures; returns the
    version path. `postprocess(model_outputs)` → dict of output tensors, batch first."""
    functions = packed_serving_functions(
        lambda inputs: postprocess(model(inputs, training=False)), preprocessor, model,
        input_names)
    return write_serving_model(export_dir, functions, warmup=warmup)


def _id_signature():
    return {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in ID_INPUTS}


def write_serving_model(export_dir: str, functions: ServingFunctions, warmup: bool = True,
                        freeze: Optional[bool] = None) -> str:
    """Write `functions` as a new version of `export_dir` (the three signatures, the vocab
    asset, warmup requests); returns its path. Written under a temporary name, then renamed.
    `freeze` (None: `should_freeze`): the model's weights as graph constants (faster, above
    all in bfloat16, but a serving process holds several copies of them: FREEZE_MAX_BYTES)."""
    if freeze is None:
        freeze = should_freeze(functions)
        if not freeze and functions.packed_model is not None:
            logging.info("Writing the weights as variables: %.0f MiB is over the %.0f MiB that "
                         "are frozen by default (a frozen export serves faster, above all in "
                         "bfloat16, but a server holds several copies of its constants; "
                         "bert-export --freeze=true)",
                         _weight_bytes(functions.packed_model) / 2**20, FREEZE_MAX_BYTES / 2**20)
    if freeze:
        start = time.time()
        functions = frozen_serving_functions(functions)
        logging.info("Froze the served model's weights into the graph (%.1f s)",
                     time.time() - start)
    archive = keras.export.ExportArchive()
    if isinstance(functions.preprocessor, keras.layers.Layer):
        archive.track(functions.preprocessor)
    text_signature = [tf.TensorSpec([None], tf.string, name=name)
                      for name in functions.text_inputs]
    # serve_examples calls the traced serving_default instead of tracing the tokenizer again.
    serve_text = tf.function(functions.serve_text, input_signature=text_signature,
                             autograph=False)
    archive.add_endpoint("serving_default", serve_text)
    archive.add_endpoint("serve_ids", lambda inputs: functions.serve_ids(inputs),
                         input_signature=[_id_signature()])
    examples_functions = dataclasses.replace(functions, serve_text=serve_text)
    archive.add_endpoint("serve_examples", examples_functions.serve_examples,
                         input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])

    with tempfile.TemporaryDirectory() as vocab_dir, \
            files.staging_directory(export_dir, "export") as staging:
        vocab_file = os.path.join(vocab_dir, "vocab.txt")
        with open(vocab_file, "w", encoding="utf-8") as f:
            f.write("".join(f"{token}\n" for token in functions.preprocessor.id_to_token()))
        # Tracked by the saved object, so saving copies it to assets/ and TF Serving keeps it.
        # Private: guarded by tests/test_private_apis.py.
        archive._tf_trackable.vocab_file = tf.saved_model.Asset(vocab_file)  # pylint: disable=protected-access
        archive.write_out(staging, verbose=False)
        if warmup:
            write_warmup_requests(staging, functions.text_inputs, functions.preprocessor)
        while True:
            final = os.path.join(export_dir, str(next_version(export_dir)))
            try:
                # Fails (ENOTEMPTY/EEXIST) if a concurrent export published this number first.
                return files.publish_directory(staging, final)
            except OSError:
                if not os.path.isdir(final):
                    raise


def write_warmup_requests(saved_model_dir: str, text_inputs: Sequence[str],
                          preprocessor: TextPreprocessor,
                          texts: Sequence[str] = WARMUP_TEXTS) -> Optional[str]:
    """`assets.extra/tf_serving_warmup_requests`: one PredictLog per signature (TF Serving
    replays them at load, so the first real request does not pay for graph initialisation).
    Returns the file, or None (with a log line) when tensorflow-serving-api is not installed."""
    try:
        from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    except ImportError:
        logging.info("tensorflow-serving-api is not installed (pip install bert_tf[serving]): "
                     "no TF Serving warmup requests written to %s", saved_model_dir)
        return None
    texts = [text.encode("utf-8") for text in texts]
    packed = trim_padding(preprocessor([tf.constant(texts)] * len(text_inputs)))
    examples = [tf.train.Example(features=tf.train.Features(feature={
        name: tf.train.Feature(bytes_list=tf.train.BytesList(value=[text]))
        for name in text_inputs})).SerializeToString() for text in texts]
    requests = {
        "serving_default": {name: tf.constant(texts) for name in text_inputs},
        "serve_ids": {name: packed[name] for name in ID_INPUTS},
        "serve_examples": {EXAMPLES_INPUT: tf.constant(examples)},
    }
    path = os.path.join(saved_model_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for signature, inputs in requests.items():
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(signature_name=signature))
            for name, value in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


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
                  max_seq_length: int, label_list: Sequence[str], warmup: bool = True) -> str:
    """Export a `BertTokenClassifier` (see `tagger_serving_functions`); returns the version path."""
    functions = tagger_serving_functions(model, vocab_file, do_lower_case, max_seq_length,
                                         label_list)
    return write_serving_model(export_dir, functions, warmup=warmup)


def tagger_serving_functions(model: keras.Model, vocab_file, do_lower_case: bool,
                             max_seq_length: int, label_list: Sequence[str]) -> ServingFunctions:
    """A `BertTokenClassifier` behind a raw-text `serving_default` and token-level `serve_ids`.

    Input `text` tf.string [batch]. Each text is split into words (`bert_tf.word_splitting`),
    each word WordPieced (at least one piece), and the pieces cut into windows of
    max_seq_length - 2 with stride half of that; each word is labelled by the argmax of the
    logits at its first piece, in the window where that piece has the most context. Outputs,
    padded per text: `words` string, `word_start`/`word_end` int32 (code points, end exclusive;
    -1), `labels` string, `label_ids` int32 (-1), `probabilities` float32 (of the chosen label;
    0) [batch, max_words]; `num_words` int32 [batch]; the entities of the labels by conlleval's
    rules: `entity_type`, `entity_text` string, `entity_start`/`entity_end` int32 (-1)
    [batch, max_entities]; `num_entities` int32 [batch]. `serve_ids`: see
    `token_tagging_function`.

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
    _build(preprocessor, model, 1)
    serve = tagging_serve_function(model, preprocessor, label_list)
    return ServingFunctions(("text",), serve, token_tagging_function(model, label_list),
                            preprocessor)


def serving_functions(model: keras.Model, kind: str, vocab, do_lower_case: bool = True,
                      max_seq_length: int = 128, label_list: Optional[Sequence[str]] = None,
                      pair: bool = False, top_k: int = 5, sentence_pooling: str = "cls",
                      normalize: bool = False) -> ServingFunctions:
    """The serving functions of `model` as a `kind` (one of `KINDS`).

    classifier / regression: a `BertClassifier` (label_list: its label names; pair: inputs
    `text_a`, `text_b` instead of `text`); ner: a `BertTokenClassifier` (label_list: its tags);
    pretrainer: a `BertPretrainer`, top_k tokens per `[MASK]` (kept whole in the text);
    encoder: a `BertEncoder`, sentence_pooling / normalize as its sentence-transformers modules
    declare (`encoder_function`).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if kind == "ner":
        return tagger_serving_functions(model, vocab, do_lower_case, max_seq_length,
                                        label_list or [])
    text_inputs = ("text_a", "text_b") if pair else ("text",)
    special_tokens = (MASK_TOKEN,) if kind == "pretrainer" else ()
    preprocessor = TextPreprocessor(vocab, lower_case=do_lower_case, seq_length=max_seq_length,
                                    special_tokens=special_tokens)
    if kind in ("classifier", "regression"):
        labels = list(label_list or [])
        if kind == "classifier" and not labels:
            raise ValueError("a classifier export needs its label_list")
        postprocess = classification_postprocess(labels, is_regression=kind == "regression")
        run = lambda inputs: postprocess(model(inputs, training=False))
    elif kind == "pretrainer":
        vocabulary = preprocessor.tokenizer.vocabulary
        if MASK_TOKEN not in vocabulary:
            raise ValueError(f"vocabulary {vocab!r} has no {MASK_TOKEN} token")
        run = fill_mask_function(model, vocabulary[MASK_TOKEN], preprocessor.id_to_token(), top_k)
    else:
        run = encoder_function(model, sentence_pooling, normalize)
    return packed_serving_functions(run, preprocessor, model, text_inputs)


def export_model(export_dir: str, model: keras.Model, kind: str, vocab,
                 warmup: bool = True, freeze: Optional[bool] = None, **options) -> str:
    """Export `model` as a `kind` to a new version of `export_dir`; returns the version path.
    `options`: those of `serving_functions` (do_lower_case, max_seq_length, label_list, pair,
    top_k, sentence_pooling, normalize); `freeze`: as `write_serving_model`."""
    return write_serving_model(export_dir, serving_functions(model, kind, vocab, **options),
                               warmup=warmup, freeze=freeze)


# ---------------------------------------------------------------------------------------------
# From a checkpoint: bert-export / python -m bert_tf.export
# ---------------------------------------------------------------------------------------------

# The head each kind cannot do without. A classifier without its head is refused; a
# pretrainer without its MLM head still answers fill-mask queries in process (bert-predict),
# each answer carrying MASKED_LM_HEAD_MISSING, but is never exported.
_REQUIRED_HEADS = {"classifier": "classifier", "regression": "classifier", "ner": "classifier"}
MASKED_LM_HEAD_MISSING = ("warning: the masked-LM head is not in the checkpoint; these "
                          "predictions are random")


@dataclasses.dataclass
class CheckpointSettings:
    """What `load_for_serving` needs besides the checkpoint; None = found beside it."""

    checkpoint: str
    kind: str
    vocab_file: Optional[str] = None
    do_lower_case: Optional[bool] = None
    max_seq_length: Optional[int] = None  # None: 128, or max_position_embeddings if smaller
    label_list: Optional[Sequence[str]] = None
    pair: bool = False
    top_k: int = 5
    classifier_pooling: Optional[str] = None
    sentence_pooling: Optional[str] = None
    normalize: Optional[bool] = None


@dataclasses.dataclass
class ResolvedCheckpoint:
    """`CheckpointSettings` checked, with what was left None found beside the checkpoint."""

    config: BertConfig
    directory: str
    vocab_file: str
    do_lower_case: bool
    max_seq_length: int
    label_list: Sequence[str]
    classifier_pooling: Optional[str]
    sentence_pooling: Optional[str]
    normalize: Optional[bool]


def resolve_checkpoint_settings(settings: CheckpointSettings) -> ResolvedCheckpoint:
    """Checks `settings` against the files beside the checkpoint (no weights are read): a
    ValueError names the flag that is wrong."""
    from bert_tf import checkpoints, classifier, finetuning, models

    kind = settings.kind
    if kind not in KINDS:
        raise ValueError(f"--kind={kind}: expected one of {', '.join(sorted(KINDS))}")
    path = settings.checkpoint
    if not os.path.exists(path) and not os.path.exists(path + ".index"):
        raise ValueError(f"--checkpoint={path}: no such file or directory")
    config = checkpoints.read_config(path)
    directory = checkpoints.checkpoint_directory(path)
    found_vocab, found_case = checkpoints.find_vocab_and_casing(path)
    vocab = settings.vocab_file or found_vocab
    if not vocab:
        raise ValueError(f"--vocab_file is required: no vocab.txt beside --checkpoint={path}")
    if not os.path.isfile(vocab):
        raise ValueError(f"--vocab_file={vocab}: no such file")
    do_lower_case = settings.do_lower_case
    if do_lower_case is None:
        do_lower_case = True if found_case is None else found_case
    max_seq_length = settings.max_seq_length
    if max_seq_length is None:
        max_seq_length = min(128, config.max_position_embeddings)
    if not 3 <= max_seq_length <= config.max_position_embeddings:
        raise ValueError(f"--max_seq_length={max_seq_length}: expected 3 to the checkpoint's "
                         f"max_position_embeddings ({config.max_position_embeddings})")

    labels = list(settings.label_list or [])
    if not labels and kind in ("classifier", "ner"):
        labels = finetuning.read_label_list(directory)
        if labels is None:
            raise ValueError(f"--label_list is required for --kind={kind}: no "
                             f"{finetuning.LABEL_LIST_FILE} beside --checkpoint={path}")
    classifier_pooling = sentence_pooling = normalize = None
    if kind in ("classifier", "regression"):
        classifier_pooling = (settings.classifier_pooling or classifier.recorded_pooling(directory)
                              or "pooler")
        if classifier_pooling not in models.CLASSIFIER_POOLINGS:
            raise ValueError(f"--classifier_pooling={classifier_pooling!r}: expected one of "
                             f"{models.CLASSIFIER_POOLINGS}")
    elif kind == "encoder":
        sentence_pooling = (settings.sentence_pooling or checkpoints.find_sentence_pooling(path)
                            or "cls")
        normalize = settings.normalize
        if normalize is None:
            normalize = checkpoints.find_sentence_normalization(path)
    return ResolvedCheckpoint(config, directory, vocab, do_lower_case, max_seq_length, labels,
                              classifier_pooling, sentence_pooling, normalize)


def load_for_serving(settings: CheckpointSettings) -> ServingFunctions:
    """Builds the model of `settings.kind` from the checkpoint's config, loads its weights and
    returns its serving functions. Every file and setting is checked before the weights load
    (`resolve_checkpoint_settings`)."""
    from bert_tf import checkpoints, models

    resolved = resolve_checkpoint_settings(settings)
    kind, path, config = settings.kind, settings.checkpoint, resolved.config
    vocab, do_lower_case = resolved.vocab_file, resolved.do_lower_case
    max_seq_length, labels = resolved.max_seq_length, resolved.label_list
    options = {}
    if kind in ("classifier", "regression"):
        model = models.BertClassifier(config, num_labels=1 if kind == "regression" else len(labels),
                                      pooling=resolved.classifier_pooling)
        options.update(label_list=labels, pair=settings.pair)
    elif kind == "ner":
        model = models.BertTokenClassifier(config, num_labels=len(labels))
        options.update(label_list=labels)
    elif kind == "pretrainer":
        model = models.BertPretrainer(config)
        options.update(top_k=settings.top_k)
    else:
        model = models.BertEncoder(config)
        options.update(sentence_pooling=resolved.sentence_pooling, normalize=resolved.normalize)
    functions = serving_functions(model, kind, vocab, do_lower_case=do_lower_case,
                                  max_seq_length=max_seq_length, **options)
    report = checkpoints.load_checkpoint(model, path)
    if _REQUIRED_HEADS.get(kind) in report.new_heads:
        raise ValueError(f"--checkpoint={path}: has no weights for the {kind} head "
                         f"(output_weights, output_bias); pass a checkpoint trained for it, or "
                         f"--kind=encoder")
    if kind == "pretrainer" and "masked_lm_head" in report.new_heads:
        functions.notes = (MASKED_LM_HEAD_MISSING,)
    return functions


def export_checkpoint(settings: CheckpointSettings, export_dir: str, warmup: bool = True,
                      freeze: Optional[bool] = None) -> str:
    """`load_for_serving`, then `write_serving_model` (`freeze` as there); returns the version
    path. A pretrainer whose checkpoint has no masked-LM head is refused (it would serve random
    predictions)."""
    functions = load_for_serving(settings)
    if functions.notes:
        raise ValueError(f"--checkpoint={settings.checkpoint}: has no weights for the "
                         f"{settings.kind} head (cls/predictions/*): an export would serve random "
                         f"predictions; pass a checkpoint trained for it, or --kind=encoder")
    return write_serving_model(export_dir, functions, warmup=warmup, freeze=freeze)


def settings_from_arguments(args, checkpoint) -> CheckpointSettings:
    labels = None if args.label_list is None else [
        label.strip() for label in args.label_list.split(",") if label.strip()]
    return CheckpointSettings(
        checkpoint=checkpoint, kind=args.kind, vocab_file=args.vocab_file,
        do_lower_case=args.do_lower_case, max_seq_length=args.max_seq_length, label_list=labels,
        pair=args.pair, top_k=args.top_k, classifier_pooling=args.classifier_pooling,
        sentence_pooling=args.sentence_pooling, normalize=args.normalize)


def main(argv=None):
    """bert-export's command line (bert_tf/commands/export.py); `argv` excludes the program."""
    from bert_tf.commands import export_command

    return export_command.main(argv)


def run_main():
    """The console script of an installation made before bert_tf.commands existed."""
    from bert_tf.commands.export_command import run_main as command

    command()
