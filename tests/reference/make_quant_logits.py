#!/usr/bin/env python3
"""Reference logits for the quantized-file model test (tests/model_fixtures.rs,
`quantized_files_exact_path_matches_transformers_on_dequantized_weights`).

For every fixture (tests/fixtures/tiny-a..tiny-d) and type (q8_0, q6_k, q4_k_m): convert the
checkpoint with kiln-convert exactly as the test does (`cargo run --quiet -p kiln-convert --
tests/fixtures/<name>/hf -o X.gguf --type <type> --quiet`), run gguf_to_hf.py on that GGUF
(transformers on the file's weights, dequantized by gguf-py) and write

    tests/fixtures/<name>/quant/<type>.logits.npy   float32 [prompt_len, vocab]
    tests/fixtures/<name>/quant/<type>.json         {"gguf_sha256", "gguf_bytes", "prompt_len", "vocab", ...}

`gguf_sha256` is the sha256 of the whole GGUF file (kiln-convert's output is deterministic: no
timestamps, paths or versions in it). The Rust test converts again, hashes its file and refuses to
compare when the digest differs, so the committed reference always applies to exactly the file
under test. Rerun this script whenever the converter or the quantizers change their output:

    $PY tests/reference/make_quant_logits.py [names...]   # default: all

with $PY a Python that has torch + transformers + gguf + numpy (the venv of README.md). CI never
runs this; the test only reads its outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FIXTURES = ["tiny-a", "tiny-b", "tiny-c", "tiny-d"]
TYPES = ["q8_0", "q6_k", "q4_k_m"]


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def convert(name: str, ty: str, out: str) -> None:
    """The test's convert(): kiln-convert through cargo, same arguments."""
    cargo = os.environ.get("CARGO", "cargo")
    hf = os.path.join(ROOT, "tests", "fixtures", name, "hf")
    subprocess.run(
        [cargo, "run", "--quiet", "-p", "kiln-convert", "--", hf, "-o", out, "--type", ty, "--quiet"],
        cwd=ROOT,
        check=True,
    )


def main() -> None:
    names = sys.argv[1:] or FIXTURES
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            fx = os.path.join(ROOT, "tests", "fixtures", name)
            with open(os.path.join(fx, "prompt.json")) as f:
                prompt_len = len(json.load(f)["ids"])
            qdir = os.path.join(fx, "quant")
            os.makedirs(qdir, exist_ok=True)
            for ty in TYPES:
                gguf = os.path.join(tmp, f"{name}-{ty}.gguf")
                convert(name, ty, gguf)
                digest = sha256_file(gguf)
                raw = os.path.join(tmp, f"{name}-{ty}.logits.npy")
                subprocess.run(
                    [sys.executable, os.path.join(HERE, "gguf_to_hf.py"), gguf,
                     os.path.join(fx, "hf", "config.json"),
                     "--prompt", os.path.join(fx, "prompt.json"), "--out", raw],
                    cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                )
                logits = np.load(raw)
                assert logits.ndim == 2 and logits.shape[0] == prompt_len, logits.shape
                out_npy = os.path.join(qdir, f"{ty}.logits.npy")
                np.save(out_npy, np.ascontiguousarray(logits.astype("<f4")))
                meta = {
                    "gguf_sha256": digest,
                    "gguf_bytes": os.path.getsize(gguf),
                    "type": ty,
                    "prompt_len": prompt_len,
                    "vocab": int(logits.shape[1]),
                    "logits_std": float(logits.std()),
                    "made_by": "tests/reference/make_quant_logits.py (gguf_to_hf.py, transformers, float64 -> float32)",
                }
                with open(os.path.join(qdir, f"{ty}.json"), "w") as f:
                    json.dump(meta, f, indent=1)
                    f.write("\n")
                size = os.path.getsize(out_npy)
                total += size
                print(f"{name} {ty}: {logits.shape}, std {logits.std():.4f}, sha256 {digest[:16]}…, {size} B")
    print(f"total logits {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
