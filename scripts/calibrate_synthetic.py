"""Difficulty calibration of the synthetic affect benchmark.

Generates a benchmark, trains a multi-task ResNet-18 (random init) for a fixed CPU time budget and
reports validation P_EXPR / P_AU / P_VA next to trivial baselines, so the benchmark can be checked
to be clearly above chance and clearly below perfect on every task.

    python scripts/calibrate_synthetic.py [--videos 800] [--frames 3] [--size 64] [--seconds 180] [--threads 2]
    python scripts/calibrate_synthetic.py --ceiling        # no images: scores with perfect perception

Images are decoded once into memory (a uint8 tensor); training uses horizontal flips only.
``--ceiling`` fits simple models on the *true* AU intensities of sampled sequences (held-out
videos): what a network that saw every AU perfectly could reach, given the label noise, the
ramps and the "Other" class.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from affectmodel.data.affwild2 import load_affwild2
from affectmodel.data.dataset import load_image
from affectmodel.data.synthetic import SynthConfig, generate_benchmark
from affectmodel.losses import LossConfig, MultiTaskLoss, au_pos_weight, inverse_frequency_weights
from affectmodel.metrics import evaluate
from affectmodel.model import AffectModel, ModelConfig

TASKS = ("expr", "au", "va")


def to_tensors(ds, size: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    images = np.stack([np.asarray(load_image(p).resize((size, size))) for p in ds.image_paths])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # uint8 N,3,H,W
    y = {k: torch.from_numpy(np.asarray(v)) for k, v in ds.labels.items()}
    return x, y


def normalise(x: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    mean = torch.tensor(config.mean).view(1, 3, 1, 1)
    std = torch.tensor(config.std).view(1, 3, 1, 1)
    return (x.float() / 255 - mean) / std


@torch.no_grad()
def predict(model, x: torch.Tensor, config: ModelConfig) -> dict[str, np.ndarray]:
    model.eval()
    outs: dict[str, list[torch.Tensor]] = {k: [] for k in TASKS}
    for i in range(0, len(x), 256):
        o = model(normalise(x[i:i + 256], config))
        outs["expr"].append(torch.softmax(o["expr"], 1))
        outs["au"].append(torch.sigmoid(o["au"]))
        outs["va"].append(o["va"])
    model.train()
    return {k: torch.cat(v).numpy() for k, v in outs.items()}


def baselines(train_y: dict, val_y: dict) -> dict[str, float]:
    """Trivial predictors: majority class / AU prior (all-positive for frequent AUs) / mean VA."""
    n = len(val_y["expr"])
    expr_train = train_y["expr"].numpy()
    majority = np.bincount(expr_train[expr_train >= 0], minlength=8).argmax()
    probs = np.zeros((n, 8))
    probs[:, majority] = 1
    au = train_y["au"].numpy()
    prior = np.where(au >= 0, au, np.nan)
    au_prob = np.tile(np.nanmean(prior, axis=0) + 0.5 - 1e-6, (n, 1)).clip(0, 1)  # always predict 1
    va = np.zeros((n, 2))
    return evaluate({"expr": probs, "au": au_prob, "va": va}, {k: v.numpy() for k, v in val_y.items()})


def _score_sklearn(feats_tr, y_tr, feats_va, y_va) -> dict[str, float]:
    """Logistic regression (EXPR, each AU) and ridge regression (VA) on features; ABAW metrics."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(feats_tr)
    a, b = scaler.transform(feats_tr), scaler.transform(feats_va)
    out = {}
    m = y_tr["expr"] >= 0
    clf = LogisticRegression(max_iter=300, class_weight="balanced").fit(a[m], y_tr["expr"][m])
    probs = np.zeros((len(b), 8))
    probs[:, clf.classes_] = clf.predict_proba(b)
    out["expr"] = probs
    au = np.zeros((len(b), 12))
    for j in range(12):
        mj = y_tr["au"][:, j] >= 0
        yj = y_tr["au"][mj, j].astype(int)
        au[:, j] = (LogisticRegression(max_iter=300, class_weight="balanced").fit(a[mj], yj).predict_proba(b)[:, 1]
                    if len(set(yj)) > 1 else yj.mean())
    out["au"] = au
    mv = (y_tr["va"] > -2).all(axis=1)
    out["va"] = np.clip(Ridge(alpha=1.0).fit(a[mv], y_tr["va"][mv]).predict(b), -1, 1)
    return evaluate(out, y_va)


