#!/usr/bin/env python3
"""Builds the tiny random Kimi Linear checkpoints in the ORIGINAL Hugging Face layout of
moonshotai/Kimi-Linear-48B-A3B-Instruct, under tests/fixtures/<name>/hf/, and proves that transformers'
KimiLinearForCausalLM loads each one with no missing/unexpected keys and exactly the stored values.

    /work/refenv/bin/python tests/reference/make_checkpoints.py [names...]   # default: all

The configs and the reason each exists are in kimi_tiny.TINY_CONFIGS.
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kimi_tiny as kt  # noqa: E402

torch.set_num_threads(2)
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "fixtures"))


def check_load(ckpt_dir: str, cfg: dict, tensors) -> None:
    # 1. the files hold exactly what we generated (names, dtypes, values)
    back = kt.load_original(ckpt_dir)
    assert list(sorted(back)) == list(sorted(tensors)), "saved names differ"
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape and torch.equal(back[k], v), k
    # 2. transformers loads it: no missing / unexpected / mismatched keys, parameters identical
    model, info = kt.load_hf(ckpt_dir, dtype=torch.float64)
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        assert not info.get(key), f"{ckpt_dir}: {key} = {info.get(key)}"
    expected = kt.original_to_transformers(tensors, cfg)
    sd = model.state_dict()
    missing = set(expected) - set(sd)
    extra = set(sd) - set(expected)
    assert not missing and not extra, f"missing {sorted(missing)[:5]} extra {sorted(extra)[:5]}"
    for k, v in expected.items():
        got = sd[k]
        assert got.shape == v.shape, f"{k}: {tuple(got.shape)} vs {tuple(v.shape)}"
        assert torch.equal(got, v.to(torch.float64)), f"{k}: values differ after load"
    # 3. the config was read as intended
    c = model.config
    n = cfg["num_hidden_layers"]
    want_types = ["linear_attention" if (i + 1) in cfg["linear_attn_config"]["kda_layers"] else "full_attention"
                  for i in range(n)]
    assert c.layer_types == want_types, c.layer_types
    assert c.mlp_layer_types == ["dense" if i < cfg["first_k_dense_replace"] else "sparse" for i in range(n)]
    assert c.linear_head_dim == cfg["linear_attn_config"]["head_dim"]
    assert c.linear_num_heads == cfg["linear_attn_config"]["num_heads"]
    assert c.num_local_experts == cfg["num_experts"] and c.num_experts_per_tok == cfg["num_experts_per_token"]
    assert c.n_shared_experts == cfg["num_shared_experts"] and c.n_group == 1 and c.norm_topk_prob
    assert abs(c.routed_scaling_factor - cfg["routed_scaling_factor"]) < 1e-12
    assert c.q_lora_rank is None and not c.tie_word_embeddings
    print(f"  load check ok: {len(expected)} transformers tensors from {len(tensors)} original tensors")


def main(names):
    for name in names:
        out = os.path.join(ROOT, name, "hf")
        cfg = kt.make_config_json(name)
        tensors = kt.make_tensors(name)
        kt.save_checkpoint(tensors, cfg, out, n_shards=2)
        size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
        nparam = sum(v.numel() for v in tensors.values())
        print(f"{name}: {len(tensors)} tensors, {nparam} params, {size / 1e6:.2f} MB -> {out}")
        check_load(out, cfg, tensors)


if __name__ == "__main__":
    main(sys.argv[1:] or list(kt.TINY_CONFIGS))
