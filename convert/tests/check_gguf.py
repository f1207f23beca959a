#!/usr/bin/env python3
"""Checks GGUF files written by kiln-convert against the HF checkpoint they came from, using only
PyPI `gguf` and numpy (an implementation independent of the converter):

    check_gguf.py HF_DIR TYPE=FILE [TYPE=FILE ...]

For each file: the architecture and every kimi-linear.* key llama.cpp needs; tensor names exactly
the set gguf-py's MODEL_TENSORS[KIMI_LINEAR] allows for this config; shapes (ggml ne); types; and
values: plain and legacy-quantized tensors bit-exact against gguf-py's own conversion of the
source values, K-quants within the type's expected error; ssm_a, attn_k_b / attn_v_b and stacked
experts rebuilt here from the HF tensors. Prints one line per file; exits 1 on the first mismatch.
"""

import json
import os
import re
import struct
import sys

import numpy as np
import gguf
from gguf.constants import MODEL_ARCH, MODEL_TENSORS, TENSOR_NAMES, GGMLQuantizationType as Q


def load_safetensors(hf_dir):
    out = {}
    for fname in sorted(os.listdir(hf_dir)):
        if not fname.endswith(".safetensors"):
            continue
        with open(os.path.join(hf_dir, fname), "rb") as f:
            blob = f.read()
        (n,) = struct.unpack("<Q", blob[:8])
        header = json.loads(blob[8:8 + n])
        base = 8 + n
        for name, info in header.items():
            if name == "__metadata__":
                continue
            a, b = info["data_offsets"]
            raw = blob[base + a:base + b]
            dt = info["dtype"]
            if dt == "BF16":
                arr = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
            elif dt == "F16":
                arr = np.frombuffer(raw, dtype=np.float16).astype(np.float32)
            elif dt == "F32":
                arr = np.frombuffer(raw, dtype=np.float32).copy()
            else:
                raise SystemExit(f"{name}: unexpected dtype {dt}")
            out[name] = arr.reshape(info["shape"])
    return out


def expected_tensors(cfg, hf):
    """name -> (numpy array in torch order as the GGUF must hold it)."""
    d = cfg["hidden_size"]
    la = cfg["linear_attn_config"]
    full = set(la["full_attn_layers"])
    H, K = la["num_heads"], la["head_dim"]
    C, W = H * K, la["short_conv_kernel_size"]
    E = cfg["num_experts"]
    nope, vdim, r = cfg["qk_nope_head_dim"], cfg["v_head_dim"], cfg["kv_lora_rank"]
    hkv = cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
    t = {"token_embd.weight": hf["model.embed_tokens.weight"], "output_norm.weight": hf["model.norm.weight"],
         "output.weight": hf["lm_head.weight"]}
    for i in range(cfg["num_hidden_layers"]):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        a = p + "self_attn."
        t[b + "attn_norm.weight"] = hf[p + "input_layernorm.weight"]
        t[b + "ffn_norm.weight"] = hf[p + "post_attention_layernorm.weight"]
        t[b + "attn_output.weight"] = hf[a + "o_proj.weight"]
        if (i + 1) in full:
            t[b + "attn_q.weight"] = hf[a + "q_proj.weight"]
            t[b + "attn_kv_a_mqa.weight"] = hf[a + "kv_a_proj_with_mqa.weight"]
            t[b + "attn_kv_a_norm.weight"] = hf[a + "kv_a_layernorm.weight"]
            kv = hf[a + "kv_b_proj.weight"].reshape(hkv, nope + vdim, r)
            t[b + "attn_k_b.weight"] = np.ascontiguousarray(kv[:, :nope, :].transpose(0, 2, 1))
            t[b + "attn_v_b.weight"] = np.ascontiguousarray(kv[:, nope:, :])
        else:
            for s in "qkv":
                t[b + f"attn_{s}.weight"] = hf[a + f"{s}_proj.weight"]
                t[b + f"ssm_conv1d_{s}.weight"] = hf[a + f"{s}_conv1d.weight"].reshape(1, C, 1, W)
            t[b + "ssm_f_a.weight"] = hf[a + "f_a_proj.weight"]
            t[b + "ssm_f_b.weight"] = hf[a + "f_b_proj.weight"]
            t[b + "ssm_beta.weight"] = hf[a + "b_proj.weight"]
            t[b + "ssm_a"] = (-np.exp(hf[a + "A_log"].astype(np.float64))).astype(np.float32).reshape(1, 1, H, 1)
            t[b + "ssm_dt.bias"] = hf[a + "dt_bias"]
            t[b + "ssm_g_a.weight"] = hf[a + "g_a_proj.weight"]
            t[b + "ssm_g_b.weight"] = hf[a + "g_b_proj.weight"]
            t[b + "ssm_norm.weight"] = hf[a + "o_norm.weight"]
        if i < cfg["first_k_dense_replace"]:
            for g in ("gate", "up", "down"):
                t[b + f"ffn_{g}.weight"] = hf[p + f"mlp.{g}_proj.weight"]
        else:
            m = p + "block_sparse_moe."
            t[b + "ffn_gate_inp.weight"] = hf[m + "gate.weight"]
            t[b + "exp_probs_b.bias"] = hf[m + "gate.e_score_correction_bias"]
            for g, w in (("gate", "w1"), ("up", "w3"), ("down", "w2")):
                t[b + f"ffn_{g}_exps.weight"] = np.stack([hf[m + f"experts.{e}.{w}.weight"] for e in range(E)])
                t[b + f"ffn_{g}_shexp.weight"] = hf[m + f"shared_experts.{g}_proj.weight"]
    return t


