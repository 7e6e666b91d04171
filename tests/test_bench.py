"""`python -m bench --quick --only agreement`: the tables and the JSON have their shape, and every
ONNX graph the bench exports (flashc, torch.onnx.export TorchScript and dynamo, ORT-optimized)
agrees with eager PyTorch. No timing is asserted: this machine is shared and noisy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("torch")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "results.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "agreement", "--json", str(out),
                           "--threads", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def test_meta_has_versions_and_sgemm_peak(quick_run):
    _, results = quick_run
    meta = results["meta"]
    for name in ("python", "torch", "onnx", "onnxruntime", "numpy", "flashc"):
        assert meta["versions"][name], name
    assert meta["sgemm"]["gflops"] > 0 and meta["sgemm"]["threads"] == 1 and meta["sgemm"]["n"] == 2048
    assert meta["quick"] is True and meta["sections"] == ["agreement"]


def test_agreement_table_is_printed_and_in_the_json(quick_run):
    stdout, results = quick_run
    assert "== agreement:" in stdout and "max abs diff" in stdout
    section = results["sections"]["agreement"]
    assert "error" not in section, section.get("traceback")
    (table,) = section["tables"]
    assert table["columns"][:4] == ["model", "graph", "shape", "max_abs_diff"]
    graphs = {(r["model"].split("(")[0], r["graph"]) for r in table["rows"]}
    assert {("encoder4", "flashc"), ("encoder4", "flashc-o17"), ("encoder4", "eager nn.TransformerEncoder"),
            ("gpt2", "flashc")} <= graphs


def test_every_graph_agrees_with_eager_pytorch(quick_run):
    _, results = quick_run
    rows = results["sections"]["agreement"]["tables"][0]["rows"]
    measured = [r for r in rows if r.get("max_abs_diff") is not None]
    failed_exports = [r for r in rows if r.get("max_abs_diff") is None]
    # an exporter may be missing (e.g. no onnxscript for dynamo): that is recorded, not a crash
    assert all(r.get("error") for r in failed_exports), failed_exports
    assert all(not r["graph"].startswith("flashc") for r in failed_exports), failed_exports
    assert len(measured) >= 4
    for r in measured:
        assert r["max_abs_diff"] < 1e-3, r
        assert r["ok"] == "yes", r


@pytest.fixture(scope="module")
def moe_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "moe.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "moe", "--json", str(out),
                           "--threads", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def test_moe_table_compares_sparse_and_dense_in_both_backends(moe_run):
    stdout, results = moe_run
    assert "== moe: k = 2 of 8 experts" in stdout and "dense / sparse" in stdout
    section = results["sections"]["moe"]
    assert "error" not in section, section.get("traceback")
    (table,) = section["tables"]
    rows = {r["backend"]: r for r in table["rows"]}
    assert set(rows) == {"torch", "onnxruntime"}
    for r in rows.values():
        assert r["sparse_ms"] > 0 and r["dense_ms"] > 0 and r["speedup"] > 0  # measured, not asserted faster
        assert r["max_abs_diff"] < 1e-4, r  # the sparse and the dense computation agree
        assert r["flop_ratio"] == 4.0 and r["k"] == 2 and r["experts"] == 8
