"""The command line: check, compile, run. Exit codes: 0 ok, 1 spec error, 2 usage error."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import flashc
from flashc.api import load_model
from flashc.diagnostics import FlashError

EXAMPLES = {
    "check": "example:\n  flashc check specs/gpt2.flash --set depth=2 --set d=256\n  flashc check specs/lenet5.flash --json",
    "compile": "examples:\n  flashc compile specs/lenet5.flash --target onnx -o lenet5.onnx\n"
               "  flashc compile specs/gpt2.flash --target torch -o gpt2.py --set depth=2\n"
               "  flashc compile specs/mlp_digits.flash --target onnx -o mlp.onnx --weights run/best.safetensors",
    "train": "examples:\n  flashc train specs/mlp_digits.flash --data digits -o runs/mlp\n"
             "  flashc train --resume runs/mlp --epochs 40\n"
             "  flashc compile specs/mlp_digits.flash --target onnx --weights runs/mlp/best.safetensors -o mlp.onnx",
    "run": "examples:\n  flashc run lenet5.onnx --input x.npy\n  flashc run gpt2.onnx --input tokens=tokens.npy -o out.npz",
}


class UsageError(Exception):
    """A bad command line (exit code 2)."""


def parse_value(text: str) -> Any:
    """`--set` values: true/false, whole numbers, numbers, else a string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        with contextlib.suppress(ValueError):
            return kind(text.replace("_", ""))
    return text.strip('"')


