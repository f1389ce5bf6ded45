"""pdc: an ahead-of-time deep-learning compiler.

    module = pdc.compile("model.onnx", target="x86", shapes={"x": (1, 3, 224, 224)})
    outputs = module.run({"x": x})
    module = pdc.load("bundle_dir")
"""
__version__ = "0.1.0"

from .ir.errors import PdcError  # noqa: E402,F401
from .module import Module  # noqa: E402,F401


def compile(model, target: str = "x86", out_dir=None, **options) -> Module:
    """Compiles `model` (a path, an onnx.ModelProto or a pdc Graph) and loads it as a Module.

    Options: name, threads (default: this machine's cores for x86, 1 elsewhere), shapes ({input or
    symbol: shape}), weights ('c' or 'bin'), opt_level, flash, ram, quantize, calibration,
    quant_options, precision ('fp32' or 'fp16': the OpenCL targets' float storage), max_tensor_bytes.
    With out_dir the bundle is written there and stays. Without it the bundle goes to a temporary
    folder (Module.folder) that is removed when the Module is garbage-collected or Python exits.
    """
    import shutil
    import tempfile
    import weakref

    from .compiler import compile_bundle
    _check_options(options)
    if out_dir is not None:
        compile_bundle(model, out_dir, target=target, **options)
        return Module(out_dir)
    folder = tempfile.mkdtemp(prefix="pdc-")
    try:
        compile_bundle(model, folder, target=target, **options)
        module = Module(folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    # the folder lives as long as the Module (finalizers also run at interpreter exit)
    weakref.finalize(module, shutil.rmtree, folder, ignore_errors=True)
    return module


def _check_options(options: dict) -> None:
    """An unknown keyword is the caller's mistake: name pdc.compile and the keyword, not compile_bundle."""
    import difflib
    import inspect

    from .compiler import compile_details
    accepted = [p for p in inspect.signature(compile_details).parameters if p not in ("model", "out_dir", "target")]
    for key in options:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise TypeError(f"pdc.compile() got an unexpected keyword argument '{key}'{hint}; "
                            f"accepted: model, target, out_dir, {', '.join(accepted)}")


def load(folder) -> Module:
    """Loads a compiled bundle folder as a Module."""
    return Module(folder)
