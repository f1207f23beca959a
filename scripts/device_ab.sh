#!/bin/bash
# A/B of several kiln builds on a GPU machine without network (the `device` tool), the way the
# issue-7 numbers were compared: each binary in $B (paths under carry/, release builds from
# here) runs `kiln bench -p 512 -n 128 -r 2` in turn, for $ROUNDS rounds, on the 48B-shape
# reference file. The first round on a fresh machine is often noisy (± 1,000 on pp512); read the
# later ones. DEEP=1 adds a decode at depth 8192 per binary and round.
#
# Expects what scripts/device_bench.sh expects (carry/kiln-convert, .gl/*.deb); binaries may be
# carried xz-compressed (carry/NAME.xz, unpacked here), since what travels to the machine is
# capped at 64 MiB. Example:
#   B="kiln-main kiln-branch" bash scripts/device_ab.sh
set -e
for f in carry/*.xz; do
    [ -e "$f" ] || continue
    xz -d -k -f "$f"
    chmod +x "${f%.xz}"
done
B=${B:?set B to the binaries under carry/ to compare}
ROUNDS=${ROUNDS:-2}
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
M=/tmp/k48.gguf
[ -f $M ] || ./carry/kiln-convert synth --model kimi-linear-48b-a3b --models models.toml --type q4_k --pure \
     --tensor-type 'ssm_f_b|ssm_g_b|attn_k_b=q8_0' --quiet -o $M
for _ in $(seq "$ROUNDS"); do
    for b in $B; do
        echo "== $b"
        ./carry/"$b" bench -m $M --backend wgpu -p 512 -n 128 -r 2 | grep -E 'pp512|tg128'
        if [ -n "$DEEP" ]; then
            ./carry/"$b" bench -m $M --backend wgpu -p 0 -n 64 -d 8192 -r 1 | grep -E 'tg64'
        fi
    done
done
