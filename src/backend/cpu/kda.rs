//! Kimi Delta Attention on the CPU: short convolution, gates, the delta rule (token loop and
//! chunked WY form, spec §3), and the gated output norm. Heads run in parallel.
//!
//! Layouts: q, k, v, g are `[t, heads * d]` (head-major within a row), beta `[t, heads]`, the
//! recurrent state `[heads, d (key), d (value)]`, all f32.

use rayon::prelude::*;

use super::super::{BackendError, KdaDims, Result};
use super::elementwise::{inv_rms, sigmoid, silu};

/// Tokens per chunk of the chunked form (spec §3.3).
pub const CHUNK: usize = 64;

/// Causal depthwise convolution + SiLU; `state` holds the `kernel - 1` inputs before `x`.
pub fn short_conv(x: &[f32], w: &[f32], state: &mut [f32], dims: KdaDims, out: &mut [f32]) {
    let (c, kw) = (dims.width(), dims.conv_kernel);
    let past = kw - 1;
    let t = x.len() / c;
    // Input at time s (s < 0 reaches into the state), for channel ch.
    let at = |s: isize, ch: usize| -> f32 {
        if s < 0 {
            state[(past as isize + s) as usize * c + ch]
        } else {
            x[s as usize * c + ch]
        }
    };
    out.par_chunks_mut(c).enumerate().for_each(|(i, o)| {
        for (ch, o) in o.iter_mut().enumerate() {
            let taps = &w[ch * kw..(ch + 1) * kw];
            let mut acc = 0f32;
            for (j, &wj) in taps.iter().enumerate() {
                acc += wj * at(i as isize + j as isize - past as isize, ch);
            }
            *o = silu(acc);
        }
    });
    let new_state: Vec<f32> = (0..past)
        .flat_map(|a| {
            let s = t as isize - past as isize + a as isize;
            (0..c).map(move |ch| (s, ch))
        })
        .map(|(s, ch)| at(s, ch))
        .collect();
    state[..past * c].copy_from_slice(&new_state);
}

/// `g ← a[h] · softplus(g + dt_bias)`, `beta ← sigmoid(beta)`.
pub fn gate(g: &mut [f32], beta: &mut [f32], dt_bias: &[f32], a: &[f32], dims: KdaDims) {
    let d = dims.head_dim;
    for row in g.chunks_exact_mut(dims.width()) {
        for (i, v) in row.iter_mut().enumerate() {
            let y = *v + dt_bias[i];
            // Same cut-over as transformers and fla: softplus(y) = y above 20.
            let sp = if y > 20.0 { y } else { y.exp().ln_1p() };
            *v = a[i / d] * sp;
        }
    }
    beta.iter_mut().for_each(|b| *b = sigmoid(*b));
}

/// Per head: `o ← w ⊙ o / sqrt(mean(o²) + eps) ⊙ sigmoid(gate)`.
pub fn gated_rms_norm(o: &mut [f32], gate: &[f32], w: &[f32], eps: f32) {
    let d = w.len();
    for (oh, gh) in o.chunks_exact_mut(d).zip(gate.chunks_exact(d)) {
        let inv = inv_rms(oh, eps);
        for ((v, &gv), &wv) in oh.iter_mut().zip(gh).zip(w) {
            *v = wv * (*v * inv) * sigmoid(gv);
        }
    }
}

/// The per-token inputs of the delta rule, checked against `t` and `dims`.
pub struct Inputs<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    g: &'a [f32],
    beta: &'a [f32],
    t: usize,
}

impl<'a> Inputs<'a> {
    pub fn checked(
        q: &'a [f32],
        k: &'a [f32],
        v: &'a [f32],
        g: &'a [f32],
        beta: &'a [f32],
        t: usize,
        dims: KdaDims,
    ) -> Result<Self> {
        let n = t * dims.width();
        for b in [q, k, v, g] {
            if b.len() < n {
                return Err(BackendError::BufferTooSmall {
                    len: b.len(),
                    needed: n,
                });
            }
        }
        if beta.len() < t * dims.heads {
            return Err(BackendError::BufferTooSmall {
                len: beta.len(),
                needed: t * dims.heads,
            });
        }
        Ok(Inputs {
            q,
            k,
            v,
            g,
            beta,
            t,
        })
    }
}

