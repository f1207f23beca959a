//! The model through the wgpu backend on the tiny reference fixtures: logits of a prefill and
//! of prefill-then-decode against transformers within the same bound as the CPU backend
//! (tests/model_fixtures.rs), the greedy continuation chosen by the GPU argmax, and quantized
//! files against the CPU backend's exact path. Needs a Vulkan adapter (CI: lavapipe); fails
//! without one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use kiln::backend::Backend;
use kiln::backend::cpu::CpuBackend;
use kiln::backend::wgpu::WgpuBackend;
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

fn gpu() -> &'static WgpuBackend {
    static GPU: OnceLock<WgpuBackend> = OnceLock::new();
    GPU.get_or_init(|| {
        WgpuBackend::new(None).expect("a Vulkan adapter (install mesa-vulkan-drivers for lavapipe)")
    })
}

/// tests/fixtures/<name>/hf as a GGUF of `ty`, written by kiln-convert once per run.
fn convert(name: &str, ty: &str) -> PathBuf {
    static DONE: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let key = format!("{name}-{ty}");
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = done.iter().find(|(k, _)| *k == key) {
        return p.clone();
    }
    let out = tmp().join(format!("{key}.gguf"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(cargo)
        .current_dir(root())
        .args(["run", "--quiet", "-p", "kiln-convert", "--"])
        .arg(fixture(name).join("hf"))
        .arg("-o")
        .arg(&out)
        .args(["--type", ty, "--quiet"])
        .output()
        .expect("run cargo");
    assert!(
        output.status.success(),
        "kiln-convert {name} --type {ty} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    done.push((key, out.clone()));
    out
}

/// A little-endian f4 or f8 C-order .npy as f64 values.
fn read_npy(path: &Path) -> Vec<f64> {
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
    let data = &bytes[start + hlen..];
    if header.contains("'<f4'") {
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect()
    } else if header.contains("'<f8'") {
        data.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    } else {
        panic!("{}: unsupported dtype in {header}", path.display())
    }
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

struct Run {
    prefill: Vec<f32>,
    greedy: Vec<u32>,
    decode: Vec<f32>,
}

/// Prefill of the prompt (all positions), then greedy decode token by token, the next id
/// picked by the backend's argmax.
fn run_model<B: Backend>(b: &B, gguf: &Path, prompt: &[u32], n_new: usize) -> Run {
    let file = Gguf::open(gguf).unwrap();
    let model = Model::load(&file, b).unwrap();
    let vocab = model.config.vocab;
    let t = prompt.len();
    let mut cache = model.new_cache(b, t + n_new).unwrap();
    let logits = model.forward(b, prompt, &mut cache, Logits::All).unwrap();
    let prefill = b.read(&logits, t * vocab).unwrap();
    let mut last = b.alloc(vocab).unwrap();
    b.copy(&logits, (t - 1) * vocab, &mut last, 0, vocab)
        .unwrap();
    let (mut greedy, mut decode) = (Vec::new(), Vec::new());
    for _ in 0..n_new {
        decode.extend(b.read(&last, vocab).unwrap());
        let id = b.argmax(&last, 1, vocab).unwrap()[0];
        greedy.push(id);
        last = model.forward(b, &[id], &mut cache, Logits::Last).unwrap();
    }
    Run {
        prefill,
        greedy,
        decode,
    }
}

fn check_fixture_type(name: &str, ty: &str) {
    let dir = fixture(name);
    let prompt = read_ids(&dir.join("prompt.json"));
    let want = read_ids(&dir.join("continuation.json"));
    let reference = read_npy(&dir.join("logits.npy"));
    let ref_decode = read_npy(&dir.join("decode_logits.npy"));
    let std = std_dev(&reference);

    let run = run_model(gpu(), &convert(name, ty), &prompt, want.len());
    let err = max_abs_diff(&run.prefill, &reference);
    let err_decode = max_abs_diff(&run.decode, &ref_decode);
    eprintln!(
        "wgpu {name} {ty}: prefill max|Δ| = {:.2e}·std, prefill-then-decode max|Δ| = {:.2e}·std",
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
fn tiny_a_f32_through_wgpu() {
    check_fixture_type("tiny-a", "f32");
}

#[test]
fn all_fixtures_f32_f16_bf16_through_wgpu() {
    for name in FIXTURES {
        for ty in ["f32", "f16", "bf16"] {
            check_fixture_type(name, ty);
        }
    }
}

/// Quantized files: the GPU kernels compute f32 products of the dequantized weights, which is
/// the CPU backend's exact path; the two must agree as closely as float files agree with the
/// reference.
#[test]
fn quantized_files_match_the_cpu_exact_path() {
    for (name, ty) in [("tiny-b", "q8_0"), ("tiny-d", "q4_k_m"), ("tiny-c", "q2_k")] {
        let dir = fixture(name);
        let prompt = read_ids(&dir.join("prompt.json"));
        let gguf = convert(name, ty);
        let g = run_model(gpu(), &gguf, &prompt, 4);
        let c = run_model(&CpuBackend::new(true), &gguf, &prompt, 4);
        let want: Vec<f64> = c.prefill.iter().map(|&v| v as f64).collect();
        let std = std_dev(&want);
        let err = max_abs_diff(&g.prefill, &want);
        let want_decode: Vec<f64> = c.decode.iter().map(|&v| v as f64).collect();
        let err_decode = max_abs_diff(&g.decode, &want_decode);
        eprintln!(
            "wgpu vs cpu exact {name} {ty}: prefill max|Δ| = {:.2e}·std, decode {:.2e}·std",
            err / std,
            err_decode / std
        );
        assert!(err <= 1e-3 * std, "{name} {ty}: prefill off by {err:e}");
        assert!(
            err_decode <= 1e-3 * std,
            "{name} {ty}: decode off by {err_decode:e}"
        );
        assert_eq!(g.greedy, c.greedy, "{name} {ty}: greedy continuation");
    }
}
