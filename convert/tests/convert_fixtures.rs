//! Converts every tiny reference checkpoint into every type and checks the files with PyPI
//! `gguf` (names, shapes, types, metadata and values, see check_gguf.py) and with kiln's reader.

mod common;

use common::*;
use kiln::gguf::Gguf;
use std::ffi::OsStr;
use std::process::Command;

fn convert_all(fixture_name: &str, dir: &std::path::Path) -> Vec<(String, std::path::PathBuf)> {
    let hf = fixture(fixture_name);
    TYPES
        .iter()
        .map(|ty| {
            let out = dir.join(format!("{fixture_name}-{ty}.gguf"));
            let o = convert_checkpoint(&hf, &out, &["--type", ty]);
            assert!(
                o.status.success(),
                "{fixture_name} {ty}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            (ty.to_string(), out)
        })
        .collect()
}

fn check_with_gguf_py(fixture_name: &str, files: &[(String, std::path::PathBuf)]) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check_gguf.py");
    let mut cmd = Command::new(python());
    cmd.arg(script).arg(fixture(fixture_name));
    for (ty, path) in files {
        cmd.arg(format!("{ty}={}", path.display()));
    }
    let o = cmd.output().expect("python runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{fixture_name}:\n{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        files.len(),
        "{stdout}"
    );
}

/// kiln's own reader sees the same structure, and ssm_a holds -exp(A_log) of the config's heads.
fn check_with_kiln_reader(files: &[(String, std::path::PathBuf)]) {
    for (ty, path) in files {
        let g = Gguf::open(path).unwrap_or_else(|e| panic!("{ty}: {e}"));
        assert_eq!(g.architecture(), Some("kimi-linear"));
        let n_layer = g.get_u32("kimi-linear.block_count").unwrap() as usize;
        let kv = g
            .get_arr("kimi-linear.attention.head_count_kv")
            .and_then(|a| a.to_u32s())
            .unwrap();
        assert_eq!(kv.len(), n_layer);
        for (i, &k) in kv.iter().enumerate() {
            let has_kda = g.tensor(&format!("blk.{i}.ssm_a")).is_some();
            assert_eq!(has_kda, k == 0, "{ty}: layer {i}");
            assert_eq!(
                g.tensor(&format!("blk.{i}.attn_k_b.weight")).is_some(),
                k == 1,
                "{ty}: layer {i}"
            );
        }
        let a = g
            .tensor("blk.0.ssm_a")
            .expect("layer 0 is KDA in every fixture");
        let data = g.tensor_data("blk.0.ssm_a").unwrap();
        assert_eq!(a.n_elements() as usize * 4, data.len());
        for c in data.chunks_exact(4) {
            let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            // A_log = ln U(1, 16) in the fixtures, so -exp(A_log) lies in [-16, -1].
            assert!((-16.0..=-1.0).contains(&v), "{ty}: ssm_a value {v}");
        }
    }
}

#[test]
fn every_fixture_into_every_type() {
    let dir = tempfile::tempdir().unwrap();
    for f in FIXTURES {
        let files = convert_all(f, dir.path());
        check_with_kiln_reader(&files);
        check_with_gguf_py(f, &files);
    }
}

#[test]
fn plan_prints_every_tensor_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.gguf");
    let hf = fixture("tiny-c");
    let o = kiln_convert(&[
        hf.as_os_str(),
        OsStr::new("--plan"),
        OsStr::new("--type"),
        OsStr::new("q4_k_m"),
        OsStr::new("-o"),
        out.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        s.lines()
            .filter(|l| l.starts_with("blk.")
                || l.starts_with("token_embd")
                || l.starts_with("output"))
            .count(),
        130
    );
    assert!(
        s.lines()
            .any(|l| l.starts_with("output.weight") && l.contains("Q8_0")),
        "{s}"
    );
    assert!(s.contains("total: 130 tensors"), "{s}");
    assert!(!out.exists());
}

#[test]
fn tensor_type_override_applies() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.gguf");
    let hf = fixture("tiny-b");
    let o = convert_checkpoint(
        &hf,
        &out,
        &[
            "--type",
            "q4_k_m",
            "--tensor-type",
            r"ffn_(gate|up)_exps=q8_0",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let g = Gguf::open(&out).unwrap();
    for t in g.tensors() {
        if t.name().contains("ffn_gate_exps") || t.name().contains("ffn_up_exps") {
            assert_eq!(t.ty(), kiln::quant::GgmlType::Q8_0, "{}", t.name());
        }
        // Not matched: the mix's Q4_K with its fallback for 128-wide rows.
        if t.name().contains("ffn_gate_shexp") {
            assert_eq!(t.ty(), kiln::quant::GgmlType::Q5_0, "{}", t.name());
        }
    }
}
