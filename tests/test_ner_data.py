"""CoNLL reading, tag schemes, windowed features, tf.data and prediction output for NER.

Expected values are written by hand from the rules (CoNLL layout, the scheme definitions,
original BERT run_squad's `_check_is_max_context`), never taken from the code's own output.
"""

import logging
import random

import numpy as np
import pytest

from bert_tf.data import ner
from bert_tf.data.classification import DataFormatError
from bert_tf.tokenization import FullTokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "d", "e", "f", "g", "h",
         "##x", "##y"]
ID = {token: i for i, token in enumerate(VOCAB)}
CLS, SEP, UNK = ID["[CLS]"], ID["[SEP]"], ID["[UNK]"]


@pytest.fixture()
def tokenizer(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return FullTokenizer(str(vocab), do_lower_case=True)


def write_bytes(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return str(path)


def sentence(words, tags):
    return ner.NerSentence(list(words), list(tags), "mem:1", list(range(1, len(words) + 1)))


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def test_read_conll_docstart_tag_column_crlf_and_missing_final_blank_line(tmp_path):
    text = ("-DOCSTART- -X- -X- O\r\n"        # 1
            "\r\n"                            # 2
            "EU NNP B-NP B-ORG\r\n"           # 3
            "rejects\tVBZ\tB-VP\tO\r\n"       # 4  tabs separate columns too
            "\r\n"                            # 5
            "\r\n"                            # 6  two blank lines: still one boundary
            "-DOCSTART- -X- -X- O\r\n"        # 7
            "\r\n"                            # 8
            "Peter NNP B-NP B-PER\r\n"        # 9
            "Black\u00a0burn NNP I-NP I-PER")  # 10 no final newline; no-break space in a token
    path = write_bytes(tmp_path, "train.txt", text)
    sentences = ner.read_conll(path)
    assert [(s.words, s.tags) for s in sentences] == [
        (["EU", "rejects"], ["B-ORG", "O"]),
        (["Peter", "Black\u00a0burn"], ["B-PER", "I-PER"])]
    assert [s.source for s in sentences] == [f"{path}:3", f"{path}:9"]
    assert [s.line_numbers for s in sentences] == [[3, 4], [9, 10]]
    # The chunk column (index 2, or -2 from the end) is a valid BIO tag column as well.
    chunks = [s.tags for s in ner.read_conll(path, tag_column=2)]
    assert chunks == [["B-NP", "B-VP"], ["B-NP", "I-NP"]]
    assert [s.tags for s in ner.read_conll(path, tag_column=-2)] == chunks
    with pytest.raises(ValueError, match="token column"):
        ner.read_conll(path, tag_column=0)


def test_read_conll_two_columns_bom_and_final_blank_line(tmp_path):
    path = write_bytes(tmp_path, "a.txt", "\ufeffJohn B-PER\nran O\n\n")
    [only] = ner.read_conll(path)
    assert (only.words, only.tags, only.line_numbers) == (["John", "ran"], ["B-PER", "O"], [1, 2])


@pytest.mark.parametrize("name, data, line, message", [
    ("notag.txt", "EU B-ORG\nrejects\n", 2, "1 column"),
    ("latin1.txt", b"a O\nb O\n\n\xe9t\xe9 O\n", 4, "byte 1 .* is not UTF-8"),
    ("empty.txt", "", 1, "the file is empty"),
    ("blank.txt", "\n \n\t\n", 1, "the file is empty"),
    ("docstart.txt", "-DOCSTART- -X- O\n\n", 2, "no sentence"),
    ("nul.txt", b"a O\nb\x00 O\n", 2, "NUL byte"),
    ("badtag.txt", "a O\nb PER\n", 2, "tag 'PER' is not a NER tag"),
    ("badprefix.txt", "a X-PER\n", 1, "tag 'X-PER' is not a NER tag"),
    ("notype.txt", "a O\n\nb B-\n", 3, "tag 'B-' is not a NER tag"),
])
def test_read_conll_bad_input_names_file_and_line(tmp_path, name, data, line, message):
    path = write_bytes(tmp_path, name, data)
    with pytest.raises(DataFormatError, match=f"^{path}:{line}: {message}") as caught:
        ner.read_conll(path)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_too_few_columns_for_a_selected_tag_column(tmp_path):
    path = write_bytes(tmp_path, "x.txt", "EU NNP B-NP B-ORG\nrejects VBZ O\n")
    assert ner.read_conll(path, tag_column=2)[0].tags == ["B-NP", "O"]
    with pytest.raises(DataFormatError, match=f"^{path}:2: 3 column.*expected at least 4"):
        ner.read_conll(path, tag_column=3)
    # -4 on a 4-column line would be the token itself: 5 columns are needed.
    with pytest.raises(DataFormatError, match=f"^{path}:1: 4 column.*expected at least 5"):
        ner.read_conll(path, tag_column=-4)


# ---------------------------------------------------------------------------------------------
# Tag schemes
# ---------------------------------------------------------------------------------------------


def test_detect_scheme_on_tag_lists():
    assert ner.detect_scheme([["B-PER", "I-PER", "O", "B-LOC"]]) == "BIO"
    assert ner.detect_scheme([["O", "O"], ["O"]]) == "BIO"  # No chunk: the rule's default.
    # I- opening a chunk at the start, after O, or after another type -> IOB1.
    assert ner.detect_scheme([["O"], ["I-PER", "I-PER", "B-PER"]]) == "IOB1"
    assert ner.detect_scheme([["O", "I-LOC"]]) == "IOB1"
    assert ner.detect_scheme([["I-PER", "I-LOC"]]) == "IOB1"
    assert ner.detect_scheme([["B-PER", "I-PER", "E-PER", "S-LOC", "O"]]) == "BIOES"
    with pytest.raises(DataFormatError, match="^dev: sequence 2, tag 1: tag 'PER'"):
        ner.detect_scheme([["O"], ["PER"]], "dev")


def write_tags(tmp_path, name, tags):
    """One token per tag; "" makes a blank line (a sentence boundary)."""
    lines = [f"w{i} {tag}" if tag else "" for i, tag in enumerate(tags)]
    return write_bytes(tmp_path, name, "\n".join(lines) + "\n")


@pytest.mark.parametrize("tags, line, message", [
    # S-/E- make the file BIOES; the I-LOC on line 4 opens a chunk, which BIOES never does.
    (["S-PER", "O", "", "I-LOC", "E-LOC"], 4, "'I-LOC' opens a chunk, but the file is BIOES"),
    # A BIOES B- closed by O instead of E-: the B- line is named.
    (["B-PER", "E-PER", "", "B-LOC", "O"], 4, "the chunk 'B-LOC' is not closed by E-LOC"),
    # ... or by the end of the sentence.
    (["S-PER", "B-LOC", "I-LOC"], 2, "the chunk 'B-LOC' is not closed by E-LOC before"),
    # E- without B-.
    (["O", "E-PER"], 2, "'E-PER' opens a chunk, but the file is BIOES"),
    # IOB1 (I-PER opens a chunk on line 1) mixed with a BIO-style B-LOC after O on line 3.
    (["I-PER", "O", "B-LOC"], 3, "'B-LOC' opens a chunk after 'O', but the file is IOB1"),
    (["O", "", "B-LOC", "", "I-ORG"], 3, "'B-LOC' opens a chunk at the sentence start"),
    # Two B- openings against one I- opening: BIO, and a third of the chunks is no slip.
    (["B-PER", "O", "B-LOC", "O", "I-ORG"], 5,
     "'I-ORG' opens a chunk after 'O', but the file is BIO"),
])
def test_mixed_schemes_name_file_and_line(tmp_path, tags, line, message):
    path = write_tags(tmp_path, "mixed.txt", tags)
    with pytest.raises(DataFormatError, match=f"^{path}:{line}: {message}"):
        ner.detect_scheme(ner.read_conll(path), path)
    with pytest.raises(DataFormatError, match=f"^{path}:{line}: "):
        ner.load_ner_file(path)


def test_a_few_annotation_slips_do_not_make_a_file_mixed(tmp_path, caplog):
    # 25 BIO chunks and one I-LOC opening a chunk (1 of 26 openings, under 5%), as in
    # CoNLL-2003's BIO release: BIO, with the slip logged and read as a chunk start.
    tags = ["B-PER", "I-PER", ""] * 25 + ["O", "I-LOC"]
    path = write_tags(tmp_path, "slips.txt", tags)
    with caplog.at_level(logging.WARNING):
        loaded = ner.load_ner_file(path)
    assert (loaded.scheme, loaded.model_scheme) == ("BIO", "BIO")
    assert f"1 of 26 chunks open as the BIO scheme does not (first: 'I-LOC' after 'O' at " \
           f"{path}:77)" in caplog.text
    # The same the other way round: IOB1 with one stray B- after O.
    assert ner.detect_scheme([["I-PER"]] * 25 + [["O", "B-LOC"]]) == "IOB1"
    with pytest.raises(DataFormatError, match="^<tags>: sequence 3, tag 2: 'B-LOC'"):
        ner.detect_scheme([["I-PER"]] * 2 + [["O", "B-LOC"]])


def test_conversions_round_trip_iob1_bio_bioes():
    cases = [
        # IOB1 (hand-written)                      BIO                        BIOES
        (["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "B-ORG", "O"],
         ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG", "B-ORG", "O"],
         ["B-PER", "E-PER", "S-PER", "O", "S-LOC", "S-ORG", "S-ORG", "O"]),
        (["I-MISC", "I-MISC", "I-MISC"], ["B-MISC", "I-MISC", "I-MISC"],
         ["B-MISC", "I-MISC", "E-MISC"]),
        (["O", "O"], ["O", "O"], ["O", "O"]),
        (["I-A", "B-A", "B-A", "I-B", "I-A"], ["B-A", "B-A", "B-A", "B-B", "B-A"],
         ["S-A", "S-A", "S-A", "S-B", "S-A"]),
    ]
    for iob1, bio, bioes in cases:
        assert ner.detect_scheme([iob1]) in ("IOB1", "BIO")  # All-O is "BIO".
        assert ner.convert_tags(iob1, "IOB1", "BIO") == bio
        assert ner.convert_tags(bio, "BIO", "BIOES") == bioes
        assert ner.convert_tags(bioes, "BIOES", "IOB1") == iob1
        assert ner.convert_tags(bioes, "BIOES", "BIO") == bio
        assert ner.convert_tags(bio, "BIO", "IOB1") == iob1
        assert ner.convert_tags(iob1, "IOB1", "BIOES") == bioes
        assert ner.convert_tags(bio, "BIO", "BIO") == bio
    # An ill-formed BIOES prediction converts to the chunks conlleval reads in it: B-PER
    # closed by O is PER(0); I-LOC after O opens LOC(2-3); E-LOC after E- opens a new one.
    assert ner.convert_tags(["B-PER", "O", "I-LOC", "E-LOC", "E-LOC"], "BIOES", "BIO") == [
        "B-PER", "O", "B-LOC", "I-LOC", "B-LOC"]
    with pytest.raises(ValueError, match="'E-PER' cannot occur in BIO tags"):
        ner.convert_tags(["B-PER", "E-PER"], "BIO", "BIOES")
    with pytest.raises(ValueError, match="target_scheme must be one of"):
        ner.convert_tags(["O"], "BIO", "IOB2")


def test_load_ner_file_model_scheme_labels_and_back_conversion(tmp_path):
    train = ner.load_ner_file(write_tags(tmp_path, "train.txt",
                                         ["I-PER", "I-PER", "B-PER", "O", "", "I-LOC"]))
    assert (train.scheme, train.model_scheme) == ("IOB1", "BIO")
    assert [s.tags for s in train.sentences] == [["I-PER", "I-PER", "B-PER", "O"], ["I-LOC"]]
    assert [s.tags for s in train.model_sentences] == [["B-PER", "I-PER", "B-PER", "O"], ["B-LOC"]]
    assert train.model_sentences[1].line_numbers == [6]
    labels = ner.label_list_from(train.model_sentences)
    assert labels == ["O", "B-LOC", "B-PER", "I-PER"]
    assert train.to_file_scheme([["B-PER", "I-PER", "B-PER", "O"], ["B-LOC"]]) == [
        s.tags for s in train.sentences]

    # A BIOES dev file for the BIO model: converted on load, predictions written back as BIOES.
    dev = ner.load_ner_file(write_tags(tmp_path, "dev.txt", ["S-PER", "B-PER", "E-PER"]),
                            model_scheme=train.model_scheme)
    assert (dev.scheme, dev.model_scheme) == ("BIOES", "BIO")
    assert dev.model_sentences[0].tags == ["B-PER", "B-PER", "I-PER"]
    ner.check_labels(dev.model_sentences, labels)
    assert dev.to_file_scheme([["B-PER", "O", "B-LOC"]]) == [["S-PER", "O", "S-LOC"]]

    # A test file whose tag column is all O is taken to be in the model's scheme.
    test = ner.load_ner_file(write_tags(tmp_path, "test.txt", ["O", "O"]), model_scheme="BIOES")
    assert test.scheme == "BIOES"
    bioes_train = ner.load_ner_file(write_tags(tmp_path, "t2.txt", ["S-PER", "O"]))
    assert (bioes_train.scheme, bioes_train.model_scheme) == ("BIOES", "BIOES")
    assert ner.model_scheme_of_labels(["O", "B-PER", "E-PER", "S-PER"]) == "BIOES"
    assert ner.model_scheme_of_labels(labels) == "BIO"


def test_unknown_tag_in_dev_names_file_line_and_labels(tmp_path, tokenizer):
    train = ner.load_ner_file(write_tags(tmp_path, "train.txt", ["B-PER", "O"]))
    labels = ner.label_list_from(train.model_sentences)
    path = write_tags(tmp_path, "dev.txt", ["O", "", "B-PER", "B-LOC"])
    dev = ner.load_ner_file(path, model_scheme="BIO")
    expected = f"^{path}:4: tag 'B-LOC' is not one of the training labels \\['O', 'B-PER'\\]"
    with pytest.raises(DataFormatError, match=expected):
        ner.check_labels(dev.model_sentences, labels)
    with pytest.raises(DataFormatError, match=expected):
        ner.convert_sentences_to_features(dev.model_sentences, tokenizer, labels, 8)


# ---------------------------------------------------------------------------------------------
# Windows
# ---------------------------------------------------------------------------------------------


def run_squad_max_context(position, starts, lengths):
    """Original BERT run_squad `_check_is_max_context`'s loop, in floats, as written there."""
    best_score, best_index = None, None
    for index, (start, length) in enumerate(zip(starts, lengths)):
        end = start + length - 1
        if position < start or position > end:
            continue
        score = min(position - start, end - position) + 0.01 * length
        if best_score is None or score > best_score:
            best_score, best_index = score, index
    return best_index


def test_windows_of_a_long_sentence_by_hand(tokenizer):
    # Pieces: a | b ##x | c | d ##x ##x | e | f  -> P = 9; first pieces 0, 1, 3, 4, 7, 8.
    words = ["a", "bx", "c", "dxx", "e", "f"]
    tags = ["B-PER", "I-PER", "O", "B-LOC", "O", "B-PER"]
    labels = ["O", "B-LOC", "B-PER", "I-PER"]
    features = ner.convert_sentences_to_features([sentence(words, tags)], tokenizer, labels,
                                                 max_seq_length=6)
    # W = 4, stride 2: starts 0, 2, 4, 6 (6 + 4 >= 9 stops); lengths 4, 4, 4, 3.
    assert features.stride == 2
    assert features.window_start.tolist() == [0, 2, 4, 6]
    assert features.row_lengths.tolist() == [6, 6, 6, 5]
    assert features.num_windows == 4 and features.num_split_sentences == 1
    a, b, c, d, e, f, x = (ID[t] for t in ["a", "b", "c", "d", "e", "f", "##x"])
    B_PER, I_PER, B_LOC, O = 2, 3, 1, 0
    assert features.as_lists() == [
        ([CLS, a, b, x, c, SEP], [-1, B_PER, I_PER, -1, O, -1]),      # pieces 0-3
        ([CLS, x, c, d, x, SEP], [-1, -1, O, B_LOC, -1, -1]),          # pieces 2-5
        ([CLS, d, x, x, e, SEP], [-1, B_LOC, -1, -1, O, -1]),          # pieces 4-7
        ([CLS, x, e, f, SEP], [-1, -1, O, B_PER, -1]),                 # pieces 6-8
    ]
    # Max context (score = min(left, right) + 0.01·length):
    #   piece 0: only window 0 -> 0; piece 1: only window 0 -> 0;
    #   piece 3 (c): w0 min(3, 0) + .04 = .04, w1 min(1, 2) + .04 = 1.04 -> window 1;
    #   piece 4 (d): w1 min(2, 1) + .04 = 1.04, w2 min(0, 3) + .04 = .04 -> window 1;
    #   piece 7 (e): w2 min(3, 0) + .04 = .04, w3 min(1, 1) + .03 = 1.03 -> window 3;
    #   piece 8 (f): only window 3. Window 2 predicts no word at all.
    assert features.owned_lengths.tolist() == [2, 2, 0, 2]
    assert features.owned_word_index.tolist() == [0, 1, 2, 3, 4, 5]
    # Positions in the window ([CLS] = 0): piece - start + 1.
    assert features.owned_positions.tolist() == [1, 2, 2, 3, 2, 3]
    for piece in (0, 1, 3, 4, 7, 8):
        assert run_squad_max_context(piece, [0, 2, 4, 6], [4, 4, 4, 3]) == \
            ner.max_context_windows([piece], [0, 2, 4, 6], [4, 4, 4, 3])[0]
    # Every window's own label ids used as its "prediction" (window w predicts label w)
    # shows which window each word came from.
    per_window = [np.full(n, w) for w, n in enumerate(features.row_lengths)]
    assert ner.word_predictions(features, per_window) == [[0, 0, 1, 1, 3, 3]]


def test_max_context_ties_go_to_the_earlier_window():
    # Stride 1, W = 4, P = 5: windows [0, 4) and [1, 5). Piece 2: min(2, 1) + .04 and
    # min(1, 2) + .04 tie -> window 0.
    assert ner.window_starts(5, 4, 1) == [0, 1]
    assert ner.max_context_windows([2], [0, 1], [4, 4]).tolist() == [0]
    assert run_squad_max_context(2, [0, 1], [4, 4]) == 0
    # Lengths 110 and 10 (max_seq_length 112, stride 106, P = 116): piece 108 scores
    # min(108, 1) + 1.1 = 2.1 in window 0 and min(2, 7) + 0.1 = 2.1 in window 1, equal in
    # float64 too -> window 0.
    assert ner.window_starts(116, 110, 106) == [0, 106]
    assert ner.max_context_windows([108], [0, 106], [110, 10]).tolist() == [0]
    assert run_squad_max_context(108, [0, 106], [110, 10]) == 0
    # Lengths 118 and 18 (max_seq_length 120, stride 114, P = 132): piece 116 scores
    # min(116, 1) + 1.18 and min(2, 15) + 0.18, 2.18 both in exact arithmetic, but in float64
    # (run_squad's Python) 2.1799999999999997 < 2.18: the original picks window 1, and so must
    # bert_tf, or the exported tagger and run_ner would disagree with it.
    assert ner.window_starts(132, 118, 114) == [0, 114]
    assert 1 + 0.01 * 118 < 2 + 0.01 * 18
    assert run_squad_max_context(116, [0, 114], [118, 18]) == 1
    assert ner.max_context_windows([116], [0, 114], [118, 18]).tolist() == [1]


def test_max_context_matches_run_squad_on_long_windows():
    # Windows long enough (up to 510 pieces) for lengths to differ by 100 or more, where float
    # rounding decides some ties: every piece's window must still be run_squad's.
    rng = random.Random(99)
    for _ in range(40):
        window = rng.randint(100, 510)
        stride = rng.randint(1, window)
        num_pieces = rng.randint(1, 3 * window)
        starts = ner.window_starts(num_pieces, window, stride)
        lengths = [min(window, num_pieces - start) for start in starts]
        chosen = ner.max_context_windows(range(num_pieces), starts, lengths).tolist()
        assert chosen == [run_squad_max_context(p, starts, lengths) for p in range(num_pieces)]


def test_words_without_pieces_become_unk_and_short_sentences_use_one_window(tokenizer):
    # "\x07" is a control character the tokenizer drops: no piece, so one [UNK].
    # "zzz" is out of the vocabulary: WordPiece's own [UNK].
    features = ner.convert_sentences_to_features(
        [sentence(["a", "\x07", "zzz"], ["O", "B-X", "O"])], tokenizer, ["O", "B-X"], 16)
    assert features.as_lists() == [([CLS, ID["a"], UNK, UNK, SEP], [-1, 0, 1, 0, -1])]
    assert features.num_split_sentences == 0
    assert ner.word_predictions(features, [np.array([9, 0, 1, 0, 9])]) == [[0, 1, 0]]
    with pytest.raises(ValueError, match="stride must be between 1 and"):
        ner.convert_sentences_to_features([sentence(["a"], ["O"])], tokenizer, ["O"], 6, stride=5)


def test_random_sentences_every_word_predicted_once_from_its_max_context_window(tokenizer):
    rng = random.Random(1234)
    word_pool = ["a", "bx", "cxy", "d", "ex", "fyxy", "g", "h", "\x07"]
    piece_count = {"a": 1, "bx": 2, "cxy": 3, "d": 1, "ex": 2, "fyxy": 4, "g": 1, "h": 1, "\x07": 1}
    labels = ["O", "B-A", "I-A", "B-B"]
    for trial in range(60):
        max_seq_length = rng.randint(3, 12)
        window = max_seq_length - 2
        stride = rng.choice([None, rng.randint(1, window)])
        sentences = []
        for _ in range(rng.randint(1, 4)):
            n = rng.randint(1, 15)
            sentences.append(sentence([rng.choice(word_pool) for _ in range(n)],
                                      [rng.choice(labels) for _ in range(n)]))
        features = ner.convert_sentences_to_features(sentences, tokenizer, labels, max_seq_length,
                                                     stride)
        assert features.row_lengths.max() <= max_seq_length
        step = max(1, window // 2) if stride is None else stride
        label_ids = np.split(features.label_ids, np.cumsum(features.row_lengths)[:-1])
        # Gold ids as one-hot "logits" (padding rows of zeros beyond the window, never read).
        one_hot = []
        for ids in label_ids:
            logits = np.zeros((len(ids) + 3, len(labels)))
            logits[np.flatnonzero(ids >= 0), ids[ids >= 0]] = 1
            one_hot.append(logits)
        gold = [[labels.index(t) for t in s.tags] for s in sentences]
        assert ner.word_predictions(features, one_hot) == gold, trial
        order = np.random.RandomState(trial).permutation(features.num_windows)
        assert ner.word_predictions(features, [one_hot[w] for w in order], order=order) == gold

        owners = [np.full(n, w) for w, n in enumerate(features.row_lengths)]
        chosen = ner.word_predictions(features, owners)
        first_window = 0
        for s, snt in enumerate(sentences):
            firsts = np.cumsum([0] + [piece_count[w] for w in snt.words])[:-1]
            num_pieces = sum(piece_count[w] for w in snt.words)
            starts = [0]
            while starts[-1] + window < num_pieces:
                starts.append(starts[-1] + step)
            lengths = [min(window, num_pieces - st) for st in starts]
            windows = list(range(first_window, first_window + len(starts)))
            assert features.window_start[windows].tolist() == starts
            assert len(chosen[s]) == len(snt.words)
            for word, piece in enumerate(firsts):
                expected = run_squad_max_context(piece, starts, lengths)
                assert chosen[s][word] == first_window + expected, (trial, s, word)
                # In training, every window that holds the first piece labels it.
                for w, (st, ln) in enumerate(zip(starts, lengths)):
                    if st <= piece < st + ln:
                        assert label_ids[first_window + w][piece - st + 1] == gold[s][word]
            # Labels sit only on first pieces: as many labelled positions as word-window pairs.
            labelled = sum(int((label_ids[w] >= 0).sum()) for w in windows)
            assert labelled == sum(st <= p < st + ln for p in firsts
                                   for st, ln in zip(starts, lengths))
            first_window += len(starts)
        assert first_window == features.num_windows


# ---------------------------------------------------------------------------------------------
# tf.data
# ---------------------------------------------------------------------------------------------


def test_ner_dataset_shapes_padding_order_and_seed(tokenizer):
    sentences = [sentence(["a"] * n, ["B-A"] + ["I-A"] * (n - 1)) for n in (1, 7, 3, 12, 2)]
    labels = ["O", "B-A", "I-A"]
    features = ner.convert_sentences_to_features(sentences, tokenizer, labels, max_seq_length=10)
    # W = 8: lengths 1, 7, 3 and 2 fit one window; 12 pieces -> starts 0, 4 (4 + 8 >= 12),
    # windows of 8 and 8 pieces. Rows: 3, 9, 5, 10, 10, 4.
    assert features.row_lengths.tolist() == [3, 9, 5, 10, 10, 4]
    order = ner.length_sorted_order(features)
    assert order.tolist() == [0, 5, 2, 1, 3, 4]
    batches = list(ner.ner_dataset(features, 2, is_training=False, order=order,
                                   pad_to_multiple_of=4).as_numpy_iterator())
    # Batches [3, 4] -> 4; [5, 9] -> 9 -> 12; [10, 10] -> 12.
    assert [b["input_ids"].shape for b in batches] == [(2, 4), (2, 12), (2, 12)]
    for batch in batches:
        assert set(batch) == {"input_ids", "input_mask", "segment_ids", "label_ids"}
        assert all(v.dtype == np.int32 for v in batch.values())
        assert batch["segment_ids"].sum() == 0
    first = batches[0]  # Windows 0 ([CLS] a [SEP]) and 5 ([CLS] a a [SEP]).
    assert first["input_ids"].tolist() == [[CLS, ID["a"], SEP, 0], [CLS, ID["a"], ID["a"], SEP]]
    assert first["input_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert first["label_ids"].tolist() == [[-1, 1, -1, -1], [-1, 1, 2, -1]]
    assert (batches[1]["label_ids"][0, 5:] == -1).all()  # Window 2 (5 tokens) padded with -1.
    # The caller unbatches in `order` and gets the gold back word by word.
    rows = [row for batch in batches for row in batch["label_ids"]]
    gold = [[labels.index(t) for t in s.tags] for s in sentences]
    assert ner.word_predictions(features, rows, order=order) == gold

    def first_batches(seed):
        dataset = ner.ner_dataset(features, 4, is_training=True, seed=seed)
        return [b["input_ids"].tolist() for b in dataset.take(5).as_numpy_iterator()]

    class SecondOfTwoPipelines:  # What distribute_datasets_from_function passes.
        num_input_pipelines, input_pipeline_id = 2, 1

        @staticmethod
        def get_per_replica_batch_size(global_batch_size):
            return global_batch_size // 2

    sharded = list(ner.ner_dataset(features, 4, is_training=False, pad_to_multiple_of=1,
                                   input_context=SecondOfTwoPipelines()).as_numpy_iterator())
    # Windows 1, 3, 5 (every second, from the second) in batches of 4 / 2 replicas = 2.
    assert [b["input_mask"].sum(axis=1).tolist() for b in sharded] == [[9, 10], [4]]

    runs = first_batches(7)
    assert runs == first_batches(7)  # Seeded: the same order every time.
    assert all(len(b) == 4 for b in runs)  # Repeats forever, full batches only.
    seen = [tuple(t for t in row if t) for b in runs[:3] for row in b][:6]
    expected = {tuple(ids) for ids, _ in features.as_lists()}
    assert set(seen) == expected  # The first 6 rows of the shuffled stream: one epoch.


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def test_write_predictions_conll(tmp_path):
    source = write_tags(tmp_path, "test.txt", ["I-PER", "O", "", "I-LOC"])
    test = ner.load_ner_file(source, model_scheme="BIO")
    assert test.scheme == "IOB1"
    # Two adjacent BIO chunks: IOB1 needs the B- for the second one.
    predicted = test.to_file_scheme([["B-PER", "B-PER"], ["O"]])
    assert predicted == [["I-PER", "B-PER"], ["O"]]
    out = str(tmp_path / "out" / "predictions.txt")
    assert ner.write_predictions_conll(out, test.sentences, predicted) == out
    with open(out, encoding="utf-8") as f:
        assert f.read() == "w0 I-PER I-PER\nw1 O B-PER\n\nw3 I-LOC O\n\n"
    assert [s.tags for s in ner.read_conll(out, tag_column=1)] == [s.tags for s in test.sentences]
    assert [s.tags for s in ner.read_conll(out)] == predicted
    with pytest.raises(ValueError, match=":1: 2 words but 1 predicted tags"):
        ner.write_predictions_conll(out, test.sentences, [["O"], ["O"]])
