"""NER features streamed from a CoNLL file into the on-disk feature cache (memory-mapped).

Expected windows are worked out by hand from the windowing rules (window = max_seq_length - 2
pieces, stride window // 2, each word owned by its max-context window), not from the code.
"""

import os

import numpy as np
import pytest

from bert_tf.data import feature_cache
from bert_tf.data import ner
from bert_tf.tokenization import FullTokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "d", "e", "f", "g", "h",
         "##x", "##y"]
ID = {token: i for i, token in enumerate(VOCAB)}
LABELS = ["O", "B-P", "B-Q", "I-P"]
CONLL = ("-DOCSTART- O\n\n"
         "a B-P\nb O\n\n"                                      # lines 3-4
         "c B-P\ndx I-P\ne O\nfxy O\ng B-Q\n\n"                # lines 6-10: 8 pieces
         "h O\n")                                              # line 12


@pytest.fixture()
def setup(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    data = tmp_path / "train.txt"
    data.write_text(CONLL, encoding="utf-8")
    return str(vocab), FullTokenizer(str(vocab), do_lower_case=True), str(data)


def load(setup, cache, max_seq_length=6, **kwargs):
    vocab, tok, data = setup
    return ner.load_ner_features(data, -1, "BIO", "BIO", tok, LABELS, max_seq_length,
                                 vocab_file=vocab, cache_dir=str(cache), tag="train", **kwargs)


def test_cached_features_are_the_hand_computed_windows(setup, tmp_path, monkeypatch):
    monkeypatch.setattr(ner, "_NER_CHUNK", 2)  # sentence 3 lands in a second chunk
    features = load(setup, tmp_path / "cache")
    assert isinstance(features.token_ids, np.memmap)
    i = ID
    assert features.as_lists() == [
        ([i["[CLS]"], i["a"], i["b"], i["[SEP]"]], [-1, 1, 0, -1]),
        # c d ##x e f ##x ##y g in windows of 4 pieces starting at 0, 2, 4
        ([i["[CLS]"], i["c"], i["d"], i["##x"], i["e"], i["[SEP]"]], [-1, 1, 3, -1, 0, -1]),
        ([i["[CLS]"], i["##x"], i["e"], i["f"], i["##x"], i["[SEP]"]], [-1, -1, 0, 0, -1, -1]),
        ([i["[CLS]"], i["f"], i["##x"], i["##y"], i["g"], i["[SEP]"]], [-1, 0, -1, -1, 2, -1]),
        ([i["[CLS]"], i["h"], i["[SEP]"]], [-1, 0, -1]),
    ]
    assert features.sentence_index.tolist() == [0, 1, 1, 1, 2]
    assert features.window_start.tolist() == [0, 0, 2, 4, 0]
    # c, dx owned by window 0; e (context 1 vs 0) and fxy (1 vs 0) by window 1; g by window 2
    assert features.owned_lengths.tolist() == [2, 2, 2, 1, 1]
    assert features.owned_word_index.tolist() == [0, 1, 0, 1, 2, 3, 4, 0]
    assert features.owned_positions.tolist() == [1, 2, 1, 2, 2, 3, 4, 1]
    assert features.words_per_sentence.tolist() == [2, 5, 1]
    assert (features.num_split_sentences, features.max_seq_length, features.stride) == (1, 6, 2)
    # Gold ids as "predictions" come back per word, each word once.
    gold = [np.asarray(labels) for _, labels in features.as_lists()]
    assert ner.word_predictions(features, gold) == [[1, 0], [1, 3, 0, 0, 2], [0]]
    # The same arrays as the in-memory conversion of the whole file at once.
    vocab, tok, data = setup
    memory = ner.convert_sentences_to_features(ner.read_conll(data), tok, LABELS, 6)
    for name in ner._NER_ARRAYS:
        assert getattr(features, name).tolist() == getattr(memory, name).tolist(), name


def test_cache_is_reused_and_follows_vocab_length_and_content(setup, tmp_path, monkeypatch):
    vocab, _, data = setup
    cache = tmp_path / "cache"
    first = load(setup, cache)
    calls = []
    real = ner.convert_sentences_to_features
    monkeypatch.setattr(ner, "convert_sentences_to_features",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    again = load(setup, cache)
    assert calls == [] and again.as_lists() == first.as_lists() and len(os.listdir(cache)) == 1
    assert load(setup, cache, max_seq_length=8).num_windows == 4  # 8 pieces -> 2 windows
    assert len(os.listdir(cache)) == 2
    with open(vocab, "a", encoding="utf-8") as f:
        f.write("zebra\n")
    load(setup, cache)
    assert len(os.listdir(cache)) == 3
    with open(data, "a", encoding="utf-8") as f:
        f.write("\nb O\n")
    assert load(setup, cache).num_sentences == 4 and len(os.listdir(cache)) == 4
    assert len(calls) == 3


def test_an_interrupted_write_leaves_no_cache_and_a_damaged_one_is_rebuilt(setup, tmp_path,
                                                                            monkeypatch):
    _, tok, data = setup
    monkeypatch.setattr(ner, "_NER_CHUNK", 1)

    def interrupted():
        yield from ner.read_conll(data)[:2]  # two chunks written, then the run is stopped
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ner.write_ner_features(interrupted(), str(tmp_path / "c2" / "train-x"), tok, LABELS, 6)
    assert os.listdir(tmp_path / "c2") == []

    cache = tmp_path / "cache"
    expected = load(setup, cache).as_lists()
    (directory,) = cache.iterdir()
    with open(directory / "owned_positions.bin", "r+b") as f:
        f.truncate(4)
    with pytest.raises(feature_cache.DataFormatError, match="owned_positions.bin: expected 32"):
        ner.open_ner_features(str(directory))
    rebuilt = load(setup, cache)
    assert rebuilt.as_lists() == expected and rebuilt.owned_positions.tolist()[-1] == 1


def test_iter_conll_yields_sentences_before_a_later_error(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("a O\n\nb X-Y\n", encoding="utf-8")
    sentences = ner.iter_conll(str(path))
    assert next(sentences).words == ["a"]
    with pytest.raises(ner.DataFormatError, match=r"bad.txt:3: tag 'X-Y'"):
        next(sentences)
