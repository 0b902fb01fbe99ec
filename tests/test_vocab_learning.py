"""learn_wordpiece_vocab / bert-learn-vocab: file layout, coverage, and use by both tokenizers."""

import os
import random
import subprocess
import sys

import pytest
import tensorflow as tf

from bert_tf import vocab_learning
from bert_tf.preprocessing import BertTokenizer
from bert_tf.tokenization import FullTokenizer

WORDS = ["the", "cat", "sat", "on", "mat", "running", "jumping", "played", "Über", "Café", "naïve",
         "tokenizer", "tokenization", "token", "Ελλάδα", "中文"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(3)
    directory = tmp_path_factory.mktemp("corpus")
    for shard in range(2):
        lines = []
        for _ in range(300):
            lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 10))) + rng.choice([".", "!", "?", ""]))
            if rng.random() < 0.1:
                lines.append("")
        (directory / f"part-{shard}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_learned_vocab_layout_and_coverage(corpus, tmp_path):
    output = tmp_path / "vocab.txt"
    tokens = vocab_learning.learn_wordpiece_vocab(
        str(corpus / "part-*.txt"), vocab_size=120, output_file=str(output), num_unused=3
    )
    lines = output.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and lines[:-1] == tokens
    assert tokens[:8] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]", "[unused1]", "[unused2]"]
    assert len(tokens) <= 120 and len(set(tokens)) == len(tokens)
    learned = tokens[8:]
    # Uncased: lower-cased and accent-stripped ("Über" -> "uber", "Ελλάδα" -> "ελλαδα").
    assert not any(c.isupper() or c in "üéïά" for t in learned for c in t)
    # Every character of the (normalised) corpus is there as a word start and as a continuation.
    for char in "thecasonmrugjpldkizbfnvελαδ":
        assert char in learned and "##" + char in learned, char
    # Frequent words become single pieces; CJK ideographs are always single characters.
    assert "the" in learned and "中" in learned and "中文" not in learned
    # Ids from the learned file are the same with the Python and the in-graph tokenizer, no [UNK].
    texts = [" ".join(WORDS), "The cat? Café!", "Naïve tokenization of Ελλάδα"]
    full_tokenizer = FullTokenizer(str(output), do_lower_case=True)
    ids = BertTokenizer(str(output), lower_case=True)(tf.constant(texts)).to_list()
    assert ids == [full_tokenizer.encode(t) for t in texts]
    assert all(1 not in row for row in ids)


def test_cased_vocab_keeps_case_and_accents(corpus, tmp_path):
    output = tmp_path / "cased.txt"
    tokens = vocab_learning.learn_wordpiece_vocab(
        [str(corpus / "part-0.txt"), str(corpus / "part-1.txt")], 150, str(output), do_lower_case=False
    )
    assert "Ü" in tokens and "é" in tokens and "Ε" in tokens
    full_tokenizer = FullTokenizer(str(output), do_lower_case=False)
    text = "Über Café naïve Ελλάδα"
    assert BertTokenizer(str(output), lower_case=False)(tf.constant([text])).to_list() == [full_tokenizer.encode(text)]
    assert full_tokenizer.vocab["[UNK]"] not in full_tokenizer.encode(text)


def test_errors_name_the_problem_and_leave_no_file(corpus, tmp_path):
    output = tmp_path / "vocab.txt"
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        vocab_learning.learn_wordpiece_vocab(str(tmp_path / "nothing-here*.txt"), 100, str(output))
    with pytest.raises(ValueError, match="alphabet alone needs"):
        vocab_learning.learn_wordpiece_vocab(str(corpus / "part-0.txt"), 20, str(output))
    with pytest.raises(ValueError, match="no room"):
        vocab_learning.learn_wordpiece_vocab(str(corpus / "part-0.txt"), 5, str(output))
    assert os.listdir(tmp_path) == []  # no partial or temporary file left behind


def test_command_line(corpus, tmp_path):
    output = tmp_path / "cli_vocab.txt"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "learn_vocab.py"), f"--input_file={corpus}/part-0.txt,{corpus}/part-1.txt",
         f"--vocab_file={output}", "--vocab_size=100", "--num_unused=2", "--nodo_lower_case"],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    tokens = output.read_text(encoding="utf-8").split()
    assert tokens[5:7] == ["[unused0]", "[unused1]"] and "Ü" in tokens and len(tokens) <= 100
    assert "wrote" in result.stderr