/// One head's inputs, contiguous `[t, d]`: q and k L2-normalised, q scaled by 1/√d.
struct Head {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    g: Vec<f32>,
    beta: Vec<f32>,
}

impl Head {
    fn gather(x: &Inputs<'_>, h: usize, dims: KdaDims) -> Head {
        let (d, w) = (dims.head_dim, dims.width());
        let cols = |b: &[f32]| -> Vec<f32> {
            (0..x.t)
                .flat_map(|i| b[i * w + h * d..i * w + (h + 1) * d].iter().copied())
                .collect()
        };
        let (mut q, mut k) = (cols(x.q), cols(x.k));
        let scale = 1.0 / (d as f32).sqrt();
        for (qr, kr) in q.chunks_exact_mut(d).zip(k.chunks_exact_mut(d)) {
            l2_normalise(qr, dims.l2_eps, scale);
            l2_normalise(kr, dims.l2_eps, 1.0);
        }
        let beta = (0..x.t).map(|i| x.beta[i * dims.heads + h]).collect();
        Head {
            q,
            k,
            v: cols(x.v),
            g: cols(x.g),
            beta,
        }
    }
}

/// `x ← scale · x / sqrt(Σx² + eps)` (eps inside the root, as fla and transformers).
fn l2_normalise(x: &mut [f32], eps: f32, scale: f32) {
    let ss: f64 = x.iter().map(|&v| v as f64 * v as f64).sum();
    let inv = 1.0 / (ss as f32 + eps).sqrt();
    x.iter_mut().for_each(|v| *v = (*v * inv) * scale);
}

/// Runs `per_head(head inputs, head state) -> head output [t, d]` on every head in parallel
/// and scatters the outputs into `out` `[t, heads * d]`.
fn for_each_head(
    x: &Inputs<'_>,
    state: &mut [f32],
    dims: KdaDims,
    out: &mut [f32],
    per_head: impl Fn(&Head, &mut [f32], usize) -> Vec<f32> + Sync,
) {
    let (d, w) = (dims.head_dim, dims.width());
    let outs: Vec<Vec<f32>> = state[..dims.heads * d * d]
        .par_chunks_mut(d * d)
        .enumerate()
        .map(|(h, s)| per_head(&Head::gather(x, h, dims), s, d))
        .collect();
    for (h, o) in outs.iter().enumerate() {
        for i in 0..x.t {
            out[i * w + h * d..i * w + (h + 1) * d].copy_from_slice(&o[i * d..(i + 1) * d]);
        }
    }
}

/// The delta rule token by token (spec §3.2): decay, delta update, read.
pub fn recurrent(x: &Inputs<'_>, state: &mut [f32], dims: KdaDims, out: &mut [f32]) {
    for_each_head(x, state, dims, out, recurrent_head);
}

fn recurrent_head(hd: &Head, s: &mut [f32], d: usize) -> Vec<f32> {
    let t = hd.beta.len();
    let mut o = vec![0f32; t * d];
    let mut mem = vec![0f32; d];
    for i in 0..t {
        let r = i * d..(i + 1) * d;
        let (q, k, v, g) = (
            &hd.q[r.clone()],
            &hd.k[r.clone()],
            &hd.v[r.clone()],
            &hd.g[r],
        );
        // S ← Diag(exp g) S, and Sᵀk of the decayed state in the same pass.
        mem.fill(0.0);
        for r in 0..d {
            let a = g[r].exp();
            let sr = &mut s[r * d..(r + 1) * d];
            for (sv, m) in sr.iter_mut().zip(mem.iter_mut()) {
                *sv *= a;
                *m += *sv * k[r];
            }
        }
        // S ← S + k (β (v − Sᵀk))ᵀ, then o = Sᵀq.
        for (m, &vv) in mem.iter_mut().zip(v) {
            *m = (vv - *m) * hd.beta[i];
        }
        let oi = &mut o[i * d..(i + 1) * d];
        for r in 0..d {
            let sr = &mut s[r * d..(r + 1) * d];
            for ((sv, &delta), ov) in sr.iter_mut().zip(mem.iter()).zip(oi.iter_mut()) {
                *sv += k[r] * delta;
                *ov += *sv * q[r];
            }
        }
    }
    o
}

