//! Every wgpu op against the CPU backend's op on random inputs, by normalised mean squared
//! error (llama.cpp's test-backend-ops idea). Quantized products are compared with the CPU's
//! exact path (f32 dot products against the dequantized weights), which is what the GPU
//! kernels compute, so the bound is f32 rounding, not quantization noise.
//!
//! These tests need a Vulkan adapter (CI: Mesa lavapipe from mesa-vulkan-drivers) and fail
//! without one.

use kiln::backend::cpu::CpuBackend;
use kiln::backend::wgpu::WgpuBackend;
use kiln::backend::{
    AddNorm, Alter, Backend, FfnWeights, KdaDims, KdaInputs, KdaTail, MlaDims, MlaWeights,
    MoeWeights, TensorBytes,
};
use kiln::quant::{GgmlType, quantize_rows};

/// NMSE bound of f32 ops (different summation orders, GPU exp/log).
const F32_NMSE: f64 = 1e-7;
/// Decode products of Q4_K, Q6_K and Q3_K weights run on integer dot products against 8-bit
/// activations (ggml's way) unless the backend is exact: their error is the activations'
/// rounding, bounded as llama.cpp's test-backend-ops bounds its products.
const Q8_NMSE: f64 = 5e-4;

fn decode_nmse(g: &WgpuBackend, ty: GgmlType) -> f64 {
    if matches!(ty, GgmlType::Q4_K | GgmlType::Q6_K | GgmlType::Q3_K) && !g.exact() {
        Q8_NMSE
    } else {
        F32_NMSE
    }
}

/// NMSE bound of the prompt products (t > 1) and of the flash attention's scores, whose
/// operands are rounded to f16 where the adapter runs them on cooperative matrices (2^-11
/// relative per operand).
fn prompt_nmse(g: &WgpuBackend) -> f64 {
    if g.coop_matrix() { 1e-5 } else { F32_NMSE }
}

fn gpu() -> WgpuBackend {
    WgpuBackend::new(None).expect("a Vulkan adapter (install mesa-vulkan-drivers for lavapipe)")
}

fn cpu() -> CpuBackend {
    CpuBackend::new(true)
}

struct Rng(u64);

impl Rng {
    fn f(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.f() * scale).collect()
    }
}

fn nmse(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum();
    let den: f64 = want.iter().map(|&b| (b as f64).powi(2)).sum();
    assert!(
        den > 0.0,
        "reference is all zeros: the test would prove nothing"
    );
    num / den
}

fn assert_close(what: &str, got: &[f32], want: &[f32], bound: f64) {
    let e = nmse(got, want);
    assert!(e <= bound, "{what}: NMSE {e:e} > {bound:e}");
}

/// A tensor's bytes in `ty` from f32 values, owned so both backends can borrow it.
struct Tensor {
    name: String,
    ty: GgmlType,
    ne: [usize; 4],
    bytes: Vec<u8>,
}

impl Tensor {
    fn new(name: &str, ty: GgmlType, ne: [usize; 4], values: &[f32]) -> Tensor {
        let bytes = quantize_rows(ty, values, ne[0], None).unwrap();
        Tensor {
            name: name.to_string(),
            ty,
            ne,
            bytes,
        }
    }

    fn view(&self) -> TensorBytes<'_> {
        TensorBytes {
            name: &self.name,
            ty: self.ty,
            ne: self.ne,
            bytes: &self.bytes,
        }
    }
}

/// Uploads to the backend and runs `f` on it; returns what `f` read back.
fn buf<B: Backend>(b: &B, data: &[f32]) -> B::Buf {
    let mut x = b.alloc(data.len()).unwrap();
    b.write(&mut x, data).unwrap();
    x
}

const ALL_TYPES: [GgmlType; 12] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

fn matmul_case<B: Backend>(b: &B, w: &Tensor, x: &[f32], t: usize) -> Vec<f32> {
    let rows = w.ne[1] * w.ne[2] * w.ne[3];
    let wb = b.upload(w.view()).unwrap();
    let xb = buf(b, x);
    let mut out = b.alloc(t * rows).unwrap();
    b.matmul(&wb, &xb, t, &mut out).unwrap();
    b.read(&out, t * rows).unwrap()
}

#[test]
fn matmul_every_type_decode_and_prefill() {
    let (g, c) = (gpu(), cpu());
    let mut r = Rng(1);
    for ty in ALL_TYPES {
        let cols = 512;
        // Two row tiles of the prompt product, the second partial.
        let rows = 101;
        let w = Tensor::new("w", ty, [cols, rows, 1, 1], &r.vec(cols * rows, 1.0));
        // One token; one partial token tile; two tiles.
        for t in [1, 5, 70] {
            let x = r.vec(t * cols, 1.0);
            let got = matmul_case(&g, &w, &x, t);
            let want = matmul_case(&c, &w, &x, t);
            let bound = if t > 1 {
                prompt_nmse(&g)
            } else {
                decode_nmse(&g, ty)
            };
            assert_close(&format!("matmul {ty} t={t}"), &got, &want, bound);
        }
    }
}

/// Decode products at the real model's row lengths, where the Q4_K kernel's lanes load several
/// units ahead (2304 values; 4096; 1024), and a tall matrix (2049 workgroups).
#[test]
fn matvec_of_model_widths() {
    let c = cpu();
    let (g, mut exact) = (gpu(), gpu());
    exact.set_exact(true);
    let mut r = Rng(21);
    for ty in [GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q8_0] {
        for (cols, rows) in [(2304, 37), (4096, 9), (1024, 70), (2304, 16_392)] {
            let w = Tensor::new("w", ty, [cols, rows, 1, 1], &r.vec(cols * rows, 1.0));
            let x = r.vec(cols, 1.0);
            let want = matmul_case(&c, &w, &x, 1);
            for g in [&g, &exact] {
                assert_close(
                    &format!("matvec {ty} {cols}x{rows} exact {}", g.exact()),
                    &matmul_case(g, &w, &x, 1),
                    &want,
                    decode_nmse(g, ty),
                );
            }
        }
    }
}

#[test]
fn matmul_float_rows_of_any_multiple_of_four() {
    let (g, c) = (gpu(), cpu());
    let mut r = Rng(2);
    for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
        let (cols, rows, t) = (68, 9, 3);
        let w = Tensor::new("w", ty, [cols, rows, 1, 1], &r.vec(cols * rows, 1.0));
        let x = r.vec(t * cols, 1.0);
        assert_close(
            &format!("matmul {ty} cols={cols}"),
            &matmul_case(&g, &w, &x, t),
            &matmul_case(&c, &w, &x, t),
            prompt_nmse(&g),
        );
    }
}

/// The MoE router's product at its shape, 256 F32 rows of 2304 values: a decoded token (a
/// whole workgroup of lanes per row), and prompts whose few tiles split the row's values
/// (`matmul_split`: 18 slices of 128 values for a few tokens, at 512 tokens 15 of 160, the last
/// 64), in whole and partial token tiles; and rows of 900 values, whose last slice is 4 values.
/// Where the adapter has timestamps, a prompt's product is the split and its sum.
#[test]
fn matmul_f32_of_few_rows_split_over_values() {
    let (g, c) = (gpu(), cpu());
    let mut r = Rng(31);
    for (cols, rows, ts) in [
        (2304, 256, &[1, 2, 64, 97, 512][..]),
        (900, 40, &[1, 33][..]),
    ] {
        let values = r.vec(cols * rows, 1.0);
        let w = Tensor::new("router", GgmlType::F32, [cols, rows, 1, 1], &values);
        for &t in ts {
            let x = r.vec(t * cols, 1.0);
            assert_close(
                &format!("matmul F32 {cols}x{rows} t={t}"),
                &matmul_case(&g, &w, &x, t),
                &matmul_case(&c, &w, &x, t),
                F32_NMSE,
            );
        }
    }
    if !g.adapter().timestamp_query {
        return;
    }
    let w = Tensor::new(
        "router",
        GgmlType::F32,
        [2304, 256, 1, 1],
        &r.vec(2304 * 256, 1.0),
    );
    g.set_profiling(true).unwrap();
    let _ = matmul_case(&g, &w, &r.vec(97 * 2304, 1.0), 97);
    let report = g.profile().unwrap();
    let mut names: Vec<_> = report.iter().map(|k| (k.name.as_str(), k.calls)).collect();
    names.sort();
    assert_eq!(
        names,
        [("matmul_split F32 2304x256x1", 1), ("sum_slices", 1)]
    );
}

/// Each weight's product with one input, through `matmuls`.
fn matmuls_case<B: Backend>(b: &B, ws: &[Tensor], x: &[f32], t: usize) -> Vec<Vec<f32>> {
    let rows = |w: &Tensor| w.ne[1] * w.ne[2] * w.ne[3];
    let wbs: Vec<_> = ws.iter().map(|w| b.upload(w.view()).unwrap()).collect();
    let mut outs: Vec<_> = ws.iter().map(|w| b.alloc(t * rows(w)).unwrap()).collect();
    let xb = buf(b, x);
    let mut jobs: Vec<_> = wbs.iter().zip(outs.iter_mut()).collect();
    b.matmuls(&xb, t, &mut jobs).unwrap();
    ws.iter()
        .zip(&outs)
        .map(|(w, o)| b.read(o, t * rows(w)).unwrap())
        .collect()
}

/// Each weight's product with its own input, through `matmuls_of`.
fn matmuls_of_case<B: Backend>(b: &B, ws: &[Tensor], xs: &[Vec<f32>], t: usize) -> Vec<Vec<f32>> {
    let rows = |w: &Tensor| w.ne[1];
    let wbs: Vec<_> = ws.iter().map(|w| b.upload(w.view()).unwrap()).collect();
    let xbs: Vec<_> = xs.iter().map(|x| buf(b, x)).collect();
    let mut outs: Vec<_> = ws.iter().map(|w| b.alloc(t * rows(w)).unwrap()).collect();
    let mut jobs: Vec<_> = (wbs.iter().zip(&xbs).zip(outs.iter_mut()))
        .map(|((w, x), y)| (w, x, y))
        .collect();
    b.matmuls_of(t, &mut jobs).unwrap();
    ws.iter()
        .zip(&outs)
        .map(|(w, o)| b.read(o, t * rows(w)).unwrap())
        .collect()
}

