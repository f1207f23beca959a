//! Every llama.cpp vocabulary in `../shared/data/vocab` tokenizes every input of its `.inp`
//! to exactly the ids of its `.out` (llama.cpp's test-tokenizer-0 files, made with HF
//! tokenizers), and decodes back to the input.

use kiln::tokenizer::Tokenizer;
use std::path::PathBuf;

fn vocab_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/vocab");
    assert!(dir.is_dir(), "{} is missing", dir.display());
    dir
}

/// The `.inp`/`.out` pairs: inputs separated by a `__ggml_vocab_test__` line, one line of
/// space-separated ids per input.
fn cases(name: &str) -> Vec<(String, Vec<u32>)> {
    let dir = vocab_dir();
    let inp = std::fs::read_to_string(dir.join(format!("{name}.inp"))).unwrap();
    let out = std::fs::read_to_string(dir.join(format!("{name}.out"))).unwrap();
    let inputs: Vec<&str> = inp
        .strip_suffix("\n__ggml_vocab_test__\n")
        .expect("the .inp ends with a separator line")
        .split("\n__ggml_vocab_test__\n")
        .collect();
    let outputs: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(
        inputs.len(),
        outputs.len(),
        "{name}: .inp and .out disagree"
    );
    assert!(inputs.len() > 40, "{name}: only {} cases", inputs.len());
    inputs
        .into_iter()
        .map(str::to_string)
        .zip(outputs)
        .collect()
}

fn check(name: &str) {
    let tok = Tokenizer::open(vocab_dir().join(name)).unwrap();
    let mut failures = Vec::new();
    for (text, want) in cases(name) {
        let got = tok.encode(&text, false, false);
        if got != want {
            failures.push(format!("{text:?}\n  want {want:?}\n  got  {got:?}"));
        }
        assert_eq!(
            tok.decode(&got).unwrap(),
            text,
            "{name}: decode of {text:?}"
        );
    }
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
}

#[test]
fn gpt2() {
    check("ggml-vocab-gpt-2.gguf");
}

#[test]
fn llama_bpe() {
    check("ggml-vocab-llama-bpe.gguf");
}

#[test]
fn qwen2() {
    check("ggml-vocab-qwen2.gguf");
}

#[test]
fn llama_bpe_adds_bos_only_when_asked() {
    let tok = Tokenizer::open(vocab_dir().join("ggml-vocab-llama-bpe.gguf")).unwrap();
    assert!(tok.add_bos());
    let with = tok.encode("Hello", true, false);
    assert_eq!(with[0], 128000);
    assert_eq!(&with[1..], tok.encode("Hello", false, false));
    // gpt-2's file does not ask for BOS.
    let gpt2 = Tokenizer::open(vocab_dir().join("ggml-vocab-gpt-2.gguf")).unwrap();
    assert_eq!(gpt2.encode("Hello", true, false), [15496]);
}

#[test]
fn control_tokens_are_parsed_only_when_asked() {
    let tok = Tokenizer::open(vocab_dir().join("ggml-vocab-qwen2.gguf")).unwrap();
    let im_end = tok.special_id("<|im_end|>").unwrap();
    assert_eq!(tok.encode("a<|im_end|>", false, true), [64, im_end]);
    let plain = tok.encode("a<|im_end|>", false, false);
    assert!(plain.len() > 3 && !plain.contains(&im_end));
    assert!(tok.is_eog(im_end));
    assert_eq!(tok.decode(&[64, im_end]).unwrap(), "a<|im_end|>");
    assert_eq!(tok.decode_with(&[64, im_end], false).unwrap(), "a");
}
