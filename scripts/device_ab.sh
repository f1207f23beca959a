#!/bin/bash
# A/B of several kiln builds on a GPU machine without network (the `device` tool), the way the
# issue-7 numbers were compared: each binary in $B (paths under carry/, release builds from
# here) runs `kiln bench -p 512 -n 128 -r 3` in turn, for $ROUNDS rounds, on the 48B-shape
# reference file; tg128 repeats within ± 0.5 since bench warms up with a full decode, pp512
# within about ± 150. DEEP=1 adds a decode at depth 8192 per binary and round.
#
# Expects what scripts/device_setup.sh expects (carry/kiln-convert, .gl/*.deb; binaries may be
# carried xz-compressed). Example:
#   B="kiln-main kiln-branch" bash scripts/device_ab.sh
set -e
B=${B:?set B to the binaries under carry/ to compare}
ROUNDS=${ROUNDS:-2}
source scripts/device_setup.sh
for _ in $(seq "$ROUNDS"); do
    for b in $B; do
        echo "== $b"
        ./carry/"$b" bench -m $M --backend wgpu -p 512 -n 128 -r 3 | grep -E 'pp512|tg128'
        if [ -n "$DEEP" ]; then
            ./carry/"$b" bench -m $M --backend wgpu -p 0 -n 64 -d 8192 -r 1 | grep -E 'tg64'
        fi
    done
done
