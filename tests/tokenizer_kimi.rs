//! The kimi-k2 tokenizer against PyPI `tiktoken` with Kimi's split pattern: a small rank file
//! in the format of Kimi's `tiktoken.model` and its `tokenizer_config.json` are converted by
//! `kiln-convert --vocab-only` into the vocabulary llama.cpp's converter writes (byte-level
//! token strings, CONTROL specials, merges rebuilt from ranks), then every fixture text must
//! encode to tiktoken's ids and decode back. Fixtures: tests/reference/make_tokenizer_fixtures.py.

use kiln::gguf::{Gguf, GgufWriter};
use kiln::tokenizer::{StreamDecoder, Tokenizer};
use kiln_convert::vocab::base64_encode;
use serde_json::Value as Json;
use std::fs;
use std::path::PathBuf;
use std::time::Instant;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tokenizer/kimi-k2")
        .join(name)
}

/// The number of tiktoken ranks in the fixture.
fn n_ranks() -> usize {
    fs::read_to_string(fixture("tiktoken.model"))
        .unwrap()
        .lines()
        .count()
}

/// The fixture tokenizer as `kiln-convert --vocab-only` converts it: a checkpoint directory
/// holding the fixture's `tiktoken.model` and `tokenizer_config.json` and tiny-b's
/// `config.json` with `vocab_size` = ranks + Kimi's 256 special slots. `extra` unreachable
/// ranks (0xff 0xff + an index: 0xff never occurs in UTF-8, so they never merge out of text)
/// are appended before the specials, which move up by as much, to reach a full-size vocabulary.
fn vocab_gguf(with_merges: bool, extra: usize) -> Gguf {
    let dir = tempfile::tempdir().unwrap();
    let n = n_ranks();
    let mut ranks = fs::read_to_string(fixture("tiktoken.model")).unwrap();
    for i in 0..extra {
        let token = [&[0xff, 0xff][..], &i.to_le_bytes()].concat();
        ranks.push_str(&format!("{} {}\n", base64_encode(&token), n + i));
    }
    fs::write(dir.path().join("tiktoken.model"), ranks).unwrap();

    let mut tc: Json =
        serde_json::from_str(&fs::read_to_string(fixture("tokenizer_config.json")).unwrap())
            .unwrap();
    let added = tc["added_tokens_decoder"].as_object().unwrap();
    let shifted: serde_json::Map<String, Json> = added
        .iter()
        .map(|(id, t)| {
            (
                (id.parse::<usize>().unwrap() + extra).to_string(),
                t.clone(),
            )
        })
        .collect();
    tc["added_tokens_decoder"] = Json::Object(shifted);
    fs::write(dir.path().join("tokenizer_config.json"), tc.to_string()).unwrap();

    let tiny = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-b/hf");
    let mut config: Json =
        serde_json::from_str(&fs::read_to_string(tiny.join("config.json")).unwrap()).unwrap();
    config["vocab_size"] = (n + extra + 256).into();
    fs::write(dir.path().join("config.json"), config.to_string()).unwrap();

    let out = dir.path().join("vocab.gguf");
    kiln_convert::cli::run_args([
        "kiln-convert".as_ref(),
        dir.path().as_os_str(),
        "--vocab-only".as_ref(),
        "--quiet".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ])
    .unwrap();
    let g = Gguf::open(&out).unwrap();
    assert!(g.tensors().is_empty());
    assert_eq!(
        g.get_u32("kimi-linear.vocab_size"),
        Some((n + extra + 256) as u32)
    );
    if with_merges {
        return g;
    }
    // llama.cpp also loads a kimi-k2 vocabulary without merges (BPE over the ranks).
    let mut w = GgufWriter::new();
    for (k, v) in g.metadata() {
        if k != "tokenizer.ggml.merges" {
            w.add_kv(k, v.clone()).unwrap();
        }
    }
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
    let n = n_ranks() as u32;
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
    let extra = 163_584 - n_ranks();
    let g = vocab_gguf(false, extra);
    let t = Instant::now();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    eprintln!("163,840-token vocabulary loaded in {:?}", t.elapsed());
    assert_eq!(tok.n_vocab(), 163_840);
    assert_eq!(tok.special_id("[BOS]"), Some(163_584));
    assert_eq!(tok.special_id("[PAD]"), Some(163_839));
    let n = n_ranks() as u32;
    for (text, want) in cases() {
        // Special ids move up by the padding; ordinary ids stay.
        let want: Vec<u32> = want
            .iter()
            .map(|&i| if i >= n { i + extra as u32 } else { i })
            .collect();
        assert_eq!(tok.encode(&text, true, true), want, "{text:?}");
    }
}
