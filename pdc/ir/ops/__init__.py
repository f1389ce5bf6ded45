"""Importing this package registers every op. One module per op family."""
import importlib
import pkgutil

for _m in pkgutil.iter_modules(__path__):
    if _m.name != "common":
        importlib.import_module(f"{__name__}.{_m.name}")
