//! The kimi-k2 tokenizer against PyPI `tiktoken` with Kimi's split pattern: a small rank file
//! in the format of Kimi's `tiktoken.model` and its `tokenizer_config.json` are turned into a
//! vocab-only GGUF the way llama.cpp's converter lays it out (byte-level token strings,
//! CONTROL specials, merges rebuilt from ranks), then every fixture text must encode to
//! tiktoken's ids and decode back. Fixtures: tests/reference/make_tokenizer_fixtures.py.

use kiln::gguf::{Array, Gguf, GgufWriter, Value};
use kiln::tokenizer::{StreamDecoder, Tokenizer, bytes};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tokenizer/kimi-k2")
        .join(name)
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c:#x}"),
    };
    let digits: Vec<u8> = s.bytes().filter(|&c| c != b'=').map(val).collect();
    let mut out = Vec::new();
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &d)| acc | (d as u32) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// `tiktoken.model`: one `base64(token) rank` per line; ranks are the ids 0..n.
fn ranks() -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(fixture("tiktoken.model")).unwrap();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let (tok, rank) = line.split_once(' ').unwrap();
        assert_eq!(rank.parse::<usize>().unwrap(), i, "ranks are dense");
        out.push(base64_decode(tok));
    }
    out
}

fn specials() -> Vec<(u32, String)> {
    let text = std::fs::read_to_string(fixture("tokenizer_config.json")).unwrap();
    let config: Json = serde_json::from_str(&text).unwrap();
    let mut out: Vec<(u32, String)> = config["added_tokens_decoder"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, t)| {
            (
                id.parse().unwrap(),
                t["content"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Rebuilds the merge list from ranks as llama.cpp's converter does (`QwenModel.bpe`): each
/// token of two or more bytes is what BPE with only the lower ranks leaves as two pieces.
fn merges_from_ranks(ranks: &[Vec<u8>]) -> Vec<String> {
    let rank_of: HashMap<&[u8], usize> =
        ranks.iter().enumerate().map(|(i, t)| (&t[..], i)).collect();
    let mut merges = Vec::new();
    for (r, tok) in ranks.iter().enumerate().filter(|(_, t)| t.len() > 1) {
        let mut parts: Vec<&[u8]> = tok.chunks(1).collect();
        loop {
            let best = (0..parts.len() - 1)
                .filter_map(|i| {
                    let joined = [parts[i], parts[i + 1]].concat();
                    rank_of
                        .get(&joined[..])
                        .filter(|&&jr| jr < r)
                        .map(|&jr| (jr, i))
                })
                .min();
            let Some((_, i)) = best else { break };
            let start = parts[..i].iter().map(|p| p.len()).sum::<usize>();
            let len = parts[i].len() + parts[i + 1].len();
            parts.splice(i..i + 2, [&tok[start..start + len]]);
        }
        assert_eq!(parts.len(), 2, "rank {r} is not one merge of lower ranks");
        merges.push(format!(
            "{} {}",
            bytes::encode(parts[0]),
            bytes::encode(parts[1])
        ));
    }
    merges
}

/// A vocab-only GGUF as llama.cpp's converter writes one for `kimi-k2`; `extra` pads the
/// vocabulary with unreachable tokens (to time a full-size load).
fn vocab_gguf(with_merges: bool, extra: usize) -> Gguf {
    let ranks = ranks();
    let mut tokens: Vec<String> = ranks.iter().map(|t| bytes::encode(t)).collect();
    let mut types = vec![1i32; tokens.len()];
    // 0xff never starts a UTF-8 sequence, so these tokens never merge out of real text.
    tokens
        .extend((0..extra).map(|i| bytes::encode(&[&[0xff, 0xff][..], &i.to_le_bytes()].concat())));
    types.extend(std::iter::repeat_n(1, extra));
    let first_special = tokens.len() as u32;
    let specials = specials();
    assert_eq!(specials[0].0 as usize, ranks.len());
    for (id, text) in &specials {
        assert_eq!(
            *id as usize - ranks.len() + first_special as usize,
            tokens.len()
        );
        tokens.push(text.clone());
        types.push(3);
    }
    let id_of =
        |name: &str| first_special + specials.iter().position(|(_, t)| t == name).unwrap() as u32;
    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", "kimi-linear").unwrap();
    w.add_kv("tokenizer.ggml.model", "gpt2").unwrap();
    w.add_kv("tokenizer.ggml.pre", "kimi-k2").unwrap();
    w.add_kv("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)))
        .unwrap();
    w.add_kv("tokenizer.ggml.token_type", Value::Array(Array::I32(types)))
        .unwrap();
    if with_merges {
        let merges = merges_from_ranks(&ranks);
        w.add_kv("tokenizer.ggml.merges", Value::Array(Array::String(merges)))
            .unwrap();
    }
    w.add_kv("tokenizer.ggml.bos_token_id", id_of("[BOS]"))
        .unwrap();
    w.add_kv("tokenizer.ggml.eos_token_id", id_of("[EOS]"))
        .unwrap();
    w.add_kv("tokenizer.ggml.padding_token_id", id_of("[PAD]"))
        .unwrap();
    w.add_kv("tokenizer.ggml.add_bos_token", false).unwrap();
    let bytes = w.write_to(Vec::new()).unwrap().finish().unwrap();
    Gguf::from_bytes_named(bytes, "kimi-k2-fixture.gguf").unwrap()
}

fn cases() -> Vec<(String, Vec<u32>)> {
    let text = std::fs::read_to_string(fixture("cases.json")).unwrap();
    let cases: Vec<Json> = serde_json::from_str(&text).unwrap();
    assert!(cases.len() >= 30);
    cases
        .iter()
        .map(|c| {
            let ids = c["ids"].as_array().unwrap();
            let ids = ids.iter().map(|i| i.as_u64().unwrap() as u32).collect();
            (c["text"].as_str().unwrap().to_string(), ids)
        })
        .collect()
}

fn check_against_tiktoken(tok: &Tokenizer) {
    let mut failures = Vec::new();
    for (text, want) in cases() {
        let got = tok.encode(&text, true, true);
        if got != want {
            failures.push(format!("{text:?}\n  want {want:?}\n  got  {got:?}"));
        }
        assert_eq!(tok.decode(&got).unwrap(), text);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn ranks_without_merges_match_tiktoken() {
    let tok = Tokenizer::from_gguf(&vocab_gguf(false, 0)).unwrap();
    assert_eq!(tok.pre(), "kimi-k2");
    check_against_tiktoken(&tok);
}

#[test]
fn rebuilt_merges_match_tiktoken() {
    let tok = Tokenizer::from_gguf(&vocab_gguf(true, 0)).unwrap();
    check_against_tiktoken(&tok);
}

#[test]
fn special_tokens_and_end_of_generation() {
    let tok = Tokenizer::from_gguf(&vocab_gguf(false, 0)).unwrap();
    let n = ranks().len() as u32;
    let id = |t: &str| tok.special_id(t).unwrap();
    assert_eq!(id("[BOS]"), n);
    assert_eq!(id("<|im_end|>"), n + 2);
    assert_eq!(id("<|im_middle|>"), n + 17);
    assert_eq!(id("[PAD]"), n + 255);
    for eog in ["<|im_end|>", "[EOS]", "[EOT]"] {
        assert!(tok.is_eog(id(eog)), "{eog}");
    }
    assert!(!tok.is_eog(id("<|im_user|>")));
    // Kimi's tokenizer adds no BOS.
    assert!(!tok.encode("hi", true, true).contains(&n));
    // Without special parsing the marker is ordinary text.
    assert!(!tok.encode("<|im_end|>", false, false).contains(&(n + 2)));
}

#[test]
fn streaming_decode_equals_whole_decode() {
    let tok = Tokenizer::from_gguf(&vocab_gguf(false, 0)).unwrap();
    for (text, ids) in cases() {
        let mut d = StreamDecoder::new();
        let mut out = String::new();
        for &id in &ids {
            out.push_str(&d.push(tok.token_bytes(id, true).unwrap()));
        }
        out.push_str(&d.finish());
        assert_eq!(out, text);
    }
}

#[test]
fn full_size_vocabulary_loads_and_still_matches() {
    // Kimi's real vocabulary: 163,584 ranks and 256 specials.
    let extra = 163_584 - ranks().len();
    let g = vocab_gguf(false, extra);
    let t = Instant::now();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    eprintln!("163,840-token vocabulary loaded in {:?}", t.elapsed());
    assert_eq!(tok.n_vocab(), 163_840);
    assert_eq!(tok.special_id("[BOS]"), Some(163_584));
    assert_eq!(tok.special_id("[PAD]"), Some(163_839));
    let n = ranks().len() as u32;
    for (text, want) in cases() {
        // Special ids move up by the padding; ordinary ids stay.
        let want: Vec<u32> = want
            .iter()
            .map(|&i| if i >= n { i + extra as u32 } else { i })
            .collect();
        assert_eq!(tok.encode(&text, true, true), want, "{text:?}");
    }
}
