"""Machine facts for run records (affectmodel/provenance.py): what decides a run's last bits."""
from __future__ import annotations

import json

import numpy as np
import PIL
import torch

from affectmodel.provenance import image_library_versions, machine_facts, machine_summary


def test_machine_facts_name_kernels_threads_and_libraries(monkeypatch):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("MKL_CBWR", raising=False)
    facts = machine_facts()
    json.dumps(facts)  # goes into config.json / metrics.json as it is
    assert facts["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert facts["threads"] == torch.get_num_threads()
    assert facts["libraries"]["torch"] == torch.__version__ and facts["libraries"]["numpy"] == np.__version__
    assert facts["libraries"]["pillow"] == PIL.__version__
    assert facts["environment"] == {"ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": "1"}
    assert facts["cpu"] and isinstance(facts["cpu_vector_flags"], list)
    assert "gpu" not in facts  # a CPU run names no GPU


def test_summary_line_and_records_without_facts():
    facts = {"cpu": "Some CPU", "torch_cpu_capability": "AVX2", "threads": 1, "libraries": {"torch": "2.14.1"},
             "environment": {"ATEN_CPU_CAPABILITY": "avx2", "PYTHONHASHSEED": "0"}}
    assert machine_summary(facts) == "Some CPU · AVX2 · 1 thread · torch 2.14.1 · ATEN_CPU_CAPABILITY=avx2"
    assert machine_summary({}) == machine_summary(None) == "not recorded"


def test_image_libraries_name_the_jpeg_encoder():
    versions = image_library_versions()
    assert versions["pillow"] == PIL.__version__ and versions["numpy"] == np.__version__
    assert versions["jpeg_encoder"].startswith(("libjpeg-turbo ", "libjpeg "))
