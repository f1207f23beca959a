#!/usr/bin/env python3
"""GGUF (llama.cpp `kimi-linear` layout) -> transformers KimiLinearForCausalLM -> logits.

The quantized-path proof: transformers run on exactly the weights a GGUF file holds (every tensor
dequantized by gguf-py), so a runner reading the same file can be compared against it.

    /work/refenv/bin/python tests/reference/gguf_to_hf.py MODEL.gguf tests/fixtures/tiny-a/hf/config.json \\
        --prompt tests/fixtures/tiny-a/prompt.json --out /tmp/logits.npy [--pure-f64] [--save-hf DIR]

The config argument is a checkpoint's config.json (or its directory). Inverse of the converter transforms
(see /work/shared/spec/gguf-kimi-linear.md §3 and selftest_gguf_roundtrip.py, which writes the forward
direction): GGUF numpy shapes are the reverse of ggml `ne`.

  token_embd / output_norm / output          -> model.embed_tokens / model.norm / lm_head
  blk.N.attn_norm / ffn_norm                 -> input_layernorm / post_attention_layernorm
  KDA: attn_q/k/v -> q/k/v_proj; ssm_conv1d_{q,k,v} ne [4,1,C,1] (or [4,1,C]) -> {q,k,v}_conv1d [C,1,4];
       ssm_f_a/ssm_f_b -> f_a_proj/f_b_proj; ssm_beta -> b_proj; ssm_a (= -exp(A_log)) -> A_log = ln(-ssm_a)
       [1,1,H,1]; ssm_dt.bias -> dt_bias; ssm_g_a/ssm_g_b -> g_a_proj/g_b_proj; ssm_norm -> o_norm;
       attn_output -> o_proj
  MLA: attn_q -> q_proj; attn_kv_a_mqa -> kv_a_proj_with_mqa; attn_kv_a_norm -> kv_a_layernorm;
       attn_k_b ne [nope, r, H] (numpy [H, r, nope]) + attn_v_b ne [r, v, H] (numpy [H, v, r])
       -> kv_b_proj [H*(nope+v), r] (per head: k rows = k_b[h].T, then v rows); legacy attn_kv_b accepted;
       attn_output -> o_proj
  dense FFN: ffn_gate/up/down -> mlp.gate_proj/up_proj/down_proj
  MoE: ffn_gate_inp -> block_sparse_moe.gate.weight; exp_probs_b.bias -> gate.e_score_correction_bias;
       ffn_gate_exps ne [d, mi, E] -> experts.e.w1; ffn_up_exps -> w3; ffn_down_exps ne [mi, d, E] -> w2;
       ffn_{gate,up,down}_shexp -> shared_experts.{gate,up,down}_proj
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import OrderedDict

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kimi_tiny as kt  # noqa: E402


def read_gguf_f64(path: str) -> "OrderedDict[str, np.ndarray]":
    """Every tensor dequantized by gguf-py, numpy shape (= reversed ne), float64."""
    import gguf

    reader = gguf.GGUFReader(path)
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    for t in reader.tensors:
        arr = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))
        out[t.name] = np.asarray(arr, dtype=np.float64).reshape(shape)
    return out


def gguf_metadata(path: str) -> dict:
    import gguf

    reader = gguf.GGUFReader(path)
    md = {}
    for name, field in reader.fields.items():
        if name.startswith("tokenizer.") or not field.types:
            continue
        try:
            md[name] = field.contents()
        except Exception:  # noqa: BLE001
            pass
    return md


def gguf_to_original(g: "dict[str, np.ndarray]", cfg: dict) -> "OrderedDict[str, torch.Tensor]":
    """GGUF tensors -> the original HF checkpoint names/shapes (float64). Fails on unused tensors."""
    used = set()

    def take(name):
        used.add(name)
        return g[name]

    lac = cfg["linear_attn_config"]
    H, K = lac["num_heads"], lac["head_dim"]
    Hm = cfg["num_attention_heads"]
    nope, vdim, r = cfg["qk_nope_head_dim"], cfg["v_head_dim"], cfg["kv_lora_rank"]
    E = cfg["num_experts"]
    kda = {i - 1 for i in lac["kda_layers"]}

    t: OrderedDict[str, np.ndarray] = OrderedDict()
    t["model.embed_tokens.weight"] = take("token_embd.weight")
    for i in range(cfg["num_hidden_layers"]):
        b, p = f"blk.{i}.", f"model.layers.{i}."
        a = p + "self_attn."
        t[p + "input_layernorm.weight"] = take(b + "attn_norm.weight")
        if i in kda:
            for s in "qkv":
                t[a + f"{s}_proj.weight"] = take(b + f"attn_{s}.weight")
            for s in "qkv":
                w = take(b + f"ssm_conv1d_{s}.weight")
                t[a + f"{s}_conv1d.weight"] = w.reshape(H * K, 1, w.shape[-1])
            t[a + "f_a_proj.weight"] = take(b + "ssm_f_a.weight")
            t[a + "f_b_proj.weight"] = take(b + "ssm_f_b.weight")
            t[a + "dt_bias"] = take(b + "ssm_dt.bias").reshape(H * K)
            t[a + "A_log"] = np.log(-take(b + "ssm_a")).reshape(1, 1, H, 1)
            t[a + "b_proj.weight"] = take(b + "ssm_beta.weight")
            t[a + "g_a_proj.weight"] = take(b + "ssm_g_a.weight")
            t[a + "g_b_proj.weight"] = take(b + "ssm_g_b.weight")
            t[a + "o_norm.weight"] = take(b + "ssm_norm.weight")
        else:
            t[a + "q_proj.weight"] = take(b + "attn_q.weight")
            t[a + "kv_a_proj_with_mqa.weight"] = take(b + "attn_kv_a_mqa.weight")
            t[a + "kv_a_layernorm.weight"] = take(b + "attn_kv_a_norm.weight")
            if b + "attn_kv_b.weight" in g:  # legacy unsplit form
                t[a + "kv_b_proj.weight"] = take(b + "attn_kv_b.weight")
            else:
                kb = take(b + "attn_k_b.weight")  # [H, r, nope]
                vb = take(b + "attn_v_b.weight")  # [H, v, r]
                assert kb.shape == (Hm, r, nope) and vb.shape == (Hm, vdim, r), (kb.shape, vb.shape)
                kv = np.concatenate([kb.transpose(0, 2, 1), vb], axis=1)  # [H, nope+v, r]
                t[a + "kv_b_proj.weight"] = kv.reshape(Hm * (nope + vdim), r)
        t[a + "o_proj.weight"] = take(b + "attn_output.weight")
        t[p + "post_attention_layernorm.weight"] = take(b + "ffn_norm.weight")
        if i < cfg["first_k_dense_replace"]:
            for s in ("gate", "up", "down"):
                t[p + f"mlp.{s}_proj.weight"] = take(b + f"ffn_{s}.weight")
        else:
            m = p + "block_sparse_moe."
            t[m + "gate.weight"] = take(b + "ffn_gate_inp.weight")
            t[m + "gate.e_score_correction_bias"] = take(b + "exp_probs_b.bias").reshape(E)
            gate, up, down = (take(b + f"ffn_{s}_exps.weight") for s in ("gate", "up", "down"))
            assert gate.shape[0] == E and up.shape[0] == E and down.shape[0] == E
            for e in range(E):
                t[m + f"experts.{e}.w1.weight"] = gate[e]
                t[m + f"experts.{e}.w2.weight"] = down[e]
                t[m + f"experts.{e}.w3.weight"] = up[e]
            for s in ("gate", "up", "down"):
                t[m + f"shared_experts.{s}_proj.weight"] = take(b + f"ffn_{s}_shexp.weight")
    t["model.norm.weight"] = take("output_norm.weight")
    t["lm_head.weight"] = take("output.weight")
    unused = sorted(set(g) - used)
    assert not unused, f"GGUF tensors not mapped: {unused}"
    return OrderedDict((k, torch.from_numpy(np.ascontiguousarray(v))) for k, v in t.items())


def check_metadata(md: dict, cfg: dict) -> None:
    """Light cross-check of the GGUF metadata against config.json (only keys that are present)."""
    arch = md.get("general.architecture")
    assert arch == "kimi-linear", f"general.architecture = {arch!r}, expected 'kimi-linear'"
    pre = "kimi-linear."
    want = {
        "block_count": cfg["num_hidden_layers"], "embedding_length": cfg["hidden_size"],
        "attention.head_count": cfg["num_attention_heads"], "kda.head_dim": cfg["linear_attn_config"]["head_dim"],
        "attention.kv_lora_rank": cfg["kv_lora_rank"], "expert_count": cfg["num_experts"],
        "expert_used_count": cfg["num_experts_per_token"], "expert_shared_count": cfg["num_shared_experts"],
        "leading_dense_block_count": cfg["first_k_dense_replace"],
        "expert_feed_forward_length": cfg["moe_intermediate_size"],
    }
    for k, v in want.items():
        if pre + k in md:
            got = md[pre + k]
            assert got == v, f"{pre + k} = {got}, config.json says {v}"
    hkv = md.get(pre + "attention.head_count_kv")
    if isinstance(hkv, list):
        kda = {i - 1 for i in cfg["linear_attn_config"]["kda_layers"]}
        assert [0 if i in kda else 1 for i in range(cfg["num_hidden_layers"])] == [int(x) for x in hkv], hkv


def load_model(original: "dict[str, torch.Tensor]", cfg: dict, dtype=torch.float64):
    """KimiLinearForCausalLM from config.json + original-layout tensors (through the same mapping
    transformers applies to a checkpoint; strict: no missing or unexpected keys)."""
    from transformers import KimiLinearConfig, KimiLinearForCausalLM

    config = KimiLinearConfig(**cfg)
    config._experts_implementation = "eager"
    config._attn_implementation = "eager"
    with torch.device("meta"):
        model = KimiLinearForCausalLM(config)
    sd = {k: v.to(dtype) for k, v in kt.original_to_transformers(original, cfg).items()}
    model.load_state_dict(sd, strict=True, assign=True)
    model = model.to(dtype).eval()
    model.config._experts_implementation = "eager"
    kt.assert_pure_torch_kda(model)
    return model


def logits_for(model, ids: list[int], pure: bool = False) -> np.ndarray:
    import contextlib

    ctx = kt.pure_f64() if pure else contextlib.nullcontext()
    with torch.no_grad(), ctx:
        out = model(input_ids=torch.tensor([ids]), use_cache=False)
    return out.logits[0].double().numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gguf")
    ap.add_argument("config", help="config.json of the source checkpoint (or its directory)")
    ap.add_argument("--prompt", required=True, help="prompt.json ({'ids': [...]}) or comma-separated ids")
    ap.add_argument("--out", required=True, help="output .npy, float64 [T, vocab]")
    ap.add_argument("--pure-f64", action="store_true", help="remove transformers' internal f32 casts")
    ap.add_argument("--save-hf", help="also write the dequantized weights as an original-layout f32 checkpoint")
    args = ap.parse_args()
    torch.set_num_threads(2)

    cfg_path = os.path.join(args.config, "config.json") if os.path.isdir(args.config) else args.config
    with open(cfg_path) as f:
        cfg = json.load(f)
    if os.path.exists(args.prompt):
        with open(args.prompt) as f:
            ids = json.load(f)["ids"]
    else:
        ids = [int(x) for x in args.prompt.split(",")]

    check_metadata(gguf_metadata(args.gguf), cfg)
    original = gguf_to_original(read_gguf_f64(args.gguf), cfg)
    if args.save_hf:
        kt.save_checkpoint(OrderedDict((k, v.float()) for k, v in original.items()), cfg, args.save_hf)
    model = load_model(original, cfg)
    logits = logits_for(model, ids, pure=args.pure_f64)
    np.save(args.out, logits)
    print(f"wrote {args.out}: {logits.shape}, std {logits.std():.6f}")


if __name__ == "__main__":
    main()