/// A decoded token's products of their own inputs share a dispatch where the type reads its
/// activations straight from memory (Q8_0, F32: a KDA layer's f_b and g_b), and run one by
/// one where it stages them in 8 bits (Q4_K) or for a prompt.
#[test]
fn matmuls_of_own_inputs_fuse_where_nothing_is_staged() {
    let (g, c) = (gpu(), cpu());
    let mut r = Rng(14);
    let cols = 256;
    for ty in [GgmlType::Q8_0, GgmlType::F32, GgmlType::Q4_K] {
        let ws: Vec<Tensor> = [300, 40, 7]
            .into_iter()
            .map(|rows| Tensor::new("w", ty, [cols, rows, 1, 1], &r.vec(cols * rows, 1.0)))
            .collect();
        for t in [1, 2] {
            let xs: Vec<Vec<f32>> = (0..3).map(|_| r.vec(t * cols, 1.0)).collect();
            g.set_profiling(true).unwrap();
            let got = matmuls_of_case(&g, &ws, &xs, t);
            let calls: u64 = (g.profile().unwrap().into_iter())
                .filter(|k| k.name.starts_with("mat"))
                .map(|k| k.calls)
                .sum();
            let bound = if t == 1 {
                decode_nmse(&g, ty)
            } else {
                prompt_nmse(&g)
            };
            assert_all_close(
                &format!("matmuls_of {ty} t={t}"),
                &got,
                &matmuls_of_case(&c, &ws, &xs, t),
                bound,
            );
            let fused = t == 1 && ty != GgmlType::Q4_K;
            assert_eq!(calls, if fused { 1 } else { 3 }, "{ty} t={t}");
        }
    }
}

fn assert_all_close(what: &str, got: &[Vec<f32>], want: &[Vec<f32>], bound: f64) {
    assert_eq!(got.len(), want.len());
    for (j, (g, w)) in got.iter().zip(want).enumerate() {
        assert_close(&format!("{what} job {j}"), g, w, bound);
    }
}

/// A decoded token's products of one type share a dispatch (jobs of different row counts,
/// more jobs than one dispatch holds); a job of another type runs on its own; a prompt runs
/// them one by one. Compiles the fused kernel of every type.
#[test]
fn matmuls_fuse_decode_products_of_one_type() {
    let (g, c) = (gpu(), cpu());
    let mut r = Rng(11);
    let cols = 512;
    for ty in ALL_TYPES {
        let other = if ty == GgmlType::Q8_0 {
            GgmlType::F16
        } else {
            GgmlType::Q8_0
        };
        let mut ws: Vec<Tensor> = [37, 5, 300, 1, 64, 9, 130, 17, 40]
            .into_iter()
            .map(|rows| Tensor::new("w", ty, [cols, rows, 1, 1], &r.vec(cols * rows, 1.0)))
            .collect();
        ws.insert(
            2,
            Tensor::new("o", other, [cols, 20, 1, 1], &r.vec(cols * 20, 1.0)),
        );
        for t in [1, 3] {
            let x = r.vec(t * cols, 1.0);
            assert_all_close(
                &format!("matmuls {ty} t={t}"),
                &matmuls_case(&g, &ws, &x, t),
                &matmuls_case(&c, &ws, &x, t),
                if t > 1 {
                    prompt_nmse(&g)
                } else {
                    decode_nmse(&g, ty)
                },
            );
        }
    }
}

/// The fused products are one dispatch (counted by the profiler, where the adapter has one).
#[test]
fn matmuls_of_a_decoded_token_are_one_dispatch() {
    let g = gpu();
    if !g.adapter().timestamp_query {
        return;
    }
    let mut r = Rng(13);
    let ws: Vec<Tensor> = [16, 3, 40]
        .into_iter()
        .map(|rows| {
            Tensor::new(
                "w",
                GgmlType::Q4_K,
                [256, rows, 1, 1],
                &r.vec(256 * rows, 1.0),
            )
        })
        .collect();
    let x = r.vec(256, 1.0);
    g.set_profiling(true).unwrap();
    let _ = matmuls_case(&g, &ws, &x, 1);
    let report = g.profile().unwrap();
    let names: Vec<_> = report.iter().map(|k| (k.name.as_str(), k.calls)).collect();
    assert_eq!(names, [("matvecs Q4_K q8", 1)]);
}

/// A weight split over buffers falls back to its own dispatches beside fused ones.
#[test]
fn matmuls_with_a_split_weight() {
    let mut g = gpu();
    g.limit_binding_bytes(20_000);
    let c = cpu();
    let mut r = Rng(12);
    let (cols, ty) = (256, GgmlType::Q8_0);
    let ws: Vec<Tensor> = [8, 100, 30]
        .into_iter()
        .map(|rows| Tensor::new("w", ty, [cols, rows, 1, 1], &r.vec(cols * rows, 1.0)))
        .collect();
    let x = r.vec(cols, 1.0);
    assert_all_close(
        "matmuls split",
        &matmuls_case(&g, &ws, &x, 1),
        &matmuls_case(&c, &ws, &x, 1),
        F32_NMSE,
    );
}

/// A weight bigger than the (artificially lowered) binding limit is split over buffers.
#[test]
fn matmul_and_embed_split_weights() {
    let mut g = gpu();
    g.limit_binding_bytes(1000);
    let c = cpu();
    let mut r = Rng(3);
    for ty in [GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::F16] {
        let (cols, rows, t) = (256, 40, 6);
        let w = Tensor::new("w", ty, [cols, rows, 1, 1], &r.vec(cols * rows, 1.0));
        let x = r.vec(t * cols, 1.0);
        assert_close(
            &format!("split matmul {ty}"),
            &matmul_case(&g, &w, &x, t),
            &matmul_case(&c, &w, &x, t),
            prompt_nmse(&g),
        );
        let ids = [39u32, 0, 17, 5, 39];
        assert_eq!(
            embed_case(&g, &w, &ids),
            embed_case(&c, &w, &ids),
            "split embed {ty}"
        );
    }
}

fn embed_case<B: Backend>(b: &B, w: &Tensor, ids: &[u32]) -> Vec<f32> {
    let wb = b.upload(w.view()).unwrap();
    let mut out = b.alloc(ids.len() * w.ne[0]).unwrap();
    b.embed(&wb, ids, &mut out).unwrap();
    b.read(&out, ids.len() * w.ne[0]).unwrap()
}

/// Dequantization is exact in f32 on both sides: the rows must be equal bit for bit.
#[test]
fn embed_every_type() {
    let (g, c) = (gpu(), cpu());
    let mut r = Rng(4);
    for ty in ALL_TYPES {
        let (cols, rows) = (256, 11);
        let w = Tensor::new("emb", ty, [cols, rows, 1, 1], &r.vec(cols * rows, 2.0));
        let ids = [3u32, 10, 0, 3];
        let got = embed_case(&g, &w, &ids);
        let want = embed_case(&c, &w, &ids);
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff <= 1e-6, "embed {ty}: max |Δ| {diff:e}");
        assert!(want.iter().any(|&v| v != 0.0));
    }
    let w = Tensor::new("emb", GgmlType::F32, [8, 4, 1, 1], &r.vec(32, 1.0));
    let wb = g.upload(w.view()).unwrap();
    let mut out = g.alloc(8).unwrap();
    assert!(g.embed(&wb, &[4], &mut out).is_err(), "id 4 of 4 rows");
}

/// Each row's argmax left on the device, the rows of the table it names embedded from there,
/// both read back later: (the ids, the rows).
fn argmax_embed_case<B: Backend>(
    b: &B,
    w: &Tensor,
    scores: &[f32],
    t: usize,
) -> (Vec<f32>, Vec<f32>) {
    let wb = b.upload(w.view()).unwrap();
    let mut ids = b.alloc(t).unwrap();
    b.argmax_to(&buf(b, scores), t, w.ne[1], &mut ids).unwrap();
    let mut out = b.alloc(t * w.ne[0]).unwrap();
    b.embed_from(&wb, &ids, t, &mut out).unwrap();
    let ids = b.read_later(&ids, t).unwrap();
    let rows = b.read_later(&out, t * w.ne[0]).unwrap();
    (b.fetch(ids).unwrap(), b.fetch(rows).unwrap())
}

/// Greedy decoding's device-side token: the argmax of each row, embedded without the host
/// knowing it, from one buffer and from a table split over several.
#[test]
fn argmax_to_then_embed_from() {
    let mut split = gpu();
    split.limit_binding_bytes(2100);
    let (g, c) = (gpu(), cpu());
    let mut r = Rng(9);
    for ty in [GgmlType::F32, GgmlType::Q8_0, GgmlType::Q6_K] {
        let (cols, rows, t) = (256, 40, 3);
        let w = Tensor::new("emb", ty, [cols, rows, 1, 1], &r.vec(cols * rows, 1.0));
        let mut scores = r.vec(t * rows, 1.0);
        for (row, id) in [39, 0, 17].into_iter().enumerate() {
            scores[row * rows + id] = 3.0;
        }
        let want = (vec![39.0, 0.0, 17.0], embed_case(&c, &w, &[39, 0, 17]));
        assert_eq!(argmax_embed_case(&c, &w, &scores, t), want, "cpu {ty}");
        assert_eq!(argmax_embed_case(&g, &w, &scores, t), want, "wgpu {ty}");
        assert_eq!(
            argmax_embed_case(&split, &w, &scores, t),
            want,
            "split {ty}"
        );
    }
}

/// A read queued behind the recorded work sees the buffer as it was there, however late and in
/// whichever order the reads are fetched.
#[test]
fn reads_queued_for_later_see_their_point_in_the_work() {
    let g = gpu();
    let mut a = buf(&g, &[1.0, 2.0]);
    let first = g.read_later(&a, 2).unwrap();
    g.write(&mut a, &[3.0]).unwrap();
    let second = g.read_later(&a, 2).unwrap();
    let acc = buf(&g, &[10.0, 10.0]);
    g.add(&mut a, &acc, 2).unwrap();
    let third = g.read_later(&a, 1).unwrap();
    assert_eq!(g.fetch(second).unwrap(), vec![3.0, 2.0]);
    assert_eq!(g.fetch(third).unwrap(), vec![13.0]);
    assert_eq!(g.fetch(first).unwrap(), vec![1.0, 2.0]);
}

/// (acc + res, rms_norm(acc + res)) through [`Backend::add_rms_norm`].
fn add_rms_norm_case<B: Backend>(
    b: &B,
    w: &Tensor,
    acc: &[f32],
    res: &[f32],
    t: usize,
    n: usize,
) -> (Vec<f32>, Vec<f32>) {
    let wb = b.upload(w.view()).unwrap();
    let (mut a, mut o) = (buf(b, acc), b.alloc(t * n).unwrap());
    b.add_rms_norm(&mut a, &buf(b, res), &wb, 1e-5, t, n, &mut o)
        .unwrap();
    (b.read(&a, t * n).unwrap(), b.read(&o, t * n).unwrap())
}

