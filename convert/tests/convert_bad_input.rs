//! Bad checkpoints and outputs: one clear line naming the file or tensor, a non-zero exit, no
//! panic and nothing left in the output directory.

mod common;

use common::*;
use std::ffi::OsStr;
use std::fs;
use std::path::Path;

/// Runs a conversion into an empty directory and returns stderr after checking the failure.
fn expect_failure(hf: &Path, out_dir: &Path, must_mention: &[&str]) -> String {
    fs::create_dir_all(out_dir).unwrap();
    let out = out_dir.join("model.gguf");
    let o = convert_checkpoint(hf, &out, &["--type", "q8_0"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected a clean failure, got {:?}: {err}",
        o.status
    );
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for m in must_mention {
        assert!(err.contains(m), "{err:?} does not mention {m:?}");
    }
    let left: Vec<_> = fs::read_dir(out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    err
}

const SHARD1: &str = "model-00001-of-00002.safetensors";
const SHARD2: &str = "model-00002-of-00002.safetensors";

#[test]
fn missing_shard() {
    let t = tempfile::tempdir().unwrap();
    let hf = copy_fixture("tiny-a", t.path());
    fs::remove_file(hf.join(SHARD2)).unwrap();
    expect_failure(&hf, &t.path().join("out"), &[SHARD2, "missing"]);
}

#[test]
fn index_lists_a_tensor_under_the_wrong_shard() {
    let t = tempfile::tempdir().unwrap();
    let hf = copy_fixture("tiny-a", t.path());
    let p = hf.join("model.safetensors.index.json");
    let s = fs::read_to_string(&p).unwrap();
    let s = s.replacen(
        &format!("\"lm_head.weight\": \"{SHARD2}\""),
        &format!("\"lm_head.weight\": \"{SHARD1}\""),
        1,
    );
    fs::write(&p, s).unwrap();
    expect_failure(&hf, &t.path().join("out"), &["lm_head.weight", SHARD1]);
}

#[test]
fn shard_holds_a_tensor_the_index_does_not_list() {
    let t = tempfile::tempdir().unwrap();
    let hf = copy_fixture("tiny-a", t.path());
    let p = hf.join("model.safetensors.index.json");
    let s = fs::read_to_string(&p).unwrap();
    let s = s.replacen(&format!("    \"lm_head.weight\": \"{SHARD2}\",\n"), "", 1);
    fs::write(&p, s).unwrap();
    expect_failure(
        &hf,
        &t.path().join("out"),
        &["lm_head.weight", "does not list"],
    );
}

#[test]
fn tensor_shape_contradicts_config() {
    let t = tempfile::tempdir().unwrap();
    let hf = copy_fixture("tiny-a", t.path());
    let p = hf.join("config.json");
    let s =
        fs::read_to_string(&p)
            .unwrap()
            .replacen("\"kv_lora_rank\": 32", "\"kv_lora_rank\": 40", 1);
    fs::write(&p, s).unwrap();
    expect_failure(
        &hf,
        &t.path().join("out"),
        &["kv_a_proj_with_mqa.weight", "contradicts config.json"],
    );
}

#[test]
fn tensor_dtype_is_not_a_float() {
    let t = tempfile::tempdir().unwrap();
    let hf = copy_fixture("tiny-a", t.path());
    // Same width, so the header length and offsets stay valid: only the dtype is wrong.
    let p = hf.join(SHARD1);
    let mut b = fs::read(&p).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(b[8..8 + n].to_vec()).unwrap();
    let key = "\"model.layers.0.self_attn.A_log\":{\"dtype\":\"F32\"";
    assert!(header.contains(key), "fixture header layout changed");
    let patched = header.replacen(key, &key.replace("F32", "I32"), 1);
    b[8..8 + n].copy_from_slice(patched.as_bytes());
    fs::write(&p, b).unwrap();
    expect_failure(
        &hf,
        &t.path().join("out"),
        &["model.layers.0.self_attn.A_log", "I32"],
    );
}

#[test]
fn unknown_architecture() {
    let t = tempfile::tempdir().unwrap();
    let hf = copy_fixture("tiny-b", t.path());
    let p = hf.join("config.json");
    let s = fs::read_to_string(&p).unwrap().replacen(
        "KimiLinearForCausalLM",
        "DeepseekV3ForCausalLM",
        1,
    );
    fs::write(&p, s).unwrap();
    expect_failure(
        &hf,
        &t.path().join("out"),
        &["config.json", "unknown architecture DeepseekV3ForCausalLM"],
    );
}

#[test]
fn truncated_safetensors() {
    let t = tempfile::tempdir().unwrap();
    let hf = copy_fixture("tiny-c", t.path());
    let p = hf.join(SHARD2);
    let len = fs::metadata(&p).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(len - 1000).unwrap();
    expect_failure(&hf, &t.path().join("out"), &[SHARD2, "truncated"]);
}

#[test]
fn unwritable_output() {
    let t = tempfile::tempdir().unwrap();
    let blocker = t.path().join("not-a-dir");
    fs::write(&blocker, b"x").unwrap();
    let out = blocker.join("model.gguf");
    let o = kiln_convert(&[
        fixture("tiny-a").as_os_str(),
        OsStr::new("-o"),
        out.as_os_str(),
        OsStr::new("--quiet"),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not-a-dir"), "{err}");
    assert_eq!(fs::read(&blocker).unwrap(), b"x");
}

/// Disk full, simulated with a file size limit (`ulimit -f`, 512-byte blocks in POSIX sh):
/// writes past it fail with EFBIG (kiln-convert ignores SIGXFSZ), as on a full disk.
#[test]
fn disk_full() {
    let t = tempfile::tempdir().unwrap();
    let out_dir = t.path().join("out");
    fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("model.gguf");
    // With a tokenizer, so that no warning precedes the error.
    let hf = copy_fixture("tiny-a", t.path());
    add_tokenizer(&hf);
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -f 128 && exec "$@""#)
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_kiln-convert"))
        .arg(&hf)
        .arg("-o")
        .arg(&out)
        .args(["--type", "f32", "--quiet"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{:?}: {err}", o.status);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for m in [out.to_str().unwrap(), "writing failed", "disk full"] {
        assert!(lines[0].contains(m), "{err:?} does not mention {m:?}");
    }
    let left: Vec<_> = fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
