#!/bin/bash
# The issue-7 measurements on a GPU machine without network (the `device` tool): synthesise the
# 48B-shape reference file (every matrix with rows a multiple of 256 in Q4_K, ssm_f_b/ssm_g_b/
# attn_k_b in Q8_0, the rest F32), bench it through wgpu/Vulkan at depth 0 and 8192 (three
# repetitions each, so that the table shows their spread on a noisy machine) while sampling
# VRAM, then profile decode (at depth 0 and 8192) and prefill kernels.
#
# Expects, in the repository root on that machine: carry/kiln and carry/kiln-convert (release
# builds from here) and .gl/*.deb (libvulkan1 and the glvnd libraries, `apt-get download`ed
# here), since the machine has the NVIDIA driver's Vulkan ICD but no loader; the binaries may be
# carried xz-compressed (scripts/device_setup.sh unpacks them). Writes to $OUT.
set -e
OUT=${OUT:-/tmp/kiln-bench}
mkdir -p "$OUT"
source scripts/device_setup.sh
nvidia-smi --query-gpu=memory.used --format=csv,noheader -lms 250 > "$OUT/vram.log" &
SMI=$!
./carry/kiln bench -m $M --backend wgpu -p 512 -n 128 -r 3 -d 0,8192 | tee "$OUT/bench.txt"
kill $SMI
echo "peak VRAM used (nvidia-smi, whole GPU): $(sort -n "$OUT/vram.log" | tail -1)" | tee -a "$OUT/bench.txt"
./carry/kiln bench -m $M --backend wgpu -p 0 -n 32 --profile > "$OUT/profile_tg.txt"
./carry/kiln bench -m $M --backend wgpu -p 0 -n 32 -d 8192 --profile > "$OUT/profile_tg_d8192.txt"
./carry/kiln bench -m $M --backend wgpu -p 512 -n 0 --profile > "$OUT/profile_pp.txt"
