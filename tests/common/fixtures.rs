//! The tiny reference fixtures (tests/fixtures/<name>/) as the model tests use them: converted
//! by kiln-convert at test time, their recorded ids and logits read, and a model run through
//! any backend checked against them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use kiln::backend::Backend;
use kiln::gguf::Gguf;
use kiln::model::{Greedy, Logits, Model};

pub const FIXTURES: [&str; 4] = ["tiny-a", "tiny-b", "tiny-c", "tiny-d"];

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

pub fn tmp() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
}

/// Converts tests/fixtures/<name>/hf to a GGUF of `ty` (f32, f16, bf16, q8_0, ...) with
/// kiln-convert, into this test run's temp dir; once per fixture and type, whichever test asks.
pub fn convert(name: &str, ty: &str) -> PathBuf {
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

/// A little-endian f4 or f8 C-order .npy as f64 values and its shape.
pub fn read_npy(path: &Path) -> (Vec<f64>, Vec<usize>) {
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

pub fn read_ids(path: &Path) -> Vec<u32> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The ids `kiln run --temp 0 --print-ids` prints for `n` tokens after `prompt` from `gguf`
/// (on `backend`, else the default), as `a,b,c`; fails the test if kiln does.
pub fn kiln_run_greedy_ids(gguf: &Path, backend: Option<&str>, prompt: &[u32], n: usize) -> String {
    let prompt: Vec<String> = prompt.iter().map(u32::to_string).collect();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.arg("run");
    if let Some(backend) = backend {
        cmd.args(["--backend", backend]);
    }
    let out = cmd
        .arg("-m")
        .arg(gguf)
        .args(["--tokens", &prompt.join(","), "-n", &n.to_string()])
        .args(["--temp", "0", "--print-ids"])
        .output()
        .expect("run kiln");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `ids` as `kiln run --print-ids` prints them.
pub fn ids_line(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

pub fn std_dev(x: &[f64]) -> f64 {
    let mean = x.iter().sum::<f64>() / x.len() as f64;
    (x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / x.len() as f64).sqrt()
}

pub fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y).abs())
        .fold(0.0, f64::max)
}

pub struct Run {
    pub prefill: Vec<f32>,
    pub greedy: Vec<u32>,
    pub decode: Vec<f32>,
}

/// Prefill of the prompt (all positions), then greedy decode token by token, the next id
/// picked by the backend's argmax.
pub fn run_model<B: Backend>(b: &B, gguf: &Path, prompt: &[u32], n_new: usize) -> Run {
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

/// The fixture converted to `ty` and run through `b` against the logits and greedy
/// continuation transformers recorded: prefill and prefill-then-decode logits within 1e-3·std.
pub fn check_fixture_type<B: Backend>(b: &B, name: &str, ty: &str) {
    let dir = fixture(name);
    let prompt = read_ids(&dir.join("prompt.json"));
    let want = read_ids(&dir.join("continuation.json"));
    let (reference, shape) = read_npy(&dir.join("logits.npy"));
    assert_eq!(shape[0], prompt.len());
    let (ref_decode, _) = read_npy(&dir.join("decode_logits.npy"));
    let std = std_dev(&reference);

    let gguf = convert(name, ty);
    let run = run_model(b, &gguf, &prompt, want.len());

    let err = max_abs_diff(&run.prefill, &reference);
    let err_decode = max_abs_diff(&run.decode, &ref_decode);
    eprintln!(
        "{} {name} {ty}: prefill max|Δ| = {err:.3e} = {:.2e}·std, prefill-then-decode max|Δ| = {err_decode:.3e} = {:.2e}·std",
        b.name(),
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

/// Greedy decoding of `n` tokens after `prompt`, fed both ways: eagerly (each id read back
/// before the next pass is recorded, the backend's argmax) and through [`Greedy`] (the device a
/// step ahead of the host), started from the prompt's logits (`kiln run`) and from a host id
/// (`kiln bench`). The ids must agree, and so must the logits of one more pass after each,
/// which show the sequence state each way left.
pub fn check_overlapped_greedy<B: Backend>(b: &B, gguf: &Path, prompt: &[u32], n: usize) {
    let file = Gguf::open(gguf).unwrap();
    let model = Model::load(&file, b).unwrap();
    let vocab = model.config.vocab;
    let after = |cache: &mut _, id: u32| {
        let l = model.forward(b, &[id], cache, Logits::Last).unwrap();
        b.read(&l, vocab).unwrap()
    };

    let mut cache = model.new_cache(b, prompt.len() + n + 1).unwrap();
    let mut logits = model.forward(b, prompt, &mut cache, Logits::Last).unwrap();
    let mut eager = Vec::new();
    loop {
        eager.push(b.argmax(&logits, 1, vocab).unwrap()[0]);
        if eager.len() == n {
            break;
        }
        logits = model
            .forward(b, &eager[eager.len() - 1..], &mut cache, Logits::Last)
            .unwrap();
    }
    let eager_pos = cache.pos;
    let eager_after = after(&mut cache, eager[n - 1]);

    // As `kiln run` decodes: the last id is read without running its pass.
    let mut cache = model.new_cache(b, prompt.len() + n + 1).unwrap();
    let logits = model.forward(b, prompt, &mut cache, Logits::Last).unwrap();
    let mut greedy = Greedy::from_logits(b, &logits, vocab).unwrap();
    let mut ahead: Vec<u32> = (1..n)
        .map(|_| greedy.step(&model, b, &mut cache).unwrap())
        .collect();
    ahead.push(greedy.latest(b).unwrap());
    assert_eq!(
        ahead,
        eager,
        "{}: greedy ids from the prompt's logits",
        b.name()
    );
    assert_eq!(cache.pos, eager_pos);
    let ahead_after = after(&mut cache, ahead[n - 1]);
    assert_eq!(ahead_after, eager_after, "{}: the state left", b.name());

    // As `kiln bench` decodes: from the prompt's first id, known on the host.
    let mut cache = model.new_cache(b, prompt.len() + n + 1).unwrap();
    model
        .forward(b, &prompt[..prompt.len() - 1], &mut cache, Logits::Last)
        .unwrap();
    let mut greedy = Greedy::from_id(b, prompt[prompt.len() - 1]).unwrap();
    let mut from_id: Vec<u32> = (0..n)
        .map(|_| greedy.step(&model, b, &mut cache).unwrap())
        .collect();
    from_id.push(greedy.latest(b).unwrap());
    assert_eq!(from_id[0], prompt[prompt.len() - 1]);
    assert_eq!(
        from_id[1..],
        eager[..],
        "{}: greedy ids from a host id",
        b.name()
    );
    assert_eq!(cache.pos, eager_pos);
}
