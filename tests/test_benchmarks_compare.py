"""benchmarks/compare.py: the FLOP count of issue 16, the table's ratios and MFU, and the JSON
rows of a real (in-process) bert_tf measurement."""

import importlib.util
import json
import os

import pytest

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks",
                     "compare.py")
_SPEC = importlib.util.spec_from_file_location("benchmarks_compare", _PATH)
compare = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(compare)

JSON_KEYS = {"task", "size", "precision", "system", "batch", "seq_len", "seq_per_s",
             "latency_ms", "mfu"}


def test_flops_of_bert_base_match_a_hand_count():
    # Per block 4·768² + 2·768·3072 = 7,077,888 matmul weights; 12 blocks = 84,934,656;
    # + pooler 589,824. The pretrainer adds the MLM transform 589,824 and NSP 1,536.
    encoder_weights = 84_934_656 + 589_824
    attention = 4 * 12 * 128 * 128 * 768                      # 603,979,776
    infer = 2 * encoder_weights * 128 + attention
    assert infer == 22_498_246_656
    assert compare.flops_per_sequence("infer", "base") == infer
    pretrain_forward = 2 * (encoder_weights + 589_824 + 1_536) * 128 + attention \
        + 2 * 768 * 30522 * 20                                 # MLM output, 20 positions
    assert compare.flops_per_sequence("pretrain", "base") == 3 * pretrain_forward \
        == 70_761_811_968                                      # the issue's "≈71 GFLOP"
    # Classifier head: 768 × 2 more weights; a training step is 3 forwards.
    assert compare.flops_per_sequence("finetune", "base") == 3 * (infer + 2 * 768 * 2 * 128)
    # BERT-base's published parameter count (embeddings with 2 segment types + pooler).
    assert compare.encoder_parameters(*compare.size_dims("base")) == 109_482_240
    with pytest.raises(ValueError, match="head must be"):
        compare.matmul_weights(2, 32, 128, head="decoder")


def _row(system, rate, task="infer", size="base", precision="bfloat16", batch=32, skipped=None):
    case = compare.Case(task, size, precision, [batch], [system])
    if skipped:
        return compare._row(case, system, batch, skipped=skipped)
    return compare._row(case, system, batch, seq_per_s=rate, latency_ms=batch / rate * 1e3)


def test_ratios_mfu_and_table_from_hand_made_measurements():
    ceiling = compare._row(compare.Case("ceiling", "4096x768x3072", "bfloat16", [1],
                                        ["bert_tf"]), "bert_tf", 1, gflop_per_s=1350.0)
    slower = compare._row(compare.Case("ceiling", "1024x1024x1024", "bfloat16", [1],
                                       ["hf_torch"]), "hf_torch", 1, gflop_per_s=900.0)
    rows = [ceiling, slower,
            _row("bert_tf", 26.2), _row("keras_hub", 18.2), _row("hf_torch", 40.0),
            _row("bert_tf", 4.3, task="pretrain", batch=8),
            _row("keras_hub", 4.0, task="pretrain", batch=8),
            _row("hf_torch", None, task="pretrain", batch=8, skipped="torch not installed"),
            _row("bert_tf", 12.0, precision="float32")]
    compare.add_mfu(rows)
    ratios = compare.ratios(rows)
    assert ratios[("infer", "base", "bfloat16", 32)] == pytest.approx(26.2 / 40.0)
    assert ratios[("pretrain", "base", "bfloat16", 8)] == pytest.approx(4.3 / 4.0)
    assert ratios[("infer", "base", "float32", 32)] is None      # no peer ran
    # MFU against the best bfloat16 ceiling: 26.2 seq/s × 22.498 GFLOP / 1350 GFLOP/s.
    assert rows[2]["mfu"] == pytest.approx(26.2 * 22_498_246_656 / 1.35e12)
    assert rows[8]["mfu"] is None                                # no float32 ceiling measured
    table = compare.markdown_table(rows)
    assert "| infer | base | bfloat16 | 32 | 26.2/s (44%) | 18.2/s (30%) | 40.0/s (67%) | 0.66 |" \
        in table
    assert "| pretrain | base | bfloat16 | 8 | 4.30/s (23%) | 4.00/s (21%) | skipped¹ | 1.07 |" \
        in table
    assert "hf_torch: torch not installed" in table
    assert "| bfloat16 | 4096x768x3072 | tensorflow | 1,350 **best** |" in table


def test_a_row_with_an_interleaved_ceiling_takes_its_mfu_from_it():
    run_start = compare._row(compare.Case("ceiling", "4096x768x3072", "bfloat16", [1],
                                          ["bert_tf"]), "bert_tf", 1, gflop_per_s=1350.0)
    row = _row("bert_tf", 4.3, task="pretrain", batch=8)
    row["ceiling_gflop_per_s"] = 600.0
    plain = _row("keras_hub", 4.0, task="pretrain", batch=8)
    compare.add_mfu([run_start, row, plain])
    flops = row["flops_per_seq"]
    assert row["mfu"] == pytest.approx(4.3 * flops / 600e9)
    assert row["mfu_run_ceiling"] == pytest.approx(4.3 * flops / 1350e9)
    assert plain["mfu"] == plain["mfu_run_ceiling"] == pytest.approx(4.0 * flops / 1350e9)
    # The bert_tf cell shows the MFU against the 600 GFLOP/s measured during the row.
    assert (f"| pretrain | base | bfloat16 | 8 | 4.30/s ({4.3 * flops / 600e9:.0%}) | "
            "4.00/s (21%) | – | 1.07 | 600 |") in compare.markdown_table([run_start, row, plain])


