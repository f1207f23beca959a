//! The model through the wgpu backend on the tiny reference fixtures: logits of a prefill and
//! of prefill-then-decode against transformers within the same bound as the CPU backend
//! (tests/model_fixtures.rs), the greedy continuation chosen by the GPU argmax, and quantized
//! files against the CPU backend's exact path. Needs a Vulkan adapter (CI: lavapipe); fails
//! without one.

#[path = "common/fixtures.rs"]
mod fixtures;

use std::sync::OnceLock;

use fixtures::{
    FIXTURES, convert, fixture, ids_line, kiln_run_greedy_ids, max_abs_diff, read_ids, run_model,
    std_dev,
};
use kiln::backend::Backend;
use kiln::backend::cpu::CpuBackend;
use kiln::backend::wgpu::WgpuBackend;
use kiln::gguf::Gguf;
use kiln::model::{Greedy, Model};

fn gpu() -> &'static WgpuBackend {
    static GPU: OnceLock<WgpuBackend> = OnceLock::new();
    GPU.get_or_init(|| {
        WgpuBackend::new(None).expect("a Vulkan adapter (install mesa-vulkan-drivers for lavapipe)")
    })
}

fn check_fixture_type(name: &str, ty: &str) {
    fixtures::check_fixture_type(gpu(), name, ty);
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

fn exact_gpu() -> &'static WgpuBackend {
    static GPU: OnceLock<WgpuBackend> = OnceLock::new();
    GPU.get_or_init(|| {
        let mut g = WgpuBackend::new(None)
            .expect("a Vulkan adapter (install mesa-vulkan-drivers for lavapipe)");
        g.set_exact(true);
        g
    })
}

/// Quantized files: in exact mode the GPU kernels compute f32 products of the dequantized
/// weights, which is the CPU backend's exact path; the two must agree as closely as float files
/// agree with the reference. By default the Q4_K decode products take 8-bit activations, as
/// the CPU's quantized path (ggml's) does for every block type: the GPU may then stray from
/// the exact logits no further than twice as far as that path does.
#[test]
fn quantized_files_match_the_cpu_exact_path() {
    for (name, ty) in [("tiny-b", "q8_0"), ("tiny-d", "q4_k_m"), ("tiny-c", "q2_k")] {
        let dir = fixture(name);
        let prompt = read_ids(&dir.join("prompt.json"));
        let gguf = convert(name, ty);
        let g = run_model(exact_gpu(), &gguf, &prompt, 4);
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

        let gq = run_model(gpu(), &gguf, &prompt, 4);
        let cq = run_model(&CpuBackend::new(false), &gguf, &prompt, 4);
        let (gq_err, cq_err) = (
            max_abs_diff(&gq.decode, &want_decode),
            max_abs_diff(&cq.decode, &want_decode),
        );
        eprintln!(
            "{name} {ty} decode against exact: wgpu {:.2e}·std, cpu quantized {:.2e}·std",
            gq_err / std,
            cq_err / std
        );
        assert!(
            gq_err <= 2.0 * cq_err + 1e-3 * std,
            "{name} {ty}: default decode off by {gq_err:e} (cpu quantized: {cq_err:e})"
        );
    }
}

/// Greedy decoding with the host a step behind the GPU (the argmax left on the device, read
/// back after the next pass is submitted) gives the eager loop's ids and state.
#[test]
fn overlapped_greedy_equals_eager_through_wgpu() {
    for (name, ty) in [("tiny-a", "f32"), ("tiny-b", "q8_0"), ("tiny-d", "bf16")] {
        let prompt = read_ids(&fixture(name).join("prompt.json"));
        fixtures::check_overlapped_greedy(gpu(), &convert(name, ty), &prompt, 12);
    }
}

/// The overlapped loop keeps a decoded token to one submission: each id's read-back is
/// submitted with the pass that chose it, and reading the last one submits nothing more. And
/// past the first tokens a token reuses its bind groups: at most one made a token in all.
#[test]
fn overlapped_greedy_submits_once_per_token_and_reuses_its_bind_groups() {
    let gguf = convert("tiny-a", "f32");
    let file = Gguf::open(&gguf).unwrap();
    // Its own device: the shared one counts the other tests' submissions too.
    let g = WgpuBackend::new(None).unwrap();
    let model = Model::load(&file, &g).unwrap();
    let mut cache = model.new_cache(&g, 24).unwrap();
    g.sync().unwrap();
    let before = g.submissions();
    let mut greedy = Greedy::from_id(&g, 1).unwrap();
    for _ in 0..8 {
        greedy.step(&model, &g, &mut cache).unwrap();
    }
    greedy.latest(&g).unwrap();
    assert_eq!(g.submissions() - before, 8);
    // Past the first tokens a step takes the same buffers as the one before, so its bind
    // groups serve again (the pool hands its buffers out in one order; handing out the last
    // one returned made 532 here).
    let counts = || (g.bind_groups_made().unwrap(), g.dispatches().unwrap());
    let before = counts();
    for _ in 0..16 {
        greedy.step(&model, &g, &mut cache).unwrap();
    }
    greedy.latest(&g).unwrap();
    let (made, dispatches) = (counts().0 - before.0, counts().1 - before.1);
    assert!(
        made <= 16,
        "{made} bind groups made in 16 tokens' {dispatches} dispatches"
    );
}

/// `kiln run --backend wgpu --temp 0` (the overlapped greedy loop) prints the continuation
/// transformers generated, and exactly `-n` ids of it.
#[test]
fn kiln_run_greedy_through_wgpu() {
    let dir = fixture("tiny-b");
    let prompt = read_ids(&dir.join("prompt.json"));
    let want = read_ids(&dir.join("continuation.json"));
    let gguf = convert("tiny-b", "bf16");
    for n in [1, 2, want.len()] {
        assert_eq!(
            kiln_run_greedy_ids(&gguf, Some("wgpu"), &prompt, n),
            ids_line(&want[..n]),
            "-n {n}"
        );
    }
}