/// The delta rule chunk by chunk in the WY/UT form (spec §3.3); equal to [`recurrent`] up to
/// rounding. Every decay factor is `exp` of a difference `G_i − G_j` with i ≥ j, hence ≤ 0:
/// the form never divides by a cumulative decay, which would overflow within a chunk.
///
/// The chunk arithmetic runs in f64. In f32 the correction `U − Wm S` cancels the contribution
/// of the incoming state against the values and leaves ~1e-5 relative error in the state (the
/// token loop leaves ~1e-7); in f64 both are rounded only at the end. The cost is small next to
/// the projections: O(n·d) per token per head against O(hidden·width) for a projection.
pub fn chunked(x: &Inputs<'_>, state: &mut [f32], dims: KdaDims, out: &mut [f32]) {
    for_each_head(x, state, dims, out, |hd, s, d| {
        let t = hd.beta.len();
        let mut s64: Vec<f64> = s.iter().map(|&v| v as f64).collect();
        let mut o = vec![0f32; t * d];
        for s0 in (0..t).step_by(CHUNK) {
            let n = CHUNK.min(t - s0);
            chunk(hd, s0, n, &mut s64, d, &mut o[s0 * d..(s0 + n) * d]);
        }
        s.iter_mut().zip(&s64).for_each(|(a, &b)| *a = b as f32);
        o
    })
}

