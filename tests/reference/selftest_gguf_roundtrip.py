#!/usr/bin/env python3
"""Self-test of gguf_to_hf.py, and the reference statement of the HF -> GGUF mapping the Rust converter
must produce (llama.cpp `kimi-linear` layout, /work/shared/spec/gguf-kimi-linear.md §2-§3).

    /work/refenv/bin/python tests/reference/selftest_gguf_roundtrip.py [names...] [--qtype Q8_0] [--keep DIR]

For each fixture checkpoint it writes a GGUF with gguf-py's GGUFWriter applying the forward transforms
(hf_to_gguf_tensors below; all F32 by default), runs gguf_to_hf.py on it (as a subprocess, the real CLI),
and checks:
  1. the tensors recovered from the GGUF equal the checkpoint's exactly (A_log: to f64 rounding of
     ln(-(-exp(A_log)) rounded to f32));
  2. the logits equal the fixture's logits_pure_f64.npy (up to the A_log round trip) and logits.npy.
With --qtype Q8_0 (or another type gguf-py can quantize) the large matrices are quantized; then it checks
that gguf_to_hf.py ran transformers on exactly dequantize(quantize(w)) and reports how far the logits moved.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gguf_to_hf  # noqa: E402
import kimi_tiny as kt  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", "fixtures"))

# tensors that stay F32 whatever the quant type (llama.cpp's converter rules: 1-D tensors, non-.weight
# names, the router and the conv taps)
KEEP_F32_SUFFIXES = ("_norm.weight", "ssm_norm.weight", "ssm_a", "ssm_dt.bias", "exp_probs_b.bias",
                     "ffn_gate_inp.weight", "ssm_conv1d_q.weight", "ssm_conv1d_k.weight", "ssm_conv1d_v.weight")


def hf_to_gguf_tensors(t: "dict[str, torch.Tensor]", cfg: dict) -> "list[tuple[str, np.ndarray]]":
    """Original HF tensors -> (GGUF name, numpy array in numpy order = reversed ne), float32."""
    lac = cfg["linear_attn_config"]
    H, K = lac["num_heads"], lac["head_dim"]
    Hm = cfg["num_attention_heads"]
    nope, vdim, r = cfg["qk_nope_head_dim"], cfg["v_head_dim"], cfg["kv_lora_rank"]
    E = cfg["num_experts"]
    kda = {i - 1 for i in lac["kda_layers"]}

    def f(name):
        return t[name].to(torch.float32).numpy()

    out = [("token_embd.weight", f("model.embed_tokens.weight"))]
    for i in range(cfg["num_hidden_layers"]):
        b, p = f"blk.{i}.", f"model.layers.{i}."
        a = p + "self_attn."
        out.append((b + "attn_norm.weight", f(p + "input_layernorm.weight")))
        if i in kda:
            for s in "qkv":
                out.append((b + f"attn_{s}.weight", f(a + f"{s}_proj.weight")))            # ne [d, H*K]
            for s in "qkv":
                w = f(a + f"{s}_conv1d.weight")                                             # [H*K, 1, 4]
                out.append((b + f"ssm_conv1d_{s}.weight", w.reshape(1, H * K, 1, w.shape[-1])))  # ne [4,1,C,1]
            out.append((b + "ssm_f_a.weight", f(a + "f_a_proj.weight")))                    # ne [d, K]
            out.append((b + "ssm_f_b.weight", f(a + "f_b_proj.weight")))                    # ne [K, H*K]
            out.append((b + "ssm_beta.weight", f(a + "b_proj.weight")))                     # ne [d, H]
            a_log = t[a + "A_log"].to(torch.float64).numpy()                                # [1,1,H,1]
            out.append((b + "ssm_a", (-np.exp(a_log)).astype(np.float32).reshape(1, 1, H, 1)))  # ne [1,H,1,1]
            out.append((b + "ssm_dt.bias", f(a + "dt_bias").reshape(H * K)))                # ne [H*K]
            out.append((b + "ssm_g_a.weight", f(a + "g_a_proj.weight")))                    # ne [d, K]
            out.append((b + "ssm_g_b.weight", f(a + "g_b_proj.weight")))                    # ne [K, H*K]
            out.append((b + "ssm_norm.weight", f(a + "o_norm.weight")))                     # ne [K]
        else:
            out.append((b + "attn_q.weight", f(a + "q_proj.weight")))                       # ne [d, H*(nope+rope)]
            out.append((b + "attn_kv_a_mqa.weight", f(a + "kv_a_proj_with_mqa.weight")))    # ne [d, r+rope]
            out.append((b + "attn_kv_a_norm.weight", f(a + "kv_a_layernorm.weight")))       # ne [r]
            kv = f(a + "kv_b_proj.weight").reshape(Hm, nope + vdim, r)
            out.append((b + "attn_k_b.weight", np.ascontiguousarray(kv[:, :nope, :].transpose(0, 2, 1))))  # ne [nope, r, H]
            out.append((b + "attn_v_b.weight", np.ascontiguousarray(kv[:, nope:, :])))                     # ne [r, v, H]
        out.append((b + "attn_output.weight", f(a + "o_proj.weight")))
        out.append((b + "ffn_norm.weight", f(p + "post_attention_layernorm.weight")))
        if i < cfg["first_k_dense_replace"]:
            for s in ("gate", "up", "down"):
                out.append((b + f"ffn_{s}.weight", f(p + f"mlp.{s}_proj.weight")))
        else:
            m = p + "block_sparse_moe."
            out.append((b + "ffn_gate_inp.weight", f(m + "gate.weight")))                   # ne [d, E]
            out.append((b + "exp_probs_b.bias", f(m + "gate.e_score_correction_bias")))     # ne [E]
            for s, w in (("gate", "w1"), ("up", "w3"), ("down", "w2")):
                out.append((b + f"ffn_{s}_exps.weight",                                      # ne [d, mi, E] / [mi, d, E]
                            np.stack([f(m + f"experts.{e}.{w}.weight") for e in range(E)])))
            for s in ("gate", "up", "down"):
                out.append((b + f"ffn_{s}_shexp.weight", f(m + f"shared_experts.{s}_proj.weight")))
    out.append(("output_norm.weight", f("model.norm.weight")))
    out.append(("output.weight", f("lm_head.weight")))
    return out


def write_gguf(path: str, tensors, cfg: dict, qtype=None) -> "dict[str, np.ndarray]":
    """Writes the GGUF; returns what each tensor dequantizes to (numpy order, f64), for checking."""
    import gguf

    lac = cfg["linear_attn_config"]
    kda = {i - 1 for i in lac["kda_layers"]}
    w = gguf.GGUFWriter(path, "kimi-linear")
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["model_max_length"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_vocab_size(cfg["vocab_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv([0 if i in kda else 1 for i in range(cfg["num_hidden_layers"])])
    w.add_key_length(cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"])
    w.add_value_length(cfg["head_dim"])
    w.add_key_length_mla(cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"])
    w.add_value_length_mla(cfg["v_head_dim"])
    w.add_kv_lora_rank(cfg["kv_lora_rank"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_dimension_count(cfg["qk_rope_head_dim"])
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_ssm_conv_kernel(lac["short_conv_kernel_size"])
    w.add_kda_head_dim(lac["head_dim"])
    w.add_expert_count(cfg["num_experts"])
    w.add_expert_used_count(cfg["num_experts_per_token"])
    w.add_expert_feed_forward_length(cfg["moe_intermediate_size"])
    w.add_expert_shared_count(cfg["num_shared_experts"])
    w.add_leading_dense_block_count(cfg["first_k_dense_replace"])
    w.add_expert_weights_scale(cfg["routed_scaling_factor"])
    w.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID)
    expected = {}
    for name, arr in tensors:
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        quantize = (qtype is not None and arr.ndim >= 2 and not name.endswith(KEEP_F32_SUFFIXES)
                    and arr.shape[-1] % gguf.GGML_QUANT_SIZES[qtype][0] == 0)
        if quantize:
            q = gguf.quants.quantize(arr, qtype)
            w.add_tensor(name, q, raw_dtype=qtype)
            expected[name] = gguf.quants.dequantize(q, qtype).astype(np.float64).reshape(arr.shape)
        else:
            w.add_tensor(name, arr, raw_dtype=gguf.GGMLQuantizationType.F32)
            expected[name] = arr.astype(np.float64)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return expected


def rel(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def run(name: str, qtype, keep: str | None) -> dict:
    base = os.path.join(ROOT, name)
    ckpt = os.path.join(base, "hf")
    with open(os.path.join(ckpt, "config.json")) as f:
        cfg = json.load(f)
    original = kt.load_original(ckpt)
    gtensors = hf_to_gguf_tensors(original, cfg)
    tmp = keep or tempfile.mkdtemp(prefix="kiln-gguf-selftest-")
    os.makedirs(tmp, exist_ok=True)
    tag = qtype.name if qtype is not None else "F32"
    path = os.path.join(tmp, f"{name}-{tag}.gguf")
    expected_g = write_gguf(path, gtensors, cfg, qtype)

    # 1. tensors back from the file
    back = gguf_to_hf.gguf_to_original(gguf_to_hf.read_gguf_f64(path), cfg)
    assert set(back) == set(original), "name sets differ"
    # what the recovered checkpoint must be: the inverse transform of exactly what the file holds
    expected = gguf_to_hf.gguf_to_original(expected_g, cfg)
    for k in original:
        assert torch.equal(back[k], expected[k]), f"{k}: gguf_to_hf does not reproduce the file's values"
    a_log_err = 0.0
    n_exact = 0
    for k, v in original.items():
        d = float((back[k] - v.to(torch.float64)).abs().max())
        if k.endswith("A_log"):
            a_log_err = max(a_log_err, d)
        elif qtype is None:
            assert d == 0.0, f"{k}: F32 round trip not exact ({d})"
            n_exact += 1

    # 2. logits through the real CLI
    out_t = os.path.join(tmp, f"{name}-{tag}-logits.npy")
    out_p = os.path.join(tmp, f"{name}-{tag}-logits-pure.npy")
    cmd = [sys.executable, os.path.join(HERE, "gguf_to_hf.py"), path, ckpt, "--prompt", os.path.join(base, "prompt.json")]
    for out, extra in ((out_t, []), (out_p, ["--pure-f64"])):
        subprocess.run(cmd + ["--out", out] + extra, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lg, lp = np.load(out_t), np.load(out_p)
    ref_t = np.load(os.path.join(base, "logits.npy")).astype(np.float64)
    ref_p = np.load(os.path.join(base, "logits_pure_f64.npy"))
    res = {
        "name": name, "type": tag, "gguf": path, "gguf_bytes": os.path.getsize(path),
        "n_tensors": len(gtensors), "tensors_exact": n_exact, "A_log_roundtrip_max_abs": a_log_err,
        "pure_f64_vs_fixture_max_rel": rel(lp, ref_p),
        "transformers_vs_fixture_max_rel": rel(lg, ref_t),
        "argmax_agreement_vs_fixture": float((lp.argmax(-1) == ref_p.argmax(-1)).mean()),
    }
    if qtype is None:
        assert a_log_err < 1e-6, a_log_err
        assert res["pure_f64_vs_fixture_max_rel"] < 1e-5, res
        assert res["transformers_vs_fixture_max_rel"] < 1e-4, res
    else:
        # the CLI's logits must be transformers on exactly the dequantized weights
        model = gguf_to_hf.load_model(expected, cfg)
        with open(os.path.join(base, "prompt.json")) as f:
            ids = json.load(f)["ids"]
        direct = gguf_to_hf.logits_for(model, ids, pure=True)
        res["cli_vs_direct_dequant_max_rel"] = rel(lp, direct)
        assert res["cli_vs_direct_dequant_max_rel"] == 0.0, res
    return res


def main():
    import gguf

    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="*")
    ap.add_argument("--qtype", default=None, help="e.g. Q8_0 (default: all F32)")
    ap.add_argument("--keep", default=None, help="directory for the GGUF and logits files")
    args = ap.parse_args()
    torch.set_num_threads(2)
    qtype = gguf.GGMLQuantizationType[args.qtype] if args.qtype else None
    for name in args.names or list(kt.TINY_CONFIGS):
        print(json.dumps(run(name, qtype, args.keep)))


if __name__ == "__main__":
    main()
