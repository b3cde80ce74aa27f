#!/usr/bin/env bash
# Every benchmark behind docs/benchmarks.md: two single-threaded streams that together
# keep a 2-core CPU busy for about an hour, then the timings on the idle machine.
# Results: benchmarks/results/*.{md,json,png}.
#
#   bash benchmarks/run_all.sh [ACDC_DIR] [SIMCLR_BACKBONE] [SNAPSHOT_PREFIX]
#
# SIMCLR_BACKBONE: an image-level baseline, e.g. from
#   pix2rep pretrain ACDC/training --exclude '*_gt*' --loss simclr --batch-size 32 \
#       --lr 1e-3 --steps 1500 --out runs/simclr.pt
# SNAPSHOT_PREFIX: pretraining snapshots PREFIX_stepN.pt (--snapshot-every) for the
#   probe-against-steps curve (with the shipped model last); skipped when none exist.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# arguments are relative to where the script is called from; the defaults to the repo
DATA=$(realpath -m "${1:-$ROOT/../shared/data/acdc}")
SIMCLR=$(realpath -m "${2:-$ROOT/runs/simclr.pt}")
PREFIX=$(realpath -m "${3:-$ROOT/runs/pt_infonce}")
cd "$ROOT/benchmarks"
export OMP_NUM_THREADS=1
mkdir -p results

(
    python one_shot.py --data "$DATA" --tag scratch --methods scratch
    python one_shot.py --data "$DATA" --tag pix2rep --methods pix2rep-linear,pix2rep-finetune
) >results/stream_a.log 2>&1 &
a=$!
(
    python one_shot.py --data "$DATA" --tag baselines --simclr "$SIMCLR" \
        --methods random-linear,simclr-linear,simclr-finetune
    python few_slice.py --data "$DATA" --baseline
    python interactive.py --data "$DATA"
    python localisation.py --data "$DATA"
    snaps=""
    for s in 500 2000 4000 8000 10000; do
        [ -f "${PREFIX}_step$s.pt" ] && snaps="$snaps${PREFIX}_step$s.pt,"
    done
    if [ -n "$snaps" ]; then
        python probe_vs_steps.py --data "$DATA" --snapshots "${snaps}$ROOT/models/pix2rep_small_acdc.pt"
    fi
    python convergence.py --data "$DATA"
) >results/stream_b.log 2>&1 &
b=$!
wait $a $b
python one_shot.py --data "$DATA" --merge pix2rep,scratch,baselines
# Timings on the idle machine, all cores.
unset OMP_NUM_THREADS
python speed_memory.py --data "$DATA" >results/speed.log 2>&1
python pretrain_speed.py --steps 10 >>results/speed.log 2>&1