def allowed_names(n_layers):
    """Every name gguf-py allows for MODEL_ARCH.KIMI_LINEAR, with .weight / .bias suffixes."""
    out = set()
    for key in MODEL_TENSORS[MODEL_ARCH.KIMI_LINEAR]:
        tmpl = TENSOR_NAMES[key]
        bases = [tmpl.format(bid=i) for i in range(n_layers)] if "{bid}" in tmpl else [tmpl]
        for base in bases:
            out.update({base, base + ".weight", base + ".bias"})
    return out


def quantizable(name, ne):
    n_dims = max([i + 1 for i, x in enumerate(ne) if x != 1] or [1])
    return (n_dims >= 2 and name.endswith("weight") and "_norm.weight" not in name
            and "ffn_gate_inp.weight" not in name and "ssm_conv1d" not in name)


K_TYPES = {Q.Q2_K: 0.45, Q.Q3_K: 0.25, Q.Q4_K: 0.12, Q.Q5_K: 0.06, Q.Q6_K: 0.03}
LEGACY = {Q.Q8_0, Q.Q4_0, Q.Q5_0, Q.Q5_1}
MIXES = {"q6_k", "q5_k_m", "q5_k_s", "q4_k_m", "q4_k_s", "q3_k_m", "q3_k_s", "q2_k"}
FTYPE = {"f32": 0, "f16": 1, "q8_0": 7, "q2_k": 10, "q3_k_s": 11, "q3_k_m": 12, "q4_k_s": 14, "q4_k_m": 15,
         "q5_k_s": 16, "q5_k_m": 17, "q6_k": 18, "bf16": 32, "q4_k": 15}


def expected_type(kind, name, ne):
    if not quantizable(name, ne):
        return {Q.F32}
    n0 = ne[0]
    plain = {"f32": Q.F32, "f16": Q.F16, "bf16": Q.BF16}
    if kind in plain:
        return {plain[kind]}
    if kind == "q8_0":
        return {Q.Q8_0 if n0 % 32 == 0 else Q.F16}
    if kind == "q4_k":
        return {Q.Q4_K if n0 % 256 == 0 else Q.Q8_0 if n0 % 32 == 0 else Q.F16}
    if name == "output.weight":
        return {Q.Q6_K if n0 % 256 == 0 else Q.Q8_0}
    if n0 % 256 == 0:
        return set(K_TYPES) | {Q.Q8_0}
    # llama.cpp's fallbacks for rows that are not whole super-blocks
    return ({Q.Q4_0, Q.Q5_0, Q.Q5_1, Q.Q8_0} if n0 % 32 == 0 else set()) | {Q.F16}


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def check_metadata(path, r, cfg):
    def val(key):
        f = r.fields.get(key)
        if f is None:
            fail(f"{path}: missing key {key}")
        return f.contents()

    la = cfg["linear_attn_config"]
    n = cfg["num_hidden_layers"]
    want = {
        "general.architecture": "kimi-linear",
        "kimi-linear.block_count": n,
        "kimi-linear.context_length": cfg["model_max_length"],
        "kimi-linear.embedding_length": cfg["hidden_size"],
        "kimi-linear.feed_forward_length": cfg["intermediate_size"],
        "kimi-linear.vocab_size": cfg["vocab_size"],
        "kimi-linear.attention.head_count": cfg["num_attention_heads"],
        "kimi-linear.attention.head_count_kv": [1 if (i + 1) in la["full_attn_layers"] else 0 for i in range(n)],
        "kimi-linear.attention.key_length": cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"],
        "kimi-linear.attention.value_length": cfg["head_dim"],
        "kimi-linear.attention.key_length_mla": cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"],
        "kimi-linear.attention.value_length_mla": cfg["v_head_dim"],
        "kimi-linear.attention.kv_lora_rank": cfg["kv_lora_rank"],
        "kimi-linear.rope.dimension_count": cfg["qk_rope_head_dim"],
        "kimi-linear.ssm.conv_kernel": la["short_conv_kernel_size"],
        "kimi-linear.kda.head_dim": la["head_dim"],
        "kimi-linear.expert_count": cfg["num_experts"],
        "kimi-linear.expert_used_count": cfg["num_experts_per_token"],
        "kimi-linear.expert_feed_forward_length": cfg["moe_intermediate_size"],
        "kimi-linear.expert_shared_count": cfg["num_shared_experts"],
        "kimi-linear.leading_dense_block_count": cfg["first_k_dense_replace"],
        "kimi-linear.expert_gating_func": 2,
    }
    for k, v in want.items():
        if val(k) != v:
            fail(f"{path}: {k} = {val(k)!r}, expected {v!r}")
    for k, v in (("kimi-linear.expert_weights_scale", cfg["routed_scaling_factor"]),
                 ("kimi-linear.attention.layer_norm_rms_epsilon", cfg["rms_norm_eps"]),
                 ("kimi-linear.rope.freq_base", cfg["rope_theta"])):
        if abs(val(k) - v) > 1e-6 * max(1.0, abs(v)):
            fail(f"{path}: {k} = {val(k)}, expected {v}")
    if "kimi-linear.attention.q_lora_rank" in r.fields:
        fail(f"{path}: q_lora_rank written although config.json has null")


