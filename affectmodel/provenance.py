"""Where a result came from: the machine, the libraries and the settings that change its numbers.

Two runs of the same code, configuration and seed on the same data give bit-identical figures on
one machine (tests/test_training_determinism.py), but not across machines: PyTorch picks CPU
kernels by instruction set (``torch.backends.cpu.get_cpu_capability()``: DEFAULT, AVX2, AVX512;
the environment variable ``ATEN_CPU_CAPABILITY`` lowers it), oneDNN picks its convolution kernels
the same way (``ONEDNN_MAX_CPU_ISA``), and float sums depend on how many threads share them. A short
training run amplifies such last-bit differences into different figures (docs/REPRODUCIBILITY.md
measures by how much). So every run record says which machine it came from (:func:`machine_facts`),
and the synthetic benchmark's marker says which libraries drew and encoded its images
(:func:`image_library_versions`).

Imports nothing from the project; torch is imported only by :func:`machine_facts` (the synthetic
generator and ``data-info`` stay torch-free).
"""
from __future__ import annotations

import importlib
import os
import platform
import re
from importlib import metadata
from typing import Any

# Environment variables that change which kernels run, how many threads share the work, or which
# SIMD paths numpy and libjpeg-turbo take: recorded when set.
NUMERIC_ENVIRONMENT = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ONEDNN_DEFAULT_FPMATH_MODE",
                       "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "MKL_NUM_THREADS", "OMP_NUM_THREADS",
                       "OPENBLAS_NUM_THREADS", "CUBLAS_WORKSPACE_CONFIG", "NVIDIA_TF32_OVERRIDE",
                       "NPY_DISABLE_CPU_FEATURES", "NPY_ENABLE_CPU_FEATURES", "JSIMD_FORCENONE", "JSIMD_FORCESSE2",
                       "JSIMD_FORCEAVX2", "PYTHONHASHSEED")

# CPU flags that decide which SIMD kernels numpy, oneDNN, MKL and ATen choose.
VECTOR_FLAGS = frozenset({"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                          "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve", "sve2"})


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpuinfo() -> dict[str, str]:
    """The first processor's entries of /proc/cpuinfo (empty where there is none)."""
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block only
                key, _, value = line.partition(":")
                out.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return out


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo; elsewhere what the platform says)."""
    info = _cpuinfo()
    for key in ("model name", "Model", "Hardware"):
        if info.get(key):
            return info[key]
    return platform.processor() or platform.machine() or "unknown"


def cpu_identity() -> dict[str, Any]:
    """Vendor, family/model/stepping and the vector instruction sets the CPU offers (a virtual
    machine often names every CPU "Intel Xeon Processor"; the model number and flags tell them apart)."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    return {
        "vendor": info.get("vendor_id"),
        "family_model_stepping": "/".join(info.get(k, "?") for k in ("cpu family", "model", "stepping"))
        if info else None,
        "vector_flags": sorted(f for f in flags if f in VECTOR_FLAGS),
    }


def numpy_simd() -> list[str] | None:
    """The SIMD extensions numpy dispatches to on this CPU (after NPY_DISABLE_CPU_FEATURES)."""
    try:
        umath = importlib.import_module("numpy._core._multiarray_umath")  # private, hence looked up by name
        features = umath.__cpu_features__
        dispatch = list(umath.__cpu_baseline__) + list(umath.__cpu_dispatch__)
    except (ImportError, AttributeError):
        return None
    return [name for name in dispatch if features.get(name)]


def image_library_versions() -> dict[str, Any]:
    """What draws and encodes the synthetic benchmark's images: Pillow (drawing, resampling, blur),
    its JPEG encoder (libjpeg-turbo, bundled with Pillow's wheels) and numpy (geometry, noise)."""
    from PIL import Image, features

    return {
        "python": platform.python_version(),
        "numpy": _package_version("numpy"),
        "pillow": getattr(Image, "__version__", None),
        "jpeg_encoder": ("libjpeg-turbo " + str(features.version("libjpeg_turbo"))
                         if features.check_feature("libjpeg_turbo") else f"libjpeg {features.version('jpg')}"),
        "machine": platform.machine(),
    }


def _build_versions(config_text: str) -> dict[str, str]:
    """MKL and oneDNN versions from ``torch.__config__.show()``."""
    out = {}
    mkl = re.search(r"Math Kernel Library Version ([^\s]+)", config_text)
    dnn = re.search(r"MKL-DNN v([^\s]+)", config_text)
    if mkl:
        out["mkl"] = mkl.group(1)
    if dnn:
        out["onednn"] = dnn.group(1)
    return out


def machine_facts(device: Any = None) -> dict[str, Any]:
    """The facts that decide a run's last bits: CPU, instruction set torch uses, threads, library
    versions, GPU (when ``device`` is a CUDA device) and the numeric environment variables set."""
    import torch

    cuda = device is not None and str(getattr(device, "type", device)).startswith("cuda")
    libraries = {
        "torch": torch.__version__,
        "torchvision": _package_version("torchvision"),
        "numpy": _package_version("numpy"),
        "pillow": _package_version("pillow"),
        **_build_versions(torch.__config__.show()),
    }
    facts: dict[str, Any] = {
        "cpu": cpu_model(),
        **{f"cpu_{k}": v for k, v in cpu_identity().items()},
        "cpu_count": os.cpu_count(),
        "platform": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "numpy_simd": numpy_simd(),
        "libraries": libraries,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "environment": {k: os.environ[k] for k in NUMERIC_ENVIRONMENT if k in os.environ},
    }
    if cuda:
        facts["gpu"] = torch.cuda.get_device_name(device)
        facts["cuda"] = torch.version.cuda
        facts["cudnn"] = torch.backends.cudnn.version()
        facts["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        facts["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    return facts


def machine_summary(facts: Any) -> str:
    """One line for tables and cards: ``Intel Xeon ... · AVX512 · 1 thread · torch 2.14.1``."""
    if not isinstance(facts, dict) or not facts:
        return "not recorded"
    parts = [str(facts.get("cpu") or "?")]
    if facts.get("gpu"):
        parts.append(str(facts["gpu"]))
    if facts.get("torch_cpu_capability"):
        parts.append(str(facts["torch_cpu_capability"]))
    threads = facts.get("threads")
    if threads is not None:
        parts.append(f"{threads} thread{'s' if threads != 1 else ''}")
    torch_version = (facts.get("libraries") or {}).get("torch")
    if torch_version:
        parts.append(f"torch {torch_version}")
    env = facts.get("environment") or {}
    parts += [f"{k}={v}" for k, v in env.items() if k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")]
    return " · ".join(parts)


__all__ = ["NUMERIC_ENVIRONMENT", "cpu_identity", "cpu_model", "image_library_versions", "machine_facts",
           "machine_summary", "numpy_simd"]
