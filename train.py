#!/usr/bin/env python
"""Train affect models and run study suites; see `python train.py --help`.

    python train.py --data ROOT --tasks expr,au,va --out runs/SUITE/NAME [options]
    python train.py suite suites/quick.toml --data ROOT --out runs/quick
    torchrun --nproc_per_node 2 train.py --data ROOT --out runs/SUITE/NAME ...
"""
import sys

from affectmodel.runtime import configure_openmp

configure_openmp()  # before torch loads: idle OpenMP threads sleep (affectmodel/runtime.py)
from affectmodel.training.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