def check_file(kind, path, cfg, exp):
    r = gguf.GGUFReader(path)
    check_metadata(path, r, cfg)
    if r.fields["general.file_type"].contents() != FTYPE[kind]:
        fail(f"{path}: general.file_type {r.fields['general.file_type'].contents()} for {kind}")
    names = [t.name for t in r.tensors]
    if len(names) != len(set(names)):
        fail(f"{path}: duplicate tensor names")
    allowed = allowed_names(cfg["num_hidden_layers"])
    if set(names) - allowed:
        fail(f"{path}: names outside MODEL_TENSORS[KIMI_LINEAR]: {sorted(set(names) - allowed)}")
    if set(names) != set(exp):
        fail(f"{path}: missing {sorted(set(exp) - set(names))}, extra {sorted(set(names) - set(exp))}")
    worst = {}
    for t in r.tensors:
        src = exp[t.name]
        ne = [int(x) for x in t.shape]
        want_ne = list(reversed(src.shape))
        if ne != want_ne:
            fail(f"{path}: {t.name} ne {ne}, expected {want_ne}")
        ty = Q(t.tensor_type)
        if ty not in expected_type(kind, t.name, ne):
            fail(f"{path}: {t.name} type {ty.name} not allowed for {kind} (ne {ne})")
        x = np.ascontiguousarray(src, dtype=np.float32)
        if ty == Q.F32:
            got = np.asarray(t.data, dtype=np.float32).reshape(x.shape)
            if t.name.endswith("ssm_a"):
                ok = np.allclose(got, x, rtol=2e-7, atol=0)
            else:
                ok = np.array_equal(got, x)
            if not ok:
                fail(f"{path}: {t.name} F32 values differ from the source")
        elif ty == Q.F16:
            if not np.array_equal(np.asarray(t.data).view(np.uint16).reshape(-1), x.astype(np.float16).view(np.uint16).reshape(-1)):
                fail(f"{path}: {t.name} F16 values differ from numpy's rounding of the source")
        elif ty == Q.BF16 or ty in LEGACY:
            want = gguf.quants.quantize(x.reshape(-1, ne[0]), ty)
            if not np.array_equal(np.asarray(t.data).view(np.uint8).reshape(-1), want.view(np.uint8).reshape(-1)):
                fail(f"{path}: {t.name} {ty.name} bytes differ from gguf-py's quantization of the source")
        elif ty in K_TYPES:
            deq = gguf.quants.dequantize(t.data, ty).reshape(-1)
            ref = x.reshape(-1)
            rel = float(np.sqrt(np.mean((deq - ref) ** 2)) / max(np.sqrt(np.mean(ref ** 2)), 1e-12))
            if not np.isfinite(deq).all() or rel > K_TYPES[ty]:
                fail(f"{path}: {t.name} {ty.name} relative RMS error {rel:.4f} > {K_TYPES[ty]}")
            worst[ty.name] = max(worst.get(ty.name, 0.0), rel)
        else:
            fail(f"{path}: {t.name} has unexpected type {ty.name}")
    types = sorted({Q(t.tensor_type).name for t in r.tensors})
    print(f"ok {kind}: {path}: {len(names)} tensors, types {types}, worst K rel-RMS {worst}")


def main():
    hf_dir = sys.argv[1]
    with open(os.path.join(hf_dir, "config.json")) as f:
        cfg = json.load(f)
    exp = expected_tensors(cfg, load_safetensors(hf_dir))
    for arg in sys.argv[2:]:
        kind, path = arg.split("=", 1)
        check_file(kind, path, cfg, exp)


if __name__ == "__main__":
    main()
