//! Q5_K: Q4_K's layout plus one high bit per value in `qh`; 8 groups of 32 five-bit values,
//! x ≈ d·sc·q − dmin·m. 5.5 bits per weight.

use half::f16;

use super::common::{from_f16, pack_scale_min_k4, to_f16, unpack_scale_min_k4};
use super::q4_k::{dot_accumulate, dot_lanes, fit_impl, fit_ref, requantize};
use super::{BlockQ8K, QK_K};
use crate::quant::{Block, GgmlType};

/// ggml's `block_q5_K`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ5K {
    pub d: f16,
    pub dmin: f16,
    /// Eight 6-bit scales and eight 6-bit mins, packed as in Q4_K.
    pub scales: [u8; 12],
    /// Bit `k` of byte `l`: the high bit of element `32·k + l`.
    pub qh: [u8; QK_K / 8],
    /// The low four bits, packed as Q4_K's `qs`.
    pub qs: [u8; QK_K / 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);

impl Block for BlockQ5K {
    const TYPE: GgmlType = GgmlType::Q5_K;
    const SIZE: usize = QK_K;
    type Dot = BlockQ8K;

    fn quantize(x: &[f32], out: &mut [Self], imatrix: Option<&[f32]>) {
        let xs = x.chunks_exact(QK_K).zip(out.iter_mut());
        match imatrix {
            None => xs.for_each(|(x, y)| {
                let (l, ls, lm, d, dmin) = fit_ref(x.try_into().unwrap(), 31, -0.5, 0.1, 15);
                finish_block(x.try_into().unwrap(), y, l, &ls, &lm, d, dmin);
            }),
            Some(qw) => xs.zip(qw.chunks_exact(QK_K)).for_each(|((x, y), qw)| {
                let (l, ls, lm, d, dmin) =
                    fit_impl(x.try_into().unwrap(), qw.try_into().unwrap(), 31);
                // Unlike Q4_K's, ggml's Q5_K clamps the fitted 6-bit scales and mins.
                finish_block(
                    x.try_into().unwrap(),
                    y,
                    l,
                    &ls.map(|v| v.min(63)),
                    &lm.map(|v| v.min(63)),
                    d,
                    dmin,
                );
            }),
        }
    }

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
            let d = from_f16(b.d);
            let min = from_f16(b.dmin);
            let (sc, m) = unpack_scale_min_k4(&b.scales);
            for (p, (ql, y)) in
                b.qs.chunks_exact(32)
                    .zip(y.chunks_exact_mut(64))
                    .enumerate()
            {
                let (d1, m1) = (d * sc[2 * p] as f32, min * m[2 * p] as f32);
                let (d2, m2) = (d * sc[2 * p + 1] as f32, min * m[2 * p + 1] as f32);
                let (u1, u2) = (1u8 << (2 * p), 2u8 << (2 * p));
                let (lo, hi) = y.split_at_mut(32);
                for (((lo, hi), &v), &h) in lo.iter_mut().zip(hi).zip(ql).zip(&b.qh) {
                    let h1 = if h & u1 != 0 { 16 } else { 0 };
                    let h2 = if h & u2 != 0 { 16 } else { 0 };
                    *lo = d1 * ((v & 0xF) + h1) as f32 - m1;
                    *hi = d2 * ((v >> 4) + h2) as f32 - m2;
                }
            }
        }
    }

    fn dot(w: &[Self], x: &[BlockQ8K]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if super::has_avx2() {
            // SAFETY: AVX2 and FMA were detected at run time.
            return unsafe { super::avx2::dot_q5_k(w, x) };
        }
        dot_portable(w, x)
    }
}

/// Stores the scales, requantizes against them and splits each value into nibble and high bit.
fn finish_block(
    x: &[f32; QK_K],
    y: &mut BlockQ5K,
    mut l: [u8; QK_K],
    ls: &[u8; 8],
    lm: &[u8; 8],
    d: f32,
    dmin: f32,
) {
    y.scales = pack_scale_min_k4(ls, lm);
    y.d = to_f16(d);
    y.dmin = to_f16(dmin);
    requantize(x, &y.scales, from_f16(y.d), from_f16(y.dmin), 31, &mut l);

    y.qh = [0; QK_K / 8];
    for (p, (ql, pair)) in
        y.qs.chunks_exact_mut(32)
            .zip(l.chunks_exact(64))
            .enumerate()
    {
        let (m1, m2) = (1u8 << (2 * p), 2u8 << (2 * p));
        for (j, ql) in ql.iter_mut().enumerate() {
            let mut l1 = pair[j];
            if l1 > 15 {
                l1 -= 16;
                y.qh[j] |= m1;
            }
            let mut l2 = pair[j + 32];
            if l2 > 15 {
                l2 -= 16;
                y.qh[j] |= m2;
            }
            *ql = l1 | (l2 << 4);
        }
    }
}

/// `ggml_vec_dot_q5_K_q8_K_generic`.
pub(super) fn dot_portable(w: &[BlockQ5K], x: &[BlockQ8K]) -> f32 {
    dot_accumulate(
        w,
        x,
        |b, y| {
            let mut a = [0u8; QK_K];
            for (p, (pair, q)) in a
                .chunks_exact_mut(64)
                .zip(b.qs.chunks_exact(32))
                .enumerate()
            {
                let (m1, m2) = (1u8 << (2 * p), 2u8 << (2 * p));
                for (k, (&v, &h)) in q.iter().zip(&b.qh).enumerate() {
                    pair[k] = (v & 0xF) + if h & m1 != 0 { 16 } else { 0 };
                    pair[k + 32] = (v >> 4) + if h & m2 != 0 { 16 } else { 0 };
                }
            }
            dot_lanes(&a, &b.scales, y)
        },
        |b| (b.d, b.dmin),
    )
}
