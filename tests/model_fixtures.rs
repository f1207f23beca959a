//! The CPU model against transformers on the tiny reference fixtures (tests/fixtures/<name>/):
//! every fixture is converted to a GGUF at test time, run through kiln, and compared with the
//! logits and greedy continuation transformers recorded.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use kiln::backend::cpu::CpuBackend;
use kiln::gguf::Gguf;
use kiln::model::{Logits, MAX_UBATCH, Model};

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

/// Converts tests/fixtures/<name>/hf to a GGUF of `ty` (f32, f16, bf16, q8_0, ...) with
/// kiln-convert, into this test run's temp dir; once per fixture and type, whichever test asks.
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
    check_fixture_type("tiny-a", "f32");
}

#[test]
fn all_fixtures_f32_f16_bf16() {
    for name in FIXTURES {
        for ty in ["f32", "f16", "bf16"] {
            check_fixture_type(name, ty);
        }
    }
}

/// Logits are a function of the tokens, not of how the sequence was fed: one prefill of
/// prompt + continuation, a prefill split in two (the chunked KDA and the MLA cache start from
/// a non-empty state) and prefill-then-decode give the same logits at every position.
#[test]
fn prefill_then_decode_equals_full_prefill() {
    for name in FIXTURES {
        let dir = fixture(name);
        let mut ids = read_ids(&dir.join("prompt.json"));
        ids.extend(read_ids(&dir.join("continuation.json")));
        let gguf = convert(name, "f32");
        let file = Gguf::open(&gguf).unwrap();
        let b = CpuBackend::new(false);
        let model = Model::load(&file, &b).unwrap();
        let vocab = model.config.vocab;

        let mut cache = model.new_cache(&b, ids.len()).unwrap();
        let full = model.forward(&b, &ids, &mut cache, Logits::All).unwrap();
        let std = std_dev(&full.iter().map(|&v| v as f64).collect::<Vec<_>>());

        let split = 100;
        let mut cache = model.new_cache(&b, ids.len()).unwrap();
        let mut stepped = model
            .forward(&b, &ids[..split], &mut cache, Logits::All)
            .unwrap();
        stepped.extend(
            model
                .forward(&b, &ids[split..150], &mut cache, Logits::All)
                .unwrap(),
        );
        for &id in &ids[150..] {
            stepped.extend(model.forward(&b, &[id], &mut cache, Logits::Last).unwrap());
        }
        assert_eq!(cache.pos, ids.len());
        assert_eq!(stepped.len(), full.len());
        let err = full
            .iter()
            .zip(&stepped)
            .map(|(a, b)| (a - b).abs() as f64)
            .fold(0.0, f64::max);
        eprintln!(
            "{name}: split prefill + decode vs one prefill: max|Δ| = {:.2e}·std",
            err / std
        );
        assert!(err <= 1e-4 * std, "{name}: max |Δ| {err:e} (std {std})");
        assert_eq!(stepped.len() / vocab, ids.len());
    }
}

/// `kiln run --temp 0` prints the continuation transformers generated.
#[test]
fn kiln_run_prints_the_reference_continuation() {
    let name = "tiny-b";
    let dir = fixture(name);
    let prompt: Vec<String> = read_ids(&dir.join("prompt.json"))
        .iter()
        .map(u32::to_string)
        .collect();
    let want: Vec<String> = read_ids(&dir.join("continuation.json"))
        .iter()
        .map(u32::to_string)
        .collect();
    let gguf = convert(name, "bf16");
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["run", "-m"])
        .arg(&gguf)
        .args([
            "--tokens",
            &prompt.join(","),
            "-n",
            &want.len().to_string(),
            "--temp",
            "0",
            "--print-ids",
        ])
        .output()
        .expect("run kiln");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        want.join(",")
    );
}

fn prefill(gguf: &Path, prompt: &[u32], exact: bool) -> Vec<f32> {
    let file = Gguf::open(gguf).unwrap();
    let b = CpuBackend::new(exact);
    let model = Model::load(&file, &b).unwrap();
    let mut cache = model.new_cache(&b, prompt.len()).unwrap();
    model.forward(&b, prompt, &mut cache, Logits::All).unwrap()
}