/// A decoded token's norm also writes its row in 8 bits, and the integer-dot products that read
/// that row then read the copy instead of staging it (`q8 row` in the profile); each write to
/// the row after the norm (a copy into it, a kernel's output, a zeroing) makes them stage the
/// new values again. Against the CPU throughout.
#[test]
fn norm_rows_in_8_bits_serve_the_products_until_rewritten() {
    let (g, c) = (gpu(), cpu());
    let mut r = Rng(31);
    let n = 512;
    let norm = Tensor::new("norm", GgmlType::F32, [n, 1, 1, 1], &r.vec(n, 1.0));
    let w = Tensor::new("w", GgmlType::Q4_K, [n, 64, 1, 1], &r.vec(n * 64, 1.0));
    let (acc, res, other) = (r.vec(n, 1.0), r.vec(n, 1.0), r.vec(n, 1.0));
    // The products after the norm, after a copy into its output, after a kernel rewrote the
    // output of a second norm (its SwiGLU with other values), after zeroing it.
    fn steps<B: Backend>(
        b: &B,
        norm: &Tensor,
        w: &Tensor,
        x: [&[f32]; 3],
        outs: &mut Vec<Vec<f32>>,
    ) {
        let (nb, wb) = (b.upload(norm.view()).unwrap(), b.upload(w.view()).unwrap());
        let n = norm.ne[0];
        let (mut a, mut o) = (buf(b, x[0]), b.alloc(n).unwrap());
        let product = |o: &B::Buf| {
            let mut y = b.alloc(64).unwrap();
            b.matmul(&wb, o, 1, &mut y).unwrap();
            b.read(&y, 64).unwrap()
        };
        b.add_rms_norm(&mut a, &buf(b, x[1]), &nb, 1e-5, 1, n, &mut o)
            .unwrap();
        outs.push(product(&o));
        b.copy(&buf(b, x[2]), 0, &mut o, 0, n).unwrap();
        outs.push(product(&o));
        b.rms_norm(&a, &nb, 1e-5, 1, &mut o).unwrap();
        let up = buf(b, x[2]);
        b.swiglu(&mut o, &up, 1, n).unwrap();
        outs.push(product(&o));
        b.zero(&mut o).unwrap();
        outs.push(product(&o));
    }
    let x = [&acc[..], &res[..], &other[..]];
    let (mut got, mut want) = (Vec::new(), Vec::new());
    if g.adapter().timestamp_query {
        g.set_profiling(true).unwrap();
    }
    steps(&g, &norm, &w, x, &mut got);
    steps(&c, &norm, &w, x, &mut want);
    for (i, (got, want)) in got.iter().zip(&want).enumerate() {
        if i == 3 {
            assert!(got.iter().all(|&v| v == 0.0), "after zeroing: {got:?}");
        } else {
            assert_close(
                &format!("product {i}"),
                got,
                want,
                decode_nmse(&g, GgmlType::Q4_K),
            );
        }
    }
    if g.adapter().timestamp_query {
        let report = g.profile().unwrap();
        let calls = |name: &str| {
            report
                .iter()
                .find(|k| k.name == name)
                .map_or(0, |k| k.calls)
        };
        // The norm's copy serves the first product and the one after rms_norm (whose output
        // the SwiGLU then rewrites: the third stages the new values); the copy and zeroing
        // rewrote it for the second and fourth.
        assert_eq!(calls("matvec Q4_K q8 row 512x64x1"), 1, "{report:?}");
        assert_eq!(calls("matvec Q4_K q8 512x64x1"), 3, "{report:?}");
    }
}

#[test]
fn rms_norm_swiglu_add_argmax() {
    let (g, c) = (gpu(), cpu());
    let mut r = Rng(5);
    let (t, n) = (3, 300);
    let x = r.vec(t * n, 3.0);
    let wv: Vec<f32> = r.vec(n, 0.2).iter().map(|v| 1.0 + v).collect();
    let w = Tensor::new("norm", GgmlType::F32, [n, 1, 1, 1], &wv);
    let w16 = Tensor::new("norm16", GgmlType::F16, [n, 1, 1, 1], &wv);
    for w in [&w, &w16] {
        let run = |b: &dyn Fn() -> Vec<f32>| b();
        let got = run(&|| {
            let wb = g.upload(w.view()).unwrap();
            let xb = buf(&g, &x);
            let mut o = g.alloc(t * n).unwrap();
            g.rms_norm(&xb, &wb, 1e-5, t, &mut o).unwrap();
            g.read(&o, t * n).unwrap()
        });
        let want = run(&|| {
            let wb = c.upload(w.view()).unwrap();
            let xb = buf(&c, &x);
            let mut o = c.alloc(t * n).unwrap();
            c.rms_norm(&xb, &wb, 1e-5, t, &mut o).unwrap();
            c.read(&o, t * n).unwrap()
        });
        assert_close(&format!("rms_norm {}", w.ty), &got, &want, F32_NMSE);
    }

    // The fused residual add + norm: both the sum and the normalised rows.
    let res = r.vec(t * n, 1.0);
    let (gs, gn) = add_rms_norm_case(&g, &w, &x, &res, t, n);
    let (cs, cn) = add_rms_norm_case(&c, &w, &x, &res, t, n);
    assert_eq!(gs, cs, "add_rms_norm: the sums");
    assert_close("add_rms_norm", &gn, &cn, F32_NMSE);

    let up = r.vec(t * n, 4.0);
    let (gg, cg) = (
        {
            let mut a = buf(&g, &x);
            g.swiglu(&mut a, &buf(&g, &up), t, n).unwrap();
            g.read(&a, t * n).unwrap()
        },
        {
            let mut a = buf(&c, &x);
            c.swiglu(&mut a, &buf(&c, &up), t, n).unwrap();
            c.read(&a, t * n).unwrap()
        },
    );
    assert_close("swiglu", &gg, &cg, F32_NMSE);

    let mut a = buf(&g, &x);
    g.add(&mut a, &buf(&g, &up), t * n - 7).unwrap();
    let got = g.read(&a, t * n).unwrap();
    let mut want = x.clone();
    for i in 0..t * n - 7 {
        want[i] += up[i];
    }
    assert_eq!(got, want, "add (only the first len values)");

    // Ties go to the first index, as torch and the CPU backend do.
    let mut rows = r.vec(4 * 1000, 1.0);
    rows[1000 + 500] = 5.0;
    rows[1000 + 900] = 5.0;
    rows[3 * 1000 + 999] = 2.0;
    let got = g.argmax(&buf(&g, &rows), 4, 1000).unwrap();
    assert_eq!(got, c.argmax(&rows, 4, 1000).unwrap());
    assert_eq!(got[1], 500);
    assert_eq!(got[3], 999);
}

fn kda_dims(heads: usize, head_dim: usize) -> KdaDims {
    KdaDims {
        heads,
        head_dim,
        conv_kernel: 4,
        l2_eps: 1e-6,
    }
}

/// `short_conv` of the three streams `x` (taps `w`, states from `s0`) over the token ranges
/// `calls`, one call each: every call's outputs, then the final states.
fn short_conv_in_calls<B: Backend>(
    b: &B,
    w: &[Tensor],
    x: &[Vec<f32>],
    s0: &[Vec<f32>],
    dm: KdaDims,
    calls: &[(usize, usize)],
) -> Vec<f32> {
    let ch = dm.width();
    let past = (dm.conv_kernel - 1) * ch;
    let wb: Vec<_> = w.iter().map(|w| b.upload(w.view()).unwrap()).collect();
    let mut st = [buf(b, &s0[0]), buf(b, &s0[1]), buf(b, &s0[2])];
    let mut all = Vec::new();
    for &(a, e) in calls {
        let n = (e - a) * ch;
        let xs = [0, 1, 2].map(|s| buf(b, &x[s][a * ch..e * ch]));
        let mut o = [0, 1, 2].map(|_| b.alloc(n).unwrap());
        let taps = [&wb[0], &wb[1], &wb[2]];
        b.short_conv(xs.each_ref(), taps, &mut st, e - a, dm, &mut o)
            .unwrap();
        for o in &o {
            all.extend(b.read(o, n).unwrap());
        }
    }
    for s in &st {
        all.extend(b.read(s, past).unwrap());
    }
    all
}

/// The q, k and v streams in one call, each with its own taps and state.
#[test]
fn short_conv_of_three_streams_with_state() {
    let (g, c) = (gpu(), cpu());
    let mut r = Rng(6);
    let dm = kda_dims(2, 36);
    let ch = dm.width();
    let w: Vec<Tensor> = (0..3)
        .map(|_| Tensor::new("conv", GgmlType::F32, [4, 1, ch, 1], &r.vec(4 * ch, 1.0)))
        .collect();
    let x: Vec<Vec<f32>> = (0..3).map(|s| r.vec(8 * ch, 1.0 + s as f32)).collect();
    let s0: Vec<Vec<f32>> = (0..3).map(|_| r.vec(3 * ch, 1.0)).collect();
    // 6 tokens, then 1, then 1: the state carries across calls, including t < kernel - 1.
    let calls = [(0, 6), (6, 7), (7, 8)];
    assert_close(
        "short_conv",
        &short_conv_in_calls(&g, &w, &x, &s0, dm, &calls),
        &short_conv_in_calls(&c, &w, &x, &s0, dm, &calls),
        F32_NMSE,
    );
}

/// `kda_projections` over the token ranges `calls`: the q, k, v projections (`proj`) through
/// their convolutions (taps `conv`, states from `s0`) and the other products (`jobs`), one call
/// per range; every call's outputs, then the final states.
#[allow(clippy::too_many_arguments)]
fn kda_projections_in_calls<B: Backend>(
    b: &B,
    proj: &[Tensor],
    conv: &[Tensor],
    jobs: &[Tensor],
    x: &[f32],
    s0: &[Vec<f32>],
    dm: KdaDims,
    calls: &[(usize, usize)],
) -> Vec<f32> {
    let (ch, cols) = (dm.width(), proj[0].ne[0]);
    let pb: Vec<_> = proj.iter().map(|w| b.upload(w.view()).unwrap()).collect();
    let cb: Vec<_> = conv.iter().map(|w| b.upload(w.view()).unwrap()).collect();
    let jb: Vec<_> = jobs.iter().map(|w| b.upload(w.view()).unwrap()).collect();
    let mut st = [buf(b, &s0[0]), buf(b, &s0[1]), buf(b, &s0[2])];
    let mut all = Vec::new();
    for &(a, e) in calls {
        let t = e - a;
        let xb = buf(b, &x[a * cols..e * cols]);
        let mut o = [0, 1, 2].map(|_| b.alloc(t * ch).unwrap());
        let mut ys: Vec<_> = jobs.iter().map(|w| b.alloc(t * w.ne[1]).unwrap()).collect();
        let mut js: Vec<_> = jb.iter().zip(ys.iter_mut()).collect();
        b.kda_projections(
            &xb,
            t,
            [&pb[0], &pb[1], &pb[2]],
            [&cb[0], &cb[1], &cb[2]],
            &mut st,
            dm,
            &mut o,
            &mut js,
        )
        .unwrap();
        for o in &o {
            all.extend(b.read(o, t * ch).unwrap());
        }
        for (y, w) in ys.iter().zip(jobs) {
            all.extend(b.read(y, t * w.ne[1]).unwrap());
        }
    }
    for s in &st {
        all.extend(b.read(s, (dm.conv_kernel - 1) * ch).unwrap());
    }
    all
}

