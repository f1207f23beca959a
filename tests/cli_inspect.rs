//! `kiln inspect` run as a user runs it: on a file our writer made, as text and as JSON, and on
//! a broken file.

use kiln::gguf::{GgufWriter, Value};
use kiln::quant::{GgmlType, quantize_rows};
use std::process::Command;

fn kiln(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("run kiln")
}

/// A small file with a long array, an f32 value and tensors of three types.
fn write_sample(path: &std::path::Path) {
    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", Value::String("kimi-linear".into()))
        .unwrap();
    w.add_kv(
        "kimi-linear.attention.layer_norm_rms_epsilon",
        Value::F32(1e-5),
    )
    .unwrap();
    let tokens: Vec<String> = (0..100).map(|i| format!("tok{i}")).collect();
    w.add_kv(
        "tokenizer.ggml.tokens",
        Value::Array(kiln::gguf::Array::String(tokens)),
    )
    .unwrap();
    w.add_tensor("token_embd.weight", &[256, 4], GgmlType::Q4_K)
        .unwrap();
    w.add_tensor("output_norm.weight", &[256], GgmlType::F32)
        .unwrap();
    w.add_tensor("blk.0.attn_q.weight", &[64, 2], GgmlType::Q8_0)
        .unwrap();
    let mut out = w.create(path).unwrap();
    let x: Vec<f32> = (0..1024).map(|i| (i as f32 * 0.37).sin()).collect();
    out.write_tensor_data(&quantize_rows(GgmlType::Q4_K, &x, 256, None).unwrap())
        .unwrap();
    out.write_tensor_data(bytemuck::cast_slice(&x[..256]))
        .unwrap();
    out.write_tensor_data(&quantize_rows(GgmlType::Q8_0, &x[..128], 64, None).unwrap())
        .unwrap();
    out.finish().unwrap();
}

#[test]
fn inspect_prints_tables_and_totals() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sample.gguf");
    write_sample(&path);
    let out = kiln(&["inspect", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("architecture  kimi-linear"), "{text}");
    assert!(
        text.contains("0.00001"),
        "f32 shown in its shortest form, not widened to f64: {text}"
    );
    assert!(
        text.contains("(+92 more)"),
        "long array abbreviated: {text}"
    );
    assert!(text.contains("token_embd.weight"));
    // 1024 Q4_K weights = 4 blocks of 144 bytes; 128 Q8_0 = 4 blocks of 34 bytes.
    assert!(
        text.lines()
            .any(|l| l.contains("Q4_K") && l.contains("576") && l.contains("[256, 4]")),
        "{text}"
    );
    let total = text
        .lines()
        .find(|l| l.trim_start().starts_with("total "))
        .expect("total line");
    let bpw = (576.0 + 1024.0 + 136.0) * 8.0 / (1024.0 + 256.0 + 128.0);
    assert!(total.contains(&format!("{bpw:.3}")), "{total} vs {bpw:.3}");
}

#[test]
fn inspect_json_is_one_document_with_the_same_facts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sample.gguf");
    write_sample(&path);
    let out = kiln(&["inspect", "--json", path.to_str().unwrap()]);
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(doc["architecture"], "kimi-linear");
    assert_eq!(doc["tensors"].as_array().unwrap().len(), 3);
    assert_eq!(doc["tensors"][0]["type"], "Q4_K");
    assert_eq!(doc["tensors"][0]["shape"], serde_json::json!([256, 4]));
    assert_eq!(doc["totals_per_type"]["Q8_0"]["bytes"], 136);
    assert_eq!(
        doc["metadata"]["tokenizer.ggml.tokens"]["value"]["len"],
        100
    );
    assert_eq!(doc["total"]["elements"], 1024 + 256 + 128);
    // Metadata keeps file order.
    let keys: Vec<&String> = doc["metadata"].as_object().unwrap().keys().collect();
    assert_eq!(keys[0], "general.architecture");
}

#[test]
fn inspect_of_a_broken_file_is_one_line_and_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sample.gguf");
    write_sample(&path);
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    for p in [cut.to_str().unwrap(), "/nonexistent/model.gguf"] {
        let out = kiln(&["inspect", p]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(p), "the error names the file: {err}");
        assert!(!err.contains("panicked"));
    }
}

#[test]
fn inspect_devices_lists_the_vulkan_adapters() {
    // CI has Mesa's lavapipe, so at least the software adapter is there.
    let out = kiln(&["inspect", "--devices", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = list.as_array().expect("an array of adapters");
    assert!(!list.is_empty(), "no adapter listed");
    assert!(list[0]["max_storage_buffer_binding_size"].as_u64().unwrap() > 0);
}
