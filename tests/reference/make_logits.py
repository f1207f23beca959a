#!/usr/bin/env python3
"""Reference logits for the tiny checkpoints, from transformers' own KimiLinearForCausalLM on CPU.

    /work/refenv/bin/python tests/reference/make_logits.py [names...]     # default: all

For tests/fixtures/<name>/hf it writes, next to hf/:
  prompt.json          {"ids": [...]}: T = 157 deterministic pseudo-random ids (no pad; starts with bos).
                       157 = 64 + 64 + 29: > 64 and not a multiple of 64, so the chunked KDA path has a
                       ragged last chunk.
  logits.npy           float32 [T, vocab]: one full forward pass over the prompt (no cache), every position.
  hidden.npy           float32 [L+1, T, hidden]: [0] the embedding rows, [i] the residual stream after
                       layer i-1 (before the final norm) - for locating a mismatch layer by layer.
  continuation.json    {"ids": [24 ids]}: greedy continuation by model.generate(use_cache=True, do_sample=False,
                       eos disabled) - prefill (chunked KDA) then 23 single-token decode steps (recurrent KDA,
                       conv state, MLA latent cache).
  decode_logits.npy    float32 [24, vocab]: prefill-then-decode logits through the cache (prefill of the prompt,
                       then the continuation fed one token at a time); row j predicts continuation[j]
                       (row 0 = prefill's last position). Computed by a plain cached forward loop because
                       generate() rounds its logits to float32 internally; its argmax is checked == greedy.
  logits_pure_f64.npy, decode_logits_pure_f64.npy   float64, the same two with transformers' internal
                       float32 casts removed (kimi_tiny.pure_f64): the exact math of transformers' code.
  summary.json         logits std, consistency checks (greedy == argmax of full recompute; cached vs
                       recompute max diff), and the effect of transformers' internal f32 casts.

The model is loaded straight into float64 with the eager experts loop and eager attention; the KDA and
conv functions are checked to be transformers' pure-torch fallbacks (no fla, no hub kernels). Note that
transformers still computes some parts in float32 inside a float64 model (RMSNorms, forget gate, router,
KDA recurrence, softmax): logits.npy is exactly what transformers computes. summary.json also records how
far that is from a run with those casts removed (kimi_tiny.pure_f64) and from a float32 run.
"""

import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kimi_tiny as kt  # noqa: E402

torch.set_num_threads(2)
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "fixtures"))
PROMPT_LEN = 157
N_NEW = 24


def make_prompt(cfg: dict, seed: int) -> list[int]:
    """bos, then ids uniform in [0, bos) (ordinary tokens; no specials, never pad)."""
    bos = cfg["bos_token_id"]
    rng = np.random.default_rng(seed)
    return [bos] + [int(x) for x in rng.integers(0, bos, PROMPT_LEN - 1)]


def forward_logits(model, ids: list[int], hooks: bool = False):
    x = torch.tensor([ids])
    hidden = []
    handles = []
    if hooks:
        handles.append(model.model.embed_tokens.register_forward_hook(lambda m, i, o: hidden.append(o[0].detach())))
        for layer in model.model.layers:
            handles.append(layer.register_forward_hook(
                lambda m, i, o: hidden.append((o[0] if isinstance(o, tuple) else o)[0].detach())))
    with torch.no_grad():
        out = model(input_ids=x, use_cache=False)
    for h in handles:
        h.remove()
    logits = out.logits[0].double()
    return (logits, torch.stack(hidden)) if hooks else logits


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def cached_decode_logits(model, prompt: list[int], cont: list[int]) -> torch.Tensor:
    """Prefill the prompt with a cache, then feed the continuation one token at a time (as generate()
    does, but keeping the logits in the model's dtype: generate() casts its logits to float32)."""
    rows = []
    with torch.no_grad():
        out = model(input_ids=torch.tensor([prompt]), use_cache=True)
        rows.append(out.logits[0, -1])
        pkv = out.past_key_values
        for tok in cont[:-1]:
            out = model(input_ids=torch.tensor([[tok]]), past_key_values=pkv, use_cache=True)
            pkv = out.past_key_values
            rows.append(out.logits[0, -1])
    return torch.stack(rows).double()


def greedy_generate(model, prompt: list[int], pad: int) -> list[int]:
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = pad
    with torch.no_grad():
        gen = model.generate(
            torch.tensor([prompt]), max_new_tokens=N_NEW, min_new_tokens=0, do_sample=False, use_cache=True,
            num_beams=1, eos_token_id=None, temperature=None, top_p=None, top_k=None,
        )
    cont = gen[0, len(prompt):].tolist()
    assert len(cont) == N_NEW
    return cont


