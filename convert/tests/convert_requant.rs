//! `kiln-convert requant`: re-quantizing a lossless GGUF gives the same file as converting the
//! checkpoint directly; a lossy source needs --allow-requant; metadata and vocabulary are
//! copied.

mod common;

use common::*;
use kiln::gguf::Gguf;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;

fn convert(hf: &Path, out: &Path, ty: &str) {
    let o = convert_checkpoint(hf, out, &["--type", ty]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn requant(input: &Path, out: &Path, ty: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        OsStr::new("requant"),
        input.as_os_str(),
        out.as_os_str(),
        OsStr::new("--type"),
        OsStr::new(ty),
        OsStr::new("--quiet"),
    ];
    args.extend(extra.iter().map(OsStr::new));
    kiln_convert(&args)
}

fn tensor_data(path: &Path) -> Vec<(String, String, Vec<u8>)> {
    let g = Gguf::open(path).unwrap();
    g.tensors()
        .iter()
        .map(|t| {
            (
                t.name().to_string(),
                t.ty().name().to_string(),
                g.tensor_bytes(t).to_vec(),
            )
        })
        .collect()
}

#[test]
fn requant_of_lossless_sources_equals_direct_conversion() {
    let t = tempfile::tempdir().unwrap();
    let hf = fixture("tiny-b");
    let p = |n: &str| -> PathBuf { t.path().join(n) };
    convert(&hf, &p("direct.gguf"), "q4_k_m");
    // The checkpoint is bf16, so its F32 and BF16 files hold the same values.
    for src in ["f32", "bf16"] {
        convert(&hf, &p(&format!("{src}.gguf")), src);
        let out = p(&format!("{src}-q4_k_m.gguf"));
        let o = requant(&p(&format!("{src}.gguf")), &out, "q4_k_m", &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(tensor_data(&out), tensor_data(&p("direct.gguf")), "{src}");
        // Metadata too (the source's general.file_type replaced): the whole file is the same.
        assert!(
            std::fs::read(&out).unwrap() == std::fs::read(p("direct.gguf")).unwrap(),
            "{src}"
        );
    }
}

#[test]
fn lossy_source_needs_allow_requant() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("q8.gguf");
    convert(&fixture("tiny-a"), &src, "q8_0");
    let out_dir = t.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("q4.gguf");
    let o = requant(&src, &out, "q4_k_m", &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains("Q8_0") && err.contains("--allow-requant"),
        "{err}"
    );
    assert!(err.contains("tensor "), "{err}");
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0);

    let o = requant(&src, &out, "q4_k_m", &["--allow-requant"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let g = Gguf::open(&out).unwrap();
    assert_eq!(g.get_u32("general.file_type"), Some(15));
    // Same type as the source: copied as is, no --allow-requant needed.
    let o = requant(&src, &out_dir.join("q8.gguf"), "q8_0", &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(tensor_data(&out_dir.join("q8.gguf")), tensor_data(&src));
}

#[test]
fn requant_copies_metadata_and_vocabulary() {
    let t = tempfile::tempdir().unwrap();
    let hf = copy_fixture("tiny-a", t.path());
    add_tokenizer(&hf);
    let src = t.path().join("bf16.gguf");
    convert(&hf, &src, "bf16");
    let out = t.path().join("q6.gguf");
    let o = requant(&src, &out, "q6_k", &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (a, b) = (Gguf::open(&src).unwrap(), Gguf::open(&out).unwrap());
    let kv = |g: &Gguf| -> Vec<(String, kiln::gguf::Value)> {
        g.metadata()
            .filter(|(k, _)| *k != "general.file_type")
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    };
    assert_eq!(kv(&a), kv(&b));
    assert!(b.get_str_arr("tokenizer.ggml.tokens").is_some());
    assert_eq!(b.get_u32("general.file_type"), Some(18));
}
