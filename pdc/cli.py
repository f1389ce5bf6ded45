"""The `pdc` command line."""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter

from . import __version__
from .ir.errors import PdcError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + message
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _load(path: str):
    from .frontend import load_model
    return load_model(path)


# ---- commands -------------------------------------------------------------------------------
def cmd_opt(args) -> int:
    from .ir.printer import print_graph
    from .ir.textio import save_ir
    graph = _load(args.model)
    if args.output:
        save_ir(graph, args.output)
        print(f"wrote {args.output} and {args.output}.npz", file=sys.stderr)
    else:
        sys.stdout.write(print_graph(graph))
    return 0


def describe_model(graph) -> dict:
    from .ir.cost import graph_macs, parameter_count
    io = lambda vs: [{"name": v.name, "dtype": v.type.dtype.name,  # noqa: E731
                      "shape": None if v.type.shape is None else list(v.type.shape)} for v in vs]
    return {
        "graph": graph.name,
        "inputs": io(graph.inputs),
        "outputs": io(graph.outputs),
        "nodes": len(graph.nodes),
        "ops": dict(sorted(Counter(n.op for n in graph.nodes).items())),
        "parameters": parameter_count(graph),
        "parameter_bytes": sum(int(c.data.nbytes) for c in graph.constants),
        "macs": graph_macs(graph),
    }


def cmd_inspect(args) -> int:
    info = describe_model(_load(args.model))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    fmt_io = lambda v: f"  {v['name']}: {v['dtype']}{v['shape'] if v['shape'] is not None else '[*]'}"  # noqa: E731
    print(f"model: {args.model} (graph '{info['graph']}')")
    print("inputs:")
    print("\n".join(fmt_io(v) for v in info["inputs"]))
    print("outputs:")
    print("\n".join(fmt_io(v) for v in info["outputs"]))
    print(f"nodes: {info['nodes']}")
    width = max((len(k) for k in info["ops"]), default=0)
    for op, count in sorted(info["ops"].items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {op:<{width}}  {count}")
    print(f"parameters: {info['parameters']:,} ({info['parameter_bytes'] / 2**20:.2f} MiB)")
    print(f"MACs: {info['macs']:,}")
    return 0


# ---- entry point ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pdc", description="pdc: an ahead-of-time deep-learning compiler for ONNX and PaddlePaddle "
                                        "models.")
    p.add_argument("--version", action="version", version=f"pdc {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    opt = sub.add_parser("opt", help="import a model and print or save its IR",
                         description="Imports MODEL (.onnx or .pdir) and emits its IR text. With -o FILE, writes "
                                     "FILE (the text) and FILE.npz (the constants); FILE is then a complete model "
                                     "that every pdc command accepts.")
    opt.add_argument("model", metavar="MODEL")
    opt.add_argument("--emit", choices=["ir"], default="ir", help="what to emit (default: ir)")
    opt.add_argument("-o", "--output", metavar="FILE", help="write to FILE (+ FILE.npz) instead of stdout")
    opt.set_defaults(func=cmd_opt)

    ins = sub.add_parser("inspect", help="summarize a model: inputs, outputs, ops, parameters, MACs",
                         description="Prints MODEL's inputs and outputs, a histogram of its ops, its parameter "
                                     "count and an estimate of its multiply-accumulates.")
    ins.add_argument("model", metavar="MODEL")
    ins.add_argument("--json", action="store_true", help="print JSON for machines")
    ins.set_defaults(func=cmd_inspect)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except PdcError as e:
        print(f"pdc: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pdc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:
        if os.environ.get("PDC_DEBUG"):
            raise
        print(f"pdc: internal error: {type(e).__name__}: {e} (set PDC_DEBUG=1 for a traceback)", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
