"""What a new user hits in the first hour, one test per observed problem: every mistake is a
one-line error naming the file, line or flag, found before any slow work and before anything
is written; help is complete and fast; the start is quiet; files get normal permissions."""

import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest

from bert_tf.classifier import ClassifierSettings, run_classifier
from bert_tf.config import BertConfig
from bert_tf.data import pretraining_records
from bert_tf.data.pretraining_instances import create_pretraining_data
from bert_tf.files import DataFormatError
from bert_tf.pretraining import PretrainingSettings, run_pretraining
from bert_tf.vocab_learning import count_words, write_vocab
from conftest import write_model_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film", "a", "."]
NOISE = ("cuInit", "oneDNN custom operations", "cpu_feature_guard", "Traceback",
         "All log messages before absl::InitializeLog")


def write_tsv(directory, name, rows, header="sentence\tlabel"):
    path = os.path.join(directory, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(header + "\n" + "".join(line + "\n" for line in rows))
    return path


@pytest.fixture()
def task(tmp_path):
    """A generic single-text task (train/dev/test) and tiny model files."""
    data = tmp_path / "data"
    data.mkdir()
    rows = [f"a {w} film .\t{'pos' if w == 'good' else 'neg'}" for w in ["good", "bad"] * 16]
    write_tsv(str(data), "train.tsv", rows)
    write_tsv(str(data), "dev.tsv", rows[:8])
    write_tsv(str(data), "test.tsv", [r.split("\t")[0] for r in rows[:4]], header="sentence")
    vocab, config = write_model_files(str(tmp_path), VOCAB)
    return dict(task_name="generic", data_dir=str(data), vocab_file=vocab,
                bert_config_file=config, max_seq_length=16, train_batch_size=8,
                num_train_epochs=1, seed=1)


def script(name, *args, env=None):
    return subprocess.run([sys.executable, os.path.join(REPO, name), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=REPO, **(env or {})))


def test_a_malformed_dev_file_stops_the_run_before_training(task, tmp_path):
    with open(os.path.join(task["data_dir"], "dev.tsv"), "a", encoding="utf-8") as f:
        f.write("a good film .\tpos\tan extra column\n")  # line 10
    out = tmp_path / "out"
    with pytest.raises(DataFormatError, match=r"dev\.tsv:10: "):
        run_classifier(ClassifierSettings(**task, output_dir=str(out), do_train=True,
                                          do_eval=True))
    assert not out.exists()


def test_an_unknown_dev_label_and_non_utf8_rows_name_file_and_line(task, tmp_path):
    write_tsv(task["data_dir"], "dev.tsv", ["a good film .\tpos", "a bad film .\tmeh"])
    settings = ClassifierSettings(**task, output_dir=str(tmp_path / "out"), do_train=True,
                                  do_eval=True)
    with pytest.raises(DataFormatError, match=r"dev\.tsv:3: label 'meh'"):
        run_classifier(settings)
    with open(os.path.join(task["data_dir"], "train.tsv"), "ab") as f:
        f.write(b"a caf\xe9 film .\tpos\n")  # line 34, Latin-1 bytes
    with pytest.raises(DataFormatError, match=r"train\.tsv:34: byte 0xe9 .* not valid UTF-8"):
        run_classifier(settings)
    assert not (tmp_path / "out").exists()


def test_an_export_dir_that_is_a_file_is_refused_up_front(task, tmp_path):
    (tmp_path / "export").write_text("not a directory")
    settings = ClassifierSettings(**task, output_dir=str(tmp_path / "out"), do_train=True,
                                  export_dir=str(tmp_path / "export"))
    with pytest.raises(ValueError, match=r"--export_dir=.*export is a file; expected a dir"):
        run_classifier(settings)
    assert not (tmp_path / "out").exists()


def test_a_vocab_larger_than_the_config_is_refused_naming_both(task, tmp_path):
    _, small_config = write_model_files(str(tmp_path / ".."), VOCAB, vocab_size=6)
    settings = ClassifierSettings(**dict(task, bert_config_file=small_config),
                                  output_dir=str(tmp_path / "out"), do_train=True)
    with pytest.raises(ValueError, match=r"vocab\.txt: 10 tokens, but the model's vocab_size "
                                         r"is 6 \(.*bert_config\.json\)"):
        run_classifier(settings)
    assert not (tmp_path / "out").exists()


def test_predict_only_and_export_only_need_nothing_but_output_dir(task, tmp_path):
    out = str(tmp_path / "out")
    run_classifier(ClassifierSettings(**task, output_dir=out, do_train=True))
    # Only the task, data and output_dir: config, vocab, casing and labels come from the run.
    bare = dict(task_name="generic", data_dir=task["data_dir"], output_dir=out,
                max_seq_length=16)
    run_classifier(ClassifierSettings(**bare, do_predict=True))
    probabilities = np.loadtxt(os.path.join(out, "test_results.tsv"), delimiter="\t")
    assert probabilities.shape == (4, 2)
    # An export redone without retraining.
    export_dir = str(tmp_path / "export")
    result = run_classifier(ClassifierSettings(**bare, export_only=True, export_dir=export_dir))
    assert result["export_path"] == os.path.join(export_dir, "1")
    assert os.path.isfile(os.path.join(export_dir, "1", "saved_model.pb"))
    with pytest.raises(ValueError, match="--export_only: no checkpoint in --output_dir"):
        run_classifier(ClassifierSettings(**dict(task, output_dir=str(tmp_path / "fresh")),
                                          export_only=True, export_dir=export_dir))


def test_script_errors_are_one_line_with_exit_status_2_or_1(task, tmp_path):
    usage = script("run_classifier.py", "--task_name=generic", f"--data_dir={tmp_path}",
                   f"--output_dir={tmp_path / 'out'}")
    assert usage.returncode == 2
    assert usage.stderr.strip().splitlines() == [
        "error: At least one of --do_train, --do_eval or --do_predict must be True (or "
        "--export_only with --export_dir)."]

    with open(os.path.join(task["data_dir"], "train.tsv"), "ab") as f:
        f.write(b"a caf\xe9 film .\tpos\n")
    flags = [f"--{k}={v}" for k, v in task.items()]
    data = script("run_classifier.py", *flags, f"--output_dir={tmp_path / 'out'}",
                  "--do_train")
    assert data.returncode == 1, data.stderr
    errors = [line for line in data.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "train.tsv:34: byte 0xe9" in errors[0], data.stderr
    assert not any(noise in data.stderr for noise in NOISE), data.stderr
    assert not (tmp_path / "out").exists()
    # The traceback is there for who asks.
    debug = script("run_classifier.py", *flags, f"--output_dir={tmp_path / 'out'}",
                   "--do_train", env={"BERT_TF_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_help_lists_the_shared_flags_without_importing_tensorflow():
    for name in ("run_classifier.py", "run_ner.py", "run_pretraining.py"):
        result = script(name, "--help")  # (absl's --help exits with status 1)
        for flag in ("--mixed_precision", "--distribution_strategy", "--seed"):
            assert flag in result.stdout, (name, flag)
    for module in ("run_classifier", "run_ner", "run_pretraining", "create_pretraining_data",
                   "learn_vocab"):
        imported = subprocess.run(
            [sys.executable, "-c", f"import sys, {module}; print(sorted(m for m in sys.modules "
             f"if m.split('.')[0] in ('tensorflow', 'keras')))"],
            cwd=REPO, capture_output=True, text=True, timeout=120)
        assert imported.stdout.strip() == "[]", (module, imported.stderr)
    command = shutil.which("bert-run-ner")
    assert command, "console commands are installed by `pip install -e .`"
    result = subprocess.run([command, "--help"], capture_output=True, text=True, timeout=120)
    assert "--learning_rate" in result.stdout and "--tag_scheme" in result.stdout


def test_written_config_and_vocab_have_normal_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        BertConfig(vocab_size=8).to_json_file(str(tmp_path / "bert_config.json"))
        write_vocab(VOCAB, str(tmp_path / "vocab.txt"))
    finally:
        os.umask(mask)
    for name in ("bert_config.json", "vocab.txt"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644, name


def test_learning_a_vocab_stops_at_non_utf8_input(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(b"a good film\nun caf\xe9 cr\xe8me\n")
    with pytest.raises(DataFormatError, match=r"corpus\.txt:2: byte 0xe9 at column 7"):
        count_words(str(corpus))


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    directory = tmp_path_factory.mktemp("records")
    words = "the cat dog sat on a mat and ran to house".split()
    (directory / "vocab.txt").write_text("\n".join(VOCAB[:5] + words) + "\n")
    lines = []
    for d in range(12):
        lines += [" ".join(words[(d + i) % 11:] + words[:(d + i) % 11][:3]) for i in range(4)]
        lines.append("")
    (directory / "corpus.txt").write_text("\n".join(lines) + "\n")
    output = directory / "train.tfrecord"
    create_pretraining_data([str(directory / "corpus.txt")], [str(output)],
                            str(directory / "vocab.txt"), max_seq_length=16,
                            max_predictions_per_seq=3, dupe_factor=2, random_seed=1)
    BertConfig(vocab_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
               intermediate_size=64, max_position_embeddings=16).to_json_file(
        str(directory / "bert_config.json"))
    return directory


def pretraining_settings(records, output_dir, **overrides):
    values = dict(bert_config_file=str(records / "bert_config.json"),
                  input_file=str(records / "train.tfrecord"), output_dir=str(output_dir),
                  max_seq_length=16, max_predictions_per_seq=3, do_train=True,
                  train_batch_size=4, num_train_steps=2, num_warmup_steps=0,
                  iterations_per_loop=1)
    values.update(overrides)
    return PretrainingSettings(**values)


def test_a_truncated_tfrecord_is_found_before_training(records, tmp_path):
    data = (records / "train.tfrecord").read_bytes()
    assert pretraining_records.scan_record_framing(str(records / "train.tfrecord")) > 10
    cut = tmp_path / "cut.tfrecord"
    cut.write_bytes(data[:len(data) * 2 // 3 + 7])  # not on a record boundary
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"cut\.tfrecord: truncated: .*cut short"):
        run_pretraining(pretraining_settings(records, out, input_file=str(cut)))
    assert not out.exists()  # not even bert_config.json


@pytest.mark.parametrize("where", ["first record", "later record"])
def test_a_corrupted_tfrecord_names_its_file(records, tmp_path, where):
    data = bytearray((records / "train.tfrecord").read_bytes())
    # Inside a record's data, so the framing still reads: the first record is read by the
    # validation pass, a later one only by training.
    data[40 if where == "first record" else len(data) // 2 + 20] ^= 0xFF
    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"bad\.tfrecord: .*corrupted record at \d+; the file "
                                         r"is damaged"):
        run_pretraining(pretraining_settings(records, tmp_path / "out", input_file=str(bad),
                                             num_train_steps=40))


def test_token_ids_beyond_the_config_vocab_are_refused_naming_the_file(records, tmp_path):
    config = tmp_path / "small_config.json"
    BertConfig(vocab_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
               intermediate_size=64, max_position_embeddings=16).to_json_file(str(config))
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"train\.tfrecord: feature 'input_ids' holds token id "
                                         r"1[0-5], but the model's vocab_size is 8"):
        run_pretraining(pretraining_settings(records, out, bert_config_file=str(config)))
    assert not out.exists()


def test_create_pretraining_data_checks_its_output_path_first(records, tmp_path):
    arguments = ([str(records / "corpus.txt")], None, str(records / "vocab.txt"))
    (tmp_path / "a_dir").mkdir()
    with pytest.raises(ValueError, match=r"output_file .*a_dir' is a directory"):
        create_pretraining_data(arguments[0], [str(tmp_path / "a_dir")], arguments[2],
                                max_seq_length=16, max_predictions_per_seq=3)
    # A missing output directory is created ...
    output = tmp_path / "new" / "deeper" / "train.tfrecord"
    create_pretraining_data(arguments[0], [str(output)], arguments[2], max_seq_length=16,
                            max_predictions_per_seq=3, dupe_factor=1)
    assert output.is_file()
    # ... and removed again when the run fails (a corpus of one document).
    (tmp_path / "one_doc.txt").write_text("the cat sat\non a mat\n")
    with pytest.raises(ValueError, match="only one document"):
        create_pretraining_data([str(tmp_path / "one_doc.txt")],
                                [str(tmp_path / "gone" / "x.tfrecord")], arguments[2],
                                max_seq_length=16, max_predictions_per_seq=3)
    assert not (tmp_path / "gone").exists()


def run_all(commands, env=None):
    """Runs the commands ([argv...]) at once (each its own process); their CompletedProcess-like
    (returncode, stdout, stderr), in order."""
    environment = dict(os.environ, PYTHONPATH=REPO, **(env or {}))
    processes = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=environment)
                 for command in commands]
    return [(p.returncode, out, err) for p in processes
            for out, err in [p.communicate(timeout=300)]]


def test_flag_parse_errors_are_one_line_naming_the_flag_in_every_script(tmp_path):
    python = sys.executable
    cases = [
        ([python, "run_classifier.py", "--learning_rate=abc"],
         "error: --learning_rate=abc: not a number; write a number such as --learning_rate=5e-05"),
        ([python, "run_ner.py", "--do_trian"],
         "error: --do_trian: unknown flag; did you mean --do_train?"),
        ([python, "create_pretraining_data.py", "--vocab_file=vocab.txt"],
         "error: --input_file: missing; this flag is required (--help lists the flags)"),
        ([python, "learn_vocab.py", "--input_file=a", "--output_file=b", "--vocab_size=many"],
         "error: --vocab_size=many: not an integer; write a whole number such as "
         "--vocab_size=30522"),
        ([python, "run_pretraining.py", "--mixed_precision=fp8"],
         "error: --mixed_precision=fp8: expected one of none, bfloat16, float16"),
        ([python, "run_classifier.py", "--nodo_train=1"],
         "error: --nodo_train=1: a negated flag takes no value; write --nodo_train or "
         "--do_train=false"),
        ([python, "-m", "bert_tf.export", "--kind=encoder", f"--checkpoint={tmp_path}"],
         "error: --export_dir: missing; this flag is required (--help lists the flags)"),
        ([python, "-m", "bert_tf.convert", "--to=onnx"],
         "error: --to=onnx: expected one of original, huggingface, keras_hub, bert_tf"),
        ([python, "-m", "bert_tf.predict", "--batch_size=0.5", str(tmp_path)],
         "error: --batch_size=0.5: not an integer; write a whole number such as "
         "--batch_size=32"),
        ([python, "-m", "bert_tf.predict", str(tmp_path / "nothing"), "a text"],
         f"error: MODEL {tmp_path / 'nothing'}: no such file or directory"),
        ([python, "-m", "bert_tf.export", "--kind=encoder", f"--checkpoint={tmp_path}/none",
          f"--export_dir={tmp_path}"],
         f"error: --checkpoint={tmp_path}/none: no such file or directory"),
    ]
    for (command, expected), (code, out, err) in zip(cases, run_all([c for c, _ in cases])):
        assert (code, err.splitlines()) == (2, [expected]), (command, code, err)
        assert out == ""


def test_the_commands_help_shows_their_flags_without_importing_tensorflow():
    program = ("import runpy, sys\nsys.argv = ['{0}', '--help']\ntry:\n"
               "    runpy.run_module('{0}', run_name='__main__')\nexcept SystemExit as e:\n"
               "    print('exit status', e.code)\n"
               "print('tensorflow imported:', 'tensorflow' in sys.modules)")
    commands = {"bert_tf.export": ["--checkpoint", "--kind", "no_warmup", "--top_k"],
                "bert_tf.predict": ["--input_file", "--batch_size", "--kind", "--label_list"],
                "bert_tf.convert": ["--init_checkpoint", "--to", "--classifier_kind"]}
    results = run_all([[sys.executable, "-c", program.format(m)] for m in commands])
    for (module, flags), (code, out, err) in zip(commands.items(), results):
        assert code == 0 and err == "", (module, err)
        assert out.splitlines()[-2:] == ["exit status 0", "tensorflow imported: False"], out
        for flag in flags + ["--verbosity"]:
            assert flag in out, (module, flag)
    from bert_tf import export
    from bert_tf.commands import convert_command, export_command
    from bert_tf.convert import FORMATS

    assert sorted(export_command.KINDS) == sorted(export.KINDS)  # (copies that need no TF)
    assert convert_command.FORMATS == FORMATS


def test_the_onednn_int64_notice_is_hidden_unless_the_user_sets_the_log_level():
    # oneDNN logs "supports DT_INT64 only on platforms with AVX-512" at ERROR level the first
    # time an int64 tensor is transposed (the in-graph tokenizer's ragged ops do it).
    program = ("from bert_tf import cli\ntf = cli.import_tensorflow_quietly()\n"
               "cli.hide_onednn_dtype_notice()\n"
               "print(tf.transpose(tf.constant([[1, 2]], tf.int64)).numpy().tolist())")
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    quiet = subprocess.Popen([sys.executable, "-c", program], cwd=REPO, text=True,
                             env=dict(environment, PYTHONPATH=REPO),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    chosen = subprocess.Popen([sys.executable, "-c", program], cwd=REPO, text=True,
                              env=dict(environment, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    (out, err), (chosen_out, chosen_err) = quiet.communicate(timeout=300), chosen.communicate(
        timeout=300)
    assert out.strip() == chosen_out.strip() == "[[1], [2]]"
    assert err == "", err  # nothing at all: no banner, no cuInit, no oneDNN notice
    assert "oneDNN supports DT_INT64 only on platforms with AVX-512" in chosen_err


def test_the_demo_starts_without_tensorflow_s_banner(tmp_path):
    # run_pretraining.py with no flags runs the demo; its real start-up (flag parsing, the
    # quiet TensorFlow import) runs, only the five-step demo body is replaced by an import of
    # Keras (which imports TensorFlow: the banner would print there) to keep this fast.
    code = ("import sys, runpy; import bert_tf.demo as demo\n"
            "def body(): import keras; print('demo body ran')\n"
            "demo.run_demo = body\n"
            f"sys.argv = [{os.path.join(REPO, 'run_pretraining.py')!r}]\n"
            f"runpy.run_path(sys.argv[0], run_name='__main__')\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True,
                            text=True, timeout=300, env=dict(env, PYTHONPATH=REPO))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "demo body ran" in result.stdout
    assert not [noise for noise in NOISE if noise in result.stderr], result.stderr[-2000:]