def ceiling(videos: int, frames: int, seed: int) -> dict[str, Any]:
    from affectmodel.data.synthetic import expression_deck, sample_sequence

    cfg = SynthConfig()
    rng = np.random.default_rng(seed)
    deck = expression_deck(cfg.expression_weights, rng)
    seqs = [sample_sequence(frames, rng, cfg, next_expression=deck) for _ in range(videos)]
    split = int(videos * 0.75)

    def stack(part):
        feats = np.concatenate([np.hstack([s.au_intensity, s.hidden_au]) for s in part])
        return feats, {"expr": np.concatenate([s.expr for s in part]), "au": np.concatenate([s.au for s in part]),
                       "va": np.concatenate([s.va for s in part])}
    (ftr, ytr), (fva, yva) = stack(seqs[:split]), stack(seqs[split:])
    return _score_sklearn(ftr, ytr, fva, yva)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--videos", type=int, default=800)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=180.0, help="training time budget")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", help="reuse a generated benchmark instead of generating one")
    parser.add_argument("--nuisance", type=float, default=SynthConfig.nuisance)
    parser.add_argument("--ceiling", action="store_true", help="scores of models given the true AU intensities")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.ceiling:
        r = ceiling(80, 150, args.seed)  # long sequences: every class and ramp represented
        print(json.dumps({"mode": "ceiling",
                          **{k: round(r[k], 3) for k in ("P_EXPR", "P_AU", "P_VA", "ccc_valence", "ccc_arousal")},
                          "per_class_f1": {k: round(v, 2) for k, v in r["per_class_f1"].items()},
                          "per_au_f1": {k: round(v, 2) for k, v in r["per_au_f1"].items()}}, indent=1))
        return
    torch.manual_seed(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data) if args.data else Path(tmp) / "bench"
        if not args.data:
            t0 = time.perf_counter()
            generate_benchmark(root, config=SynthConfig(videos=args.videos, frames=args.frames, seed=args.seed,
                                                        size=args.size, nuisance=args.nuisance), progress=False)
            print(f"generated {args.videos} videos x {args.frames} frames at {args.size}px in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
        train, val = load_affwild2(root, "train"), load_affwild2(root, "validation")
        config = ModelConfig(tasks=list(TASKS), input_size=args.size)
        xt, yt = to_tensors(train, args.size)
        xv, yv = to_tensors(val, args.size)
    print(f"train {len(xt)} frames, validation {len(xv)} frames", flush=True)

    model = AffectModel(config)
    pos, neg = train.au_counts()
    loss_fn = MultiTaskLoss(TASKS, LossConfig(expr="weighted_ce", au="weighted_bce", va="ccc"),
                            class_weights=inverse_frequency_weights(train.class_counts().tolist()),
                            pos_weight=au_pos_weight(pos.tolist(), neg.tolist()))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(args.seed)
    start, step, epoch = time.perf_counter(), 0, 0
    while time.perf_counter() - start < args.seconds:
        order = torch.randperm(len(xt), generator=g)
        for i in range(0, len(order) - args.batch_size + 1, args.batch_size):
            idx = order[i:i + args.batch_size]
            x = normalise(xt[idx], config)
            flip = torch.rand(len(idx), generator=g) < 0.5
            x[flip] = x[flip].flip(-1)
            loss, _ = loss_fn(model(x), {k: v[idx] for k, v in yt.items()})
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if time.perf_counter() - start >= args.seconds:
                break
        epoch += 1
    seconds = time.perf_counter() - start
    result = evaluate(predict(model, xv, config), {k: v.numpy() for k, v in yv.items()})
    base = baselines(yt, yv)
    report = {
        "dataset": "synthetic-affect", "train_frames": len(xt), "val_frames": len(xv), "image_size": args.size,
        "steps": step, "epochs_started": epoch, "train_seconds": round(seconds), "threads": args.threads,
        "P_EXPR": round(result["P_EXPR"], 3), "P_AU": round(result["P_AU"], 3), "P_VA": round(result["P_VA"], 3),
        "ccc_valence": round(result["ccc_valence"], 3), "ccc_arousal": round(result["ccc_arousal"], 3),
        "per_class_f1": {k: round(v, 2) for k, v in result["per_class_f1"].items()},
        "per_au_f1": {k: round(v, 2) for k, v in result["per_au_f1"].items()},
        "baseline": {k: round(base[k], 3) for k in ("P_EXPR", "P_AU", "P_VA")},
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
