"""Shared helpers for the tiny Kimi Linear reference fixtures.

- TINY_CONFIGS: the small configurations (and why each exists).
- make_config_json(): config.json in the ORIGINAL moonshotai/Kimi-Linear-48B-A3B-Instruct field set.
- make_tensors(): random "sharp" weights in the ORIGINAL checkpoint layout (names, shapes, dtypes).
- save_checkpoint(): bf16 safetensors (A_log/dt_bias f32) split into >= 2 shards + index.json.
- load_hf(): KimiLinearForCausalLM.from_pretrained(...) in float64 with the eager experts path.
- pure_f64(): context manager that removes transformers' internal float32 casts (for a true f64 run).

Run with /work/refenv/bin/python (torch, transformers >= 5.17, safetensors, numpy; never fla).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import types
from collections import OrderedDict

import torch

# --------------------------------------------------------------------------------------------------
# Configurations
# --------------------------------------------------------------------------------------------------
# Every config keeps KDA heads == MLA heads (llama.cpp's GGUF has one attention.head_count for both),
# and makes the KDA width (heads*head_dim) and the MLA q width (heads*(nope+rope)) differ from hidden_size,
# as in the real model (4096 / 6144 vs 2304), so a transposed or mis-sized matrix cannot go unnoticed. The MLA
# value width (heads*v_head_dim) differs from hidden in tiny-b and tiny-c and equals it in tiny-a and tiny-d.
TINY_CONFIGS: dict[str, dict] = {
    # tiny-a: the smallest case, close to the spec §8 recipe. KDA head_dim 32, one dense layer,
    # one shared expert, the only MLA layer is the LAST layer (like the real model's layer 26).
    # hidden 64, KDA 4x32=128 wide, MLA 4 heads (nope 16, rope 8, v 16), 8 experts top-2.
    "tiny-a": dict(
        vocab_size=512, hidden_size=64, num_hidden_layers=4, num_heads=4, kda_head_dim=32,
        kda_layers=[1, 2, 3], full_attn_layers=[4],
        intermediate_size=160, moe_intermediate_size=32, num_experts=8, num_experts_per_token=2,
        num_shared_experts=1, first_k_dense_replace=1,
        kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
        dtype_key="dtype", seed=1001,
    ),
    # tiny-b: KDA head_dim 128 (the real K = V = 128, so any kernel specialised for 128 is exercised),
    # TWO dense leading layers, TWO shared experts (shared width = 2 * moe_intermediate), MLA in the
    # MIDDLE (layer 3, 1-based) and LAST (layer 5); 16 experts top-4; the largest vocab.
    "tiny-b": dict(
        vocab_size=1024, hidden_size=128, num_hidden_layers=5, num_heads=2, kda_head_dim=128,
        kda_layers=[1, 2, 4], full_attn_layers=[3, 5],
        intermediate_size=320, moe_intermediate_size=64, num_experts=16, num_experts_per_token=4,
        num_shared_experts=2, first_k_dense_replace=2,
        kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32,
        dtype_key="torch_dtype", seed=1002,
    ),
    # tiny-c: the real model's 3:1 layer pattern in miniature with its irregular end
    # (KDA,KDA,KDA,MLA,KDA,MLA), KDA head_dim 32 with 3 heads (odd head count), one dense layer,
    # two shared experts, 12 experts top-3 (non power of two), hidden 96.
    "tiny-c": dict(
        vocab_size=768, hidden_size=96, num_hidden_layers=6, num_heads=3, kda_head_dim=32,
        kda_layers=[1, 2, 3, 5], full_attn_layers=[4, 6],
        intermediate_size=256, moe_intermediate_size=48, num_experts=12, num_experts_per_token=3,
        num_shared_experts=2, first_k_dense_replace=1,
        kv_lora_rank=48, qk_nope_head_dim=24, qk_rope_head_dim=8, v_head_dim=24,
        dtype_key="torch_dtype", seed=1003,
    ),
    # tiny-d: KDA head_dim 128 with 4 heads (KDA width 512 = 4x hidden), two dense layers, one shared
    # expert, MLA first-in-the-middle (layer 2) and last (layer 4), 8 experts top-2.
    "tiny-d": dict(
        vocab_size=640, hidden_size=128, num_hidden_layers=4, num_heads=4, kda_head_dim=128,
        kda_layers=[1, 3], full_attn_layers=[2, 4],
        intermediate_size=256, moe_intermediate_size=64, num_experts=8, num_experts_per_token=2,
        num_shared_experts=1, first_k_dense_replace=2,
        kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=16, v_head_dim=32,
        dtype_key="dtype", seed=1004,
    ),
}

ROUTED_SCALING_FACTOR = 2.446
RMS_NORM_EPS = 1e-5
CONV_K = 4


def special_ids(vocab_size: int) -> dict[str, int]:
    """bos/eos/pad placed like the real vocab: specials start 256 below the top, pad is the last id."""
    base = vocab_size - 256
    return {"bos": base, "eos": base + 2, "pad": vocab_size - 1}


def make_config_json(name: str) -> dict:
    c = TINY_CONFIGS[name]
    sp = special_ids(c["vocab_size"])
    n_layers = c["num_hidden_layers"]
    assert sorted(c["kda_layers"] + c["full_attn_layers"]) == list(range(1, n_layers + 1))
    cfg = OrderedDict()
    cfg["architectures"] = ["KimiLinearForCausalLM"]
    cfg["auto_map"] = {
        "AutoConfig": "configuration_kimi.KimiLinearConfig",
        "AutoModel": "modeling_kimi.KimiLinearModel",
        "AutoModelForCausalLM": "modeling_kimi.KimiLinearForCausalLM",
    }
    cfg["bos_token_id"] = sp["bos"]
    cfg[c["dtype_key"]] = "bfloat16"  # the real file says "dtype"; older revisions "torch_dtype"
    cfg["eos_token_id"] = sp["eos"]
    cfg["first_k_dense_replace"] = c["first_k_dense_replace"]
    cfg["head_dim"] = c["hidden_size"] // c["num_heads"]  # unused artifact, as in the real config (72)
    cfg["hidden_act"] = "silu"
    cfg["hidden_size"] = c["hidden_size"]
    cfg["initializer_range"] = 0.02
    cfg["intermediate_size"] = c["intermediate_size"]
    cfg["kv_lora_rank"] = c["kv_lora_rank"]
    cfg["linear_attn_config"] = {
        "full_attn_layers": list(c["full_attn_layers"]),
        "head_dim": c["kda_head_dim"],
        "kda_layers": list(c["kda_layers"]),
        "num_heads": c["num_heads"],
        "short_conv_kernel_size": CONV_K,
    }
    cfg["mla_use_nope"] = True
    cfg["model_max_length"] = 1048576
    cfg["model_type"] = "kimi_linear"
    cfg["moe_intermediate_size"] = c["moe_intermediate_size"]
    cfg["moe_layer_freq"] = 1
    cfg["moe_renormalize"] = True
    cfg["moe_router_activation_func"] = "sigmoid"
    cfg["num_attention_heads"] = c["num_heads"]
    cfg["num_expert_group"] = 1
    cfg["num_experts"] = c["num_experts"]
    cfg["num_experts_per_token"] = c["num_experts_per_token"]
    cfg["num_hidden_layers"] = n_layers
    cfg["num_key_value_heads"] = c["num_heads"]
    cfg["num_nextn_predict_layers"] = 0
    cfg["num_shared_experts"] = c["num_shared_experts"]
    cfg["pad_token_id"] = sp["pad"]
    cfg["q_lora_rank"] = None
    cfg["qk_nope_head_dim"] = c["qk_nope_head_dim"]
    cfg["qk_rope_head_dim"] = c["qk_rope_head_dim"]
    cfg["rms_norm_eps"] = RMS_NORM_EPS
    cfg["rope_scaling"] = None
    cfg["rope_theta"] = 10000.0
    cfg["routed_scaling_factor"] = ROUTED_SCALING_FACTOR
    cfg["tie_word_embeddings"] = False
    cfg["topk_group"] = 1
    cfg["transformers_version"] = "4.57.1"
    cfg["use_cache"] = True
    cfg["use_grouped_topk"] = True
    cfg["v_head_dim"] = c["v_head_dim"]
    cfg["vocab_size"] = c["vocab_size"]
    return cfg


# --------------------------------------------------------------------------------------------------
# Random sharp weights in the original layout
# --------------------------------------------------------------------------------------------------
def make_tensors(name: str) -> "OrderedDict[str, torch.Tensor]":
    """All tensors of the checkpoint, original HF names, stored dtype (bf16; A_log/dt_bias f32).

    Values are drawn in f32 and rounded to bf16 HERE, so every consumer sees exactly the stored values.
    Statistics (DESIGN.md §3): linear weights N(0, (1.5/sqrt(fan_in))^2); embedding N(0, 1);
    RMSNorm weights 1 + U(-0.2, 0.2); conv taps N(0, 0.75^2) (= 1.5/sqrt(4)); A_log = ln U(1, 16);
    dt_bias N(-3, 1.5^2) (f32, not rounded); e_score_correction_bias N(0, 0.5^2) (bf16, as stored).
    """
    c = TINY_CONFIGS[name]
    g = torch.Generator().manual_seed(c["seed"])
    bf16 = torch.bfloat16

    def lin(out_f, in_f):
        return (torch.randn(out_f, in_f, generator=g) * (1.5 / math.sqrt(in_f))).to(bf16)

    def norm(n):
        return (1.0 + (torch.rand(n, generator=g) * 0.4 - 0.2)).to(bf16)

    d = c["hidden_size"]
    V = c["vocab_size"]
    H = c["num_heads"]
    K = c["kda_head_dim"]
    qkv = H * K
    nope, rope, vdim, r = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"], c["kv_lora_rank"]
    E, mi = c["num_experts"], c["moe_intermediate_size"]
    shared = mi * c["num_shared_experts"]
    kda = {l - 1 for l in c["kda_layers"]}

    t: OrderedDict[str, torch.Tensor] = OrderedDict()
    t["model.embed_tokens.weight"] = torch.randn(V, d, generator=g).to(bf16)
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = norm(d)
        a = p + "self_attn."
        if i in kda:
            t[a + "q_proj.weight"] = lin(qkv, d)
            t[a + "k_proj.weight"] = lin(qkv, d)
            t[a + "v_proj.weight"] = lin(qkv, d)
            for s in "qkv":
                t[a + f"{s}_conv1d.weight"] = (torch.randn(qkv, 1, CONV_K, generator=g) * 0.75).to(bf16)
            t[a + "f_a_proj.weight"] = lin(K, d)
            t[a + "f_b_proj.weight"] = lin(qkv, K)
            t[a + "dt_bias"] = (torch.randn(qkv, generator=g) * 1.5 - 3.0).float()
            t[a + "A_log"] = torch.log(1.0 + 15.0 * torch.rand(1, 1, H, 1, generator=g)).float()
            t[a + "b_proj.weight"] = lin(H, d)
            t[a + "g_a_proj.weight"] = lin(K, d)
            t[a + "g_b_proj.weight"] = lin(qkv, K)
            t[a + "o_norm.weight"] = norm(K)
            t[a + "o_proj.weight"] = lin(d, qkv)
        else:
            t[a + "q_proj.weight"] = lin(H * (nope + rope), d)
            t[a + "kv_a_proj_with_mqa.weight"] = lin(r + rope, d)
            t[a + "kv_a_layernorm.weight"] = norm(r)
            t[a + "kv_b_proj.weight"] = lin(H * (nope + vdim), r)
            t[a + "o_proj.weight"] = lin(d, H * vdim)
        t[p + "post_attention_layernorm.weight"] = norm(d)
        if i < c["first_k_dense_replace"]:
            m = p + "mlp."
            t[m + "gate_proj.weight"] = lin(c["intermediate_size"], d)
            t[m + "up_proj.weight"] = lin(c["intermediate_size"], d)
            t[m + "down_proj.weight"] = lin(d, c["intermediate_size"])
        else:
            m = p + "block_sparse_moe."
            t[m + "gate.weight"] = lin(E, d)
            t[m + "gate.e_score_correction_bias"] = (torch.randn(E, generator=g) * 0.5).to(bf16)
            for e in range(E):
                t[m + f"experts.{e}.w1.weight"] = lin(mi, d)
                t[m + f"experts.{e}.w2.weight"] = lin(d, mi)
                t[m + f"experts.{e}.w3.weight"] = lin(mi, d)
            t[m + "shared_experts.gate_proj.weight"] = lin(shared, d)
            t[m + "shared_experts.up_proj.weight"] = lin(shared, d)
            t[m + "shared_experts.down_proj.weight"] = lin(d, shared)
    t["model.norm.weight"] = norm(d)
    t["lm_head.weight"] = lin(V, d)
    return t


def save_checkpoint(tensors: "OrderedDict[str, torch.Tensor]", cfg: dict, out_dir: str, n_shards: int = 2):
    """Writes config.json, model-0000k-of-0000n.safetensors (split by layer) and the index."""
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    for f in os.listdir(out_dir):
        if f.endswith(".safetensors") or f.endswith(".json"):
            os.remove(os.path.join(out_dir, f))
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")

    # shard boundary: layers [0, L/2) plus the embedding go to shard 1, the rest to shard 2 (and so on)
    n_layers = cfg["num_hidden_layers"]

    def shard_of(name: str) -> int:
        if name.startswith("model.layers."):
            i = int(name.split(".")[2])
            return min(n_shards - 1, i * n_shards // n_layers)
        return 0 if name.startswith("model.embed_tokens") else n_shards - 1

    groups: list[OrderedDict] = [OrderedDict() for _ in range(n_shards)]
    for k, v in tensors.items():
        groups[shard_of(k)][k] = v.contiguous()
    weight_map = {}
    total = 0
    for s, grp in enumerate(groups):
        fname = f"model-{s + 1:05d}-of-{n_shards:05d}.safetensors"
        save_file(grp, os.path.join(out_dir, fname), metadata={"format": "pt"})
        for k, v in grp.items():
            weight_map[k] = fname
            total += v.numel() * v.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")


def load_original(ckpt_dir: str) -> "OrderedDict[str, torch.Tensor]":
    """Reads the sharded checkpoint back (original names, stored dtypes)."""
    from safetensors.torch import load_file

    with open(os.path.join(ckpt_dir, "model.safetensors.index.json")) as f:
        index = json.load(f)
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for fname in sorted(set(index["weight_map"].values())):
        out.update(load_file(os.path.join(ckpt_dir, fname)))
    return out


def original_to_transformers(t: "dict[str, torch.Tensor]", cfg: dict) -> "dict[str, torch.Tensor]":
    """What transformers' conversion mapping (conversion_mapping.py, entry kimi_linear) makes of the
    original tensors: the expected state_dict of KimiLinearForCausalLM (used to check the load)."""
    out = {}
    n_layers = cfg["num_hidden_layers"]
    E = cfg["num_experts"]
    for k, v in t.items():
        if not k.startswith("model.layers."):
            out[k] = v
    for i in range(n_layers):
        p = f"model.layers.{i}."
        for k, v in t.items():
            if not k.startswith(p):
                continue
            rest = k[len(p):]
            if rest.startswith("self_attn.") and rest.split(".")[1] in ("f_a_proj", "f_b_proj", "dt_bias", "A_log"):
                out[p + "self_attn.forget_gate." + rest[len("self_attn."):]] = v
            elif rest.endswith("_conv1d.weight"):
                continue
            elif rest.startswith("block_sparse_moe.experts."):
                continue
            elif rest.startswith("block_sparse_moe."):
                out[p + "mlp." + rest[len("block_sparse_moe."):]] = v
            else:
                out[k] = v
        a = p + "self_attn."
        if a + "q_conv1d.weight" in t:
            out[a + "conv1d.weight"] = torch.cat([t[a + f"{s}_conv1d.weight"] for s in "qkv"], dim=0)
        m = p + "block_sparse_moe.experts."
        if m + "0.w1.weight" in t:
            out[p + "mlp.experts.gate_up_proj"] = torch.stack(
                [torch.cat([t[m + f"{e}.w1.weight"], t[m + f"{e}.w3.weight"]], dim=0) for e in range(E)])
            out[p + "mlp.experts.down_proj"] = torch.stack([t[m + f"{e}.w2.weight"] for e in range(E)])
    return out


# --------------------------------------------------------------------------------------------------
# Loading the reference model
# --------------------------------------------------------------------------------------------------
def load_hf(ckpt_dir: str, dtype=torch.float64):
    """KimiLinearForCausalLM from the original-layout directory, loaded straight into `dtype` (float64:
    every stored bf16/f32 value is kept exactly; loading as bf16 first would round the f32 A_log/dt_bias,
    since KimiLinear declares no keep-in-fp32 modules), eager experts and eager attention (the plain
    per-expert loop; grouped_mm rejects f64). Returns (model, loading_info)."""
    from transformers import KimiLinearConfig, KimiLinearForCausalLM

    config = KimiLinearConfig.from_pretrained(ckpt_dir)
    config._experts_implementation = "eager"
    model, info = KimiLinearForCausalLM.from_pretrained(
        ckpt_dir, config=config, dtype=dtype, output_loading_info=True,
        attn_implementation="eager", experts_implementation="eager",
    )
    model = model.to(dtype).eval()
    model.config._experts_implementation = "eager"
    return model, info


def assert_pure_torch_kda(model):
    """Fails if any KDA / conv function resolved to a hub kernel or to fla instead of the torch fallback."""
    import importlib.util

    assert importlib.util.find_spec("fla") is None, "flash-linear-attention is installed; remove it"
    from transformers.models.kimi_linear import modeling_kimi_linear as mkl

    for fn_name in ("chunk_kimi_delta_attention", "recurrent_kimi_delta_attention",
                    "causal_conv1d_fn", "causal_conv1d_update"):
        fn = getattr(mkl, fn_name)
        mod = getattr(fn, "__module__", "")
        assert mod == mkl.__name__, f"{fn_name} resolves to {mod}, not the pure-torch fallback"


@contextlib.contextmanager
def pure_f64():
    """Inside this context transformers' Kimi Linear code computes everything in float64.

    transformers casts to float32 internally even for a .double() model (RMSNorm, gated RMSNorm, forget
    gate, KDA recurrence/chunk, router, softmax). Here the module's `torch` is replaced by a proxy whose
    `float32` is float64, and Tensor.float() returns float64 for float64 tensors. This is the same math
    without intermediate f32 rounding; it is used only to measure how much those casts matter."""
    from transformers.models.kimi_linear import modeling_kimi_linear as mkl

    real_torch = mkl.torch
    proxy = types.ModuleType("torch_f64_proxy")
    proxy.__dict__.update({k: getattr(real_torch, k) for k in dir(real_torch) if not k.startswith("__")})
    proxy.float32 = real_torch.float64
    real_float = torch.Tensor.float

    def float_keep_f64(self, *a, **kw):
        if self.dtype == torch.float64:
            return self
        return real_float(self, *a, **kw)

    mkl.torch = proxy
    torch.Tensor.float = float_keep_f64
    try:
        yield
    finally:
        mkl.torch = real_torch
        torch.Tensor.float = real_float
