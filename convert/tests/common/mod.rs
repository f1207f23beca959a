//! Shared helpers of the converter's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const FIXTURES: &[&str] = &["tiny-a", "tiny-b", "tiny-c", "tiny-d"];

pub const TYPES: &[&str] = &[
    "f32", "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q5_k_s", "q4_k_m", "q4_k_s", "q3_k_m",
    "q3_k_s", "q2_k", "q4_k",
];

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("convert/ has a parent")
        .to_path_buf()
}

pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(name).join("hf")
}

pub fn kiln_convert(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln-convert"))
        .args(args)
        .output()
        .expect("kiln-convert runs")
}

/// `kiln-convert HF -o OUT --quiet EXTRA...`: a checkpoint conversion.
pub fn convert_checkpoint(hf: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        hf.as_os_str(),
        std::ffi::OsStr::new("-o"),
        out.as_os_str(),
        std::ffi::OsStr::new("--quiet"),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    kiln_convert(&args)
}

/// A Python with PyPI `gguf` and numpy: $KILN_PYTHON, else python3.
/// CI installs both packages (`pip install gguf numpy`), so a missing one is a failure.
pub fn python() -> PathBuf {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("KILN_PYTHON") {
        candidates.push(p.into());
    }
    candidates.push("python3".into());
    for c in &candidates {
        let ok = Command::new(c)
            .args(["-c", "import gguf, numpy"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return c.clone();
        }
    }
    panic!(
        "no Python with the `gguf` and `numpy` packages (tried {candidates:?}); run `pip install gguf numpy`"
    );
}

/// A writable copy of fixture checkpoint `name` in `dst/hf`.
pub fn copy_fixture(name: &str, dst: &Path) -> PathBuf {
    let hf = dst.join("hf");
    std::fs::create_dir_all(&hf).unwrap();
    for e in std::fs::read_dir(fixture(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), hf.join(e.file_name())).unwrap();
    }
    hf
}

/// Writes a Kimi tokenizer sized to `hf`'s config.json into `hf`: the first `vocab_size - 256`
/// ranks of the kimi-k2 fixture tokenizer (a prefix of a rank list is itself a valid one),
/// its special tokens moved to follow them, and a chat template. Returns the number of ranks.
pub fn add_tokenizer(hf: &Path) -> usize {
    let src = repo_root().join("tests/fixtures/tokenizer/kimi-k2");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap();
    let n = config["vocab_size"].as_u64().unwrap() as usize - 256;
    let ranks = std::fs::read_to_string(src.join("tiktoken.model")).unwrap();
    let lines: Vec<&str> = ranks.lines().take(n).collect();
    assert_eq!(lines.len(), n);
    std::fs::write(hf.join("tiktoken.model"), lines.join("\n") + "\n").unwrap();
    let mut tc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("tokenizer_config.json")).unwrap())
            .unwrap();
    let first = tc["added_tokens_decoder"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.parse::<usize>().unwrap())
        .min()
        .unwrap();
    let moved: serde_json::Map<String, serde_json::Value> = tc["added_tokens_decoder"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                (k.parse::<usize>().unwrap() - first + n).to_string(),
                v.clone(),
            )
        })
        .collect();
    tc["added_tokens_decoder"] = serde_json::Value::Object(moved);
    std::fs::write(hf.join("tokenizer_config.json"), tc.to_string()).unwrap();
    std::fs::write(hf.join("chat_template.jinja"), CHAT_TEMPLATE).unwrap();
    n
}

pub const CHAT_TEMPLATE: &str = "{%- for m in messages -%}<|im_{{ m.role }}|>{{ m.role }}<|im_middle|>{{ m.content }}<|im_end|>{%- endfor -%}{%- if add_generation_prompt -%}<|im_assistant|>assistant<|im_middle|>{%- endif -%}";