/// sha256 of a whole file, lowercase hex.
fn sha256_hex(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// transformers' logits on the weights `gguf` holds, dequantized by gguf-py: computed once by
/// tests/reference/make_quant_logits.py (gguf_to_hf.py) and committed as
/// tests/fixtures/<name>/quant/<ty>.{logits.npy,json}. The json records the sha256 of the GGUF the
/// reference was computed from; the file converted here must be that very file.
fn transformers_on(gguf: &Path, name: &str, ty: &str) -> Vec<f64> {
    let dir = fixture(name).join("quant");
    let meta_path = dir.join(format!("{ty}.json"));
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&meta_path).unwrap_or_else(|e| panic!("{}: {e}", meta_path.display())),
    )
    .unwrap();
    let want = meta["gguf_sha256"].as_str().expect("gguf_sha256");
    let got = sha256_hex(gguf);
    assert_eq!(
        got, want,
        "{name} {ty}: kiln-convert's output is not the file the committed transformers reference \
         was computed from (sha256 {got}, reference {want}); if the converter or quantizer change \
         is intended, rerun tests/reference/make_quant_logits.py (a Python with \
         torch + transformers, see tests/reference/README.md) and commit tests/fixtures/*/quant"
    );
    let (logits, shape) = read_npy(&dir.join(format!("{ty}.logits.npy")));
    assert_eq!(
        shape,
        [
            meta["prompt_len"].as_u64().unwrap() as usize,
            meta["vocab"].as_u64().unwrap() as usize
        ],
        "{name} {ty}: logits shape"
    );
    logits
}

/// Mean over positions of KL(p_ref ‖ p) and the share of positions with the same top-1.
fn kl_and_top1(reference: &[f64], logits: &[f32], vocab: usize) -> (f64, f64) {
    let (mut kl, mut same) = (0.0, 0);
    let rows = reference.len() / vocab;
    for (r, l) in reference
        .chunks_exact(vocab)
        .zip(logits.chunks_exact(vocab))
    {
        let log_softmax = |x: Vec<f64>| {
            let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + x.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            x.into_iter().map(|v| v - lse).collect::<Vec<_>>()
        };
        let lp = log_softmax(r.to_vec());
        let lq = log_softmax(l.iter().map(|&v| v as f64).collect());
        kl += lp
            .iter()
            .zip(&lq)
            .map(|(a, b)| a.exp() * (a - b))
            .sum::<f64>();
        let top = |x: &[f64]| (0..x.len()).fold(0, |best, i| if x[i] > x[best] { i } else { best });
        same += usize::from(top(&lp) == top(&lq));
    }
    (kl / rows as f64, same as f64 / rows as f64)
}

/// Quantized files: the f32 reference path (`--exact`) equals transformers run on the file's
/// dequantized weights; the fast path (activations quantized to each type's dot type) is
/// reported as top-1 agreement and KL against the same reference.
#[test]
fn quantized_files_exact_path_matches_transformers_on_dequantized_weights() {
    for name in FIXTURES {
        let prompt = read_ids(&fixture(name).join("prompt.json"));
        for ty in ["q8_0", "q6_k", "q4_k_m"] {
            let gguf = convert(name, ty);
            let reference = transformers_on(&gguf, name, ty);
            assert_eq!(reference.len() % prompt.len(), 0);
            let vocab = reference.len() / prompt.len();
            let std = std_dev(&reference);
            let exact = prefill(&gguf, &prompt, true);
            let err = max_abs_diff(&exact, &reference);
            let (kl, top1) = kl_and_top1(&reference, &prefill(&gguf, &prompt, false), vocab);
            eprintln!(
                "{name} {ty}: exact max|Δ| = {:.2e}·std; fast path top-1 {:.1}%, mean KL {kl:.2e}",
                err / std,
                100.0 * top1
            );
            assert!(
                err <= 1e-3 * std,
                "{name} {ty}: exact path off by {err:e} (std {std})"
            );
        }
    }
}

/// A prompt longer than one micro-batch runs in passes of MAX_UBATCH tokens and gives the
/// logits of the same prompt fed in two calls that each fit one pass.
#[test]
fn long_prompt_runs_in_micro_batches() {
    let gguf = convert("tiny-a", "f32");
    let file = Gguf::open(&gguf).unwrap();
    let b = CpuBackend::new(false);
    let model = Model::load(&file, &b).unwrap();
    let vocab = model.config.vocab as u32;
    let n = MAX_UBATCH + 40;
    let ids: Vec<u32> = (0..n as u32).map(|i| (i * 7919 + 13) % vocab).collect();

    let mut cache = model.new_cache(&b, n).unwrap();
    let long = model.forward(&b, &ids, &mut cache, Logits::All).unwrap();
    assert_eq!(long.len(), n * vocab as usize);
    let mut cache = model.new_cache(&b, n).unwrap();
    let mut halves = model
        .forward(&b, &ids[..n / 2], &mut cache, Logits::All)
        .unwrap();
    halves.extend(
        model
            .forward(&b, &ids[n / 2..], &mut cache, Logits::All)
            .unwrap(),
    );
    let std = std_dev(&long.iter().map(|&v| v as f64).collect::<Vec<_>>());
    let err = long
        .iter()
        .zip(&halves)
        .map(|(a, b)| (a - b).abs() as f64)
        .fold(0.0, f64::max);
    assert!(err <= 1e-4 * std, "max |Δ| {err:e} (std {std})");

    let mut cache = model.new_cache(&b, n).unwrap();
    let last = model.forward(&b, &ids, &mut cache, Logits::Last).unwrap();
    assert_eq!(last[..], long[(n - 1) * vocab as usize..]);
    assert_eq!(cache.pos, n);
}
