"""Raw-text tagger SavedModel: words and code-point offsets equal the Python splitter's, and a fresh
process with only tensorflow + tensorflow_text gets the labels, probabilities and entities of a
plain-Python reference (FullTokenizer per word, the windows rule written out as loops below,
the Keras model, `extract_spans`)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from bert_tf import export
from bert_tf.config import BertConfig
from bert_tf.metrics import extract_spans
from bert_tf.models import BertTokenClassifier
from bert_tf.tokenization import FullTokenizer
from bert_tf.word_splitting import split_words_with_offsets, split_words_with_offsets_in_graph

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "##s",
         "##at", "c", "m", "s", "e", "##te", "##t", "u", "##ber", "paris", "in", "is", ",", ".",
         "!", "東", "京", "北", "(", ")", "-"]
BIO_LABELS = ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]
BIOES_LABELS = ["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "B-PER", "I-PER", "E-PER", "S-PER"]

LONG_TEXT = ("The cats sat on the mat in Paris, the cat is in 東京 (北京) - été über mats! "
             "Cats sat; the mat sat on cats.")
TEXTS = [
    "The cat sat on the mat.",
    LONG_TEXT,
    "",
    "  été\tüber\n\nmat  ",
    "cat \u0301 cat\u200b \u200b mats",  # a lone combining mark, zero-width spaces: [UNK] words
    "東京 is in 北京!!! 🙂🙂 (paris)",
]

LOADER = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the ops the SavedModel uses)
model = tf.saved_model.load(sys.argv[1])
serve = model.signatures["serving_default"]
out = serve(text=tf.constant(json.loads(sys.argv[2])))
assert not any(m.startswith("bert_tf") for m in sys.modules), "the SavedModel needed bert_tf"
print(json.dumps({k: v.numpy().tolist() for k, v in out.items()},
                 default=lambda b: b.decode("utf-8")))
"""


# ---------------------------------------------------------------------------------------------
# Word splitting
# ---------------------------------------------------------------------------------------------


def test_python_splitter_hand_written_examples():
    assert split_words_with_offsets("  Héllo,  wörld!!\t東京x ") == [
        ("Héllo", 2, 7), (",", 7, 8), ("wörld", 10, 15), ("!", 15, 16), ("!", 16, 17),
        ("東", 18, 19), ("京", 19, 20), ("x", 20, 21)]
    # Combining marks stay in their word; emoji are not punctuation; U+3000 separates words;
    # a control character (U+000C) is not whitespace for BERT (cleaning deletes it), so it
    # stays inside its word.
    assert split_words_with_offsets("e\u0301te\u0301 🙂🙂-a\u3000b\x0cc\n") == [
        ("e\u0301te\u0301", 0, 5), ("🙂🙂", 6, 8), ("-", 8, 9), ("a", 9, 10),
        ("b\x0cc", 11, 14)]
    assert split_words_with_offsets("") == []
    assert split_words_with_offsets(" \t\n") == []
    assert split_words_with_offsets("...") == [(".", 0, 1), (".", 1, 2), (".", 2, 3)]


SPLIT_TEXTS = TEXTS + [
    "  Héllo,  wörld!!\t東京x ",
    "e\u0301te\u0301 🙂🙂-a\u3000b\x0cc\n",
    "ÜBER—straße… «quoted» 'x' [a]{b}~`^|\\",
    "\u3000\u00a0 wide\u2028line\u2029para \x85 \ufeffbom",
    "𠀀𠀁 (CJK extension B) ひらがな 한국어",
    " ",
]


def test_graph_splitter_equals_python_splitter():
    words, starts, ends = split_words_with_offsets_in_graph(tf.constant(SPLIT_TEXTS))
    for row, text in enumerate(SPLIT_TEXTS):
        expected = split_words_with_offsets(text)
        for word, start, end in expected:
            assert text[start:end] == word
        got = list(zip([w.decode("utf-8") for w in words[row].numpy()],
                       starts[row].numpy().tolist(), ends[row].numpy().tolist()))
        assert got == expected, text
    assert starts.dtype == tf.int32 and ends.dtype == tf.int32


def test_graph_splitter_empty_batch():
    words, starts, ends = split_words_with_offsets_in_graph(tf.constant([], tf.string))
    assert words.nrows() == 0 and starts.nrows() == 0 and ends.nrows() == 0


# ---------------------------------------------------------------------------------------------
# The Python reference
# ---------------------------------------------------------------------------------------------