def parse_sets(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip().isidentifier() or not value.strip():
            raise UsageError(f"--set expects NAME=VALUE, got {item!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def cmd_check(args: argparse.Namespace) -> int:
    spec = load_model(args.spec, args.model, parse_sets(args.set))
    if args.json:
        print(json.dumps(spec.to_json(), indent=2, default=str))
    else:
        print(spec.table(expand=args.expand))
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    spec = load_model(args.spec, args.model, parse_sets(args.set))
    out = Path(args.output)
    if args.target == "torch":
        from flashc.weights import write_atomic

        if args.weights:
            from flashc.weights import check_weights, load_safetensors

            check_weights(spec.graph, load_safetensors(args.weights), args.weights)
        write_atomic(out, spec.torch_source().encode("utf-8"))
    else:
        from flashc.backends.onnx import DEFAULT_OPSET, write_onnx

        write_onnx(out, spec.graph, args.weights, args.seed, args.opset or DEFAULT_OPSET)
        if args.dtype == "float16":
            from flashc.backends.onnx_post import to_float16

            to_float16(out)
        if args.quantize == "int8":
            from flashc.backends.onnx_post import quantize_int8

            quantize_int8(out)
    print(f"wrote {out} ({spec.name}, {spec.parameter_count:,} parameters, target {args.target})")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    run = Path(args.output) if args.output else None
    if args.resume:
        run = Path(args.resume)
        config_file = run / "run.json"
        if not config_file.is_file():
            raise UsageError(f"{run} is not a run directory (no run.json)")
        saved = json.loads(config_file.read_text())
        spec_path, data, sets = saved["spec"], saved["data"], saved["set"]
        epochs = args.epochs or saved.get("epochs")
    else:
        if not args.spec or not args.data or run is None:
            raise UsageError("train needs SPEC, --data and -o RUN/ (or --resume RUN/)")
        spec_path, data, sets, epochs = args.spec, args.data, args.set, args.epochs
    spec = load_model(spec_path, args.model, parse_sets(sets))
    from flashc.train.data import load_data
    from flashc.weights import write_atomic

    dataset = load_data(data, spec.graph)  # a data error stops here, before RUN/ is created
    run.mkdir(parents=True, exist_ok=True)

    write_atomic(run / "run.json", json.dumps({"spec": str(spec_path), "data": str(data), "set": sets,
                                               "epochs": epochs}, indent=1).encode())
    result = spec.fit(dataset, run, epochs=epochs, resume=bool(args.resume), device=args.device)
    print(f"run saved in {run}/ (best.safetensors, last.safetensors, metrics.jsonl, metrics.csv, curve.png)")
    return 1 if result.failed else 0


def read_inputs(items: list[str], names: list[str]) -> dict[str, Any]:
    import numpy as np

    feeds: dict[str, Any] = {}
    for item in items:
        name, eq, path = item.rpartition("=") if "=" in item else ("", "", item)
        p = Path(path)
        if not p.is_file():
            raise UsageError(f"no such input file: {path}")
        try:
            data = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise UsageError(f"cannot read {path} as .npy/.npz: {exc}") from None
        if hasattr(data, "files"):
            feeds.update({k: data[k] for k in data.files})
        elif name:
            feeds[name] = data
        else:
            taken = [n for n in names if n not in feeds]
            if not taken:
                raise UsageError(f"{path}: the model has no more inputs to fill ({', '.join(names)})")
            feeds[taken[0]] = data
    missing = [n for n in names if n not in feeds]
    if missing:
        raise UsageError(f"missing input(s): {', '.join(missing)}; pass --input NAME=FILE.npy")
    unknown = [n for n in feeds if n not in names]
    if unknown:
        raise UsageError(f"the model has no input {unknown[0]!r}; its inputs are: {', '.join(names)}")
    return feeds


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np
    import onnxruntime as ort

    if not Path(args.model).is_file():
        raise UsageError(f"no such model file: {args.model}")
    try:
        session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise FlashError([_plain(args.model, f"onnxruntime cannot load this model: {exc}")]) from None
    inputs = session.get_inputs()
    feeds = read_inputs(args.input, [i.name for i in inputs])
    dtypes = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_,
              "tensor(int32)": np.int32, "tensor(float16)": np.float16, "tensor(double)": np.float64}
    for i in inputs:
        want = dtypes.get(i.type)
        if want is not None and feeds[i.name].dtype != want:
            feeds[i.name] = feeds[i.name].astype(want)
        if len(feeds[i.name].shape) != len(i.shape):
            raise UsageError(f"input {i.name!r} needs rank {len(i.shape)} {i.shape}, got shape {list(feeds[i.name].shape)}")
    try:
        results = session.run(None, feeds)
    except Exception as exc:
        raise FlashError([_plain(args.model, f"onnxruntime failed: {exc}")]) from None
    named = {o.name: r for o, r in zip(session.get_outputs(), results)}
    for name, value in named.items():
        print(f"{name}: {value.dtype}{list(value.shape)}")
        print(np.array2string(value, threshold=20, precision=4, edgeitems=3))
        if value.ndim >= 1 and np.issubdtype(value.dtype, np.floating) and value.shape[-1] > 1:
            print(f"argmax over the last axis: {np.array2string(value.argmax(-1), threshold=20)}")
    if args.output:
        import io

        from flashc.weights import write_atomic

        buf = io.BytesIO()
        np.savez(buf, **named)
        write_atomic(args.output, buf.getvalue())
        print(f"wrote {args.output}")
    return 0


def _plain(file: str, message: str) -> Any:
    from flashc.diagnostics import Diagnostic, Span

    return Diagnostic(Span.unknown(file), message)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flashc", description="Compile .flash model specs to PyTorch and ONNX.")
    p.add_argument("--version", action="version", version=f"flashc {flashc.__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_, epilog=EXAMPLES[name],
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    def spec_args(c: argparse.ArgumentParser) -> None:
        c.add_argument("spec", help="the .flash file")
        c.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a model parameter")
        c.add_argument("--model", help="which model of the file (default: the first)")

    c = command("check", "Parse and check a spec; print each layer's output shape and parameters.")
    spec_args(c)
    c.add_argument("--json", action="store_true", help="print the summary as JSON")
    c.add_argument("--expand", action="store_true", help="list every block of a repeat (folded after the first by default)")
    c.set_defaults(func=cmd_check)

    c = command("compile", "Compile a spec to PyTorch source or an ONNX model.")
    spec_args(c)
    c.add_argument("--target", choices=("torch", "onnx"), required=True)
    c.add_argument("-o", "--output", required=True, help="the file to write (written atomically)")
    c.add_argument("--weights", help="a .safetensors file of trained weights (default: seeded initialisation)")
    c.add_argument("--seed", type=int, default=0, help="seed of the initial weights (default 0)")
    c.add_argument("--opset", type=int, default=None, help="ONNX opset (default 23; 17-22 decompose attention)")
    c.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                   help="float16: weights and compute in half precision (inputs/outputs stay float32)")
    c.add_argument("--quantize", choices=("int8",), help="int8: dynamic quantization of MatMul/Gemm weights")
    c.set_defaults(func=cmd_compile)

    c = command("train", "Train a spec on data as its `train` section says; checkpoints and metrics go to RUN/.")
    c.add_argument("spec", nargs="?", help="the .flash file (not needed with --resume)")
    c.add_argument("--data", help=".npz, .safetensors, .csv, or a built-in: digits, digit_pairs, shapes, chars, blobs")
    c.add_argument("-o", "--output", metavar="RUN", help="the run directory")
    c.add_argument("--resume", metavar="RUN", help="continue the run in RUN/ from its last checkpoint")
    c.add_argument("--epochs", type=int, help="total epochs (default: the spec's)")
    c.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a model parameter")
    c.add_argument("--model", help="which model of the file (default: the first)")
    c.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    c.set_defaults(func=cmd_train)

    c = command("run", "Run an ONNX model in onnxruntime on .npy/.npz inputs.")
    c.add_argument("model", help="the .onnx file")
    c.add_argument("--input", action="append", default=[], required=True, metavar="[NAME=]FILE",
                   help=".npy (one input) or .npz (named inputs)")
    c.add_argument("-o", "--output", help="save the outputs to this .npz file")
    c.set_defaults(func=cmd_run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except FlashError as exc:
        print(exc.render(), file=sys.stderr)
        return 1
    except UsageError as exc:
        print(f"flashc {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
