//! The reader against the llama.cpp vocab files in `../shared/data/vocab`, written by gguf-py.

use std::path::PathBuf;

use kiln::gguf::{Gguf, GgufWriter, ValueType};

fn vocab_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/vocab")
}

fn vocab_files() -> Vec<PathBuf> {
    let dir = vocab_dir();
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("vocab directory {} is missing: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.gguf files in {}", dir.display());
    files
}

#[test]
fn opens_every_vocab_file() {
    for path in vocab_files() {
        let g = Gguf::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let arch = g
            .architecture()
            .unwrap_or_else(|| panic!("{}: no general.architecture", path.display()));
        assert!(!arch.is_empty());
        let tokens = g
            .get_str_arr("tokenizer.ggml.tokens")
            .expect("tokenizer.ggml.tokens is a string array");
        assert!(
            tokens.len() > 1000,
            "{}: {} tokens",
            path.display(),
            tokens.len()
        );
        let types = g
            .get_arr("tokenizer.ggml.token_type")
            .expect("token_type array");
        assert_eq!(types.len(), tokens.len());
        assert_eq!(types.elem_type(), ValueType::I32);
        assert!(g.get_str("tokenizer.ggml.model").is_some());
        assert_eq!(g.version(), 3);
        assert_eq!(g.alignment(), 32);
        // Some vocab files carry only a header; those that carry tensors must expose them.
        for t in g.tensors() {
            assert_eq!(g.tensor_bytes(t).len() as u64, t.n_bytes());
        }
    }
}

#[test]
fn known_vocab_files_have_expected_contents() {
    // (file, architecture, tokens, merges, bos, eos), as gguf-py reports them.
    let expected = [
        ("ggml-vocab-gpt-2.gguf", "gpt2", 50257, 50000, 50256, 50256),
        (
            "ggml-vocab-llama-bpe.gguf",
            "llama",
            128256,
            280147,
            128000,
            128001,
        ),
        (
            "ggml-vocab-qwen2.gguf",
            "qwen2",
            151936,
            151387,
            151643,
            151643,
        ),
    ];
    for (file, arch, n_tokens, n_merges, bos, eos) in expected {
        let g = Gguf::open(vocab_dir().join(file)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(g.architecture(), Some(arch), "{file}");
        let tokens = g.get_str_arr("tokenizer.ggml.tokens").unwrap();
        assert_eq!(tokens.len(), n_tokens, "{file}");
        assert_eq!(&tokens[..3], ["!", "\"", "#"], "{file}");
        assert_eq!(
            g.get_str_arr("tokenizer.ggml.merges").unwrap().len(),
            n_merges,
            "{file}"
        );
        assert_eq!(
            g.get_u32("tokenizer.ggml.bos_token_id"),
            Some(bos),
            "{file}"
        );
        assert_eq!(
            g.get_u32("tokenizer.ggml.eos_token_id"),
            Some(eos),
            "{file}"
        );
        assert_eq!(g.get_str("tokenizer.ggml.model"), Some("gpt2"), "{file}");
        assert_eq!(
            g.get_u32(&format!("{arch}.block_count")).map(|n| n > 0),
            Some(true),
            "{file}"
        );
        let eps = g
            .get_f32(&format!("{arch}.attention.layer_norm_rms_epsilon"))
            .or_else(|| g.get_f32(&format!("{arch}.attention.layer_norm_epsilon")))
            .unwrap();
        assert!(eps > 0.0 && eps < 1e-4, "{file}: {eps}");
        assert!(g.tensors().is_empty(), "{file}");
    }
    let qwen = Gguf::open(vocab_dir().join("ggml-vocab-qwen2.gguf")).unwrap();
    assert!(
        qwen.get_str("tokenizer.chat_template")
            .unwrap()
            .contains("messages")
    );
}

/// Our writer, fed what our reader read, reproduces gguf-py's bytes exactly.
#[test]
fn rewriting_a_vocab_file_reproduces_its_bytes() {
    for path in vocab_files() {
        let g = Gguf::open(&path).unwrap();
        if !g.tensors().is_empty() {
            continue;
        }
        let mut w = GgufWriter::new();
        for (k, v) in g.metadata() {
            w.add_kv(k, v.clone()).unwrap();
        }
        let ours = w.write_to(Vec::new()).unwrap().finish().unwrap();
        let theirs = g.as_bytes();
        // gguf-py may or may not pad a tensorless file to the alignment; we always do.
        assert!(
            ours.len() >= theirs.len() && ours.len() - theirs.len() < 32,
            "{}",
            path.display()
        );
        assert!(
            ours[..theirs.len()] == *theirs,
            "{}: bytes differ",
            path.display()
        );
        assert!(ours[theirs.len()..].iter().all(|&b| b == 0));
    }
}
