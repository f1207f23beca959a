//! The tokenizer in converted files: a checkpoint with Kimi's tokenizer files gets llama.cpp's
//! `gpt2`/`kimi-k2` vocabulary that kiln's tokenizer loads; one without gets a warning and no
//! vocabulary; `--vocab-only` writes the vocabulary and metadata and no tensors.

mod common;

use common::*;
use kiln::gguf::Gguf;
use kiln::tokenizer::Tokenizer;
use std::ffi::OsStr;

#[test]
fn checkpoint_with_tokenizer_gets_its_vocabulary() {
    let t = tempfile::tempdir().unwrap();
    let hf = copy_fixture("tiny-b", t.path());
    let n = add_tokenizer(&hf);
    let out = t.path().join("m.gguf");
    let o = convert_checkpoint(&hf, &out, &["--type", "q8_0"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("warning"), "{err}");

    let g = Gguf::open(&out).unwrap();
    assert_eq!(g.get_str("tokenizer.ggml.model"), Some("gpt2"));
    assert_eq!(g.get_str("tokenizer.ggml.pre"), Some("kimi-k2"));
    let tokens = g.get_str_arr("tokenizer.ggml.tokens").unwrap();
    // One token per embedding row.
    let embd = g.tensor("token_embd.weight").unwrap();
    assert_eq!(tokens.len() as u64, embd.shape()[1]);
    assert_eq!(tokens.len(), n + 256);
    assert_eq!(tokens[n], "[BOS]");
    let types = g
        .get_arr("tokenizer.ggml.token_type")
        .unwrap()
        .to_i64s()
        .unwrap();
    assert!(types[..n].iter().all(|&t| t == 1));
    assert!(types[n..].iter().all(|&t| t == 3));
    assert!(!g.get_str_arr("tokenizer.ggml.merges").unwrap().is_empty());
    // tokenizer_config.json's names, which config.json's ids agree with for tiny-b.
    assert_eq!(g.get_u32("tokenizer.ggml.bos_token_id"), Some(n as u32));
    assert_eq!(g.get_u32("tokenizer.ggml.eos_token_id"), Some(n as u32 + 1));
    assert_eq!(
        g.get_u32("tokenizer.ggml.padding_token_id"),
        Some(n as u32 + 255)
    );
    assert_eq!(g.get_str("tokenizer.chat_template"), Some(CHAT_TEMPLATE));

    // PyPI gguf reads the same vocabulary, with gguf-py's value types.
    let script = r#"
import gguf, json, sys
f = gguf.GGUFReader(sys.argv[1]).fields
print(json.dumps({
    "tokens": f["tokenizer.ggml.tokens"].contents(),
    "merges": f["tokenizer.ggml.merges"].contents(),
    "type_elem": f["tokenizer.ggml.token_type"].types[-1].name,
    "bos_type": f["tokenizer.ggml.bos_token_id"].types[0].name,
}))
"#;
    let py = std::process::Command::new(python())
        .args(["-c", script])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    assert_eq!(v["tokens"], serde_json::json!(tokens));
    assert_eq!(
        v["merges"],
        serde_json::json!(g.get_str_arr("tokenizer.ggml.merges").unwrap())
    );
    assert_eq!(v["type_elem"], "INT32");
    assert_eq!(v["bos_type"], "UINT32");

    let tok = Tokenizer::from_gguf(&g).unwrap();
    let text = "Hello, world! The converter's vocabulary: 12345 <|im_end|>";
    let ids = tok.encode(text, false, true);
    assert!(ids.contains(&(n as u32 + 2)), "{ids:?}");
    assert_eq!(tok.decode(&ids).unwrap(), text);
    assert!(tok.is_eog(n as u32 + 2));
}

#[test]
fn checkpoint_without_tokenizer_warns_and_writes_no_vocabulary() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("m.gguf");
    let o = convert_checkpoint(&fixture("tiny-a"), &out, &["--type", "f16"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("warning: ") && l.contains("no tiktoken.model")),
        "{err}"
    );
    let g = Gguf::open(&out).unwrap();
    assert!(g.metadata().all(|(k, _)| !k.starts_with("tokenizer.")));
}

#[test]
fn vocab_only_writes_vocabulary_and_metadata_without_tensors() {
    let t = tempfile::tempdir().unwrap();
    let hf = copy_fixture("tiny-c", t.path());
    // Only config.json and the tokenizer are needed.
    for e in std::fs::read_dir(&hf).unwrap() {
        let p = e.unwrap().path();
        if p.extension() != Some(OsStr::new("json")) {
            std::fs::remove_file(p).unwrap();
        }
    }
    let n = add_tokenizer(&hf);
    let out = t.path().join("v.gguf");
    let o = convert_checkpoint(&hf, &out, &["--vocab-only"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let g = Gguf::open(&out).unwrap();
    assert!(g.tensors().is_empty());
    assert_eq!(g.architecture(), Some("kimi-linear"));
    assert!(g.get_u32("kimi-linear.block_count").is_some());
    assert_eq!(
        g.get_str_arr("tokenizer.ggml.tokens").unwrap().len(),
        n + 256
    );
    Tokenizer::from_gguf(&g).unwrap();
}

#[test]
fn vocab_only_without_tokenizer_fails_cleanly() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("v.gguf");
    let o = convert_checkpoint(&fixture("tiny-a"), &out, &["--vocab-only"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("tiktoken.model"), "{err}");
    assert!(!out.exists());
}
