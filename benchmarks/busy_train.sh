#!/usr/bin/env bash
# The whole `pix2rep train --mode finetune` command on a busy machine: two busy-loop
# processes run beside it (started 70 s before, so the load average sees them).
#
#   bash benchmarks/busy_train.sh ../shared/data/acdc          # the CLI's own thread count
#   bash benchmarks/busy_train.sh ../shared/data/acdc 2        # forced: OMP_NUM_THREADS=2
#
# Prints the load average before and after, the command's stderr (where it says how many
# threads it chose) and its wall time. patient017 (ED + ES, expert masks), 300 steps.
set -euo pipefail
data=${1:?usage: busy_train.sh ACDC_DIR [OMP_NUM_THREADS]}
threads=${2:-}
d="$data/training/patient017"
out=$(mktemp -d)
python -c "while True: pass" & b1=$!
python -c "while True: pass" & b2=$!
trap 'kill $b1 $b2 2>/dev/null; rm -rf "$out"' EXIT
sleep 70
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
env=()
if [ -n "$threads" ]; then env=(env "OMP_NUM_THREADS=$threads"); fi
t0=$(date +%s.%N)
"${env[@]}" pix2rep train \
    --image "$d/patient017_frame01.nii.gz" --labels "$d/patient017_frame01_gt.nii.gz" \
    --image "$d/patient017_frame09.nii.gz" --labels "$d/patient017_frame09_gt.nii.gz" \
    --mode finetune --out "$out/seg.pt" > "$out/stdout" 2> "$out/stderr"
t1=$(date +%s.%N)
cat "$out/stderr"
tail -1 "$out/stdout"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wall: $(python -c "print(round($t1 - $t0, 1))") s"