/// A decoded token's q, k and v products stored through their convolutions in the products'
/// dispatch (with the other products of their type; one of another type runs apart), against
/// the CPU's products then convolutions: a prompt, then single tokens carrying the state.
#[test]
fn kda_projections_fuse_the_convolutions_into_the_products() {
    let (g, c) = (gpu(), cpu());
    let mut r = Rng(12);
    let dm = kda_dims(2, 32);
    let (ch, cols) = (dm.width(), 256);
    for ty in [GgmlType::Q4_K, GgmlType::F32] {
        let w = |rows: usize, ty: GgmlType, r: &mut Rng| {
            Tensor::new("w", ty, [cols, rows, 1, 1], &r.vec(cols * rows, 1.0))
        };
        let proj: Vec<Tensor> = (0..3).map(|_| w(ch, ty, &mut r)).collect();
        let jobs = vec![
            w(32, ty, &mut r),
            w(2, GgmlType::Q8_0, &mut r),
            w(32, ty, &mut r),
        ];
        let conv: Vec<Tensor> = (0..3)
            .map(|_| Tensor::new("conv", GgmlType::F32, [4, 1, ch, 1], &r.vec(4 * ch, 1.0)))
            .collect();
        let x = r.vec(6 * cols, 1.0);
        let s0: Vec<Vec<f32>> = (0..3).map(|_| r.vec(3 * ch, 1.0)).collect();
        let calls = [(0, 3), (3, 4), (4, 5), (5, 6)];
        assert_close(
            &format!("kda_projections {ty}"),
            &kda_projections_in_calls(&g, &proj, &conv, &jobs, &x, &s0, dm, &calls),
            &kda_projections_in_calls(&c, &proj, &conv, &jobs, &x, &s0, dm, &calls),
            decode_nmse(&g, ty),
        );
    }
    // One dispatch for the q, k, v products, their convolutions and the two other Q4_K
    // products; the Q8_0 one apart.
    let proj: Vec<Tensor> = (0..3)
        .map(|_| {
            Tensor::new(
                "w",
                GgmlType::Q4_K,
                [cols, ch, 1, 1],
                &r.vec(cols * ch, 1.0),
            )
        })
        .collect();
    let conv: Vec<Tensor> = (0..3)
        .map(|_| Tensor::new("conv", GgmlType::F32, [4, 1, ch, 1], &r.vec(4 * ch, 1.0)))
        .collect();
    let jobs = vec![
        Tensor::new(
            "a",
            GgmlType::Q4_K,
            [cols, 32, 1, 1],
            &r.vec(cols * 32, 1.0),
        ),
        Tensor::new("b", GgmlType::Q8_0, [cols, 2, 1, 1], &r.vec(cols * 2, 1.0)),
    ];
    let s0: Vec<Vec<f32>> = (0..3).map(|_| r.vec(3 * ch, 1.0)).collect();
    let x = r.vec(cols, 1.0);
    g.set_profiling(true).unwrap();
    kda_projections_in_calls(&g, &proj, &conv, &jobs, &x, &s0, dm, &[(0, 1)]);
    let mut names: Vec<_> = (g.profile().unwrap().into_iter())
        .filter(|k| k.name.starts_with("mat"))
        .map(|k| (k.name, k.calls))
        .collect();
    names.sort();
    let q8 = if g.exact() { "" } else { " q8" };
    assert_eq!(
        names,
        [
            ("matvec Q8_0 256x2x1".to_string(), 1),
            (format!("matvecs Q4_K{q8}"), 1)
        ]
    );
}

#[test]
fn gated_rms_norm() {
    let (g, c) = (gpu(), cpu());
    let mut r = Rng(7);
    let dm = kda_dims(3, 32);
    let (t, wd) = (4, dm.width());
    let o = r.vec(t * wd, 2.0);
    let gt = r.vec(t * wd, 3.0);
    let nw = Tensor::new(
        "o_norm",
        GgmlType::F32,
        [dm.head_dim, 1, 1, 1],
        &r.vec(dm.head_dim, 0.2)
            .iter()
            .map(|v| 1.0 + v)
            .collect::<Vec<_>>(),
    );
    fn gnorm<B: Backend>(
        b: &B,
        o: &[f32],
        gt: &[f32],
        nw: &Tensor,
        t: usize,
        dm: KdaDims,
    ) -> Vec<f32> {
        let wb = b.upload(nw.view()).unwrap();
        let mut ob = buf(b, o);
        b.gated_rms_norm(&mut ob, &buf(b, gt), &wb, 1e-5, t, dm)
            .unwrap();
        b.read(&ob, o.len()).unwrap()
    }
    assert_close(
        "gated_rms_norm",
        &gnorm(&g, &o, &gt, &nw, t, dm),
        &gnorm(&c, &o, &gt, &nw, t, dm),
        F32_NMSE,
    );
}

/// A KDA output projection: the gated RMSNorm of `o` times `w`, through
/// `gated_rms_norm_matmul`, for `t` tokens.
#[allow(clippy::too_many_arguments)]
fn gated_norm_product<B: Backend>(
    b: &B,
    o: &[f32],
    gate: &[f32],
    nw: &Tensor,
    w: &Tensor,
    t: usize,
    dm: KdaDims,
) -> Vec<f32> {
    let (nb, wb) = (b.upload(nw.view()).unwrap(), b.upload(w.view()).unwrap());
    let mut ob = buf(b, o);
    let mut out = b.alloc(t * w.ne[1]).unwrap();
    b.gated_rms_norm_matmul(&mut ob, &buf(b, gate), &nb, 1e-5, t, dm, &wb, &mut out)
        .unwrap();
    b.read(&out, t * w.ne[1]).unwrap()
}

/// A decoded token's output projection stages the gated norm itself (one dispatch) on integer
/// dot products, and runs the norm then the product otherwise (a prompt, an F32 weight).
#[test]
fn gated_rms_norm_matmul_stages_the_norm_in_the_product() {
    let (g, c) = (gpu(), cpu());
    let mut r = Rng(13);
    // 8 heads of 32: rows of 256 values, a Q4_K block.
    let dm = kda_dims(8, 32);
    let cols = dm.width();
    let nw = Tensor::new(
        "o_norm",
        GgmlType::F32,
        [dm.head_dim, 1, 1, 1],
        &r.vec(dm.head_dim, 1.0),
    );
    for (ty, t) in [(GgmlType::Q4_K, 1), (GgmlType::Q4_K, 3), (GgmlType::F32, 1)] {
        let w = Tensor::new("out", ty, [cols, 40, 1, 1], &r.vec(cols * 40, 1.0));
        let (o, gate) = (r.vec(t * cols, 2.0), r.vec(t * cols, 3.0));
        let bound = if t == 1 {
            decode_nmse(&g, ty)
        } else {
            prompt_nmse(&g)
        };
        g.set_profiling(true).unwrap();
        let got = gated_norm_product(&g, &o, &gate, &nw, &w, t, dm);
        let names: Vec<String> = g.profile().unwrap().into_iter().map(|k| k.name).collect();
        g.set_profiling(false).unwrap();
        assert_close(
            &format!("gated_rms_norm_matmul {ty} t={t}"),
            &got,
            &gated_norm_product(&c, &o, &gate, &nw, &w, t, dm),
            bound,
        );
        let fused = t == 1 && ty == GgmlType::Q4_K && !g.exact();
        assert_eq!(
            names.iter().any(|n| n == "gated_rms_norm"),
            !fused,
            "{ty} t={t}: {names:?}"
        );
    }
}

/// A delta rule's raw inputs (q, k, v, g, beta) and its gates' weights.
struct KdaCase {
    inp: [Vec<f32>; 5],
    dt_bias: Tensor,
    a: Tensor,
}

/// Raw inputs whose gated decay is shaped like the real model's; `g_span` widens the decay
/// pre-activations (30 crosses softplus's cut-over at 20 and reaches its tiny tail).
fn kda_case(t: usize, dm: KdaDims, g_span: f32, r: &mut Rng) -> KdaCase {
    let wd = dm.width();
    let (q, k, v) = (r.vec(t * wd, 1.0), r.vec(t * wd, 1.0), r.vec(t * wd, 1.0));
    let g: Vec<f32> = r.vec(t * wd, g_span);
    let beta = r.vec(t * dm.heads, 4.0);
    let dt_bias = Tensor::new("dt", GgmlType::F32, [wd, 1, 1, 1], &r.vec(wd, 1.0));
    let av: Vec<f32> = r
        .vec(dm.heads, 1.0)
        .iter()
        .map(|u| -(1.0 + 7.5 * (u + 1.0)))
        .collect();
    let a = Tensor::new("a", GgmlType::F32, [1, dm.heads, 1, 1], &av);
    KdaCase {
        inp: [q, k, v, g, beta],
        dt_bias,
        a,
    }
}

fn delta_rule<B: Backend>(
    b: &B,
    case: &KdaCase,
    s0: &[f32],
    t: usize,
    dm: KdaDims,
    chunked: bool,
) -> Vec<f32> {
    let [q, k, v, g, beta] = &case.inp;
    let (qb, kb, vb, gb, bb) = (buf(b, q), buf(b, k), buf(b, v), buf(b, g), buf(b, beta));
    let dt_bias = b.upload(case.dt_bias.view()).unwrap();
    let a = b.upload(case.a.view()).unwrap();
    let x = KdaInputs {
        q: &qb,
        k: &kb,
        v: &vb,
        g: &gb,
        beta: &bb,
        dt_bias: &dt_bias,
        a: &a,
    };
    let mut st = buf(b, s0);
    let mut o = b.alloc(t * dm.width()).unwrap();
    if chunked {
        b.kda_chunked(x, &mut st, t, dm, &mut o).unwrap();
    } else {
        b.kda_recurrent(x, &mut st, t, dm, &mut o).unwrap();
    }
    let mut out = b.read(&o, t * dm.width()).unwrap();
    out.extend(b.read(&st, s0.len()).unwrap());
    out
}

