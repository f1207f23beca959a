#!/bin/bash
# A sweep of one kiln build over environment settings on a GPU machine without network (the
# `device` tool), alternated round by round as scripts/device_ab.sh alternates builds: how the
# decode-product shapes of issue 7 were found (0650883, b9d9eea). The knobs themselves live on
# a throwaway branch (read with std::env::var where the constant is chosen), never on main.
#
# Each argument is one setting, `NAME=VALUE ...` or `-` for none; each runs `kiln bench -p 0
# -n 128 -r 3` per round on the reference file, then `kiln run` prints a checksum of its greedy
# tokens so that settings which change the results stand out. ROUNDS (default 2); BIN (default
# kiln, under carry/).
#   bash scripts/device_sweep.sh - "KILN_BUSY=1024" "KILN_BUSY=2048 KILN_TPRMAX=64"
set -e
BIN=${BIN:-kiln}
ROUNDS=${ROUNDS:-2}
source scripts/device_setup.sh
with() {
    local setting=$1
    shift
    if [ "$setting" = "-" ]; then
        "$@"
    else
        # Word splitting makes each NAME=VALUE an argument of env.
        # shellcheck disable=SC2086
        env $setting "$@"
    fi
}
for _ in $(seq "$ROUNDS"); do
    for s in "$@"; do
        echo "== $s"
        with "$s" ./carry/"$BIN" bench -m $M --backend wgpu -p 0 -n 128 -r 3 | grep -E 'tg128'
    done
done
for s in "$@"; do
    echo "== $s tokens: $(with "$s" ./carry/"$BIN" run -m $M --backend wgpu --tokens 1,2,3,4,5 \
        -n 24 --print-ids --ignore-eos 2>/dev/null | tail -1 | md5sum)"
done
