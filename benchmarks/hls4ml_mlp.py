"""Runs hls4ml's own C simulation of a dense ReLU network with given fixed-point types; the half of
benchmarks/fpga_hls4ml.py that needs hls4ml with its dependencies (`pip install hls4ml`), so it runs
under whichever Python has them:

    python benchmarks/hls4ml_mlp.py spec.npz out.npz workdir

spec.npz: n_layers; per layer i w{i} [in, out], b{i}, relu{i} (0/1), weight{i} bias{i} accum{i} result{i}
(type strings); input_t; reuse; x [N, in]. out.npz: y (float64 [N, out]) and report (JSON: hls4ml's version,
the types its generated code declares, each dense layer's multiplier limit from parameters.h, and the
synthesis report if a synthesis tool ran in workdir; hls4ml itself makes no estimate without one).

The network goes to hls4ml as a layer list (ModelGraph.from_layer_list, where its converters end), so no
Keras or PyTorch is needed; each layer's weight, bias, accumulator and result types are set by name.
"""
import json
import os
import re
import shutil
import sys

import numpy as np


def _s(spec, key) -> str:
    return str(spec[key][()])


def multiplier_limit(config: str) -> int:
    """A dense config's multiplier_limit, DIV_ROUNDUP(n_in * n_out, reuse_factor) - n_zeros / reuse_factor."""
    v = {k: int(n) for k, n in re.findall(r"static const unsigned (\w+) = (\d+);", config)}
    return -(-v["n_in"] * v["n_out"] // v["reuse_factor"]) - v["n_zeros"] // v["reuse_factor"]


def main(spec_path: str, out_path: str, workdir: str) -> int:
    import hls4ml
    from hls4ml.model import ModelGraph
    spec = np.load(spec_path)
    prj = os.path.abspath(os.path.join(workdir, "hls4ml_prj"))
    shutil.rmtree(prj, ignore_errors=True)
    reuse = int(spec["reuse"])
    x = np.ascontiguousarray(spec["x"], np.float64)  # the float64 bridge: ap_fixed(double) in, exact double out
    layers = [{"name": "x_in", "class_name": "InputLayer", "input_shape": [x.shape[1]]}]
    names = {"x_in": {"Precision": {"result": _s(spec, "input_t")}}}
    prev = "x_in"
    for i in range(int(spec["n_layers"])):
        w, b = spec[f"w{i}"], spec[f"b{i}"]
        layers.append({"name": f"fc{i}", "class_name": "Dense", "inputs": [prev], "weight_data": w, "bias_data": b,
                       "n_in": w.shape[0], "n_out": w.shape[1], "use_bias": True, "weight_quantizer": None,
                       "bias_quantizer": None})
        names[f"fc{i}"] = {"Precision": {k: _s(spec, f"{k}{i}") for k in ("weight", "bias", "accum", "result")},
                           "ReuseFactor": reuse, "Strategy": "Latency"}
        prev = f"fc{i}"
        if int(spec[f"relu{i}"]):
            layers.append({"name": f"relu{i}", "class_name": "Activation", "activation": "relu", "inputs": [prev]})
            names[f"relu{i}"] = {"Precision": {"result": _s(spec, f"result{i}")}, "ReuseFactor": reuse}
            prev = f"relu{i}"
    config = hls4ml.utils.config.create_config(output_dir=prj, project_name="myproject", backend="Vivado",
                                               io_type="io_parallel", part="xcvu13p-flga2577-2-e", clock_period=5)
    # an odd default, so a type hls4ml had to pick itself shows in the generated code
    config["HLSConfig"] = {"Model": {"Precision": {"default": "ap_fixed<77,37>"}, "ReuseFactor": reuse,
                                     "Strategy": "Latency", "BitExact": False, "TraceOutput": False},
                           "LayerName": names}
    model = ModelGraph.from_layer_list(config, layers, inputs=["x_in"], outputs=[prev])
    model.compile()
    y = np.asarray(model.predict(x), np.float64).reshape(len(x), -1)
    firmware = os.path.join(prj, "firmware")
    params = open(os.path.join(firmware, "parameters.h")).read()
    defines = open(os.path.join(firmware, "defines.h")).read()
    report = {"hls4ml": hls4ml.__version__,
              "typedefs": dict((m.group(2), m.group(1).strip())
                               for m in re.finditer(r"typedef\s+(.+?)\s+(\w+)\s*;", defines + params)),
              "multiplier_limit": [multiplier_limit(body) for body in re.findall(r"struct \w+ : nnet::dense_config "
                                                                                   r"\{(.*?)\n\};", params, re.S)]}
    try:
        from hls4ml.report import parse_vivado_report
        report["synthesis"] = parse_vivado_report(prj)
    except Exception as e:  # noqa: BLE001 - no synthesis tool here: say so in the report
        report["synthesis"] = f"unavailable: {e}"
    np.savez(out_path, y=y, report=np.array(json.dumps(report)))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
