#!/usr/bin/env python3
"""Builds tests/fixtures/tiny-chat/hf/: a tiny random Kimi Linear checkpoint with a REAL text
vocabulary, so a fresh clone reaches a working `kiln chat` without downloading anything.

    /work/refenv/bin/python tests/reference/make_tiny_chat.py

- weights: random, in the ORIGINAL moonshotai/Kimi-Linear-48B-A3B-Instruct layout (kimi_tiny), bf16
  shards, loaded back through transformers' KimiLinearForCausalLM (make_checkpoints.check_load);
  tiny-b's layer plan (KDA,KDA,MLA,KDA,MLA; two dense layers; 16 experts top-4, two shared) at
  hidden 64, so that the whole directory stays under 3 MB;
- vocabulary: the kimi-k2 fixture tokenizer (tests/fixtures/tokenizer/kimi-k2: 3,256 tiktoken ranks,
  256 specials above them), so vocab_size is 3,512 and bos/eos/pad are [BOS]/[EOS]/[PAD];
- chat template: Kimi's instruct template (../shared/data/templates/moonshotai-Kimi-K2.jinja, the one
  of the Kimi family closest to Kimi-Linear's shipped chat_template.jinja, and kiln's built-in).

The answers are noise; the point is that every step of a chat (template, tokenizer, prefill,
sampling, streaming, end-of-generation tokens) runs on a real vocabulary.
"""

import json
import os
import shutil
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import kimi_tiny as kt  # noqa: E402
import make_checkpoints  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
TOKENIZER = os.path.join(REPO, "tests", "fixtures", "tokenizer", "kimi-k2")
TEMPLATE = os.path.abspath(os.path.join(REPO, "..", "shared", "data", "templates", "moonshotai-Kimi-K2.jinja"))
OUT = os.path.join(REPO, "tests", "fixtures", "tiny-chat", "hf")
NAME = "tiny-chat"
MAX_BYTES = 3_000_000


def vocab() -> tuple[int, dict[str, int]]:
    """The vocabulary size (ranks + 256 reserved specials) and the ids of [BOS], [EOS], [PAD]."""
    with open(os.path.join(TOKENIZER, "tiktoken.model")) as f:
        n_ranks = sum(1 for line in f if line.strip())
    with open(os.path.join(TOKENIZER, "tokenizer_config.json")) as f:
        tc = json.load(f)
    by_text = {t["content"]: int(i) for i, t in tc["added_tokens_decoder"].items()}
    size = n_ranks + 256
    assert max(by_text.values()) == size - 1, "specials fill the 256 ids above the ranks"
    ids = {k: by_text[tc[f"{k}_token"]] for k in ("bos", "eos", "pad")}
    return size, ids


def main():
    size, ids = vocab()
    kt.TINY_CONFIGS[NAME] = dict(
        vocab_size=size, hidden_size=64, num_hidden_layers=5, num_heads=2, kda_head_dim=128,
        kda_layers=[1, 2, 4], full_attn_layers=[3, 5],
        intermediate_size=160, moe_intermediate_size=32, num_experts=16, num_experts_per_token=4,
        num_shared_experts=2, first_k_dense_replace=2,
        kv_lora_rank=32, qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32,
        dtype_key="torch_dtype", seed=1006,
    )
    cfg = kt.make_config_json(NAME)
    cfg["bos_token_id"] = ids["bos"]
    cfg["eos_token_id"] = ids["eos"]
    cfg["pad_token_id"] = ids["pad"]
    tensors = kt.make_tensors(NAME)

    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    kt.save_checkpoint(tensors, cfg, OUT, n_shards=2)
    for f in ("tiktoken.model", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(TOKENIZER, f), os.path.join(OUT, f))
    shutil.copyfile(TEMPLATE, os.path.join(OUT, "chat_template.jinja"))

    size_bytes = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    nparam = sum(v.numel() for v in tensors.values())
    print(f"{NAME}: {len(tensors)} tensors, {nparam} params, vocab {size} (bos {ids['bos']}, "
          f"eos {ids['eos']}, pad {ids['pad']}), {size_bytes / 1e6:.2f} MB -> {OUT}")
    assert size_bytes < MAX_BYTES, f"{OUT} is {size_bytes} bytes; keep it under {MAX_BYTES}"
    make_checkpoints.check_load(OUT, cfg, tensors)


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
