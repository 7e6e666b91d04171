"""python -m bench [--quick] [--only NAME[,NAME]] [--json PATH] [--threads N]"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import ROOT, Table, machine, sgemm_peak, versions

SECTIONS = ("train", "compile", "size", "ort", "rss", "scaling", "agreement", "moe", "generate", "train_scale")


def _section(name: str) -> Callable[[Any], Table | tuple[Table, ...]]:
    if name == "train":
        from bench.train import run
    elif name == "compile":
        from bench.compile import run_compile as run
    elif name == "size":
        from bench.compile import run_size as run
    elif name == "ort":
        from bench.ort import run
    elif name == "rss":
        from bench.rss import run
    elif name == "scaling":
        from bench.scaling import run
    elif name == "moe":
        from bench.moe import run
    elif name == "generate":
        from bench.generate import run
    elif name == "train_scale":
        from bench.train_scale import run
    else:
        from bench.agreement import run
    return run


@dataclass
class Context:
    quick: bool
    threads: int
    ws: Any
    meta: dict[str, Any]
    hand_encoder: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.strip())
    p.add_argument("--quick", action="store_true", help="a fast smoke run: fewer repetitions, a small GPT-2, fewer shapes")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help=f"run only these sections (repeat or comma-separate): {', '.join(SECTIONS)}")
    p.add_argument("--json", default=str(ROOT / "bench" / "results.json"), metavar="PATH",
                   help="where to write the results (default bench/results.json)")
    p.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads (default 2)")
    args = p.parse_args(argv)
    only = [s.strip() for item in args.only for s in item.split(",") if s.strip()]
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    args.sections = [s for s in SECTIONS if s in only] if only else list(SECTIONS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # GNU OpenMP's default busy-wait makes torch 10-20x slower whenever another process wants the
    # same cores (this 2-core machine is shared): idle OpenMP threads sleep unless the caller says otherwise
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from bench.graphs import Workspace

    torch.set_num_threads(args.threads)
    print(f"python -m bench: sections {', '.join(args.sections)}{' (quick)' if args.quick else ''}, "
          f"{args.threads} threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}", flush=True)
    meta: dict[str, Any] = {"versions": versions(), "machine": machine(), "quick": args.quick,
                            "threads": args.threads, "sections": args.sections,
                            "OMP_WAIT_POLICY": os.environ["OMP_WAIT_POLICY"],
                            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    meta["sgemm"] = sgemm_peak(args.threads, reps=5 if args.quick else 15)
    v = meta["versions"]
    print("versions: " + ", ".join(f"{k} {v[k]}" for k in v), flush=True)
    s = meta["sgemm"]
    print(f"sgemm peak: torch.mm {s['n']}x{s['n']} float32, {s['threads']} threads: {s['gflops']:.1f} GFLOP/s "
          f"(median of {s['reps']}; best {s['best_gflops']:.1f})\n", flush=True)
    results: dict[str, Any] = {"meta": meta, "sections": {}}
    out = Path(args.json)
    failed = False
    with tempfile.TemporaryDirectory(prefix="flashc-bench-") as tmp:
        ctx = Context(args.quick, args.threads, Workspace(Path(tmp), args.quick, args.threads), meta)
        for name in args.sections:
            start = time.perf_counter()
            entry: dict[str, Any] = {}
            try:
                produced = _section(name)(ctx)
                tables = produced if isinstance(produced, tuple) else (produced,)
                for t in tables:
                    print(t.render() + "\n", flush=True)
                entry["tables"] = [t.to_json() for t in tables]
            except Exception as exc:
                failed = True
                entry["error"] = f"{type(exc).__name__}: {exc}"
                entry["traceback"] = traceback.format_exc()
                print(f"== {name}: FAILED\n{entry['traceback']}", file=sys.stderr, flush=True)
            entry["seconds"] = time.perf_counter() - start
            results["sections"][name] = entry
            write(out, results)
    results["meta"]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write(out, results)
    print(f"wrote {out}")
    return 1 if failed else 0


def write(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(results, indent=1, default=str))
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
