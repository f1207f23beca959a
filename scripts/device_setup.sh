# Sourced by the device scripts (device_bench.sh, device_ab.sh, device_ablate.sh) on a GPU
# machine without network: unpacks xz-compressed carried binaries (carry/NAME.xz; what travels
# to the machine is capped at 64 MiB), installs the Vulkan loader from .gl/*.deb (the machine
# has the NVIDIA driver's ICD but no loader), and synthesises the issue-7 reference file as $M
# (every matrix with rows a multiple of 256 in Q4_K, ssm_f_b/ssm_g_b/attn_k_b in Q8_0, the rest
# F32).
for f in carry/*.xz; do
    [ -e "$f" ] || continue
    xz -d -k -f "$f"
    chmod +x "${f%.xz}"
done
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
M=/tmp/k48.gguf
[ -f $M ] || ./carry/kiln-convert synth --model kimi-linear-48b-a3b --models models.toml --type q4_k --pure \
     --tensor-type 'ssm_f_b|ssm_g_b|attn_k_b=q8_0' --quiet -o $M