def _measured_in_process(cases, repeats):
    """run_cases with an in-process bert_tf worker; the rows with MFU, through JSON."""
    worker = compare.LocalWorker("bert_tf")
    try:
        rows = compare.run_cases(cases, {"bert_tf": worker}, repeats=repeats, min_time=0.01,
                                 context={})
    finally:
        worker.close()
    return json.loads(json.dumps(compare.add_mfu(rows)))


def test_rows_after_the_ceiling_time_its_fastest_shape_between_their_repeats():
    cases = [compare.Case("ceiling", "32x32x32", "float32", [1], ["bert_tf"]),
             compare.Case("ceiling", "256x256x256", "float32", [1], ["bert_tf"]),
             compare.Case("infer", "tiny", "float32", [2], ["bert_tf"])]
    rows = _measured_in_process(cases, repeats=3)
    ceiling_rows, (measured,) = rows[:2], rows[2:]
    fastest = max(ceiling_rows, key=lambda r: r["gflop_per_s"])
    (probe,) = measured["ceiling_probe"]
    assert (probe["framework"], probe["shape"]) == ("tensorflow", fastest["size"])
    assert len(probe["samples_ms"]) == 3
    m, k, n = (int(d) for d in fastest["size"].split("x"))
    median_ms = sorted(probe["samples_ms"])[1]
    assert probe["gflop_per_s"] == pytest.approx(2 * m * k * n / median_ms / 1e6, rel=1e-3)
    assert measured["ceiling_gflop_per_s"] == probe["gflop_per_s"]
    assert measured["mfu"] == pytest.approx(
        measured["seq_per_s"] * measured["flops_per_seq"] / (probe["gflop_per_s"] * 1e9))
    assert measured["mfu_run_ceiling"] == pytest.approx(
        measured["seq_per_s"] * measured["flops_per_seq"] / (fastest["gflop_per_s"] * 1e9))


def test_an_in_process_bert_tf_measurement_gives_the_json_rows():
    cases = [compare.Case("infer", "tiny", "float32", [2], ["bert_tf", "keras_hub"])]
    rows = _measured_in_process(cases, repeats=2)
    assert len(rows) == 2 and all(JSON_KEYS <= set(row) for row in rows)
    measured, skipped = rows
    assert (measured["system"], measured["batch"], measured["seq_len"]) == ("bert_tf", 2, 128)
    assert measured["seq_per_s"] > 0 and len(measured["samples_ms"]) == 2
    assert measured["latency_ms"] == pytest.approx(2 / measured["seq_per_s"] * 1e3)
    assert measured["mfu"] is None and measured["skipped"] is None
    assert skipped["system"] == "keras_hub" and skipped["seq_per_s"] is None
    assert "keras_hub not started" in skipped["skipped"]


def test_a_worker_holding_too_much_memory_is_replaced_between_cases():
    cases = [compare.Case("infer", "tiny", "float32", [1], ["bert_tf"]),
             compare.Case("infer", "tiny", "bfloat16", [1], ["bert_tf"])]
    first = compare.LocalWorker("bert_tf")
    started, workers = [], {"bert_tf": first}

    def restart(system):
        started.append(compare.LocalWorker(system))
        return started[-1]

    try:
        rows = compare.run_cases(cases, workers, repeats=1, min_time=0.01, context={},
                                 restart=restart, restart_mb=0)
    finally:
        for worker in [first, *started]:
            worker.close()
    # Replaced after each case (every process holds more than 0 MiB), and the second case
    # was measured by the first replacement.
    assert len(started) == 2 and workers["bert_tf"] is started[-1]
    assert [row["precision"] for row in rows if row["seq_per_s"]] == ["float32", "bfloat16"]


def test_a_worker_that_died_is_replaced_before_the_next_case():
    cases = [compare.Case("infer", "tiny", "float32", [1], ["bert_tf"])]
    dead = compare.LocalWorker("bert_tf")
    dead.dead = "bert_tf worker exited with status -9 (killed by SIGKILL)"
    workers, started = {"bert_tf": dead}, []

    def restart(system):
        started.append(compare.LocalWorker(system))
        return started[-1]

    try:
        rows = compare.run_cases(cases, workers, repeats=1, min_time=0.01, context={},
                                 restart=restart)
        # Without a restart function the dead worker's rows are skipped with its reason.
        skipped = compare.run_cases(cases, {"bert_tf": dead}, repeats=1, min_time=0.01,
                                    context={})
    finally:
        for worker in [dead, *started]:
            worker.close()
    assert len(started) == 1 and workers["bert_tf"] is started[0]
    assert rows[0]["seq_per_s"] > 0 and rows[0]["skipped"] is None
    assert skipped[0]["seq_per_s"] is None and "status -9" in skipped[0]["skipped"]