/// The scan stages its inputs in chunks of 1024 / d tokens (8 at d = 128, 51 at d = 20, 4 at
/// d = 256): one token, one chunk and part of one, several chunks with a remainder, with the
/// column sums over subgroups and through workgroup memory; and gates whose pre-activations
/// cross softplus's cut-over.
#[test]
fn kda_recurrent_and_chunked_from_a_nonzero_state() {
    let c = cpu();
    let mut r = Rng(8);
    for g in &both_reductions() {
        for (heads, d) in [(2, 32), (1, 128), (3, 24), (2, 20), (1, 256)] {
            let dm = kda_dims(heads, d);
            for (t, chunked, g_span) in [
                (1, false, 3.0),
                (3, false, 3.0),
                (1, true, 3.0),
                (70, true, 3.0),
                (9, true, 3.0),
                (4, false, 30.0),
            ] {
                let case = kda_case(t, dm, g_span, &mut r);
                let s0 = r.vec(heads * d * d, 1.0);
                let got = delta_rule(g, &case, &s0, t, dm, chunked);
                let want = delta_rule(&c, &case, &s0, t, dm, chunked);
                assert_close(
                    &format!(
                        "kda heads {heads} d {d} t {t} chunked {chunked} g span {g_span} \
                         subgroups {}",
                        g.subgroups()
                    ),
                    &got,
                    &want,
                    F32_NMSE,
                );
            }
        }
    }
}

/// A KDA layer's tail (`kda_tail`) from raw q, k, v, β and the low-rank gate inputs: the output
/// projection's result, then the state.
#[allow(clippy::too_many_arguments)]
fn kda_tail_case<B: Backend>(
    b: &B,
    case: &KdaCase,
    low: &[Vec<f32>; 2],
    up: &[Tensor; 2],
    norm: &Tensor,
    out_w: &Tensor,
    s0: &[f32],
    t: usize,
    dm: KdaDims,
) -> Vec<f32> {
    let [q, k, v, _, beta] = &case.inp;
    let (qb, kb, vb, bb) = (buf(b, q), buf(b, k), buf(b, v), buf(b, beta));
    let (fl, gl) = (buf(b, &low[0]), buf(b, &low[1]));
    let up: Vec<_> = up.iter().map(|w| b.upload(w.view()).unwrap()).collect();
    let dt_bias = b.upload(case.dt_bias.view()).unwrap();
    let a = b.upload(case.a.view()).unwrap();
    let (nb, ob) = (
        b.upload(norm.view()).unwrap(),
        b.upload(out_w.view()).unwrap(),
    );
    let tail = KdaTail {
        q: &qb,
        k: &kb,
        v: &vb,
        beta: &bb,
        f_low: &fl,
        g_low: &gl,
        f_b: &up[0],
        g_b: &up[1],
        dt_bias: &dt_bias,
        a: &a,
        norm: &nb,
        eps: 1e-5,
        out: &ob,
    };
    let mut st = buf(b, s0);
    let rows = out_w.ne[1];
    let mut out = b.alloc(t * rows).unwrap();
    b.kda_tail(tail, &mut st, t, dm, &mut out).unwrap();
    let mut got = b.read(&out, t * rows).unwrap();
    got.extend(b.read(&st, s0.len()).unwrap());
    got
}

/// A decoded token's KDA tail is one `kda_step` (a workgroup per head: up-projections of Q8_0
/// or F32 weights, the delta rule, the gated norm, written in 8 bits for a Q4_K output
/// projection) and the output projection; heads too wide for it (160), of a width that is not
/// whole 16-value halves (20), prompts and devices without subgroups take the parts. Results
/// and state against the CPU's.
#[test]
fn kda_tail_of_a_decoded_token_is_one_step_per_head() {
    let c = cpu();
    let mut r = Rng(21);
    for g in &both_reductions() {
        for (heads, d, ty, t) in [
            (2, 128, GgmlType::Q8_0, 1),
            (8, 32, GgmlType::Q8_0, 1),
            (3, 48, GgmlType::F32, 1),
            (8, 32, GgmlType::Q8_0, 3),
            (2, 20, GgmlType::F32, 1),
            (1, 160, GgmlType::Q8_0, 1),
        ] {
            let dm = kda_dims(heads, d);
            let (wd, rank) = (dm.width(), 64);
            let case = kda_case(t, dm, 3.0, &mut r);
            let low = [r.vec(t * rank, 1.0), r.vec(t * rank, 1.0)];
            let up = [
                Tensor::new("f_b", ty, [rank, wd, 1, 1], &r.vec(rank * wd, 0.3)),
                Tensor::new("g_b", ty, [rank, wd, 1, 1], &r.vec(rank * wd, 0.3)),
            ];
            let norm = Tensor::new("o_norm", GgmlType::F32, [d, 1, 1, 1], &r.vec(d, 1.0));
            // Whole Q4_K blocks where the width allows, so that the 8-bit row serves it.
            let out_ty = if wd.is_multiple_of(256) {
                GgmlType::Q4_K
            } else {
                GgmlType::F32
            };
            let out_w = Tensor::new("out", out_ty, [wd, 24, 1, 1], &r.vec(wd * 24, 1.0));
            let s0 = r.vec(heads * d * d, 1.0);
            g.set_profiling(true).unwrap();
            let got = kda_tail_case(g, &case, &low, &up, &norm, &out_w, &s0, t, dm);
            let names: Vec<String> = g.profile().unwrap().into_iter().map(|k| k.name).collect();
            g.set_profiling(false).unwrap();
            let want = kda_tail_case(&c, &case, &low, &up, &norm, &out_w, &s0, t, dm);
            let what = format!(
                "kda_tail heads {heads} d {d} {ty} t {t} subgroups {}",
                g.subgroups()
            );
            let rows = t * out_w.ne[1];
            let bound = if t == 1 {
                decode_nmse(g, out_ty)
            } else {
                prompt_nmse(g)
            };
            assert_close(&what, &got[..rows], &want[..rows], bound);
            assert_close(&what, &got[rows..], &want[rows..], F32_NMSE);
            let stepped = t == 1 && d % 16 == 0 && d <= 128 && g.subgroups();
            assert_eq!(
                names.iter().any(|n| n.starts_with("kda_step")),
                stepped,
                "{what}: {names:?}"
            );
            assert_eq!(
                names.iter().any(|n| n.starts_with("kda_scan")),
                !stepped,
                "{what}: {names:?}"
            );
            if stepped && out_ty == GgmlType::Q4_K && !g.exact() {
                assert!(
                    names.iter().any(|n| n.contains("q8 row")),
                    "{what}: the output projection reads the 8-bit row: {names:?}"
                );
            }
        }
    }
}

fn mla_dims() -> MlaDims {
    MlaDims {
        heads: 3,
        kv_lora: 48,
        nope: 24,
        rope: 8,
        v_dim: 20,
        norm_eps: 1e-6,
    }
}

struct MlaCase {
    norm: Tensor,
    k_b: Tensor,
    v_b: Tensor,
}

impl MlaCase {
    fn new(ty: GgmlType, dm: MlaDims, r: &mut Rng) -> MlaCase {
        let (h, l) = (dm.heads, dm.kv_lora);
        MlaCase {
            norm: Tensor::new(
                "kv_norm",
                GgmlType::F32,
                [l, 1, 1, 1],
                &r.vec(l, 0.2).iter().map(|v| 1.0 + v).collect::<Vec<_>>(),
            ),
            k_b: Tensor::new("k_b", ty, [dm.nope, l, h, 1], &r.vec(dm.nope * l * h, 0.5)),
            v_b: Tensor::new(
                "v_b",
                ty,
                [l, dm.v_dim, h, 1],
                &r.vec(l * dm.v_dim * h, 0.5),
            ),
        }
    }

    /// Runs the calls (pos, q, kv) in order on one cache; returns every output and the cache.
    fn run<B: Backend>(
        &self,
        b: &B,
        dm: MlaDims,
        cap: usize,
        calls: &[(usize, Vec<f32>, Vec<f32>)],
    ) -> Vec<f32> {
        let w = MlaWeights {
            kv_norm: b.upload(self.norm.view()).unwrap(),
            k_b: b.upload(self.k_b.view()).unwrap(),
            v_b: b.upload(self.v_b.view()).unwrap(),
        };
        let mut cache = b.alloc(cap * dm.cache_width()).unwrap();
        let mut all = Vec::new();
        for (pos, q, kv) in calls {
            let t = kv.len() / dm.cache_width();
            let mut o = b.alloc(t * dm.heads * dm.v_dim).unwrap();
            b.mla_attention(&buf(b, q), &buf(b, kv), &w, &mut cache, *pos, t, dm, &mut o)
                .unwrap();
            all.extend(b.read(&o, t * dm.heads * dm.v_dim).unwrap());
        }
        all.extend(b.read(&cache, cap * dm.cache_width()).unwrap());
        all
    }
}

/// A prompt's attention (mla_flash, or mla_flash_coop where the adapter has cooperative
/// matrices) in tiles of 32 query rows: one token of 32 heads at the model's cached width, or
/// rows straddling tokens of 6 heads; in one split, whose output the kernel writes itself, or
/// several (a short prompt deep in the context). Decode steps between, one deep enough that a
/// workgroup of mla_attend serves 8 heads. The cache rows the calls skip stay zero on both
/// backends.
#[test]
fn mla_flash_prompts_and_deep_decode() {
    let (g, c) = (gpu(), cpu());
    let mut r = Rng(19);
    let dims = |heads, kv_lora, nope, rope| MlaDims {
        heads,
        kv_lora,
        nope,
        rope,
        v_dim: 16,
        norm_eps: 1e-6,
    };
    // (dims, the calls' (pos, t)).
    let cases: [(MlaDims, &[(usize, usize)]); 3] = [
        (
            dims(32, 512, 20, 64),
            &[(0, 50), (50, 37), (87, 1), (600, 5), (605, 1), (1100, 1)],
        ),
        (dims(6, 48, 24, 8), &[(0, 50), (50, 300)]),
        (dims(8, 48, 24, 8), &[(32760, 2), (32762, 1)]),
    ];
    for (dm, spans) in cases {
        let qw = dm.heads * (dm.nope + dm.rope);
        let case = MlaCase::new(GgmlType::F32, dm, &mut r);
        let calls: Vec<_> = spans
            .iter()
            .map(|&(pos, t)| (pos, r.vec(t * qw, 1.0), r.vec(t * dm.cache_width(), 2.0)))
            .collect();
        let cap = spans.iter().map(|&(pos, t)| pos + t).max().unwrap();
        assert_close(
            &format!("mla {} heads, lora {}", dm.heads, dm.kv_lora),
            &case.run(&g, dm, cap, &calls),
            &case.run(&c, dm, cap, &calls),
            prompt_nmse(&g),
        );
    }
}

