"""Every op, every sample: the PyTorch module and the ONNX model compute the same thing.

One table drives it all: each canonical op in the registry contributes its
``samples``; each sample becomes a one-node graph with a symbolic batch dim ``B``,
lowered to torch and to ONNX with the same seeded weights and run at two batch sizes.
"""

from __future__ import annotations

import numpy as np
import pytest
from op_harness import (
    canonical_ops,
    expected_shapes,
    make_feeds,
    one_op_graph,
    onnx_session,
    random_weights,
    run_onnx,
    run_torch,
    sample_ids,
    shape_fits,
)

from flashc.backends.onnx import DEFAULT_OPSET, to_onnx_model
from flashc.backends.torch import to_torch

pytest.importorskip("torch")

ATOL = 1e-4
BATCHES = (2, 3)
CASES = sample_ids()
OLDER_OPSETS = (17, 18)  # the oldest supported, and the one where ReduceMean's axes became an input


def _id(case: tuple[str, int]) -> str:
    return f"{case[0]}-{case[1]}"


def test_every_op_has_samples() -> None:
    missing = sorted(name for name, cls in canonical_ops().items() if not cls.samples)
    assert not missing, f"ops without samples (so without parity tests): {', '.join(missing)}"


def test_the_table_covers_the_registry() -> None:
    names = {name for name, _ in CASES}
    assert names == set(canonical_ops())
    assert len(CASES) >= len(names) > 30


def _check_parity(name: str, index: int, opset: int) -> None:
    case = one_op_graph(name, index)
    weights = random_weights(case.graph, seed=index)
    module = to_torch(case.graph, weights=weights).eval()
    model = to_onnx_model(case.graph, weights=weights, opset=opset)
    assert model.opset_import[0].version == opset

    declared = {i.name: i for i in model.graph.input}
    assert [i.name for i in model.graph.input] == [v.name for v in case.graph.inputs]
    if case.dynamic:
        for v in case.graph.inputs:
            if v.type.shape and not isinstance(v.type.shape[0], int):
                assert declared[v.name].type.tensor_type.shape.dim[0].dim_param == "B", v.name
        assert any(declared[v.name].type.tensor_type.shape.dim[0].dim_param == "B" for v in case.graph.inputs)

    session = onnx_session(model)
    batches = BATCHES if case.dynamic else BATCHES[:1]
    for batch in batches:
        feeds = make_feeds(case, batch, seed=17 * index + batch)
        want = run_torch(module, case.graph, feeds)
        got = run_onnx(session, case.graph, feeds)
        shapes = expected_shapes(case, batch)
        assert len(want) == len(got) == len(shapes)
        for (out_name, v), t, o, shape in zip(case.graph.outputs, want, got, shapes):
            where = f"{name} sample {index}, output {out_name}, batch {batch}, opset {opset}"
            assert shape_fits(t.shape, shape), f"{where}: torch gives {t.shape}, the op infers {shape}"
            assert o.shape == t.shape, f"{where}: onnx gives {o.shape}, torch {t.shape}"
            assert str(t.dtype) == v.type.dtype and str(o.dtype) == v.type.dtype, where
            assert np.isfinite(t).all(), where
            np.testing.assert_allclose(o, t, rtol=0, atol=ATOL, err_msg=where)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_torch_and_onnx_agree(case: tuple[str, int]) -> None:
    _check_parity(*case, opset=DEFAULT_OPSET)


@pytest.mark.parametrize("opset", OLDER_OPSETS)
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_torch_and_onnx_agree_at_older_opsets(case: tuple[str, int], opset: int) -> None:
    _check_parity(*case, opset=opset)
