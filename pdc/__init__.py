"""pdc: an ahead-of-time deep-learning compiler.

    module = pdc.compile("model.onnx", target="x86", shapes={"x": (1, 3, 224, 224)})
    outputs = module.run({"x": x})
    module = pdc.load("bundle_dir")
"""
__version__ = "0.1.0"

from .ir.errors import PdcError  # noqa: E402,F401


def compile(model, target: str = "x86", out_dir=None, **options):
    """Compiles `model` (a path, an onnx.ModelProto or a pdc Graph) and loads it as a Module.

    Options: name, threads, shapes ({input or symbol: shape}), weights ('c' or 'bin'), opt_level.
    Without out_dir the bundle goes to a fresh temporary folder (Module.folder says where).
    """
    import tempfile

    from .compiler import compile_bundle
    from .module import Module
    folder = out_dir or tempfile.mkdtemp(prefix="pdc-")
    compile_bundle(model, folder, target=target, **options)
    return Module(folder)


def load(folder):
    """Loads a compiled bundle folder as a Module."""
    from .module import Module
    return Module(folder)
