"""`pdc --version` names the toolchain programs found, `pdc doctor` says per target whether it builds and
runs here and which Debian package brings each missing tool. The expectations are computed here from
shutil.which over the programs each target needs (listed in this file, not taken from pdc)."""
import ctypes.util
import os
import shutil
import subprocess
import sys

# per target preset: (programs that build its bundles, programs that run them)
CROSS = {"arm64": (["aarch64-linux-gnu-gcc", "aarch64-linux-gnu-ar"], ["qemu-aarch64"]),
         "armv7": (["arm-linux-gnueabihf-gcc", "arm-linux-gnueabihf-ar"], ["qemu-arm"])}
MCU = (["arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-ar"], ["qemu-system-arm"])
OPENCL = ["opencl", "mali-g52", "mali-g76", "mali-g78", "mali-g710"]
CUDA = ["cuda", "cuda-sm75", "cuda-sm80", "cuda-sm86", "cuda-sm89", "cuda-sm90"]
HEXAGON = ["hexagon-v66", "hexagon-v67", "hexagon-v68", "hexagon-v69", "hexagon-v73"]
DSP = (["clang-15", "ld.lld-15", "ar"], ["qemu-hexagon"])
FPGA = ["fpga-hls", "fpga-pynq-z2", "fpga-zcu104", "fpga-u250"]
TARGETS = ["x86-avx2", "x86-avx512", "arm64", "armv7", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m55", *OPENCL,
           *CUDA, *HEXAGON, *FPGA]
WIDTH = max(len(t) for t in TARGETS)
PACKAGES = {"gcc": "gcc", "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu",
            "aarch64-linux-gnu-ar": "binutils-aarch64-linux-gnu", "qemu-aarch64": "qemu-user",
            "arm-linux-gnueabihf-gcc": "gcc-arm-linux-gnueabihf",
            "arm-linux-gnueabihf-ar": "binutils-arm-linux-gnueabihf", "qemu-arm": "qemu-user",
            "arm-none-eabi-gcc": "gcc-arm-none-eabi", "arm-none-eabi-size": "binutils-arm-none-eabi",
            "arm-none-eabi-ar": "binutils-arm-none-eabi", "qemu-system-arm": "qemu-system-arm",
            "clang-15": "clang-15", "ld.lld-15": "lld-15", "ar": "binutils", "qemu-hexagon": "qemu-user", "g++": "g++"}