#[test]
fn mla_prefill_decode_and_long_context() {
    let (g, c) = (gpu(), cpu());
    let mut r = Rng(9);
    let dm = mla_dims();
    let qw = dm.heads * (dm.nope + dm.rope);
    // With 16 KiB bindings the prompt's attention partials no longer fit one buffer and are
    // computed a slice of rows at a time.
    let mut small = gpu();
    small.limit_binding_bytes(16 << 10);
    for (ty, g) in [
        (GgmlType::F32, &g),
        (GgmlType::F16, &g),
        (GgmlType::F32, &small),
    ] {
        let case = MlaCase::new(ty, dm, &mut r);
        // A 300-token prompt crosses two 128-position splits; then two decode steps.
        let mut calls = Vec::new();
        let mut pos = 0;
        for t in [300, 1, 1] {
            calls.push((pos, r.vec(t * qw, 1.0), r.vec(t * dm.cache_width(), 2.0)));
            pos += t;
        }
        let cap = pos + 2;
        assert_close(
            &format!("mla {ty}"),
            &case.run(g, dm, cap, &calls),
            &case.run(&c, dm, cap, &calls),
            prompt_nmse(g),
        );
    }
    let case = MlaCase::new(GgmlType::F32, dm, &mut r);
    let w = MlaWeights {
        kv_norm: g.upload(case.norm.view()).unwrap(),
        k_b: g.upload(case.k_b.view()).unwrap(),
        v_b: g.upload(case.v_b.view()).unwrap(),
    };
    let mut cache = g.alloc(4 * dm.cache_width()).unwrap();
    let mut o = g.alloc(2 * dm.heads * dm.v_dim).unwrap();
    let err = g.mla_attention(
        &buf(&g, &r.vec(2 * qw, 1.0)),
        &buf(&g, &r.vec(2 * dm.cache_width(), 1.0)),
        &w,
        &mut cache,
        3,
        2,
        dm,
        &mut o,
    );
    assert!(err.is_err(), "positions 3..5 do not fit a cache of 4");
}

struct MoeCase {
    tensors: Vec<Tensor>,
    n_used: usize,
    shared: bool,
}

impl MoeCase {
    fn new(
        ty: GgmlType,
        hidden: usize,
        ff: usize,
        n_expert: usize,
        n_used: usize,
        shared: bool,
        r: &mut Rng,
    ) -> MoeCase {
        let mut tensors = vec![
            Tensor::new(
                "router",
                GgmlType::F32,
                [hidden, n_expert, 1, 1],
                &r.vec(hidden * n_expert, 0.3),
            ),
            Tensor::new(
                "bias",
                GgmlType::F32,
                [n_expert, 1, 1, 1],
                &r.vec(n_expert, 0.3),
            ),
            Tensor::new(
                "gate_exps",
                ty,
                [hidden, ff, n_expert, 1],
                &r.vec(hidden * ff * n_expert, 0.2),
            ),
            Tensor::new(
                "up_exps",
                ty,
                [hidden, ff, n_expert, 1],
                &r.vec(hidden * ff * n_expert, 0.2),
            ),
            Tensor::new(
                "down_exps",
                ty,
                [ff, hidden, n_expert, 1],
                &r.vec(hidden * ff * n_expert, 0.2),
            ),
        ];
        if shared {
            tensors.push(Tensor::new(
                "gate_sh",
                ty,
                [hidden, ff, 1, 1],
                &r.vec(hidden * ff, 0.2),
            ));
            tensors.push(Tensor::new(
                "up_sh",
                ty,
                [hidden, ff, 1, 1],
                &r.vec(hidden * ff, 0.2),
            ));
            tensors.push(Tensor::new(
                "down_sh",
                ty,
                [ff, hidden, 1, 1],
                &r.vec(hidden * ff, 0.2),
            ));
        }
        MoeCase {
            tensors,
            n_used,
            shared,
        }
    }

    fn run<B: Backend>(&self, b: &B, x: &[f32], t: usize) -> Vec<f32> {
        self.run_after(b, x, t, None)
    }

    /// The MoE's output of `x` (`t` rows); with `before` = (proj, residual, norm), of the input
    /// that `matmul_add_norm` makes instead: `x` times `proj` added into the residual, normed
    /// with `norm`. Then it returns the MoE's output, the residual and the normed input, read in
    /// that order.
    fn run_after<B: Backend>(
        &self,
        b: &B,
        x: &[f32],
        t: usize,
        before: Option<(&Tensor, &[f32], &Tensor)>,
    ) -> Vec<f32> {
        let up: Vec<_> = self
            .tensors
            .iter()
            .map(|t| b.upload(t.view()).unwrap())
            .collect();
        let mut it = up.into_iter();
        let mut next = || it.next().unwrap();
        let (router, bias) = (next(), next());
        let experts = FfnWeights {
            gate: next(),
            up: next(),
            down: next(),
        };
        let shared = self.shared.then(|| FfnWeights {
            gate: next(),
            up: next(),
            down: next(),
        });
        let w = MoeWeights {
            router,
            bias,
            experts,
            shared,
            n_used: self.n_used,
            scale: 2.446,
        };
        let hidden = self.tensors[0].ne[0];
        let mut out = b.alloc(t * hidden).unwrap();
        let Some((proj, residual, norm)) = before else {
            b.moe(&buf(b, x), &w, t, &mut out).unwrap();
            return b.read(&out, t * hidden).unwrap();
        };
        let (proj, norm) = (
            b.upload(proj.view()).unwrap(),
            b.upload(norm.view()).unwrap(),
        );
        let (mut acc, mut normed) = (buf(b, residual), b.alloc(t * hidden).unwrap());
        let next = AddNorm {
            acc: &mut acc,
            w: &norm,
            eps: 1e-5,
            width: hidden,
            out: &mut normed,
        };
        let mut y = b.alloc(t * hidden).unwrap();
        b.matmul_add_norm(&proj, &buf(b, x), t, &mut y, next)
            .unwrap();
        b.moe(&normed, &w, t, &mut out).unwrap();
        [&out, &acc, &normed]
            .iter()
            .flat_map(|v| b.read(v, t * hidden).unwrap())
            .collect()
    }
}

/// A decoded token's product with the residual add and the next norm but its scale
/// (`matvec+norm`, the mixers' output projections), then the MoE that reads the normed row:
/// the router's last workgroup applies the scale to its logits and to the row's 8-bit copy,
/// which the expert products read, so the norm needs no dispatch (four in all). On integer
/// dot products and exact, with and without subgroups, against the CPU's product, add_rms_norm
/// and MoE: the MoE's output, the residual, and the normed row read back (which `norm_settle`
/// finishes). A prompt runs the norm on its own. The same where the shared expert's type is
/// not the experts' (the 24 GiB recipe's Q6_K beside Q3_K): its products run apart, after the
/// router chose, on the row it finished.
#[test]
fn the_moe_router_finishes_the_norm_before_it() {
    let c = cpu();
    let mut r = Rng(23);
    let same = MoeCase::new(GgmlType::Q4_K, 256, 256, 8, 3, true, &mut r);
    let mut apart = MoeCase::new(GgmlType::Q3_K, 256, 256, 8, 3, true, &mut r);
    for (i, name) in ["gate_sh", "up_sh", "down_sh"].into_iter().enumerate() {
        let v = r.vec(256 * 256, 0.2);
        apart.tensors[5 + i] = Tensor::new(name, GgmlType::Q6_K, [256, 256, 1, 1], &v);
    }
    let proj = Tensor::new(
        "proj",
        GgmlType::Q4_K,
        [512, 256, 1, 1],
        &r.vec(512 * 256, 0.2),
    );
    let norm = Tensor::new("norm", GgmlType::F32, [256, 1, 1, 1], &r.vec(256, 1.0));
    for case in [&same, &apart] {
        let ty = case.tensors[2].ty;
        for (exact, subgroups) in [(false, true), (true, true), (false, false)] {
            let mut g = gpu();
            g.set_exact(exact);
            if !subgroups {
                g.without_subgroups();
            }
            for t in [1, 1, 3] {
                let (x, acc) = (r.vec(t * 512, 1.0), r.vec(t * 256, 1.0));
                let before = Some((&proj, acc.as_slice(), &norm));
                let got = case.run_after(&g, &x, t, before);
                let want = case.run_after(&c, &x, t, before);
                let n = t * 256;
                let bound = decode_nmse(&g, ty);
                for (i, name) in ["moe", "residual", "normed"].iter().enumerate() {
                    let span = i * n..(i + 1) * n;
                    let what = format!("{ty} exact {exact} subgroups {subgroups} t {t}: {name}");
                    assert_close(&what, &got[span.clone()], &want[span], bound);
                }
            }
        }
    }
    let g = gpu();
    if !g.adapter().timestamp_query {
        return;
    }
    g.set_profiling(true).unwrap();
    let (x, acc) = (r.vec(512, 1.0), r.vec(256, 1.0));
    let _ = same.run_after(&g, &x, 1, Some((&proj, &acc, &norm)));
    let report = g.profile().unwrap();
    let names: Vec<&str> = report.iter().map(|k| k.name.as_str()).collect();
    let calls: u64 = report.iter().map(|k| k.calls).sum();
    // The product, the MoE's three kernels, and the settling of the normed row for its read.
    assert_eq!(calls, 5, "{names:?}");
    for name in [
        "matvec+norm Q4_K q8 512x256x1",
        "moe_router_route",
        "norm_settle",
    ] {
        assert!(names.contains(&name), "{names:?}");
    }
    // Apart, the router still chooses in its own dispatch: no `moe_route`.
    g.set_profiling(true).unwrap();
    let _ = apart.run_after(&g, &x, 1, Some((&proj, &acc, &norm)));
    let report = g.profile().unwrap();
    let names: Vec<&str> = report.iter().map(|k| k.name.as_str()).collect();
    assert!(names.contains(&"moe_router_route"), "{names:?}");
    assert!(!names.contains(&"moe_route"), "{names:?}");
}

