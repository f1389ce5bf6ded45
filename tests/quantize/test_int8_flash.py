"""Cortex-M4 flash of the int8 digits CNN against its fp32 build (issue: at most 35 %), two measures:
- the firmware image (model.elf: the model, its startup code and test harness, the C library and
  libgcc functions they call), which the manifest reports as flash_bytes;
- the deployable library (libmodel.a, arm-none-eabi-size -t: every object, before the linker drops
  what is unused).
The int8 build must pull in none of the soft-float / 64-bit helpers the integer kernels could
need on a 32-bit core (int64 -> float conversions, rintf, 64-bit division): they cost more flash
than the kernels. RAM (arena + stack estimate) is reported next to flash."""
from __future__ import annotations

import os
import subprocess

import pytest

import pdc
from pdc.frontend import load_model
from pdc.quantize import quantize_model
from pdc.targets.cortex_m import load_manifest
from test_cortex_m import require_mcu_tools

from .test_ptq import digits_split

FLASH_RATIO = 0.35
# what the int8 image must not call: int64 -> float (the requantization's (float)acc of an int64
# accumulator), rintf (quantize_linear's rounding), 64-bit division (int64 loop indices)
WIDE_HELPERS = ("__aeabi_l2f", "__aeabi_ul2f", "rintf", "__aeabi_ldivmod", "__aeabi_uldivmod", "__udivmoddi4")


def _library_bytes(folder: str) -> int:
    """text + data of the bundle's static library (arm-none-eabi-size -t: the TOTALS line)."""
    out = subprocess.run(["arm-none-eabi-size", "-B", "-t", os.path.join(folder, "libmodel.a")],
                         capture_output=True, text=True, check=True).stdout
    text, data = out.strip().splitlines()[-1].split()[:2]
    return int(text) + int(data)


def _symbols(elf: str) -> set[str]:
    out = subprocess.run(["arm-none-eabi-nm", elf], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


@pytest.fixture(scope="module")
def digits_builds(zoo, tmp_path_factory):
    """{'fp32': folder, 'int8': folder}: the digits CNN compiled for cortex-m4, int8 from 100 calibration images."""
    require_mcu_tools()
    g = load_model(zoo("digits_cnn"))
    x_tr, _, _ = digits_split()
    qg, _ = quantize_model(g, x_tr[:100][:, None])
    folders = {}
    for name, graph in (("fp32", g), ("int8", qg)):
        folders[name] = str(tmp_path_factory.mktemp(f"digits_{name}"))
        pdc.compile(graph, target="cortex-m4", out_dir=folders[name])
    return folders


def test_int8_flash_is_at_most_35_percent_of_fp32(digits_builds, record_property):
    fp32, int8 = (load_manifest(digits_builds[k]) for k in ("fp32", "int8"))
    lib_fp32, lib_int8 = (_library_bytes(digits_builds[k]) for k in ("fp32", "int8"))
    for name, value in {"flash_fp32": fp32["flash_bytes"], "flash_int8": int8["flash_bytes"],
                        "library_fp32": lib_fp32, "library_int8": lib_int8,
                        "ram_fp32": fp32["ram_bytes"], "ram_int8": int8["ram_bytes"]}.items():
        record_property(name, value)
    print(f"\ndigits CNN on cortex-m4: image flash int8 {int8['flash_bytes']:,} / fp32 {fp32['flash_bytes']:,} B "
          f"({int8['flash_bytes'] / fp32['flash_bytes']:.1%}), library {lib_int8:,} / {lib_fp32:,} B "
          f"({lib_int8 / lib_fp32:.1%}); RAM int8 {int8['ram_bytes']:,} / fp32 {fp32['ram_bytes']:,} B")
    assert int8["flash_bytes"] <= FLASH_RATIO * fp32["flash_bytes"]
    assert lib_int8 <= FLASH_RATIO * lib_fp32
    assert 0 < int8["ram_bytes"] < fp32["ram_bytes"]


def test_int8_image_calls_no_wide_helpers(digits_builds):
    folder = digits_builds["int8"]
    symbols = _symbols(os.path.join(folder, load_manifest(folder)["runner"]["executable"]))
    assert not symbols & set(WIDE_HELPERS), sorted(symbols & set(WIDE_HELPERS))
