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
