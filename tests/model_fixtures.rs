//! The CPU model against transformers on the tiny reference fixtures (tests/fixtures/<name>/):
//! every fixture is converted to a GGUF at test time, run through kiln, and compared with the
//! logits and greedy continuation transformers recorded.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use kiln::backend::cpu::CpuBackend;
use kiln::gguf::Gguf;
use kiln::model::{Logits, Model};

const FIXTURES: [&str; 4] = ["tiny-a", "tiny-b", "tiny-c", "tiny-d"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

fn tmp() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
}

/// Writes tests/fixtures/<name>/hf as a GGUF of `ty` with gguf-py, applying llama.cpp's transforms
/// (tests/reference/selftest_gguf_roundtrip.py).
fn convert(name: &str, ty: &str) -> PathBuf {
    let out = tmp().join(format!("{name}-{ty}.gguf"));
    let script = r#"
import sys, os, json
sys.path.insert(0, sys.argv[4])
import gguf, kimi_tiny as kt, selftest_gguf_roundtrip as st
ckpt, ty, out = sys.argv[1], sys.argv[2], sys.argv[3]
cfg = json.load(open(os.path.join(ckpt, "config.json")))
t = st.hf_to_gguf_tensors(kt.load_original(ckpt), cfg)
st.write_gguf(out, t, cfg, None if ty == "F32" else gguf.GGMLQuantizationType[ty])
"#;
    let status = Command::new("/work/refenv/bin/python")
        .args(["-c", script])
        .arg(fixture(name).join("hf"))
        .arg(ty)
        .arg(&out)
        .arg(root().join("tests/reference"))
        .status()
        .expect("run python");
    assert!(status.success(), "converting {name} to {ty} failed");
    out
}

/// A little-endian f4 or f8 C-order .npy as f64 values and its shape.
fn read_npy(path: &Path) -> (Vec<f64>, Vec<usize>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let (hlen, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        )
    };
    let header = std::str::from_utf8(&bytes[start..start + hlen]).unwrap();
    assert!(header.contains("'fortran_order': False"), "{header}");
    let shape_str = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape_str
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let data = &bytes[start + hlen..];
    let values = if header.contains("'<f4'") {
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect()
    } else if header.contains("'<f8'") {
        data.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    } else {
        panic!("{}: unsupported dtype in {header}", path.display())
    };
    (values, shape)
}

fn read_ids(path: &Path) -> Vec<u32> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn std_dev(x: &[f64]) -> f64 {
    let mean = x.iter().sum::<f64>() / x.len() as f64;
    (x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / x.len() as f64).sqrt()
}

fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y).abs())
        .fold(0.0, f64::max)
}

fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

struct Run {
    prefill: Vec<f32>,
    greedy: Vec<u32>,
    decode: Vec<f32>,
}

/// Prefill of the prompt (all positions), then greedy decode token by token.
fn run_model(gguf: &Path, prompt: &[u32], n_new: usize) -> Run {
    let file = Gguf::open(gguf).unwrap();
    let b = CpuBackend::new(false);
    let model = Model::load(&file, &b).unwrap();
    let vocab = model.config.vocab;
    let mut cache = model.new_cache(&b, prompt.len() + n_new).unwrap();
    let prefill = model.forward(&b, prompt, &mut cache, Logits::All).unwrap();
    let mut last = prefill[(prompt.len() - 1) * vocab..prompt.len() * vocab].to_vec();
    let (mut greedy, mut decode) = (Vec::new(), Vec::new());
    for _ in 0..n_new {
        decode.extend_from_slice(&last);
        let id = argmax(&last);
        greedy.push(id);
        last = model.forward(&b, &[id], &mut cache, Logits::Last).unwrap();
    }
    Run {
        prefill: prefill[..prompt.len() * vocab].to_vec(),
        greedy,
        decode,
    }
}

fn check_fixture_type(name: &str, ty: &str) {
    let dir = fixture(name);
    let prompt = read_ids(&dir.join("prompt.json"));
    let want = read_ids(&dir.join("continuation.json"));
    let (reference, shape) = read_npy(&dir.join("logits.npy"));
    assert_eq!(shape[0], prompt.len());
    let (ref_decode, _) = read_npy(&dir.join("decode_logits.npy"));
    let std = std_dev(&reference);

    let gguf = convert(name, ty);
    let run = run_model(&gguf, &prompt, want.len());

    let err = max_abs_diff(&run.prefill, &reference);
    let err_decode = max_abs_diff(&run.decode, &ref_decode);
    eprintln!(
        "{name} {ty}: prefill max|Δ| = {err:.3e} = {:.2e}·std, prefill-then-decode max|Δ| = {err_decode:.3e} = {:.2e}·std",
        err / std,
        err_decode / std
    );
    assert!(
        err <= 1e-3 * std,
        "{name} {ty}: prefill logits off by {err:e} (std {std})"
    );
    assert!(
        err_decode <= 1e-3 * std,
        "{name} {ty}: decode logits off by {err_decode:e} (std {std})"
    );
    assert_eq!(run.greedy, want, "{name} {ty}: greedy continuation");
}

#[test]
fn tiny_a_f32() {
    check_fixture_type("tiny-a", "F32");
}

#[test]
fn all_fixtures_f32_f16_bf16() {
    for name in FIXTURES {
        for ty in ["F32", "F16", "BF16"] {
            check_fixture_type(name, ty);
        }
    }
}
