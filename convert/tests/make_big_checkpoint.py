#!/usr/bin/env python3
"""Writes a multi-GB random Kimi Linear checkpoint in the original HF layout (bf16 shards, f32
A_log/dt_bias, index.json), one tensor at a time, for measuring the converter's peak memory:

    make_big_checkpoint.py OUT_DIR [EXPERTS]

Needs only numpy. The default (96 experts of 512 × 1024, 8 layers) is about 2.3 GB.
"""

import json
import os
import struct
import sys

import numpy as np


def main(out, n_exp=96):
    d, L, V, H, K, mi, I = 1024, 8, 32000, 8, 128, 512, 2048
    r, nope, rope, vd = 512, 128, 64, 128
    full = [4, 8]
    cfg = {
        "architectures": ["KimiLinearForCausalLM"], "model_type": "kimi_linear", "vocab_size": V,
        "hidden_size": d, "num_hidden_layers": L, "intermediate_size": I, "moe_intermediate_size": mi,
        "num_experts": n_exp, "num_experts_per_token": 8, "num_shared_experts": 1, "first_k_dense_replace": 1,
        "moe_layer_freq": 1, "routed_scaling_factor": 2.446, "moe_router_activation_func": "sigmoid",
        "num_attention_heads": H, "num_key_value_heads": H, "q_lora_rank": None, "kv_lora_rank": r,
        "qk_nope_head_dim": nope, "qk_rope_head_dim": rope, "v_head_dim": vd, "head_dim": d // H,
        "rope_theta": 10000.0, "model_max_length": 1048576, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
        "topk_group": 1, "num_expert_group": 1, "bos_token_id": V - 256, "eos_token_id": V - 254, "pad_token_id": V - 1,
        "linear_attn_config": {"kda_layers": [i for i in range(1, L + 1) if i not in full], "full_attn_layers": full,
                               "head_dim": K, "num_heads": H, "short_conv_kernel_size": 4},
    }
    C = H * K
    specs = [("model.embed_tokens.weight", (V, d), "BF16")]
    for i in range(L):
        p = f"model.layers.{i}."
        a = p + "self_attn."
        specs += [(p + "input_layernorm.weight", (d,), "BF16"), (p + "post_attention_layernorm.weight", (d,), "BF16")]
        if (i + 1) in full:
            specs += [(a + "q_proj.weight", (H * (nope + rope), d), "BF16"),
                      (a + "kv_a_proj_with_mqa.weight", (r + rope, d), "BF16"),
                      (a + "kv_a_layernorm.weight", (r,), "BF16"),
                      (a + "kv_b_proj.weight", (H * (nope + vd), r), "BF16"),
                      (a + "o_proj.weight", (d, H * vd), "BF16")]
        else:
            specs += [(a + f"{s}_proj.weight", (C, d), "BF16") for s in "qkv"]
            specs += [(a + f"{s}_conv1d.weight", (C, 1, 4), "BF16") for s in "qkv"]
            specs += [(a + "f_a_proj.weight", (K, d), "BF16"), (a + "f_b_proj.weight", (C, K), "BF16"),
                      (a + "dt_bias", (C,), "F32"), (a + "A_log", (1, 1, H, 1), "F32"),
                      (a + "b_proj.weight", (H, d), "BF16"), (a + "g_a_proj.weight", (K, d), "BF16"),
                      (a + "g_b_proj.weight", (C, K), "BF16"), (a + "o_norm.weight", (K,), "BF16"),
                      (a + "o_proj.weight", (d, C), "BF16")]
        if i < 1:
            specs += [(p + f"mlp.{g}_proj.weight", s, "BF16") for g, s in (("gate", (I, d)), ("up", (I, d)), ("down", (d, I)))]
        else:
            m = p + "block_sparse_moe."
            specs += [(m + "gate.weight", (n_exp, d), "BF16"), (m + "gate.e_score_correction_bias", (n_exp,), "BF16")]
            for e in range(n_exp):
                specs += [(m + f"experts.{e}.w1.weight", (mi, d), "BF16"), (m + f"experts.{e}.w2.weight", (d, mi), "BF16"),
                          (m + f"experts.{e}.w3.weight", (mi, d), "BF16")]
            specs += [(m + f"shared_experts.{g}_proj.weight", s, "BF16")
                      for g, s in (("gate", (mi, d)), ("up", (mi, d)), ("down", (d, mi)))]
    specs += [("model.norm.weight", (d,), "BF16"), ("lm_head.weight", (V, d), "BF16")]

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    n_shards = 4
    per = (len(specs) + n_shards - 1) // n_shards
    rng = np.random.default_rng(0)
    weight_map = {}
    for s in range(n_shards):
        part = specs[s * per:(s + 1) * per]
        fname = f"model-{s + 1:05d}-of-{n_shards:05d}.safetensors"
        header, off = {}, 0
        for name, shape, dt in part:
            n = int(np.prod(shape)) * (4 if dt == "F32" else 2)
            header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + n]}
            off += n
            weight_map[name] = fname
        hb = json.dumps(header).encode()
        hb += b" " * ((8 - len(hb) % 8) % 8)
        with open(os.path.join(out, fname), "wb") as f:
            f.write(struct.pack("<Q", len(hb)) + hb)
            for name, shape, dt in part:
                x = rng.standard_normal(shape, dtype=np.float32) * np.float32(1.5 / np.sqrt(shape[-1]))
                if name.endswith("A_log"):
                    x = np.log(rng.uniform(1, 16, shape)).astype(np.float32)
                if dt == "F32":
                    f.write(x.tobytes())
                else:
                    f.write((x.view(np.uint32) >> 16).astype(np.uint16).tobytes())
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 96)
