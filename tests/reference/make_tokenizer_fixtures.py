#!/usr/bin/env python3
"""Makes the kimi-k2 tokenizer fixture: a small tiktoken rank file in the format of Kimi's
`tiktoken.model`, a `tokenizer_config.json` with Kimi's special-token layout, and the ids
PyPI `tiktoken` gives for a set of hard strings with Kimi's split pattern.

Kimi's real 163,584-rank file cannot be fetched here, so the ranks are trained: byte-level BPE
(the 256 bytes, then merges in order of pair frequency) over a fixed corpus. What the test
proves is the algorithm, which does not depend on which merges exist.

Run: /work/refenv/bin/python tests/reference/make_tokenizer_fixtures.py
Writes tests/fixtures/tokenizer/kimi-k2/{tiktoken.model,tokenizer_config.json,cases.json}.
"""

import base64
import collections
import json
import pathlib

import regex
import tiktoken

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests/fixtures/tokenizer/kimi-k2"
SHARED = ROOT.parent / "shared"

# tokenization_kimi.py's pat_str, verbatim.
PAT_STR = "|".join(
    [
        r"""[\p{Han}]+""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

N_MERGES = 3000
# Kimi registers 256 special ids after the ranks; these offsets are its tokenizer_config's
# (163584 + offset in the real vocabulary).
NAMED_SPECIALS = {
    0: "[BOS]",
    1: "[EOS]",
    2: "<|im_end|>",
    3: "<|im_user|>",
    4: "<|im_assistant|>",
    6: "<|start_header_id|>",
    7: "<|end_header_id|>",
    9: "[EOT]",
    10: "<|im_system|>",
    11: "<|tool_calls_section_begin|>",
    12: "<|tool_calls_section_end|>",
    13: "<|tool_call_begin|>",
    14: "<|tool_call_argument_begin|>",
    15: "<|tool_call_end|>",
    17: "<|im_middle|>",
    254: "[UNK]",
    255: "[PAD]",
}
N_SPECIALS = 256

CASES = [
    "Hello world",
    " Hello World",
    "I'm sure you'll LOVE it, they've said; HE'S HERE, WE'LL see, she'd've",
    "ALLCAPS Words MixedCase camelCaseWord XMLHttpRequest iPhone",
    "中文字符测试，你好世界！这是一个测试。",
    "The 中文字符 test's 12345",
    "abc中文def漢字ABC",
    "日本語のテキスト、ひらがなとカタカナ。東京タワー",
    "한국어 텍스트입니다. 안녕하세요!",
    "Café naïve façade résumé Ångström Øresund coöperate",
    "Ελληνικά και Русский текст",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "fn main() { let x: Vec<u32> = (0..10).collect(); println!(\"{x:?}\"); }",
    "1 12 123 1234 12345 123456789 3.14159 1,000,000 ½ ²³ ٣٤٥",
    "Emoji: 🙂🚀👨‍👩‍👧‍👦 🇫🇷 ❤️ ✨",
    "Visit https://example.com/path?q=1&r=two#frag or http://a.b/c.",
    "tabs\tand\t\ttabs, spaces  and   runs     ",
    "\n\n\nnewlines\r\n\r\nwindows\r\n  \n \n",
    "   leading spaces",
    "trailing spaces   ",
    "<|im_user|>user<|im_middle|>Hi there<|im_end|><|im_assistant|>assistant<|im_middle|>",
    "[BOS]text[EOS] and <|tool_calls_section_begin|><|tool_call_begin|>functions.get:0<|tool_call_argument_begin|>{\"a\": 1}<|tool_call_end|><|tool_calls_section_end|>",
    "<|reserved_token_{r}|> is special too",
    "!!! ??? ... --- *** ### $$$ %%% ^^^ ~~~",
    "",
    " ",
    "a",
    "ied 4 ½ months",
    "Ё ё Ѐ ѐ ў ї",
    "mixed\u00a0nbsp\u2003em-space\u3000ideographic",
    "ﾊﾝｶｸ ｶﾀｶﾅ and ＦＵＬＬＷＩＤＴＨ",
    "\u0301combining at start and e\u0301 composed",
]


def corpus():
    parts = [c for c in CASES]
    for p in sorted((SHARED / "spec").glob("*.md")):
        parts.append(p.read_text(encoding="utf-8"))
    for p in sorted((SHARED / "data/vocab").glob("*.inp")):
        parts.append(p.read_text(encoding="utf-8"))
    return "\n".join(parts)


def train(text):
    # Python's `regex` needs V1 mode for the `&&` class intersection tiktoken's engine has.
    words = collections.Counter(regex.findall("(?V1)" + PAT_STR, text))
    seqs = {w.encode(): [bytes([b]) for b in w.encode()] for w in words}
    counts = {w.encode(): c for w, c in words.items()}
    ranks = {bytes([b]): b for b in range(256)}
    for _ in range(N_MERGES):
        pairs = collections.Counter()
        for w, seq in seqs.items():
            for a, b in zip(seq, seq[1:]):
                pairs[(a, b)] += counts[w]
        if not pairs:
            break
        # Ties broken by the bytes themselves so the result does not depend on dict order.
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        ranks[a + b] = len(ranks)
        for w, seq in seqs.items():
            i, out = 0, []
            while i < len(seq):
                if i + 1 < len(seq) and seq[i] == a and seq[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            seqs[w] = out
    return ranks


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    ranks = train(corpus())
    n = len(ranks)
    with open(OUT / "tiktoken.model", "w") as f:
        for tok, r in sorted(ranks.items(), key=lambda kv: kv[1]):
            f.write(f"{base64.b64encode(tok).decode()} {r}\n")

    specials = {}
    for k in range(N_SPECIALS):
        specials[NAMED_SPECIALS.get(k, f"<|reserved_token_{n + k}|>")] = n + k
    config = {
        "added_tokens_decoder": {
            str(i): {
                "content": name,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for name, i in sorted(specials.items(), key=lambda kv: kv[1])
        },
        "bos_token": "[BOS]",
        "eos_token": "[EOS]",
        "pad_token": "[PAD]",
        "unk_token": "[UNK]",
        "tokenizer_class": "TikTokenTokenizer",
    }
    (OUT / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")

    enc = tiktoken.Encoding(
        name="kimi-k2-fixture", pat_str=PAT_STR, mergeable_ranks=ranks, special_tokens=specials
    )
    cases = []
    for text in CASES:
        text = text.replace("{r}", str(n + 20))
        ids = enc.encode(text, allowed_special="all")
        assert enc.decode(ids) == text, text
        cases.append({"text": text, "ids": ids})
    # Plain text with no specials must also survive: check the whole corpus round-trips.
    big = corpus()
    assert enc.decode(enc.encode(big, disallowed_special=())) == big
    lines = ",\n".join(" " + json.dumps(c, ensure_ascii=False) for c in cases)
    (OUT / "cases.json").write_text("[\n" + lines + "\n]\n")
    print(f"{n} ranks, {len(specials)} specials, {len(cases)} cases -> {OUT}")


if __name__ == "__main__":
    main()
