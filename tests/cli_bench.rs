//! `kiln bench`: the llama-bench table, the decode's dispatch count, and the tables of what each
//! kernel costs left out (`--ablate`) and repeated (`--repeat`) (on the tiny chat model, through
//! wgpu on CI's lavapipe); kernels whose outputs index memory, and backends that record no
//! kernels, refuse the ablation.

#[path = "common/tiny_chat_model.rs"]
mod tiny_chat_model;

use std::path::Path;
use std::process::{Command, Output};

fn bench(model: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("bench")
        .arg("-m")
        .arg(model)
        .args(["-p", "4", "-n", "3"])
        .args(args)
        .output()
        .expect("run kiln")
}

/// The table after the line starting with `title` has one row per name, in order (after its
/// header and rule).
fn assert_rows(stdout: &str, title: &str, names: &[&str]) {
    let rows: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with(title))
        .filter(|l| l.starts_with("| "))
        .skip(2)
        .collect();
    assert_eq!(rows.len(), names.len(), "{stdout}");
    for (row, name) in rows.iter().zip(names) {
        assert!(row.starts_with(&format!("| {name} |")), "{row}");
    }
}

#[test]
fn ablation_and_repeat_tables_and_their_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    tiny_chat_model::write(&model);

    let out = bench(
        &model,
        &[
            "--backend",
            "wgpu",
            "--ablate",
            "add_rms_norm,kda_scan+mla_",
        ],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("| tg3 |"), "{stdout}");
    let per_token = stat(&stdout, "kernel dispatches per decoded token: ");
    assert!(per_token > 5.0, "{stdout}");
    let binds = stat(&stdout, "bind groups made per decoded token: ");
    assert!((0.0..per_token).contains(&binds), "{stdout}");
    assert!(
        stdout.contains("dispatch chains (µs per dispatch)"),
        "{stdout}"
    );
    assert_rows(
        &stdout,
        "ablation:",
        &["(nothing)", "add_rms_norm", "kda_scan+mla_"],
    );

    // --repeat: the same decode with each kernel's dispatches run twice, in its own table.
    let out = bench(
        &model,
        &["--backend", "wgpu", "--repeat", "add_rms_norm,argmax"],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(!stdout.contains("ablation:"), "{stdout}");
    assert_rows(
        &stdout,
        "repeats:",
        &["(nothing)", "add_rms_norm", "argmax"],
    );

    // The chosen token's id indexes the next step's embedding row: leaving argmax out is
    // refused (as is the MoE router's, which this dense model has not).
    let out = bench(&model, &["--backend", "wgpu", "--ablate", "argmax"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("writes indices"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    for flag in ["--ablate", "--repeat"] {
        let out = bench(&model, &["--backend", "cpu", flag, "add"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag}");
        assert!(stderr.contains("records no kernels"), "{flag}: {stderr}");
    }
}

/// The number on the line of `stdout` that starts with `label`.
fn stat(stdout: &str, label: &str) -> f64 {
    let line = stdout.lines().find_map(|l| l.strip_prefix(label));
    line.unwrap_or_else(|| panic!("no {label:?} in {stdout}"))
        .parse()
        .unwrap()
}