def reference_tagging(model, tokenizer, text, max_seq_length, label_names):
    """Labels one text the way export_tagger's contract says, in plain Python loops."""
    words = split_words_with_offsets(text)
    pieces, first_pieces = [], []
    for word, _, _ in words:
        first_pieces.append(len(pieces))
        pieces.extend(tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word) or ["[UNK]"]))
    window = max_seq_length - 2
    stride = max(1, window // 2)
    starts = [0]
    while starts[-1] + window < len(pieces):
        starts.append(starts[-1] + stride)
    spans = [(start, min(start + window, len(pieces)) - start) for start in starts]
    cls_id, sep_id = tokenizer.vocab["[CLS]"], tokenizer.vocab["[SEP]"]
    input_ids, input_mask = [], []
    for start, length in spans:
        ids = [cls_id] + pieces[start:start + length] + [sep_id]
        input_mask.append([1] * len(ids) + [0] * (max_seq_length - len(ids)))
        input_ids.append(ids + [0] * (max_seq_length - len(ids)))
    inputs = {"input_ids": np.array(input_ids, np.int32),
              "input_mask": np.array(input_mask, np.int32),
              "segment_ids": np.zeros((len(spans), max_seq_length), np.int32)}
    logits = model(inputs, training=False)["logits"].numpy().astype(np.float64)

    label_ids, probabilities = [], []
    for piece in first_pieces:
        best, best_score = None, None
        for index, (start, length) in enumerate(spans):  # run_squad's _check_is_max_context
            if not start <= piece < start + length:
                continue
            score = min(piece - start, start + length - 1 - piece) + 0.01 * length
            if best_score is None or score > best_score:
                best, best_score = index, score
        row = logits[best, piece - spans[best][0] + 1]
        softmax = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
        label_ids.append(int(np.argmax(row)))
        probabilities.append(float(softmax[label_ids[-1]]))
    labels = [label_names[i] for i in label_ids]
    entities = [(kind, words[first][1], words[last - 1][2])
                for kind, first, last in extract_spans(labels, mode="conlleval")]
    return {"words": [w for w, _, _ in words], "word_start": [s for _, s, _ in words],
            "word_end": [e for _, _, e in words], "labels": labels, "label_ids": label_ids,
            "probabilities": probabilities,
            "entity_type": [kind for kind, _, _ in entities],
            "entity_text": [text[start:end] for _, start, end in entities],
            "entity_start": [start for _, start, _ in entities],
            "entity_end": [end for _, _, end in entities],
            "num_windows": len(spans)}


def assert_matches_reference(served, references):
    """`served`: the signature's outputs as nested lists (strings decoded)."""
    assert served["num_words"] == [len(r["words"]) for r in references]
    assert served["num_entities"] == [len(r["entity_type"]) for r in references]
    padding = {"words": "", "word_start": -1, "word_end": -1, "labels": "", "label_ids": -1,
               "entity_type": "", "entity_text": "", "entity_start": -1, "entity_end": -1}
    for row, reference in enumerate(references):
        for name, pad in padding.items():
            values = served[name][row]
            count = len(reference[name])
            assert values[:count] == reference[name], (name, row)
            assert all(v == pad for v in values[count:]), (name, row)
        probabilities = served["probabilities"][row]
        count = len(reference["probabilities"])
        np.testing.assert_allclose(probabilities[:count], reference["probabilities"], atol=1e-5)
        assert all(p == 0.0 for p in probabilities[count:])


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return str(path)


def tiny_tagger(num_labels, seed, max_position_embeddings=64):
    keras.utils.set_random_seed(seed)  # the same weights whichever tests ran before
    keras_seed = np.random.default_rng(seed)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=max_position_embeddings)
    model = BertTokenClassifier(config, num_labels=num_labels)
    zeros = np.zeros((1, 4), np.int32)
    model({"input_ids": zeros, "input_mask": zeros + 1, "segment_ids": zeros}, training=False)
    # Untrained logits are all about 0.1 apart; larger ones give varied labels, hence many
    # different tag transitions for the entity decoding.
    kernel = model.classifier.kernel
    kernel.assign(keras_seed.normal(0.0, 2.0, size=kernel.shape).astype(np.float32))
    return model


# ---------------------------------------------------------------------------------------------
# The serve function in process (BIOES) and the exported SavedModel in a fresh process (BIO)
# ---------------------------------------------------------------------------------------------


def as_lists(outputs):
    return {k: [[x.decode("utf-8") for x in row] if v.dtype == tf.string else row
                for row in v.numpy().tolist()] if v.shape.rank == 2 else v.numpy().tolist()
            for k, v in outputs.items()}


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_serve_function_matches_python_reference_bioes(vocab_file, do_lower_case):
    max_seq_length = 8
    model = tiny_tagger(len(BIOES_LABELS), seed=1)
    preprocessor = export.TextPreprocessor(vocab_file, lower_case=do_lower_case,
                                           seq_length=max_seq_length)
    serve = tf.function(export.tagging_serve_function(model, preprocessor, BIOES_LABELS))
    served = as_lists(serve(tf.constant(TEXTS)))
    tokenizer = FullTokenizer(vocab_file, do_lower_case=do_lower_case)
    references = [reference_tagging(model, tokenizer, text, max_seq_length, BIOES_LABELS)
                  for text in TEXTS]
    assert_matches_reference(served, references)
    assert sum(served["num_entities"]) >= 4  # the entity decoding was exercised
    assert {"S-LOC", "E-PER", "B-LOC", "O"} & set(sum(served["labels"], []))


