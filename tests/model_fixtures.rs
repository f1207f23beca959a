//! The CPU model against transformers on the tiny reference fixtures (tests/fixtures/<name>/):
//! every fixture is converted to a GGUF at test time, run through kiln, and compared with the
//! logits and greedy continuation transformers recorded.

#[path = "common/fixtures.rs"]
mod fixtures;

use std::path::Path;

use fixtures::{
    FIXTURES, convert, fixture, ids_line, kiln_run_greedy_ids, max_abs_diff, read_ids, read_npy,
    std_dev,
};
use kiln::backend::cpu::CpuBackend;
use kiln::gguf::Gguf;
use kiln::model::{Logits, MAX_UBATCH, Model};

fn check_fixture_type(name: &str, ty: &str) {
    fixtures::check_fixture_type(&CpuBackend::new(false), name, ty);
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

/// Greedy decoding with the host a step behind the backend gives the eager loop's ids and state.
#[test]
fn overlapped_greedy_equals_eager() {
    for name in FIXTURES {
        let prompt = read_ids(&fixture(name).join("prompt.json"));
        fixtures::check_overlapped_greedy(
            &CpuBackend::new(false),
            &convert(name, "f32"),
            &prompt,
            12,
        );
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
    let dir = fixture("tiny-b");
    let prompt = read_ids(&dir.join("prompt.json"));
    let want = read_ids(&dir.join("continuation.json"));
    let gguf = convert("tiny-b", "bf16");
    assert_eq!(
        kiln_run_greedy_ids(&gguf, None, &prompt, want.len()),
        ids_line(&want)
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
