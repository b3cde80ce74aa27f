"""Plot a backbone's pretraining loss history (stored in the model file's metadata).

python benchmarks/loss_curve.py models/pix2rep_small_acdc.pt --out models/loss_curve.png
"""

from __future__ import annotations

import argparse

import numpy as np

from napari_pix2rep.model.checkpoint import load_model_file


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model")
    p.add_argument("--out", required=True)
    p.add_argument("--smooth", type=int, default=100, help="Moving-average window (steps).")
    args = p.parse_args()
    meta = load_model_file(args.model)["meta"]
    loss = np.asarray(meta["loss_history"], dtype=float)
    if loss.size == 0:
        raise SystemExit(f"{args.model} holds no loss history.")
    w = max(1, min(args.smooth, loss.size))
    smooth = np.convolve(loss, np.ones(w) / w, mode="valid")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(np.arange(1, loss.size + 1), loss, color="0.8", lw=0.5, label="per step")
    ax.plot(np.arange(w, loss.size + 1), smooth, color="C0", label=f"mean of {w} steps")
    ax.set_xlabel("step")
    ax.set_ylabel(f"{meta.get('method', 'loss')} loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(
        f"{args.out}: {loss.size} steps, first {loss[:w].mean():.3f}, last {loss[-w:].mean():.3f}"
    )


if __name__ == "__main__":
    main()