fn dot64(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// One chunk of `n` rows starting at row `s0` of a head; advances `s` and writes `o` `[n, d]`.
fn chunk(hd: &Head, s0: usize, n: usize, s: &mut [f64], d: usize, o: &mut [f32]) {
    let rows =
        |b: &[f32]| -> Vec<f64> { b[s0 * d..(s0 + n) * d].iter().map(|&v| v as f64).collect() };
    let (q, k, v) = (rows(&hd.q), rows(&hd.k), rows(&hd.v));
    let beta: Vec<f64> = hd.beta[s0..s0 + n].iter().map(|&b| b as f64).collect();

    // 1. Cumulative log decay within the chunk.
    let mut gc = rows(&hd.g);
    for i in 1..n {
        for c in 0..d {
            gc[i * d + c] += gc[(i - 1) * d + c];
        }
    }
    let eg: Vec<f64> = gc.iter().map(|v| v.exp()).collect();

    // 2. Decayed key-key (M, strictly lower, scaled by β_i) and query-key (A, lower with the
    //    diagonal) products, from pairwise exponent differences.
    let mut m = vec![0f64; n * n];
    let mut a = vec![0f64; n * n];
    let mut e = vec![0f64; d];
    for i in 0..n {
        let (gi, ki, qi) = (
            &gc[i * d..(i + 1) * d],
            &k[i * d..(i + 1) * d],
            &q[i * d..(i + 1) * d],
        );
        for j in 0..=i {
            let (gj, kj) = (&gc[j * d..(j + 1) * d], &k[j * d..(j + 1) * d]);
            for c in 0..d {
                e[c] = (gi[c] - gj[c]).exp() * kj[c];
            }
            a[i * n + j] = dot64(qi, &e);
            if j < i {
                m[i * n + j] = beta[i] * dot64(ki, &e);
            }
        }
    }

    // 3-4. X = (I + M)⁻¹ Diag(β) [K ⊙ exp(G) | V] by forward substitution: Wm = X[:, ..d], U = X[:, d..].
    let w2 = 2 * d;
    let mut xw = vec![0f64; n * w2];
    for i in 0..n {
        let (done, rest) = xw.split_at_mut(i * w2);
        let xi = &mut rest[..w2];
        for c in 0..d {
            xi[c] = beta[i] * k[i * d + c] * eg[i * d + c];
            xi[d + c] = beta[i] * v[i * d + c];
        }
        for j in 0..i {
            let mij = m[i * n + j];
            for (xv, &xj) in xi.iter_mut().zip(&done[j * w2..(j + 1) * w2]) {
                *xv -= mij * xj;
            }
        }
    }

    // 6. Corrected values Vn = U − Wm S.
    let mut vn = vec![0f64; n * d];
    for i in 0..n {
        let xi = &xw[i * w2..(i + 1) * w2];
        let vi = &mut vn[i * d..(i + 1) * d];
        vi.copy_from_slice(&xi[d..]);
        for r in 0..d {
            let wr = xi[r];
            for (vv, &sv) in vi.iter_mut().zip(&s[r * d..(r + 1) * d]) {
                *vv -= wr * sv;
            }
        }
    }

    // 7. O = (Q ⊙ exp(G)) S + A Vn.
    let mut oi = vec![0f64; d];
    for i in 0..n {
        oi.fill(0.0);
        for r in 0..d {
            let qr = q[i * d + r] * eg[i * d + r];
            for (ov, &sv) in oi.iter_mut().zip(&s[r * d..(r + 1) * d]) {
                *ov += qr * sv;
            }
        }
        for j in 0..=i {
            let aij = a[i * n + j];
            for (ov, &vv) in oi.iter_mut().zip(&vn[j * d..(j + 1) * d]) {
                *ov += aij * vv;
            }
        }
        o[i * d..(i + 1) * d]
            .iter_mut()
            .zip(&oi)
            .for_each(|(dst, &v)| *dst = v as f32);
    }

    // 8. S ← Diag(exp(G_last)) S + (K ⊙ exp(G_last − G))ᵀ Vn.
    let glast = &gc[(n - 1) * d..n * d];
    for r in 0..d {
        let sr = &mut s[r * d..(r + 1) * d];
        let decay = glast[r].exp();
        sr.iter_mut().for_each(|v| *v *= decay);
        for i in 0..n {
            let kr = k[i * d + r] * (glast[r] - gc[i * d + r]).exp();
            for (sv, &vv) in sr.iter_mut().zip(&vn[i * d..(i + 1) * d]) {
                *sv += kr * vv;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand(n: usize, seed: &mut u64) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (*seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    fn dims(heads: usize, head_dim: usize) -> KdaDims {
        KdaDims {
            heads,
            head_dim,
            conv_kernel: 4,
            l2_eps: 1e-6,
        }
    }

    /// Gate values shaped like the real model's: A = exp(ln U(1,16)) and softplus of a spread
    /// of pre-activations, so some channels forget almost everything in one step.
    fn realistic_inputs(t: usize, dm: KdaDims, seed: &mut u64) -> [Vec<f32>; 5] {
        let w = dm.width();
        let (q, k, v) = (rand(t * w, seed), rand(t * w, seed), rand(t * w, seed));
        let mut g: Vec<f32> = rand(t * w, seed).iter().map(|x| x * 6.0 - 1.0).collect();
        let mut beta = rand(t * dm.heads, seed);
        let dt_bias: Vec<f32> = rand(w, seed);
        let a: Vec<f32> = rand(dm.heads, seed)
            .iter()
            .map(|u| -(1.0 + 7.5 * (u + 1.0)))
            .collect();
        gate(&mut g, &mut beta, &dt_bias, &a, dm);
        [q, k, v, g, beta]
    }

    fn max_rel(a: &[f32], b: &[f32]) -> f32 {
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    #[test]
    fn chunked_equals_recurrent_from_a_nonzero_state() {
        for (heads, d) in [(2, 32), (1, 128)] {
            let dm = dims(heads, d);
            for t in [1, 63, 64, 65, 200] {
                let mut seed = 7 + t as u64;
                let [q, k, v, g, beta] = realistic_inputs(t, dm, &mut seed);
                let s0: Vec<f32> = rand(heads * d * d, &mut seed);
                let x = Inputs::checked(&q, &k, &v, &g, &beta, t, dm).unwrap();
                let (mut s_rec, mut s_chk) = (s0.clone(), s0.clone());
                let mut o_rec = vec![0f32; t * dm.width()];
                let mut o_chk = vec![0f32; t * dm.width()];
                recurrent(&x, &mut s_rec, dm, &mut o_rec);
                chunked(&x, &mut s_chk, dm, &mut o_chk);
                let (eo, es) = (max_rel(&o_chk, &o_rec), max_rel(&s_chk, &s_rec));
                assert!(
                    eo < 2e-5 && es < 2e-5,
                    "heads {heads} d {d} t {t}: output {eo:e}, state {es:e}"
                );
                // The state must have moved: a kernel that ignored it could not pass.
                assert!(max_rel(&s_rec, &s0) > 1e-2);
            }
        }
    }

    /// One step by hand against spec §3.1 (7) for a single 2-channel head.
    #[test]
    fn one_recurrent_step_by_hand() {
        let dm = dims(1, 2);
        let (q, k, v) = ([3.0f32, 4.0], [1.0f32, 0.0], [2.0f32, -1.0]);
        let (g, beta) = ([0.5f32.ln(), 0.0], [0.5f32]);
        let mut s = vec![1.0f32, 2.0, 3.0, 4.0];
        let mut o = vec![0f32; 2];
        let x = Inputs::checked(&q, &k, &v, &g, &beta, 1, dm).unwrap();
        recurrent(&x, &mut s, dm, &mut o);
        // Decay rows: [[0.5, 1], [3, 4]]; Sᵀk = [0.5, 1]; delta = 0.5·([2,-1] − [0.5,1]) = [0.75, -1];
        // S += k deltaᵀ → [[1.25, 0], [3, 4]]; q normalised and scaled: [0.6, 0.8]/√2.
        let want_s = [1.25f32, 0.0, 3.0, 4.0];
        for (a, b) in s.iter().zip(want_s) {
            assert!((a - b).abs() < 1e-6, "{s:?}");
        }
        let qs = [0.6f32 / 2f32.sqrt(), 0.8 / 2f32.sqrt()];
        let want_o = [qs[0] * 1.25 + qs[1] * 3.0, qs[1] * 4.0];
        for (a, b) in o.iter().zip(want_o) {
            assert!((a - b).abs() < 1e-5, "{o:?} vs {want_o:?}");
        }
    }

    #[test]
    fn short_conv_streams_like_one_pass() {
        let dm = dims(1, 8);
        let mut seed = 3;
        let (t, c) = (11, dm.width());
        let x = rand(t * c, &mut seed);
        let w = rand(4 * c, &mut seed);
        let mut st_all = vec![0f32; 3 * c];
        let mut all = vec![0f32; t * c];
        short_conv(&x, &w, &mut st_all, dm, &mut all);
        // Same input fed as 5 tokens, then 1, then 5.
        let mut st = vec![0f32; 3 * c];
        let mut pieces = Vec::new();
        for (a, b) in [(0, 5), (5, 6), (6, 11)] {
            let mut o = vec![0f32; (b - a) * c];
            short_conv(&x[a * c..b * c], &w, &mut st, dm, &mut o);
            pieces.extend(o);
        }
        assert_eq!(all, pieces);
        assert_eq!(st, st_all);
        // Token 0, channel 0 sees only the current input through tap 3.
        assert!((all[0] - silu(w[3] * x[0])).abs() < 1e-7);
    }
}
