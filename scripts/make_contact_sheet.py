"""Render docs/synthetic_faces.png: one row per expression of the synthetic affect benchmark.

    python scripts/make_contact_sheet.py [--out docs/synthetic_faces.png] [--columns 8] [--seed 0]
"""
from __future__ import annotations

import argparse

from affectmodel.data.synthetic import contact_sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="docs/synthetic_faces.png")
    parser.add_argument("--columns", type=int, default=8)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    contact_sheet(args.out, columns=args.columns, size=args.size, seed=args.seed)
    print(args.out)


if __name__ == "__main__":
    main()
