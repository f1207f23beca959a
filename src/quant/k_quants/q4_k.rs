//! Q4_K: 8 groups of 32 four-bit values, each group with a 6-bit scale and a 6-bit min under
//! two fp16 super-block scales; x ≈ d·sc·q − dmin·m. 4.5 bits per weight.

use half::f16;

use super::common::{
    from_f16, get_scale_min_k4, make_qkx2_quants, make_qkx3_quants, make_qp_quants, nearest_int,
    pack_scale_min_k4, sum_squares, to_f16, unpack_scale_min_k4,
};
use super::{BlockQ8K, QK_K};
use crate::quant::{Block, GgmlType};

/// ggml's `block_q4_K`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    /// Eight 6-bit scales and eight 6-bit mins (see `get_scale_min_k4`).
    pub scales: [u8; 12],
    /// Byte `l` of each 32-byte run: element `l` of a 64-element pair of groups in the low
    /// nibble, element `l + 32` in the high nibble.
    pub qs: [u8; QK_K / 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);

impl Block for BlockQ4K {
    const TYPE: GgmlType = GgmlType::Q4_K;
    const SIZE: usize = QK_K;
    type Dot = BlockQ8K;

    fn quantize(x: &[f32], out: &mut [Self], imatrix: Option<&[f32]>) {
        let xs = x.chunks_exact(QK_K).zip(out.iter_mut());
        match imatrix {
            None => xs.for_each(|(x, y)| {
                let (l, ls, lm, d, dmin) = fit_ref(x.try_into().unwrap(), 15, -1.0, 0.1, 20);
                finish_block(x.try_into().unwrap(), y, l, &ls, &lm, d, dmin);
            }),
            Some(qw) => xs.zip(qw.chunks_exact(QK_K)).for_each(|((x, y), qw)| {
                let (l, ls, lm, d, dmin) =
                    fit_impl(x.try_into().unwrap(), qw.try_into().unwrap(), 15);
                finish_block(x.try_into().unwrap(), y, l, &ls, &lm, d, dmin);
            }),
        }
    }

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
            let d = from_f16(b.d);
            let min = from_f16(b.dmin);
            let (sc, m) = unpack_scale_min_k4(&b.scales);
            for (p, (q, y)) in
                b.qs.chunks_exact(32)
                    .zip(y.chunks_exact_mut(64))
                    .enumerate()
            {
                let (d1, m1) = (d * sc[2 * p] as f32, min * m[2 * p] as f32);
                let (d2, m2) = (d * sc[2 * p + 1] as f32, min * m[2 * p + 1] as f32);
                let (lo, hi) = y.split_at_mut(32);
                for ((lo, hi), &v) in lo.iter_mut().zip(hi).zip(q) {
                    *lo = d1 * (v & 0xF) as f32 - m1;
                    *hi = d2 * (v >> 4) as f32 - m2;
                }
            }
        }
    }

    fn dot(w: &[Self], x: &[BlockQ8K]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if super::has_avx2() {
            // SAFETY: AVX2 and FMA were detected at run time.
            return unsafe { super::avx2::dot_q4_k(w, x) };
        }
        dot_portable(w, x)
    }
}

/// The result of fitting a block's groups: values, 6-bit scales and mins, super-block scales.
pub(super) type GroupFit = ([u8; QK_K], [u8; 8], [u8; 8], f32, f32);

/// The group fit of `quantize_row_q4_K_ref` and `quantize_row_q5_K_ref` (they differ only in
/// `nmax` and the search range): each group fitted alone, then its scale and min rounded
/// against the largest ones.
pub(super) fn fit_ref(x: &[f32; QK_K], nmax: i32, rmin: f32, rdelta: f32, nstep: i32) -> GroupFit {
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 32];
    let mut weights = [0f32; 32];
    let mut mins = [0f32; 8];
    let mut scales = [0f32; 8];

    let mut max_scale = 0f32;
    let mut max_min = 0f32;
    for j in 0..QK_K / 32 {
        let xg = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0f32;
        for &v in xg {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, &v) in weights.iter_mut().zip(xg) {
            *w = av_x + v.abs();
        }
        (scales[j], mins[j]) = make_qkx2_quants(
            nmax,
            xg,
            &weights,
            &mut l[32 * j..32 * j + 32],
            &mut laux,
            rmin,
            rdelta,
            nstep,
            false,
        );
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }

    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    // ggml stores the rounded value into a uint8_t before clamping it.
    let ls = scales.map(|s| (nearest_int(inv_scale * s) as u8).min(63));
    let lm = mins.map(|m| (nearest_int(inv_min * m) as u8).min(63));
    (l, ls, lm, max_scale / 63.0, max_min / 63.0)
}

