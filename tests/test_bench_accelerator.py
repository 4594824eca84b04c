"""bench/accelerator.py: its FLOP counting (bench/mfu.py) against hand counts, its peak
table, the fair-timing helpers (bench/fair.py), and the ``--smoke`` run of every row (so
the one-command accelerator table cannot rot before a GPU or TPU is there to run it)."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
import fair  # noqa: E402
import mfu  # noqa: E402


def test_flops_of_a_dense_layer_equal_the_hand_count():
    m, k, n = 8, 16, 4
    flops = mfu.compiled_flops(lambda a, b: a @ b, jnp.ones((m, k)), jnp.ones((k, n)))
    assert flops == 2 * m * k * n


def test_flops_of_a_convolution_equal_the_hand_count():
    b, h, w, cin, cout, kh = 2, 8, 6, 3, 5, 3

    def conv(x, kernel):
        return jax.lax.conv_general_dilated(
            x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    x, kernel = jnp.ones((b, h, w, cin)), jnp.ones((kh, kh, cin, cout))
    ho, wo = h - kh + 1, w - kh + 1
    assert mfu.compiled_flops(conv, x, kernel) == 2 * b * ho * wo * cout * cin * kh * kh


def test_total_flops_reads_every_cost_analysis_form():
    assert mfu.total_flops({"flops": 6.0, "bytes accessed": 1.0}) == 6.0
    assert mfu.total_flops([{"flops": 2.0}, {"flops": 3.0}]) == 5.0  # older JAX
    assert mfu.total_flops(None) is None
    assert mfu.total_flops([{}]) is None


def test_peak_table_matches_device_kinds_most_specific_first():
    peak, source = mfu.peak_of("NVIDIA H100 80GB HBM3", "bfloat16")
    assert peak == 989.5e12 and "SXM" in source
    assert mfu.peak_of("NVIDIA H100 PCIe", "bfloat16")[0] == 756e12
    assert mfu.peak_of("NVIDIA H100 PCIe", "float32")[0] == 378e12
    assert mfu.peak_of("TPU v5 lite", "bfloat16")[0] == 197e12
    assert mfu.peak_of("cpu", "float32")[0] is None


def test_interleave_alternates_the_order_of_the_sides():
    calls = []
    times = fair.interleave({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                           3, warmup=1)  # fmt: skip
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert len(times["a"].wall) == 3 and min(times["b"].cpu) >= 0


def test_load_check_flags_a_slow_reference_against_the_saved_baseline(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMJAX_BENCH_QUIET", str(tmp_path / "quiet.json"))
    seconds = iter([1.0, 1.0, 2.0, 1.1])
    monkeypatch.setattr(fair, "reference_seconds", lambda: next(seconds))
    monkeypatch.setattr(fair.os, "getloadavg", lambda: (0.5, 0.5, 0.5))
    first = fair.LoadCheck().start().finish()
    assert first["valid"] and first["baseline_source"] == "this run"
    second = fair.LoadCheck().start().finish()  # 2.0 s before: twice the quiet 1.0 s
    assert not second["valid"] and second["baseline_source"] == "saved"
    assert "CONTAMINATED" in fair.verdict_line(second)


def test_load_check_flags_a_busy_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMJAX_BENCH_QUIET", str(tmp_path / "quiet.json"))
    monkeypatch.setattr(fair, "reference_seconds", lambda: 1.0)
    cores = fair.usable_cores()
    monkeypatch.setattr(fair.os, "getloadavg", lambda: (1.5 * cores + 1.5,) * 3)
    assert not fair.LoadCheck().start().finish()["valid"]


@pytest.mark.slow
def test_smoke_run_gives_every_row(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, CAMJAX_BENCH_QUIET=str(tmp_path / "quiet.json"))
    subprocess.run([sys.executable, str(BENCH / "accelerator.py"), "--smoke", "--out", str(out)],
                   check=True, env=env, capture_output=True, timeout=600)  # fmt: skip
    result = json.loads((out / "accelerator.json").read_text())
    assert (out / "accelerator.md").read_text().startswith("# camjax accelerator table")

    train = result["train"]
    combos = {(r["model"], r["dtype"], r["parallel"]) for r in train}
    assert combos == {
        (m, d, p)
        for m in ("vgg16_gap", "resnet50_gap")
        for d in ("float32", "bfloat16")
        for p in ("pmap", "shard_map")
    }
    for r in train:
        assert 0 < r["mfu"] <= 1, r
        assert r["flops_per_step"] > 0
        assert r["images_per_s"] == pytest.approx(r["global_batch"] / (r["step_ms"] / 1e3))
    # The same network and dtype: both runners run the same per-device program.
    by = {(r["model"], r["dtype"], r["parallel"]): r["flops_per_step"] for r in train}
    for m, d, _ in combos:
        assert by[m, d, "pmap"] == pytest.approx(by[m, d, "shard_map"], rel=0.05)

    assert {r["model"] for r in result["extract"]} == {"efficientnet_lite0_gap", "resnet50_gap"}
    assert all(r["images"] == 8 and r["images_per_s"] > 0 for r in result["extract"])
    assert {(r["thresholds"], r["backend"]) for r in result["boxes"]} == {
        (t, b) for t in (1, 100) for b in ("jax", "host")
    }
    check = result["check"]
    assert check["equal_within_tolerance"] and check["box_backends_equal"]
    assert check["max_map_diff"] == 0.0  # CPU against CPU: the same program
    assert isinstance(result["load_check"]["valid"], bool)
