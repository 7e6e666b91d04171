"""dtype rules of every binary operator, proven against PyTorch and onnxruntime pair by pair.

For each operator and each pair of input dtypes the checker's verdict is compared with
what the two runtimes do with the bare operation (a one-node ONNX model, the torch
expression flashc generates): they *agree* when both accept it and give the same dtype
and values. The checker must accept only agreeing pairs (everything `check` passes runs
the same in both), and it must accept all of them except the few it refuses on purpose,
listed in STRICTER with the reason. Accepted pairs are then built, lowered to both
backends, run and compared; refused ones give a `file:line:col` error.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

import flashc
from flashc.backends.onnx import DEFAULT_OPSET

DTYPES = ("float32", "int64", "int32", "bool")
ONNX_TYPES = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64, "int32": TensorProto.INT32,
              "bool": TensorProto.BOOL}
# operator -> (ONNX op, then Not?, the torch expression flashc lowers it to)
OPERATORS = {
    "+": ("Add", False, lambda a, b: a + b), "-": ("Sub", False, lambda a, b: a - b),
    "*": ("Mul", False, lambda a, b: a * b), "/": ("Div", False, lambda a, b: a / b),
    "**": ("Pow", False, torch.pow),
    "==": ("Equal", False, lambda a, b: a == b), "!=": ("Equal", True, lambda a, b: a != b),
    "<": ("Less", False, lambda a, b: a < b), "<=": ("LessOrEqual", False, lambda a, b: a <= b),
    ">": ("Greater", False, lambda a, b: a > b), ">=": ("GreaterOrEqual", False, lambda a, b: a >= b),
    "and": ("And", False, lambda a, b: a & b), "or": ("Or", False, lambda a, b: a | b),
}
ARITHMETIC = ("+", "-", "*", "/", "**")
# Pairs both runtimes agree on that the checker refuses on purpose: `**` is for float
# tensors of one dtype (ONNX Pow mixes dtypes, torch promotes; an integer power
# overflows silently), so `x ** n` stays a float computation.
STRICTER = {("**", "float32", "int64"), ("**", "float32", "int32"), ("**", "int64", "int64"),
            ("**", "int32", "int32"), ("**", "int64", "int32")}


def feeds(dtype: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random((2, 3)) > 0.5
    if dtype == "float32":
        return rng.uniform(0.5, 2.0, (2, 3)).astype(np.float32)  # positive: defined powers, no division by 0
    return rng.integers(1, 4, (2, 3)).astype(dtype)


def onnx_result(op: str, da: str, db: str, a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """The bare op in onnxruntime, or None where the checker or runtime refuses the dtypes."""
    onnx_op, negate, _ = OPERATORS[op]
    out = ONNX_TYPES[da] if op in ARITHMETIC else TensorProto.BOOL
    nodes = [helper.make_node(onnx_op, ["a", "b"], ["r" if negate else "y"])]
    if negate:
        nodes.append(helper.make_node("Not", ["r"], ["y"]))
    graph = helper.make_graph(nodes, "pair", [helper.make_tensor_value_info("a", ONNX_TYPES[da], [2, 3]),
                                              helper.make_tensor_value_info("b", ONNX_TYPES[db], [2, 3])],
                              [helper.make_tensor_value_info("y", out, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", DEFAULT_OPSET)])
    model.ir_version = min(model.ir_version, 10)  # what flashc writes, so onnxruntime reads it
    try:
        onnx.checker.check_model(model, full_check=True)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {"a": a, "b": b})[0]
    except Exception:  # noqa: BLE001  (any refusal counts: checker, shape inference, missing kernel)
        return None


def torch_result(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    try:
        return OPERATORS[op][2](torch.from_numpy(a), torch.from_numpy(b)).numpy()
    except (RuntimeError, TypeError):
        return None


def agree(op: str, da: str, db: str) -> bool:
    a, b = feeds(da, 1), feeds(db, 2)
    got, want = onnx_result(op, da, db, a, b), torch_result(op, a, b)
    if got is None or want is None or got.dtype != want.dtype:
        return False
    return np.allclose(got, want, rtol=1e-5, atol=1e-6) if got.dtype.kind == "f" else np.array_equal(got, want)


def spec(op: str, da: str, db: str) -> str:
    return f"model M {{\n  input a: {da}[2, 3]\n  input b: {db}[2, 3]\n  output y = a {op} b\n}}\n"


def checker_accepts(op: str, da: str, db: str) -> bool:
    try:
        flashc.loads(spec(op, da, db), file="pair.flash")
        return True
    except flashc.FlashError as err:
        d = err.diagnostics[0]
        assert (d.span.file, d.span.line, d.span.col) == ("pair.flash", 4, 14), err.render()
        assert d.hint, f"{op} on {da}, {db}: a dtype error gives a hint"
        return False


def run_both(text: str, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    model = flashc.loads(text)
    module = model.to_torch().eval()
    with torch.no_grad():
        want = module(*(torch.from_numpy(inputs[n]) for n in module.input_names)).numpy()
    proto = model.to_onnx()
    onnx.checker.check_model(proto, full_check=True)
    got = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, inputs)[0]
    return got, want


@pytest.mark.parametrize("op", list(OPERATORS))
def test_the_checker_accepts_the_pairs_torch_and_onnxruntime_agree_on(op):
    pairs = [(da, db) for da in DTYPES for db in DTYPES]
    accepted = {p for p in pairs if checker_accepts(op, *p)}
    agreeing = {p for p in pairs if agree(op, *p)}
    assert accepted <= agreeing, f"`{op}` accepts pairs the runtimes disagree on: {sorted(accepted - agreeing)}"
    assert agreeing - accepted == {(da, db) for o, da, db in STRICTER if o == op}
    for da, db in sorted(accepted):
        got, want = run_both(spec(op, da, db), {"a": feeds(da, 1), "b": feeds(db, 2)})
        assert got.dtype == want.dtype and str(got.dtype) == (da if op in ARITHMETIC else "bool")
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# A number beside a tensor: (operator, tensor dtype, the number as written, accepted?)
SCALARS = [
    ("*", "float32", "-1e9", True), ("+", "int64", "2", True), ("-", "int32", "3", True), ("*", "int64", "0.5", False),
    ("*", "bool", "-1e9", False), ("+", "bool", "1", False), ("/", "int64", "2", False), ("/", "float32", "4", True),
    ("**", "float32", "2", True), ("**", "int64", "2", False), ("**", "bool", "2", False),
    ("<", "float32", "0.25", True), (">=", "int64", "2", True), ("<", "int64", "2.5", False), ("<", "bool", "true", False),
    ("==", "bool", "true", True), ("!=", "bool", "false", True), ("==", "bool", "1", False), ("==", "int32", "true", False),
    ("and", "bool", "true", False),
]


@pytest.mark.parametrize("op, dtype, number, ok", SCALARS)
@pytest.mark.parametrize("number_first", [False, True])
def test_a_number_takes_the_dtype_of_the_tensor_beside_it(op, dtype, number, ok, number_first):
    expr = f"{number} {op} a" if number_first else f"a {op} {number}"
    text = f"model M {{\n  input a: {dtype}[2, 3]\n  output y = {expr}\n}}\n"
    if not ok:
        with pytest.raises(flashc.FlashError) as err:
            flashc.loads(text, file="s.flash")
        d = err.value.diagnostics[0]
        assert (d.span.line, d.span.col) == (3, 14)
        return
    got, want = run_both(text, {"a": feeds(dtype, 3)})
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_the_type_hole_of_the_issue_is_a_clean_error():
    with pytest.raises(flashc.FlashError) as err:
        flashc.loads("model M {\n  input m: bool[B, S]\n  output y = m * -1e9\n}\n", file="hole.flash")
    text = err.value.render()
    assert "hole.flash:3:14: error: `*` is arithmetic and bool[B, S] is bool" in text
    assert "cast(m, float32)" in text and "where(m, a, b)" in text


@pytest.mark.parametrize("expr, message", [
    ("cast(m, flaot32)", "`flaot32` is not a dtype"),
    ("cast(m, float16)", "`cast` converts to float32, int64, int32, bool; got float16"),
    ("cast(m, \"float32\")", "must be a dtype written bare"),
    ("where(x, x, 0.0)", "`where` chooses by a bool mask"),
    ("where(m, x, ids)", "`where` chooses between one dtype"),
    ("where(m, ids, 0.5)", "cannot put the fraction 0.5"),
    ("where(m, m, m)", "`where` chooses numbers"),
    ("x |> masked_fill(ids, 0.0)", "`masked_fill` needs a bool mask"),
    ("(x < 1) < m", "`<` orders numbers"),
    ("x < 1 < 2", "comparisons do not chain"),
    ("x and m", "`and` takes bool masks"),
    ("m and true", "`and` combines two bool masks or two booleans"),
    ("not x", "`not` takes a bool mask"),
    ("-m", "`-` is arithmetic"),
])
def test_type_errors_name_the_fix(expr, message):
    text = f"model M {{\n  input x: float32[B, 4]\n  input m: bool[B, 4]\n  input ids: int64[B, 4]\n  output y = {expr}\n}}\n"
    with pytest.raises(flashc.FlashError) as err:
        flashc.loads(text)
    d = err.value.diagnostics[0]
    assert message in d.message and d.span.line == 5, err.value.render()


def test_dtype_names_resolve_only_where_a_dtype_is_taken():
    with pytest.raises(flashc.FlashError, match="undefined name `float32`"):
        flashc.loads("model M {\n  input x: float32[B]\n  output y = x * float32\n}\n")
    spec_ = flashc.loads("model M(float32 = 2) {\n  input x: float32[B]\n  output y = x * float32\n}\n")
    assert spec_.outputs["y"] == "float32[B]"


def test_operators_on_numbers_compute_at_build_time():
    spec_ = flashc.loads("""model M(d = 3) {
  input x: float32[B, 9]
  output y = x |> linear(d ** 2 + 2 ** 0 - 1, bias = d > 2 and not d == 4 or false)
}
""")
    assert spec_.outputs["y"] == "float32[B, 9]" and spec_.parameter_count == 9 * 9 + 9