def pdc(*args, env=None):
    r = subprocess.run([sys.executable, "-m", "pdc", *args], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and not r.stderr, r.stderr
    return r.stdout.splitlines()


def cpu_flags() -> set:
    with open("/proc/cpuinfo") as f:
        return next((set(ln.split(":", 1)[1].split()) for ln in f if ln.startswith("flags")), set())


def needs(target: str):
    if target.startswith("x86") or target in OPENCL or target in CUDA:
        return [os.environ.get("CC") or "gcc"], []
    if target in HEXAGON:
        return DSP
    if target in FPGA:  # the C simulation: g++ and the ap_types headers
        return ["g++"], []
    return CROSS.get(target, MCU)


def test_version_names_every_toolchain_program_found_and_missing():
    lines = pdc("--version")
    assert lines[0].startswith("pdc 0.1.0 (Python ") and len(lines) == 3
    programs = list(dict.fromkeys(p for t in TARGETS for group in needs(t) for p in group))
    found = [p for p in programs if shutil.which(p)]
    missing = [f"{p} (Debian package {PACKAGES[p]})" for p in programs if not shutil.which(p)]
    assert lines[1] == f"toolchains found: {', '.join(found) or 'none'}"
    assert lines[2] == f"toolchains missing: {', '.join(missing) or 'none'}; pdc doctor says which targets build " \
                       f"and run here"


def expected_line(target: str, which=shutil.which, flags=None) -> str:
    build_programs, run_programs = needs(target)
    build = [f"missing {p} (Debian package {PACKAGES[p]})" for p in build_programs if not which(p)]
    run = [f"missing {p} (Debian package {PACKAGES[p]})" for p in run_programs if not which(p)]
    if target.startswith("x86"):
        lacking = sorted(({"avx512f"} if target == "x86-avx512" else {"avx2", "fma"}) - (flags or cpu_flags()))
        build += [f"this CPU lacks {', '.join(lacking)}"] if lacking else []
        run = build  # in-process: what builds here runs here
    if target.startswith("cortex-m") and which("arm-none-eabi-gcc"):
        cpu = {"cortex-m3": "-mcpu=cortex-m3", "cortex-m4": "-mcpu=cortex-m4", "cortex-m7": "-mcpu=cortex-m7",
               "cortex-m55": "-mcpu=cortex-m55"}[target]
        libc = subprocess.run(["arm-none-eabi-gcc", "-mthumb", cpu, "-print-file-name=libc_nano.a"],
                              capture_output=True, text=True).stdout.strip()
        build += [] if os.path.isabs(libc) else ["missing newlib for arm-none-eabi (Debian package "
                                                 "libnewlib-arm-none-eabi)"]
    if target in OPENCL:  # a C library on the OpenCL loader, run in-process on an installed platform
        build += [] if os.path.exists("/usr/include/CL/cl.h") else [
            "missing the OpenCL headers and loader (Debian package ocl-icd-opencl-dev)"]
        if not ctypes.util.find_library("OpenCL"):
            run = ["missing the OpenCL loader libOpenCL (Debian package ocl-icd-libopencl1)"]
        elif not any(f.endswith(".icd") for f in (os.listdir("/etc/OpenCL/vendors")
                                                  if os.path.isdir("/etc/OpenCL/vendors") else [])):
            run = ["no OpenCL platform installed (Debian package pocl-opencl-icd)"]
    if target in CUDA:  # nvcc from PATH or the toolkit's folder; run on the NVIDIA driver
        toolkit = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
        if not (which("nvcc") or os.path.exists(os.path.join(toolkit, "bin", "nvcc"))):
            build.append("missing nvcc (the CUDA toolkit: put its bin/ on PATH or set CUDA_HOME)")
        elif not os.path.exists(os.path.join(toolkit, "lib64", "libcudart_static.a")):
            build.append(f"missing libcudart_static.a in {toolkit}/lib64 (the CUDA toolkit's runtime)")
        if not ctypes.util.find_library("cuda"):
            run = ["no NVIDIA driver (libcuda) on this machine: cuda bundles build here but run on a GPU machine"]
    if target in HEXAGON:  # the compiler runtime from a Python package; qemu-hexagon emulates up to v67
        from importlib.util import find_spec
        build += [] if find_spec("ziglang") else ["missing the Python package ziglang (pip install ziglang: pdc "
                                                  "builds the Hexagon compiler runtime with it)"]
        if target not in ("hexagon-v66", "hexagon-v67"):
            run = [f"qemu-hexagon emulates CPU versions up to v67: {target} bundles run on the DSP only"]
    if target in FPGA:
        from importlib.util import find_spec
        spec = find_spec("hls4ml")
        headers = os.environ.get("PDC_AP_TYPES") or (os.path.join(list(spec.submodule_search_locations)[0], "templates",
                                                                  "vivado", "ap_types") if spec else "")
        build += [] if os.path.isfile(os.path.join(headers, "ap_fixed.h")) else [
            "missing the ap_types headers (the Python package hls4ml (pip install --no-deps hls4ml) ships them; or "
            "set PDC_AP_TYPES=DIR)"]
    problems = list(dict.fromkeys(build + run))
    line = f"{target:<{WIDTH}}  build: {'no ' if build else 'yes'}  run: {'no ' if run else 'yes'}"
    return line + (f"  {'; '.join(problems)}" if problems else "")


def test_doctor_one_line_per_target_from_the_real_toolchains():
    lines = pdc("doctor")
    assert lines[:len(TARGETS)] == [expected_line(t) for t in TARGETS]
    assert len(lines) == len(TARGETS) + (any("missing" in ln for ln in lines))


def test_doctor_names_the_debian_package_of_each_missing_tool(tmp_path):
    """A PATH holding only gcc and qemu-aarch64: x86 is ready, arm64 runs but cannot build, the rest
    neither; the last line installs exactly what is missing."""
    for program in ("gcc", "qemu-aarch64"):
        if shutil.which(program):
            os.symlink(shutil.which(program), tmp_path / program)
    env = {k: v for k, v in os.environ.items() if k != "CC"}
    env["PATH"] = str(tmp_path)
    lines = pdc("doctor", env=env)
    which = lambda p: shutil.which(p, path=str(tmp_path))  # noqa: E731
    assert lines[:-1] == [expected_line(t, which) for t in TARGETS]
    if which("qemu-aarch64"):  # the line spelled out, as a user reads it
        assert lines[2] == "arm64         build: no   run: yes  missing aarch64-linux-gnu-gcc (Debian package " \
                           "gcc-aarch64-linux-gnu); missing aarch64-linux-gnu-ar (Debian package " \
                           "binutils-aarch64-linux-gnu)"
        assert lines[-1] == "to install what is missing: sudo apt-get install gcc-aarch64-linux-gnu " \
                            "binutils-aarch64-linux-gnu gcc-arm-linux-gnueabihf binutils-arm-linux-gnueabihf " \
                            "qemu-user gcc-arm-none-eabi binutils-arm-none-eabi qemu-system-arm clang-15 lld-15 " \
                            "binutils g++"
    else:
        assert lines[-1].startswith("to install what is missing: sudo apt-get install gcc-aarch64-linux-gnu ")
