"""Turn a pretraining checkpoint into the shipped backbone (no resume state, fp16 weights).

python benchmarks/ship_model.py runs/pt_infonce.pt models/pix2rep_small_acdc.pt
"""

from __future__ import annotations

import argparse

from napari_pix2rep.model.checkpoint import atomic_torch_save, load_model_file, shipped_copy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--fp32", action="store_true", help="Keep float32 weights.")
    args = p.parse_args()
    obj = load_model_file(args.checkpoint, expect="backbone")
    path = atomic_torch_save(shipped_copy(obj, half=not args.fp32), args.out)
    print(f"Wrote {path} ({path.stat().st_size / 1e6:.1f} MB, step {obj['meta']['steps']}).")


if __name__ == "__main__":
    main()
