"""Fuzz of dtypes: random expressions over inputs of random dtypes reach only FlashError or agreement.

Every generated spec either fails with clean `file:line:col` diagnostics, or it
compiles to an ONNX model that onnx's full checker and onnxruntime accept and that
computes what PyTorch computes, in the same dtype. Derandomized: a run is reproducible.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flashc
from flashc import FlashError

FUZZ = settings(derandomize=True, max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = ("float32", "int64", "int32", "bool")
BINARY = ("+", "-", "*", "/", "**", "==", "!=", "<", "<=", ">", ">=", "and", "or")
UNARY = ("relu", "abs", "exp", "sigmoid", "softmax", "tanh", "sqrt", "neg")


def expressions() -> st.SearchStrategy[str]:
    """Tensor expressions; numbers and `true` appear where an operator or a `where` may take them."""
    number = st.sampled_from(("2", "0.5", "-1e9", "true"))

    def grow(t: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        operand = st.one_of(t, t, number)
        return st.one_of(
            st.tuples(operand, st.sampled_from(BINARY), operand).map(lambda x: f"({x[0]} {x[1]} {x[2]})"),
            st.tuples(st.sampled_from(("-", "not ")), t).map(lambda x: f"({x[0]}{x[1]})"),
            st.tuples(t, st.sampled_from(DTYPES)).map(lambda x: f"cast({x[0]}, {x[1]})"),
            st.tuples(t, operand, operand).map(lambda x: f"where({x[0]}, {x[1]}, {x[2]})"),
            st.tuples(t, t, number).map(lambda x: f"masked_fill({x[0]}, {x[1]}, {x[2]})"),
            st.tuples(st.sampled_from(UNARY), t).map(lambda x: f"{x[0]}({x[1]})"),
        )

    return st.recursive(st.sampled_from(("a", "b", "c")), grow, max_leaves=6)


def feed(dtype: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random((2, 3)) > 0.5
    if dtype == "float32":
        return rng.uniform(0.5, 2.0, (2, 3)).astype(np.float32)
    return rng.integers(1, 4, (2, 3)).astype(dtype)


@FUZZ
@given(st.tuples(*(st.sampled_from(DTYPES) for _ in range(3))), expressions())
def test_random_dtypes_and_operators_reach_only_flash_errors_or_agreement(dtypes, expr):
    text = "model M {\n" + "".join(f"  input {n}: {d}[2, 3]\n" for n, d in zip("abc", dtypes)) + f"  output y = {expr}\n}}\n"
    try:
        spec = flashc.loads(text, file="fuzz.flash")
    except FlashError as err:
        assert err.diagnostics and all(d.span.line >= 1 and d.span.col >= 1 for d in err.diagnostics)
        assert err.render()
        return
    inputs = {n: feed(d, i) for i, (n, d) in enumerate(zip("abc", dtypes))}
    module = spec.to_torch().eval()
    with torch.no_grad():
        want = module(*(torch.from_numpy(inputs[n]) for n in module.input_names)).numpy()
    proto = spec.to_onnx()
    onnx.checker.check_model(proto, full_check=True)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {v.name: inputs[v.name] for v in session.get_inputs()})[0]
    assert str(got.dtype) == str(want.dtype) == spec.graph.outputs[0][1].type.dtype, text
    if got.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, equal_nan=True, err_msg=text)
    else:
        np.testing.assert_array_equal(got, want, err_msg=text)