def reference(model, prompt: list[int], pad: int) -> dict:
    """prompt logits, generate() continuation, cached-path logits and the consistency checks."""
    logits, hidden = forward_logits(model, prompt, hooks=True)
    cont = greedy_generate(model, prompt, pad)
    decode = cached_decode_logits(model, prompt, cont)
    full = forward_logits(model, prompt + cont)
    recompute = full[len(prompt) - 1: len(prompt) - 1 + N_NEW]
    rec_argmax = recompute.argmax(-1).tolist()
    return {
        "logits": logits, "hidden": hidden, "cont": cont, "decode": decode,
        "greedy_equals_recompute_argmax": rec_argmax == cont,
        "greedy_equals_cached_argmax": decode.argmax(-1).tolist() == cont,
        "first_greedy_mismatch_step": next((j for j, (a, b) in enumerate(zip(rec_argmax, cont)) if a != b), None),
        "decode_vs_recompute_max_rel": rel(decode, recompute),
        "prompt_vs_longer_forward_max_rel": rel(full[: len(prompt)], logits),
    }


def run(name: str) -> dict:
    base = os.path.join(ROOT, name)
    ckpt = os.path.join(base, "hf")
    with open(os.path.join(ckpt, "config.json")) as f:
        cfg = json.load(f)
    model, _ = kt.load_hf(ckpt, dtype=torch.float64)
    kt.assert_pure_torch_kda(model)
    prompt = make_prompt(cfg, kt.TINY_CONFIGS[name]["seed"] + 7)
    assert cfg["pad_token_id"] not in prompt
    pad = cfg["pad_token_id"]

    r = reference(model, prompt, pad)          # transformers exactly as shipped, float64 model
    with kt.pure_f64():
        p = reference(model, prompt, pad)      # same code with its internal float32 casts removed
    model32, _ = kt.load_hf(ckpt, dtype=torch.float32)
    logits_f32 = forward_logits(model32, prompt)
    del model32

    logits = r["logits"]
    top2 = logits.topk(2, dim=-1).values
    check_keys = ("greedy_equals_recompute_argmax", "greedy_equals_cached_argmax", "first_greedy_mismatch_step",
                  "decode_vs_recompute_max_rel", "prompt_vs_longer_forward_max_rel")
    summary = {
        "name": name,
        "prompt_len": len(prompt),
        "n_new": N_NEW,
        "vocab_size": cfg["vocab_size"],
        "logits_std": float(logits.std()),
        "logits_mean": float(logits.mean()),
        "logits_absmax": float(logits.abs().max()),
        "per_position_std_min": float(logits.std(-1).min()),
        "per_position_std_max": float(logits.std(-1).max()),
        "min_top1_top2_gap": float((top2[:, 0] - top2[:, 1]).min()),
        "transformers": {k: r[k] for k in check_keys},
        "pure_f64": {k: p[k] for k in check_keys},
        "continuation_same_in_pure_f64": p["cont"] == r["cont"],
        "transformers_vs_pure_f64_max_rel": rel(logits, p["logits"]),
        "transformers_vs_pure_f64_decode_max_rel": rel(r["decode"], p["decode"]),
        "f32_model_vs_pure_f64_max_rel": rel(logits_f32, p["logits"]),
        "f32_model_argmax_agreement": float((logits_f32.argmax(-1) == p["logits"].argmax(-1)).double().mean()),
        "note_rel": "max |a-b| / max |b| over all positions and vocab",
    }

    with open(os.path.join(base, "prompt.json"), "w") as f:
        json.dump({"ids": prompt}, f)
        f.write("\n")
    with open(os.path.join(base, "continuation.json"), "w") as f:
        json.dump({"ids": r["cont"], "prompt_len": len(prompt), "greedy": True, "use_cache": True}, f)
        f.write("\n")
    # transformers' own numbers carry ~1e-5 relative f32-cast noise: float32 storage loses nothing
    np.save(os.path.join(base, "logits.npy"), logits.numpy().astype(np.float32))
    np.save(os.path.join(base, "decode_logits.npy"), r["decode"].numpy().astype(np.float32))
    np.save(os.path.join(base, "logits_pure_f64.npy"), p["logits"].numpy())
    np.save(os.path.join(base, "decode_logits_pure_f64.npy"), p["decode"].numpy())
    np.save(os.path.join(base, "hidden.npy"), r["hidden"].numpy().astype(np.float32))
    with open(os.path.join(base, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    return summary


def main(names):
    for name in names:
        s = run(name)
        print(json.dumps(s))
        for variant in ("transformers", "pure_f64"):
            v = s[variant]
            if not (v["greedy_equals_recompute_argmax"] and v["greedy_equals_cached_argmax"]):
                print(f"WARNING {name} ({variant}): cached greedy differs from full-recompute argmax at step "
                      f"{v['first_greedy_mismatch_step']}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:] or list(kt.TINY_CONFIGS))