#[test]
fn moe_routing_and_experts_on_the_gpu() {
    let (g, c) = (gpu(), cpu());
    // 10 kB bindings split each 256-row Q4_K expert matrix across weight parts mid-matrix.
    let mut small = gpu();
    small.limit_binding_bytes(10_000);
    let mut r = Rng(10);
    for (ty, shared, g) in [
        (GgmlType::F32, true, &g),
        (GgmlType::Q8_0, false, &g),
        (GgmlType::Q4_K, true, &g),
        (GgmlType::Q4_K, false, &small),
    ] {
        let (hidden, ff) = if ty == GgmlType::Q4_K {
            (256, 256)
        } else {
            (64, 32)
        };
        let case = MoeCase::new(ty, hidden, ff, 16, 4, shared, &mut r);
        for t in [1, 6] {
            let x = r.vec(t * hidden, 1.0);
            assert_close(
                &format!("moe {ty} shared {shared} t={t}"),
                &case.run(g, &x, t),
                &case.run(&c, &x, t),
                // A prompt's experts split across weight parts run on the decode kernels.
                if t > 1 {
                    prompt_nmse(g).max(decode_nmse(g, ty))
                } else {
                    decode_nmse(g, ty)
                },
            );
        }
    }
    // Both of 2 experts chosen for each of 70 tokens: 70 pairs per expert, two tiles of the
    // prompt's grouped expert products.
    let case = MoeCase::new(GgmlType::Q8_0, 64, 32, 2, 2, false, &mut r);
    let x = r.vec(70 * 64, 1.0);
    assert_close(
        "moe 70 pairs per expert",
        &case.run(&g, &x, 70),
        &case.run(&c, &x, 70),
        prompt_nmse(&g),
    );
}

/// A decoded token's MoE of every block type: the fused router / shared expert products and the
/// experts' gate and up in one dispatch (one kernel per type).
#[test]
fn moe_decode_every_type() {
    let (g, c) = (gpu(), cpu());
    let mut r = Rng(14);
    for ty in ALL_TYPES {
        let case = MoeCase::new(ty, 256, 256, 8, 3, true, &mut r);
        let x = r.vec(256, 1.0);
        assert_close(
            &format!("moe decode {ty}"),
            &case.run(&g, &x, 1),
            &case.run(&c, &x, 1),
            decode_nmse(&g, ty),
        );
    }
}

/// A decoded token's MoE with a shared expert is 3 dispatches on integer dot products: the F32
/// router with the routing, the experts' gate and up with the shared expert's riding along
/// (writing both SwiGLUs in 8 bits), and `moe_down` (reading them; the experts' and the shared
/// expert's down products with the weighted sum; was 4, 5, 8, and 11 before that); 4 exact,
/// where `swiglu` runs before `moe_down`.
/// The shared gate and up need no `matvecs` of their own.
#[test]
fn moe_decode_dispatches() {
    let mut r = Rng(15);
    let case = MoeCase::new(GgmlType::Q4_K, 256, 256, 8, 3, true, &mut r);
    let x = r.vec(256, 1.0);
    for exact in [false, true] {
        let Some(report) = moe_decode_kernels(&case, &x, exact) else {
            return;
        };
        let calls: u64 = report.iter().map(|k| k.calls).sum();
        let (want, names): (u64, &[&str]) = if exact {
            (
                4,
                &[
                    "moe_router_route",
                    "matmul_sel_pair Q4_K 256x256x8",
                    "swiglu",
                    "moe_down Q4_K 256x256x8",
                ],
            )
        } else {
            (
                3,
                &[
                    "moe_router_route",
                    "matmul_sel_pair_swiglu_q8 Q4_K q8 256x256x8",
                    "moe_down Q4_K q8 row 256x256x8",
                ],
            )
        };
        assert_eq!(calls, want, "{report:?}");
        for &name in names {
            assert!(report.iter().any(|k| k.name == name), "{name}: {report:?}");
        }
        assert!(
            !report.iter().any(|k| k.name.starts_with("matvecs")),
            "{report:?}"
        );
    }
}

/// The kernels of a decoded token's MoE (`case` on `x`) as the profiler reports them, on a
/// backend that is `exact` or not; `None` where the adapter has no timestamp queries.
fn moe_decode_kernels(
    case: &MoeCase,
    x: &[f32],
    exact: bool,
) -> Option<Vec<kiln::backend::wgpu::KernelTime>> {
    let mut g = gpu();
    if !g.adapter().timestamp_query {
        return None;
    }
    g.set_exact(exact);
    g.set_profiling(true).unwrap();
    let _ = case.run(&g, x, 1);
    Some(g.profile().unwrap())
}

/// A decoded token's fused expert and shared down products (`moe_down`) against the CPU, on
/// integer dot products and exact, for Q4_K (whose 8-bit staging reads several activation
/// rows, up to all XQ_MAX values of 8 experts and the shared one at 1024 values each; and
/// fewer matrices than the unit entry's parts), other block types and F32; and the separate
/// products where it does not fit: more activations than a workgroup stages, a shared down
/// matrix of another type, one split over buffers.
#[test]
fn moe_decode_fused_down() {
    let c = cpu();
    let (g, mut exact) = (gpu(), gpu());
    exact.set_exact(true);
    let mut r = Rng(16);
    let fused = |ty, hidden, ff, n_expert, n_used, r: &mut Rng| {
        (
            MoeCase::new(ty, hidden, ff, n_expert, n_used, true, r),
            true,
        )
    };
    let mut cases = vec![
        fused(GgmlType::Q4_K, 256, 256, 16, 4, &mut r),
        fused(GgmlType::Q4_K, 256, 1024, 9, 8, &mut r),
        // Three matrices over moe_down's four parts: one part has none.
        fused(GgmlType::Q4_K, 256, 256, 16, 2, &mut r),
        fused(GgmlType::Q6_K, 256, 256, 16, 4, &mut r),
        fused(GgmlType::Q8_0, 64, 64, 16, 4, &mut r),
        fused(GgmlType::F32, 64, 32, 16, 4, &mut r),
        // 5 · 2048 activations: more than XQ_MAX.
        (
            MoeCase::new(GgmlType::F32, 64, 2048, 6, 4, true, &mut r),
            false,
        ),
    ];
    let mut mixed = MoeCase::new(GgmlType::Q8_0, 64, 64, 16, 4, true, &mut r);
    mixed.tensors[7] = Tensor::new(
        "down_sh",
        GgmlType::F32,
        [64, 64, 1, 1],
        &r.vec(64 * 64, 0.2),
    );
    cases.push((mixed, false));
    for (case, want_fused) in &cases {
        let ty = case.tensors[2].ty;
        let (hidden, ff) = (case.tensors[0].ne[0], case.tensors[2].ne[1]);
        let x = r.vec(hidden, 1.0);
        let want = case.run(&c, &x, 1);
        for g in [&g, &exact] {
            assert_close(
                &format!("moe decode {ty} {hidden}x{ff} exact {}", g.exact()),
                &case.run(g, &x, 1),
                &want,
                decode_nmse(g, ty),
            );
        }
        if let Some(report) = moe_decode_kernels(case, &x, false) {
            let has = report.iter().any(|k| k.name.starts_with("moe_down"));
            assert_eq!(has, *want_fused, "{ty} {hidden}x{ff}: {report:?}");
            assert_eq!(
                report.iter().any(|k| k.name == "moe_combine"),
                !*want_fused,
                "{report:?}"
            );
        }
    }
    // The shared down matrix split over weight buffers.
    let mut small = gpu();
    small.limit_binding_bytes(2_000);
    let case = MoeCase::new(GgmlType::Q8_0, 64, 64, 16, 4, true, &mut r);
    let x = r.vec(64, 1.0);
    assert_close(
        "moe decode split weights",
        &case.run(&small, &x, 1),
        &case.run(&c, &x, 1),
        F32_NMSE,
    );
}

/// `kiln bench --repeat`: each dispatch of a repeated kernel runs twice, the second after the
/// first (a residual add adds twice) and counts twice; other kernels run once, and an empty
/// list ends the repeats. `--ablate` leaves the same kernel out.
#[test]
fn altered_kernels_run_twice_or_not_at_all() {
    let g = gpu();
    let x = buf(&g, &[1.0, 2.0, 3.0, 4.0]);
    let mut acc = buf(&g, &[10.0, 10.0, 10.0, 10.0]);
    let mut gate = buf(&g, &[1.0; 4]);
    g.alter(&["add".into()], Alter::Twice).unwrap();
    let before = g.dispatches().unwrap();
    g.add(&mut acc, &x, 4).unwrap();
    assert_eq!(g.dispatches().unwrap() - before, 2);
    assert_eq!(g.read(&acc, 4).unwrap(), vec![12.0, 14.0, 16.0, 18.0]);
    g.swiglu(&mut gate, &x, 1, 4).unwrap();
    assert_eq!(g.dispatches().unwrap() - before, 3);
    g.alter(&[], Alter::Twice).unwrap();
    g.add(&mut acc, &x, 4).unwrap();
    assert_eq!(g.read(&acc, 4).unwrap(), vec![13.0, 16.0, 19.0, 22.0]);
    g.alter(&["add".into()], Alter::LeaveOut).unwrap();
    g.add(&mut acc, &x, 4).unwrap();
    g.alter(&[], Alter::LeaveOut).unwrap();
    assert_eq!(g.read(&acc, 4).unwrap(), vec![13.0, 16.0, 19.0, 22.0]);
}

/// Recorded work stays in order: a write after a read of the same buffer does not overtake it.
#[test]
fn writes_zeroes_and_copies_keep_their_order() {
    let g = gpu();
    let mut a = buf(&g, &[1.0, 2.0, 3.0, 4.0]);
    let mut acc = buf(&g, &[10.0, 10.0, 10.0, 10.0]);
    g.add(&mut acc, &a, 4).unwrap();
    g.write(&mut a, &[100.0, 100.0, 100.0, 100.0]).unwrap();
    g.add(&mut acc, &a, 4).unwrap();
    let mut b = g.alloc(6).unwrap();
    g.copy(&acc, 1, &mut b, 2, 3).unwrap();
    g.zero(&mut acc).unwrap();
    assert_eq!(g.read(&acc, 4).unwrap(), vec![0.0; 4]);
    assert_eq!(
        g.read(&b, 6).unwrap(),
        vec![0.0, 0.0, 112.0, 113.0, 114.0, 0.0]
    );
}

/// Both ways of timing (timestamps around each dispatch in the shared pass, which lavapipe
/// offers, and a pass per dispatch) see the same kernels and calls, and time them.
#[test]
fn profiler_times_kernels() {
    let g = gpu();
    if !g.adapter().timestamp_query {
        assert!(g.set_profiling(true).is_err());
        return;
    }
    let mut r = Rng(11);
    let w = Tensor::new("w", GgmlType::Q4_K, [256, 8, 1, 1], &r.vec(256 * 8, 1.0));
    let x = r.vec(256, 1.0);
    for per_pass in [false, true] {
        if per_pass {
            g.set_profiling_per_pass().unwrap();
            assert!(!g.profiles_inside_passes());
        } else {
            g.set_profiling(true).unwrap();
        }
        let _ = matmul_case(&g, &w, &x, 1);
        // Paused, the profile leaves dispatches out.
        g.pause_profile(true);
        let _ = matmul_case(&g, &w, &x, 1);
        g.pause_profile(false);
        let _ = matmul_case(&g, &w, &x, 1);
        let report = g.profile().unwrap();
        let mm = report
            .iter()
            .find(|k| k.name == "matvec Q4_K q8 256x8x1")
            .unwrap_or_else(|| panic!("per pass {per_pass}: {report:?}"));
        assert_eq!(mm.calls, 2, "per pass {per_pass}");
        assert!(mm.total_ms > 0.0, "per pass {per_pass}: {report:?}");
        assert!(kiln::backend::wgpu::format_report(&report, 5).contains("matvec Q4_K"));
    }
    g.set_profiling(false).unwrap();
}

