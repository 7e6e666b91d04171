"""The command line: check, compile, train, run.

This is the one boundary where errors meet the user. Exit codes: 0 ok; 1 an
error in an input (a spec as `file:line:col: error:`, a data, weights or model
file as `path: error:`, a file that cannot be written); 2 a usage error
(`flashc COMMAND: error:`); 130 interrupted (Ctrl-C); 141 the reader of stdout
went away (`flashc check ... | head`: a quiet exit); 3 an internal error (a bug:
one line asking for a report, the traceback with `--debug`). No traceback is
shown otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

import flashc
from flashc.api import load_model
from flashc.argtypes import positive_int
from flashc.diagnostics import FlashError, Span, UsageError, error

EXAMPLES = {
    "check": "example:\n  flashc check specs/gpt2.flash --set depth=2 --set d=256\n  flashc check specs/lenet5.flash --json",
    "compile": "examples:\n  flashc compile specs/lenet5.flash --target onnx -o lenet5.onnx\n"
               "  flashc compile specs/gpt2.flash --target torch -o gpt2.py --set depth=2\n"
               "  flashc compile specs/mlp_digits.flash --target onnx -o mlp.onnx --weights run/best.safetensors",
    "train": "examples:\n  flashc train specs/mlp_digits.flash --data digits -o runs/mlp\n"
             "  flashc train --resume runs/mlp --epochs 40\n"
             "  flashc compile specs/mlp_digits.flash --target onnx --weights runs/mlp/best.safetensors -o mlp.onnx",
    "run": "examples:\n  flashc run lenet5.onnx --input x.npy\n  flashc run gpt2.onnx --input tokens=tokens.npy -o out.npz",
    "graph": "examples:\n  flashc graph specs/gpt2.flash -o gpt2.svg --depth 2\n"
             "  flashc graph specs/resnet18.flash -o resnet18.html     # blocks open on click",
    "lsp": "example:\n  flashc lsp 2> lsp.log     # started by an editor (editors/vscode/), speaks LSP on stdin/stdout",
    "init": "examples:\n  flashc init specs/gpt2.flash -o gpt2.safetensors --seed 0 --set depth=2\n"
            "  flashc init specs/gpt2.flash -o gpt2.safetensors --weights hf_gpt2/     # a checkpoint in the spec's names",
    "new": "example:\n  flashc new --from-hf path/to/config.json -o model.flash     # writes model.flash and model.hf.map\n"
           "  flashc compile model.flash --target onnx -o model.onnx --weights path/to/",
    "generate": "examples:\n  flashc compile specs/gpt2.flash --target onnx --kv-cache -o gpt2.onnx --weights hf_gpt2/\n"
                "  flashc generate gpt2.onnx --tokenizer tokenizer.json --prompt 'Hello' --max-new-tokens 40 --greedy\n"
                "  flashc generate specs/gpt2.flash --set depth=2 --prompt-ids 1,2,3 --max-new-tokens 8 --top-k 40 --seed 1",
    "fmt": "examples:\n  flashc fmt specs/*.flash\n  flashc fmt --check specs/*.flash     # CI: exit 1 and a diff when a file is not formatted",
}


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
    spec = load_model(args.spec, args.model, parse_sets(args.set), args.include)
    if args.json:
        print(json.dumps(spec.to_json(), indent=2, default=str))
    else:
        print(spec.table(expand=args.expand))
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from flashc.outputs import check_output_file

    if args.seed < 0:
        raise UsageError(f"--seed must be a whole number >= 0, got {args.seed}")
    if args.opset is not None and args.target == "onnx":
        from flashc.backends.onnx import DEFAULT_OPSET, MIN_OPSET

        if not MIN_OPSET <= args.opset <= DEFAULT_OPSET:
            raise UsageError(f"--opset {args.opset} is not supported; use {MIN_OPSET} to {DEFAULT_OPSET}")
    out = Path(args.output)
    also = [out.with_name(f"{out.name}.data")] if args.target == "onnx" else []  # external data of large models
    check_output_file(out, [("spec", args.spec), ("weights file", args.weights)], also)
    spec = load_model(args.spec, args.model, parse_sets(args.set), args.include)
    weights = open_weights(spec, args) if args.weights else None
    encoder, graph = spec.lowered_graphs(args.kv_cache)
    if args.target == "torch":
        from flashc.backends.torch import torch_source
        from flashc.kvcache import encoder_path
        from flashc.weights import write_atomic

        write_atomic(out, torch_source(graph).encode("utf-8"))
        if encoder is not None:
            write_atomic(encoder_path(out), torch_source(encoder).encode("utf-8"))
    elif encoder is not None:  # an encoder-decoder with --kv-cache: m.onnx (decoder) and m.encoder.onnx
        spec.to_onnx(out, weights, args.seed, args.opset, kv_cache=True, dtype=args.dtype, quantize=args.quantize)
    else:
        from flashc.backends.onnx import DEFAULT_OPSET, write_onnx
        from flashc.backends.onnx_post import post_process

        write_onnx(out, graph, weights, args.seed, args.opset or DEFAULT_OPSET)
        post_process(out, graph, args.dtype, args.quantize)
    if encoder is not None:
        from flashc.kvcache import encoder_path

        print(f"wrote {encoder_path(out)} ({encoder.name}: the encoder, with every cross-attention's keys and values)")
    if args.target == "torch":
        made = (f"`flashc init {args.spec} -o w.safetensors --weights {args.weights}` (checked: they fit)" if args.weights
                else f"`flashc init {args.spec} -o w.safetensors --seed {args.seed}` (the ONNX target's weights)")
        held = f"PyTorch's default initialisation; load weights with safetensors.torch.load_model(model, FILE), FILE from {made}"
    else:
        held = f"from {args.weights}" if args.weights else f"seeded initialisation, seed {args.seed} (as `flashc init`)"
    print(f"wrote {out} ({spec.name}, {spec.parameter_count:,} parameters, target {args.target}; weights: {held})")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from flashc.generate_cli import run_generate

    def spec_and_weights() -> tuple[flashc.Spec, Any]:
        spec = load_model(args.spec, args.model, parse_sets(args.set), args.include)
        return spec, (open_weights(spec, args) if args.weights else None)

    return run_generate(args, spec_and_weights)


def cmd_new(args: argparse.Namespace) -> int:
    from flashc.fmt import format_checked
    from flashc.hfnew import map_path, new_spec
    from flashc.outputs import check_output_file
    from flashc.weights import write_atomic

    out = Path(args.output)
    if out.suffix != ".flash":
        raise UsageError(f"-o names the spec to write, a .flash file; got {out}")
    check_output_file(out, [("config", args.from_hf)], [map_path(out)])
    spec_text, map_text = new_spec(args.from_hf, out)
    spec_text = format_checked(spec_text, str(out))
    from flashc.api import loads

    spec = loads(spec_text, str(out))  # what is written always builds and checks
    write_atomic(map_path(out), map_text.encode("utf-8"))
    write_atomic(out, spec_text.encode("utf-8"))
    print(f"wrote {out} ({spec.name}, {spec.parameter_count:,} parameters) and {map_path(out)}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from flashc.outputs import check_output_file

    if args.seed < 0:
        raise UsageError(f"--seed must be a whole number >= 0, got {args.seed}")
    out = Path(args.output)
    check_output_file(out, [("spec", args.spec), ("weights", args.weights)])
    spec = load_model(args.spec, args.model, parse_sets(args.set), args.include)
    weights = open_weights(spec, args) if args.weights else None
    spec.save_weights(out, weights, args.seed)
    held = f"from {args.weights}" if args.weights else f"seeded initialisation, seed {args.seed}"
    print(f"wrote {out} ({spec.name}, {spec.parameter_count:,} parameters in {len(spec.graph.weights)} tensors; "
          f"weights: {held})")
    return 0


def open_weights(spec: flashc.Spec, args: argparse.Namespace) -> Any:
    """`--weights` as the spec sees it (checked now); what was relaxed is said on stderr."""
    weights = spec.open_weights(args.weights, map=args.map, allow_missing=args.allow_missing,
                                allow_unexpected=args.allow_unexpected, seed=args.seed)
    if weights.initialised:
        print(f"note: {len(weights.initialised)} weight(s) not in {args.weights} keep their seeded initial values "
              f"(seed {args.seed}): {', '.join(weights.initialised[:5])}", file=sys.stderr)
    if weights.plan.unexpected and args.allow_unexpected:
        print(f"note: {len(weights.plan.unexpected)} key(s) of {args.weights} are not used: "
              f"{', '.join(weights.plan.unexpected[:5])}", file=sys.stderr)
    return weights


def read_run_config(run: Path) -> dict[str, Any]:
    """RUN/run.json, checked: the spec, data, `--set` values and epochs the run was started with."""
    config_file = run / "run.json"
    if not config_file.is_file():
        raise UsageError(f"{run} is not a run directory (no run.json)")
    try:
        saved = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise error(Span.nowhere(str(config_file)), f"not a readable run file: {exc}",
                    "start the run again with `flashc train SPEC --data DATA -o RUN`") from None
    kinds = {"spec": str, "data": str, "set": list}
    bad = [k for k, kind in kinds.items() if not isinstance(saved, dict) or not isinstance(saved.get(k), kind)]
    epochs = saved.get("epochs") if isinstance(saved, dict) else None
    if not bad and not (epochs is None or (type(epochs) is int and epochs >= 1)):
        bad = ["epochs"]
    if not bad and not all(isinstance(item, str) for item in saved["set"]):
        bad = ["set"]
    if bad:
        raise error(Span.nowhere(str(config_file)), f"not a valid run file: `{bad[0]}` is missing or malformed",
                    "start the run again with `flashc train SPEC --data DATA -o RUN`")
    return saved


def cmd_train(args: argparse.Namespace) -> int:
    from flashc.outputs import check_output_dir
    from flashc.train import distributed

    controls = {"accumulate": args.accumulate, "precision": args.precision, "compile": args.compile or None}
    if args.resume:
        run = Path(args.resume)
        saved = read_run_config(run)
        spec_path, data, sets = saved["spec"], saved["data"], saved["set"]
        epochs = args.epochs or saved.get("epochs")
        kept = saved.get("controls") if isinstance(saved.get("controls"), dict) else {}
        controls = {k: v if v is not None else kept.get(k) for k, v in controls.items()}
    else:
        if not args.spec or not args.data or not args.output:
            raise UsageError("train needs SPEC, --data and -o RUN/ (or --resume RUN/)")
        run = Path(args.output)
        check_output_dir(run, [("spec", args.spec), ("data file", args.data)])
        spec_path, data, sets, epochs = args.spec, args.data, args.set, args.epochs
    from flashc.train.loop import check_device

    problem = check_device(args.device)
    if problem:
        raise UsageError(f"--device {args.device}: {problem}")
    spec = load_model(spec_path, args.model, parse_sets(sets), args.include)
    from flashc.train.data import load_data
    from flashc.weights import write_atomic

    dataset = load_data(data, spec.graph)  # a data error stops here, before RUN/ is created
    if args.nproc is not None and args.nproc < 1:
        raise UsageError(f"--nproc must be >= 1, got {args.nproc}")
    if args.nproc and args.nproc > 1 and distributed.launched():
        raise UsageError("--nproc starts the workers itself; under torchrun leave it out")
    size = args.nproc or int(os.environ.get("WORLD_SIZE", "1"))
    try:  # what N processes cannot do with this section, said once here rather than by every worker
        if spec.graph.train is not None:
            distributed.check_world(distributed.World(size=size, shard=args.shard), spec.graph.train, len(dataset))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise error(Span.nowhere(str(run)), f"cannot create the run directory: {exc.strerror or exc}") from None

    if int(os.environ.get("RANK", "0")) == 0:
        given = {k: v for k, v in controls.items() if v is not None}  # kept for --resume
        write_atomic(run / "run.json", json.dumps({"spec": str(spec_path), "data": str(data), "set": sets,
                                                   "epochs": epochs, **({"controls": given} if given else {})},
                                                  indent=1).encode())
    if args.nproc and args.nproc > 1:  # the same command in N workers, started by torch.distributed.run
        return distributed.launch(worker_argv(args, epochs), args.nproc)
    result = spec.fit(dataset, run, epochs=epochs, resume=bool(args.resume), device=args.device, shard=args.shard,
                      **controls)
    if int(os.environ.get("RANK", "0")) != 0:  # one of several workers: the main one reports
        return 130 if result.interrupted else 1 if result.failed else 0
    if result.interrupted:
        print(f"interrupted; continue with: flashc train --resume {run}", file=sys.stderr)
        return 130
    print(f"run saved in {run}/ (best.safetensors, last.safetensors, metrics.jsonl, metrics.csv, curve.png)")
    return 1 if result.failed else 0


def worker_argv(args: argparse.Namespace, epochs: int | None) -> list[str]:
    """This `flashc train` command as each of the --nproc workers runs it (the same, less --nproc)."""
    argv = ["train", "--resume", args.resume] if args.resume else ["train", args.spec, "--data", args.data, "-o", args.output]
    if epochs:
        argv += ["--epochs", str(epochs)]
    for item in [] if args.resume else args.set:
        argv += ["--set", item]
    for flag, value in (("--model", args.model), ("--accumulate", args.accumulate), ("--precision", args.precision)):
        if value is not None and not (args.resume and flag == "--model"):
            argv += [flag, str(value)]
    for folder in args.include:
        argv += ["--include", folder]
    argv += ["--device", args.device] + ["--shard"] * args.shard + ["--compile"] * args.compile
    return argv


def read_inputs(items: list[str], names: list[str]) -> dict[str, tuple[Any, str]]:
    """Each model input -> (array, where it came from), from `--input [NAME=]FILE` items."""
    from flashc.npyfiles import check_numeric, load_arrays

    listed = ", ".join(names)
    feeds: dict[str, tuple[Any, str]] = {}
    for item in items:
        name, eq, path = item.rpartition("=") if "=" in item else ("", "", item)
        if name and name not in names:
            raise UsageError(f"`{name}` is not an input of the model; its inputs are: {listed}")
        p = Path(path)
        if not p.is_file():
            raise UsageError(f"no such input file: {path}")
        data = load_arrays(p)
        if isinstance(data, dict):
            if name:  # NAME=file.npz: the array called NAME, or the only one
                if name not in data and len(data) != 1:
                    raise UsageError(f"{path} holds {', '.join(map(repr, data))}, none named {name!r}")
                data = {name: data[name] if name in data else next(iter(data.values()))}
            for key, value in data.items():
                if key not in names:
                    raise UsageError(f"{path} holds array `{key}`, which is not an input of the model; "
                                     f"its inputs are: {listed}")
                feeds[key] = (value, f"{path} (array `{key}`)")
        elif name:
            feeds[name] = (data, path)
        else:
            taken = [n for n in names if n not in feeds]
            if not taken:
                raise UsageError(f"{path}: the model has no more inputs to fill ({listed})")
            feeds[taken[0]] = (data, path)
    for value, where in feeds.values():
        check_numeric(value, where)
    missing = [n for n in names if n not in feeds]
    if missing:
        raise UsageError(f"missing input(s): {', '.join(missing)}; pass --input NAME=FILE.npy")
    return feeds


ORT_DTYPES = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(bool)": "bool", "tensor(int32)": "int32",
              "tensor(float16)": "float16", "tensor(double)": "float64"}


def cast_input(value: Any, where: str, name: str, ort_type: str) -> Any:
    """The array in the dtype the model wants; converting fractions to integers is refused, not truncated."""
    import numpy as np

    want = ORT_DTYPES.get(ort_type)
    if want is None or value.dtype == want:
        return value
    if np.dtype(want).kind in "iub" and value.dtype.kind == "f":
        if not np.all(np.isfinite(value)) or not np.all(np.mod(value, 1) == 0):
            raise error(Span.nowhere(where), f"holds fractional or non-finite values, but input `{name}` is {ort_type}")
    return value.astype(want)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np
    import onnxruntime as ort

    from flashc.outputs import check_output_file

    if not Path(args.model).is_file():
        raise UsageError(f"no such model file: {args.model}")
    if args.output:
        check_output_file(Path(args.output), [("model", args.model)] + [
            ("input file", item.rpartition("=")[2]) for item in args.input])
    try:
        session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise error(Span.nowhere(args.model), f"onnxruntime cannot load this model: {one_line(exc)}") from None
    inputs = session.get_inputs()
    loaded = read_inputs(args.input, [i.name for i in inputs])
    feeds = {}
    for i in inputs:
        value, where = loaded[i.name]
        feeds[i.name] = cast_input(value, where, i.name, i.type)
        if len(feeds[i.name].shape) != len(i.shape):
            raise UsageError(f"input {i.name!r} needs rank {len(i.shape)} {i.shape}, got shape {list(feeds[i.name].shape)}")
    try:
        results = session.run(None, feeds)
    except Exception as exc:
        raise error(Span.nowhere(args.model), f"onnxruntime failed: {one_line(exc)}") from None
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


def cmd_graph(args: argparse.Namespace) -> int:
    from flashc.render.entry import write_graph

    spec = load_model(args.spec, args.model, parse_sets(args.set), args.include)
    source = Path(args.spec).read_text(encoding="utf-8", errors="replace")
    out = write_graph(spec.graph, args.output, args.depth, source)
    print(f"wrote {out} ({spec.name}, {spec.parameter_count:,} parameters)")
    return 0


def cmd_lsp(args: argparse.Namespace) -> int:
    try:
        from flashc.lsp import main as serve
    except ImportError as exc:
        raise UsageError(f"the language server needs pygls ({exc.name} is missing): pip install 'flashc[lsp]'") from None
    return serve()


def cmd_fmt(args: argparse.Namespace) -> int:
    from flashc.fmt import format_files

    return format_files(args.files, args.check)


DEBUG_HELP = "on an internal error, show the Python traceback"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flashc", description="Compile .flash model specs to PyTorch and ONNX.")
    p.add_argument("--version", action="version", version=f"flashc {flashc.__version__}")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_, description=help_, epilog=EXAMPLES[name],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        c.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        return c

    def spec_args(c: argparse.ArgumentParser) -> None:
        c.add_argument("spec", help="the .flash file")
        c.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a model parameter")
        c.add_argument("--model", help="which model of the file (default: the first)")
        c.add_argument("--include", action="append", default=[], metavar="DIR",
                       help="a folder `import` may read from, besides the spec's own folder tree")

    def weight_args(c: argparse.ArgumentParser) -> None:
        c.add_argument("--weights", metavar="PATH", help="a checkpoint: .safetensors file, Hugging Face folder "
                       "(sharded or not) or .pth; read through the spec's NAME.*.map (default: seeded initialisation)")
        c.add_argument("--map", metavar="FILE", help="the checkpoint map to read --weights through (default: the "
                       "best fit among the spec's NAME.*.map files, or the spec's own names)")
        c.add_argument("--allow-missing", action="store_true", help="weights the checkpoint lacks keep their seeded values")
        c.add_argument("--allow-unexpected", action="store_true", help="ignore checkpoint keys the spec does not use")

    c = command("check", "Parse and check a spec; print each layer's output shape and parameters.")
    spec_args(c)
    c.add_argument("--json", action="store_true", help="print the summary as JSON")
    c.add_argument("--expand", action="store_true", help="list every block of a repeat (folded after the first by default)")
    c.set_defaults(func=cmd_check)

    c = command("compile", "Compile a spec to PyTorch source or an ONNX model.")
    spec_args(c)
    c.add_argument("--target", choices=("torch", "onnx"), required=True)
    c.add_argument("-o", "--output", required=True, help="the file to write (written atomically)")
    weight_args(c)
    c.add_argument("--seed", type=int, default=0, help="seed of the initial weights (default 0)")
    c.add_argument("--opset", type=int, default=None, help="ONNX opset (default 23; 17-22 decompose attention)")
    c.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                   help="float16: weights and compute in half precision (inputs/outputs stay float32)")
    c.add_argument("--quantize", choices=("int8",), help="int8: MatMul/Gemm weights as int8, a scale per output "
                   "(activations stay float32; routers stay float32)")
    c.add_argument("--kv-cache", action="store_true", help="causal decoders: take past keys/values "
                   "(past_key_values.N.key/value) and return present ones (present.N.key/value), for `flashc generate`")
    c.set_defaults(func=cmd_compile)

    c = command("init", "Write a spec's weights to a .safetensors file (seeded, or a checkpoint in the spec's names).")
    spec_args(c)
    c.add_argument("-o", "--output", required=True, help="the .safetensors file to write (written atomically)")
    c.add_argument("--seed", type=int, default=0, help="seed of the initial weights (default 0; as compile uses)")
    weight_args(c)
    c.set_defaults(func=cmd_init)

    c = command("new", "Write a spec (and its checkpoint map) from a Hugging Face config.json.")
    c.add_argument("--from-hf", required=True, metavar="CONFIG", help="a config.json, or the folder holding it: "
                   "gpt2, bert, vit, llama, mistral, qwen2, mixtral, clip, t5, whisper")
    c.add_argument("-o", "--output", required=True, help="the .flash file to write; NAME.hf.map is written beside it")
    c.set_defaults(func=cmd_new)

    c = command("train", "Train a spec on data as its `train` section says; checkpoints and metrics go to RUN/.")
    c.add_argument("spec", nargs="?", help="the .flash file (not needed with --resume)")
    c.add_argument("--data", help=".npz, .safetensors, .csv, or a built-in: digits, digit_pairs, shapes, chars, blobs")
    c.add_argument("-o", "--output", metavar="RUN", help="the run directory")
    c.add_argument("--resume", metavar="RUN", help="continue the run in RUN/ from its last checkpoint")
    c.add_argument("--epochs", type=positive_int, help="total epochs, >= 1 (default: the spec's); with --resume "
                   "the schedule stretches to the new total")
    c.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a model parameter")
    c.add_argument("--model", help="which model of the file (default: the first)")
    c.add_argument("--include", action="append", default=[], metavar="DIR",
               help="a folder `import` may read from, besides the spec's own folder tree")
    c.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    c.add_argument("--nproc", type=int, metavar="N", help="train in N local processes (DDP: gloo on CPU, NCCL on "
                   "CUDA, one GPU each), started through torch.distributed.run; `batch` stays the global batch")
    c.add_argument("--shard", action="store_true", help="with several processes: FSDP (fully_shard) instead of "
                   "DDP, each process holding a shard of the weights and optimizer state")
    c.add_argument("--accumulate", type=positive_int, metavar="K", help="micro-batches per optimizer step "
                   "(overrides the section's `accumulate`)")
    c.add_argument("--precision", choices=("fp32", "bf16", "fp16"), help="autocast precision (overrides the "
                   "section's `precision`; fp16 adds a gradient scaler)")
    c.add_argument("--compile", action="store_true", help="train through torch.compile")
    c.set_defaults(func=cmd_train)

    c = command("generate", "Generate tokens from a decoder (a .flash spec, compiled with a KV cache, or an .onnx file).")
    spec_args(c)
    weight_args(c)
    from flashc.generate_cli import add_arguments

    add_arguments(c)
    c.set_defaults(func=cmd_generate)

    c = command("run", "Run an ONNX model in onnxruntime on .npy/.npz inputs.")
    c.add_argument("model", help="the .onnx file")
    c.add_argument("--input", action="append", default=[], required=True, metavar="[NAME=]FILE",
                   help=".npy (one input) or .npz (named inputs)")
    c.add_argument("-o", "--output", help="save the outputs to this .npz file")
    c.set_defaults(func=cmd_run)

    c = command("graph", "Draw a spec: inputs, layers and blocks with output shapes and parameters, as SVG or HTML.")
    spec_args(c)
    c.add_argument("-o", "--output", required=True, help="model.svg, or model.html (self-contained; blocks open on click)")
    c.add_argument("--depth", type=int, default=0, help="open blocks down to this nesting depth (default 0: one box per block)")
    c.set_defaults(func=cmd_graph)

    c = command("lsp", "Run the language server on stdin/stdout (diagnostics, hover, definitions, completion, outline).")
    c.set_defaults(func=cmd_lsp)

    c = command("fmt", "Rewrite .flash files in the one canonical layout (comments kept, only whitespace changes).")
    c.add_argument("files", nargs="+", metavar="FILE", help="the .flash files")
    c.add_argument("--check", action="store_true", help="change nothing; exit 1 and print a diff if a file would change")
    c.set_defaults(func=cmd_fmt)
    return p


def main(argv: list[str] | None = None) -> int:
    if hasattr(signal, "SIGXFSZ"):  # over a file-size limit, a write fails with EFBIG instead of killing us
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    args = parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows up here, inside the boundary
        return code
    except FlashError as exc:
        return _report(exc.render(), 1)
    except UsageError as exc:
        return _report(f"flashc {args.command}: error: {exc}", 2)
    except KeyboardInterrupt:
        return _report("interrupted", 130)
    except BrokenPipeError:
        return _quiet_pipe()
    except OSError as exc:  # the file system: a file that cannot be read or written
        where = exc.filename if exc.filename is not None else "flashc"
        return _report(f"{where}: error: {exc.strerror or exc}", 1)
    except MemoryError:
        return _report("flashc: error: out of memory; try smaller sizes (--set) or a machine with more memory", 1)
    except Exception as exc:
        if args.debug or os.environ.get("FLASHC_DEBUG"):
            traceback.print_exc()
        reason = one_line(f"{type(exc).__name__}: {exc}")[:300]
        return _report(f"flashc: internal error, please report: {reason}"
                       + ("" if args.debug else " (run with --debug for the traceback)"), 3)


def _report(message: str, code: int) -> int:
    with contextlib.suppress(OSError):
        print(message, file=sys.stderr)
    return code


def _quiet_pipe() -> int:
    """Whoever read our output stopped (`| head`): exit quietly, as the SIGPIPE convention does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail again
    return 141


if __name__ == "__main__":
    sys.exit(main())