def test_window_choice_uses_the_length_term_of_the_context_score(vocab_file):
    # max_seq_length 254: windows of 252 pieces, stride 126. 392 one-piece words give windows
    # [0, 252), [126, 378), [252, 392). Piece 315 has context 62 in the second and 63 in the
    # third, but 62 + 0.01 * 252 > 63 + 0.01 * 140: the second window wins only through the
    # length term.
    max_seq_length = 254
    text = " ".join(["cat"] * 392)
    model = tiny_tagger(len(BIO_LABELS), seed=2, max_position_embeddings=256)
    preprocessor = export.TextPreprocessor(vocab_file, seq_length=max_seq_length)
    serve = tf.function(export.tagging_serve_function(model, preprocessor, BIO_LABELS))
    served = as_lists(serve(tf.constant([text])))
    reference = reference_tagging(model, FullTokenizer(vocab_file), text, max_seq_length,
                                  BIO_LABELS)
    assert reference["num_windows"] == 3
    assert_matches_reference(served, [reference])


class LabelOfPieceModel:
    """A stand-in tagger whose logits at a position depend only on the piece there: each
    vocabulary entry names the tag it is labelled with, so a text spells a tag sequence."""

    def __init__(self, piece_labels, num_labels):
        table = np.zeros((len(piece_labels), num_labels), np.float32)
        table[np.arange(len(piece_labels)), piece_labels] = 10.0
        self.table = tf.constant(table)

    def __call__(self, inputs, training=False):
        return {"logits": tf.gather(self.table, inputs["input_ids"])}


def test_entities_follow_conlleval_chunk_rules(vocab_file):
    # Every BIOES tag is a word, so random texts give every tag transition, including the
    # ill-formed ones (I- after O, E- of another type, ...).
    tag_of_word = {"the": "O", "cat": "B-LOC", "sat": "I-LOC", "on": "E-LOC", "mat": "S-LOC",
                   "paris": "B-PER", "in": "I-PER", "is": "E-PER", "s": "S-PER"}
    piece_labels = [BIOES_LABELS.index(tag_of_word.get(token, "O")) for token in VOCAB]
    model = LabelOfPieceModel(piece_labels, len(BIOES_LABELS))
    preprocessor = export.TextPreprocessor(vocab_file, seq_length=8)
    serve = tf.function(export.tagging_serve_function(model, preprocessor, BIOES_LABELS))
    rng = np.random.default_rng(0)
    words = sorted(tag_of_word)
    texts = [" ".join(rng.choice(words, size=rng.integers(0, 14))) for _ in range(60)]
    served = as_lists(serve(tf.constant(texts)))
    for row, text in enumerate(texts):
        tags = [tag_of_word[word] for word in text.split()]
        assert served["labels"][row][:len(tags)] == tags
        spans = extract_spans(tags, mode="conlleval")
        offsets = split_words_with_offsets(text)
        expected = [(kind, offsets[first][1], offsets[last - 1][2]) for kind, first, last in spans]
        count = served["num_entities"][row]
        got = list(zip(served["entity_type"][row], served["entity_start"][row],
                       served["entity_end"][row]))[:count]
        assert got == expected, text
        assert served["entity_text"][row][:count] == [text[s:e] for _, s, e in expected]


def test_export_tagger_loads_in_a_fresh_process_and_matches_python(tmp_path, vocab_file):
    max_seq_length = 8  # 6 pieces a window, stride 3: the long text needs many windows.
    model = tiny_tagger(len(BIO_LABELS), seed=0)
    export_dir = str(tmp_path / "export")
    path = export.export_tagger(export_dir, model, vocab_file, True, max_seq_length, BIO_LABELS)
    assert path == os.path.join(export_dir, "1")
    assert os.listdir(export_dir) == ["1"]  # No temporary directory left behind.

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", LOADER, path, json.dumps(TEXTS)], env=env,
                            capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])

    tokenizer = FullTokenizer(vocab_file, do_lower_case=True)
    references = [reference_tagging(model, tokenizer, text, max_seq_length, BIO_LABELS)
                  for text in TEXTS]
    long_reference = references[TEXTS.index(LONG_TEXT)]
    assert long_reference["num_windows"] >= 3
    # Every word of the long text has exactly one label.
    assert served["num_words"][TEXTS.index(LONG_TEXT)] == len(split_words_with_offsets(LONG_TEXT))
    assert served["num_words"][TEXTS.index("")] == 0
    assert_matches_reference(served, references)
    assert sum(served["num_entities"]) >= 2


def test_export_tagger_rejects_bad_arguments_before_writing(tmp_path, vocab_file):
    model = tiny_tagger(len(BIO_LABELS), seed=0)
    export_dir = str(tmp_path / "export")
    with pytest.raises(ValueError, match="label_list\\[1\\]"):
        export.export_tagger(export_dir, model, vocab_file, True, 8, ["O", "LOC", "B-PER", "I-LOC",
                                                                    "I-PER"])
    with pytest.raises(ValueError, match="5"):
        export.export_tagger(export_dir, model, vocab_file, True, 8, ["O", "B-LOC"])
    with pytest.raises(ValueError, match="max_seq_length"):
        export.export_tagger(export_dir, model, vocab_file, True, 2, BIO_LABELS)
    assert not os.path.exists(export_dir)