#[test]
fn list_adapters_finds_the_device() {
    let all = kiln::backend::wgpu::list_adapters();
    assert!(!all.is_empty(), "no Vulkan adapter");
    assert!(all[0].max_storage_buffer_binding_size >= 128 << 20);
    assert!(WgpuBackend::new(Some(all.len())).is_err());
}

/// A process may open and drop backends many times (this binary does, a test each). NVIDIA's
/// driver stopped listing its GPU after about 30 Vulkan instances in one process, so the
/// backends share one instance; this opens more than that in a row.
#[test]
fn backends_open_and_close_many_times() {
    for i in 0..40 {
        let g = WgpuBackend::new(None).unwrap_or_else(|e| panic!("opening backend {i}: {e}"));
        let mut x = g.alloc(4).unwrap();
        g.write(&mut x, &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(g.read(&x, 4).unwrap(), [1.0, 2.0, 3.0, 4.0]);
    }
}

/// A prompt's expert products over several weight steps and row tiles, with and without the
/// shared expert, for the block types whose tiles decode differently.
#[test]
fn moe_prompt_products_of_several_tiles() {
    let (g, c) = (gpu(), cpu());
    let mut r = Rng(12);
    let mut report = Vec::new();
    for (ty, hidden, ff, shared) in [
        (GgmlType::Q8_0, 256, 256, false),
        (GgmlType::Q4_K, 256, 256, false),
        (GgmlType::Q4_K, 256, 256, true),
        (GgmlType::Q6_K, 512, 256, false),
    ] {
        let case = MoeCase::new(ty, hidden, ff, 16, 4, shared, &mut r);
        for t in [6, 40] {
            let x = r.vec(t * hidden, 1.0);
            let e = nmse(&case.run(&g, &x, t), &case.run(&c, &x, t));
            report.push((format!("moe {ty} {hidden}x{ff} shared {shared} t={t}"), e));
        }
    }
    let bad: Vec<_> = report
        .iter()
        .filter(|(_, e)| *e > prompt_nmse(&g))
        .collect();
    assert!(bad.is_empty(), "NMSE above {:e}: {bad:?}", prompt_nmse(&g));
}

/// The GPU backend as opened (its row and routing kernels reduce over subgroups where the
/// adapter has them, as lavapipe does) and the same forced onto the workgroup-memory reductions.
fn both_reductions() -> [WgpuBackend; 2] {
    let g = gpu();
    assert_eq!(
        g.subgroups(),
        g.adapter().subgroups && std::env::var_os("KILN_NO_SUBGROUPS").is_none()
    );
    let mut fallback = gpu();
    fallback.without_subgroups();
    assert!(!fallback.subgroups());
    [g, fallback]
}

/// The row norms on rows held in registers (up to 4096 values, a multiple of 256 or not) and
/// on longer rows (the loops), one row and several, with either reduction.
#[test]
fn row_norms_of_every_length_with_and_without_subgroups() {
    let c = cpu();
    let mut r = Rng(16);
    for g in &both_reductions() {
        for n in [1, 7, 128, 300, 2304, 4096, 4100, 9000] {
            for t in [1, 3] {
                let what = |op: &str| format!("{op} n={n} t={t} subgroups {}", g.subgroups());
                let x = r.vec(t * n, 3.0);
                let res = r.vec(t * n, 1.0);
                let wv: Vec<f32> = r.vec(n, 0.2).iter().map(|v| 1.0 + v).collect();
                let w = Tensor::new("norm", GgmlType::F32, [n, 1, 1, 1], &wv);
                let norm = |b: &dyn Fn() -> Vec<f32>| b();
                let got = norm(&|| {
                    let mut o = g.alloc(t * n).unwrap();
                    let wb = g.upload(w.view()).unwrap();
                    g.rms_norm(&buf(g, &x), &wb, 1e-5, t, &mut o).unwrap();
                    g.read(&o, t * n).unwrap()
                });
                let want = norm(&|| {
                    let mut o = c.alloc(t * n).unwrap();
                    let wb = c.upload(w.view()).unwrap();
                    c.rms_norm(&buf(&c, &x), &wb, 1e-5, t, &mut o).unwrap();
                    c.read(&o, t * n).unwrap()
                });
                assert_close(&what("rms_norm"), &got, &want, F32_NMSE);

                let (gs, gn) = add_rms_norm_case(g, &w, &x, &res, t, n);
                let (cs, cn) = add_rms_norm_case(&c, &w, &x, &res, t, n);
                assert_eq!(gs, cs, "{}: the sums", what("add_rms_norm"));
                assert_close(&what("add_rms_norm"), &gn, &cn, F32_NMSE);

                // Two heads of n per token.
                let dm = kda_dims(2, n);
                let o = r.vec(t * 2 * n, 2.0);
                let gate = r.vec(t * 2 * n, 3.0);
                let gated = |b: &dyn Fn() -> Vec<f32>| b();
                let got = gated(&|| {
                    let wb = g.upload(w.view()).unwrap();
                    let mut ob = buf(g, &o);
                    g.gated_rms_norm(&mut ob, &buf(g, &gate), &wb, 1e-5, t, dm)
                        .unwrap();
                    g.read(&ob, o.len()).unwrap()
                });
                let want = gated(&|| {
                    let wb = c.upload(w.view()).unwrap();
                    let mut ob = buf(&c, &o);
                    c.gated_rms_norm(&mut ob, &buf(&c, &gate), &wb, 1e-5, t, dm)
                        .unwrap();
                    c.read(&ob, o.len()).unwrap()
                });
                assert_close(&what("gated_rms_norm"), &got, &want, F32_NMSE);
            }
        }
    }
}

/// Routing exactly as the CPU chooses, with either reduction: many experts of equal score +
/// bias (the lower index wins, as in a stable sort), every expert count the kernel takes from
/// a handful to 1000 (several experts per thread) and n_used up to 64, one token and several.
/// Over subgroups, up to 256 experts are sorted (on lavapipe's 8-lane subgroups, pairs 8 or
/// more positions apart exchange through workgroup memory) and more are drawn.
#[test]
fn moe_routing_ties_and_expert_counts_with_and_without_subgroups() {
    let c = cpu();
    let mut r = Rng(17);
    for g in &both_reductions() {
        for (n_expert, n_used) in [(8, 8), (16, 4), (256, 8), (300, 8), (1000, 64)] {
            let (hidden, ff) = (32, 16);
            let mut case = MoeCase::new(GgmlType::F32, hidden, ff, n_expert, n_used, true, &mut r);
            for ties in [false, true] {
                if ties {
                    // Logits of 0 (score 0.5 exactly on both backends), biases of 5 values.
                    let zero = vec![0.0; hidden * n_expert];
                    case.tensors[0] =
                        Tensor::new("router", GgmlType::F32, [hidden, n_expert, 1, 1], &zero);
                    let bias: Vec<f32> = (0..n_expert)
                        .map(|e| ((e * 7) % 5) as f32 * 0.125)
                        .collect();
                    case.tensors[1] =
                        Tensor::new("bias", GgmlType::F32, [n_expert, 1, 1, 1], &bias);
                }
                for t in [1, 5] {
                    let x = r.vec(t * hidden, 1.0);
                    assert_close(
                        &format!(
                            "moe {n_expert} experts, {n_used} used, ties {ties}, t={t}, subgroups {}",
                            g.subgroups()
                        ),
                        &case.run(g, &x, t),
                        &case.run(&c, &x, t),
                        if t > 1 { prompt_nmse(g) } else { F32_NMSE },
                    );
                }
            }
        }
    }
}

/// The short convolution for every tap count the kernel takes, over token runs of one block of
/// 8 tokens per thread, part of one, and several (their windows reaching into the block
/// before), runs shorter than the state, the state carried across calls.
#[test]
fn short_conv_of_every_width() {
    let (g, c) = (gpu(), cpu());
    let mut r = Rng(18);
    for kw in [1, 2, 3, 4, 8] {
        let dm = KdaDims {
            conv_kernel: kw,
            ..kda_dims(3, 20)
        };
        let ch = dm.width();
        let w: Vec<Tensor> = (0..3)
            .map(|_| Tensor::new("conv", GgmlType::F32, [kw, 1, ch, 1], &r.vec(kw * ch, 1.0)))
            .collect();
        let x: Vec<Vec<f32>> = (0..3).map(|_| r.vec(60 * ch, 1.0)).collect();
        let s0: Vec<Vec<f32>> = (0..3).map(|_| r.vec((kw - 1) * ch, 1.0)).collect();
        let calls = [(0, 1), (1, 10), (10, 11), (11, 13), (13, 27), (27, 60)];
        assert_close(
            &format!("short_conv kw={kw}"),
            &short_conv_in_calls(&g, &w, &x, &s0, dm, &calls),
            &short_conv_in_calls(&c, &w, &x, &s0, dm, &calls),
            F32_NMSE,
        );
    }
}

/// Argmax of short rows (one workgroup per row) and of long ones (chunks on many workgroups,
/// then a merge: 12,289 ends in a chunk of one value; 163,840 is a vocabulary), with either
/// reduction: the first index among equal maxima, as the CPU backend.
#[test]
fn argmax_of_long_rows_with_and_without_subgroups() {
    let c = cpu();
    let mut r = Rng(19);
    for g in &both_reductions() {
        for n in [5, 1000, 4096, 4097, 12_289, 163_840] {
            let t = 4;
            let mut rows = r.vec(t * n, 1.0);
            // Row 1: a tie, the second copy first in thread order; row 2: the last value; row 3:
            // a tie of two copies 4096 apart (two load batches of one thread, or two chunks).
            rows[n + n - 1] = 7.0;
            rows[n + n / 2] = 7.0;
            rows[2 * n + n - 1] = 3.0;
            rows[3 * n + n / 3] = 5.0;
            if n / 3 + 4096 < n {
                rows[3 * n + n / 3 + 4096] = 5.0;
            }
            let got = g.argmax(&buf(g, &rows), t, n).unwrap();
            let want = c.argmax(&buf(&c, &rows), t, n).unwrap();
            assert_eq!(got, want, "argmax n={n} subgroups {}", g.subgroups());
            assert_eq!(got[1] as usize, n / 2);
        }
    }
}