/// The group fit of `quantize_row_q4_K_impl` and `quantize_row_q5_K_impl`: groups fitted under
/// importance weights, then the scales and mins fitted under the groups' total weights.
pub(super) fn fit_impl(x: &[f32; QK_K], qw: &[f32; QK_K], nmax: i32) -> GroupFit {
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 32];
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    let mut weights = [0f32; 32];
    let mut sw = [0f32; 8];
    let mut mins = [0f32; 8];
    let mut scales = [0f32; 8];

    let sigma2 = 2.0 * sum_squares(x) / QK_K as f32;
    for j in 0..QK_K / 32 {
        let xg = &x[32 * j..32 * j + 32];
        for ((w, &q), &v) in weights.iter_mut().zip(&qw[32 * j..32 * j + 32]).zip(xg) {
            *w = q * (sigma2 + v * v).sqrt();
        }
        let mut sumw = 0f32;
        for &w in &weights {
            sumw += w;
        }
        sw[j] = sumw;
        (scales[j], mins[j]) = make_qkx3_quants(
            nmax,
            xg,
            &weights,
            &mut l[32 * j..32 * j + 32],
            &mut laux,
            -0.9,
            0.05,
            36,
            false,
        );
    }

    let d_block = make_qp_quants(63, &scales, &mut ls, &sw);
    let m_block = make_qp_quants(63, &mins, &mut lm, &sw);
    (l, ls, lm, d_block, m_block)
}

/// Stores the scales, requantizes every element against the stored (rounded) group scale and
/// min, and packs the nibbles.
fn finish_block(
    x: &[f32; QK_K],
    y: &mut BlockQ4K,
    mut l: [u8; QK_K],
    ls: &[u8; 8],
    lm: &[u8; 8],
    d: f32,
    dmin: f32,
) {
    y.scales = pack_scale_min_k4(ls, lm);
    y.d = to_f16(d);
    y.dmin = to_f16(dmin);
    requantize(x, &y.scales, from_f16(y.d), from_f16(y.dmin), 15, &mut l);
    for (q, pair) in y.qs.chunks_exact_mut(32).zip(l.chunks_exact(64)) {
        for (k, q) in q.iter_mut().enumerate() {
            *q = pair[k] | (pair[k + 32] << 4);
        }
    }
}

/// The last pass of Q4_K's and Q5_K's quantizers: each element rounded against its group's
/// stored scale and min; groups whose scale is zero keep the values of the fit.
pub(super) fn requantize(
    x: &[f32; QK_K],
    scales: &[u8; 12],
    d_all: f32,
    m_all: f32,
    nmax: i32,
    l: &mut [u8; QK_K],
) {
    for j in 0..QK_K / 32 {
        let (sc, m) = get_scale_min_k4(j, scales);
        let d = d_all * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = m_all * m as f32;
        for ii in 0..32 {
            let q = nearest_int((x[32 * j + ii] + dm) / d);
            l[32 * j + ii] = q.clamp(0, nmax) as u8;
        }
    }
}

/// The integer part shared by the Q4_K and Q5_K dots: `a` holds the block's unsigned values in
/// element order; returns ggml's eight lanes of Σ scale·q8·a and the Σ bsum·min correction.
#[inline(always)]
pub(super) fn dot_lanes(a: &[u8; QK_K], scales: &[u8; 12], y: &BlockQ8K) -> ([i32; 8], i32) {
    let (sc, mins) = unpack_scale_min_k4(scales);
    let mut sumi = 0i32;
    for (j, &s) in y.bsums.iter().enumerate() {
        sumi += s as i32 * mins[j / 2] as i32;
    }
    let mut aux32 = [0i32; 8];
    for (j, (a, q8)) in a.chunks_exact(8).zip(y.qs.chunks_exact(8)).enumerate() {
        let scale = sc[j / 4] as i32;
        for l in 0..8 {
            aux32[l] += scale * (q8[l] as i16 * a[l] as i16) as i32;
        }
    }
    (aux32, sumi)
}

/// The f32 accumulation shared by ggml's generic Q4_K and Q5_K dots.
pub(super) fn dot_accumulate<B>(
    w: &[B],
    x: &[BlockQ8K],
    lanes: impl Fn(&B, &BlockQ8K) -> ([i32; 8], i32),
    scales_of: impl Fn(&B) -> (f16, f16),
) -> f32 {
    let mut sums = [0f32; 8];
    let mut sumf = 0f32;
    for (b, y) in w.iter().zip(x) {
        let (aux32, sumi) = lanes(b, y);
        let (d, dmin) = scales_of(b);
        let d = from_f16(d) * y.d;
        for (s, &v) in sums.iter_mut().zip(&aux32) {
            *s += d * v as f32;
        }
        let dmin = from_f16(dmin) * y.d;
        sumf -= dmin * sumi as f32;
    }
    for s in sums {
        sumf += s;
    }
    sumf
}

/// `ggml_vec_dot_q4_K_q8_K_generic`.
pub(super) fn dot_portable(w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
    dot_accumulate(
        w,
        x,
        |b, y| {
            let mut a = [0u8; QK_K];
            for (pair, q) in a.chunks_exact_mut(64).zip(b.qs.chunks_exact(32)) {
                for (k, &v) in q.iter().enumerate() {
                    pair[k] = v & 0xF;
                    pair[k + 32] = v >> 4;
                }
            }
            dot_lanes(&a, &b.scales, y)
        },
        |b| (b.d, b.dmin),
    )
}
