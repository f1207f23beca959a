//! Q6_K: 16 groups of 16 six-bit values (low nibble in `ql`, two high bits in `qh`), each group
//! with a signed 8-bit scale under one fp16 super-block scale; x ≈ d·sc·q, q ∈ [−32, 31].
//! 6.5625 bits per weight.

use half::f16;

use super::common::{GROUP_MAX_EPS, from_f16, make_qx_quants, nearest_int, to_f16};
use super::{BlockQ8K, QK_K};
use crate::quant::{Block, GgmlType};

/// ggml's `block_q6_K`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: f16,
}

const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

impl Block for BlockQ6K {
    const TYPE: GgmlType = GgmlType::Q6_K;
    const SIZE: usize = QK_K;
    type Dot = BlockQ8K;

    /// `quantize_row_q6_K_ref` and `quantize_row_q6_K_impl` differ only in the group weights:
    /// x² without an imatrix, the raw importance weights with one.
    fn quantize(x: &[f32], out: &mut [Self], imatrix: Option<&[f32]>) {
        for (i, (x, y)) in x.chunks_exact(QK_K).zip(out.iter_mut()).enumerate() {
            let qw = imatrix.map(|w| &w[QK_K * i..QK_K * (i + 1)]);
            quantize_block(x.try_into().unwrap(), y, qw);
        }
    }

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
            let d = from_f16(b.d);
            let values = unpack_values(b);
            for (i, (y, &q)) in y.iter_mut().zip(&values).enumerate() {
                *y = d * b.scales[i / 16] as f32 * q as f32;
            }
        }
    }

    fn dot(w: &[Self], x: &[BlockQ8K]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if super::has_avx2() {
            // SAFETY: AVX2 and FMA were detected at run time.
            return unsafe { super::avx2::dot_q6_k(w, x) };
        }
        dot_portable(w, x)
    }
}

fn quantize_block(x: &[f32; QK_K], y: &mut BlockQ6K, qw: Option<&[f32]>) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];

    let mut max_scale = 0f32;
    let mut max_abs_scale = 0f32;
    for (ib, scale_ib) in scales.iter_mut().enumerate() {
        let range = 16 * ib..16 * ib + 16;
        let scale = make_qx_quants(
            32,
            &x[range.clone()],
            &mut l[range.clone()],
            1,
            qw.map(|w| &w[range]),
        );
        *scale_ib = scale;
        if scale.abs() > max_abs_scale {
            max_abs_scale = scale.abs();
            max_scale = scale;
        }
    }

    if max_abs_scale < GROUP_MAX_EPS {
        *y = bytemuck::Zeroable::zeroed();
        return;
    }

    let iscale = -128.0 / max_scale;
    y.d = to_f16(1.0 / iscale);
    for (s, &v) in y.scales.iter_mut().zip(&scales) {
        *s = nearest_int(iscale * v).min(127) as i8;
    }

    let d_all = from_f16(y.d);
    for j in 0..QK_K / 16 {
        let d = d_all * y.scales[j] as f32;
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            let q = nearest_int(x[16 * j + ii] / d).clamp(-32, 31);
            l[16 * j + ii] = (q + 32) as i8;
        }
    }

    let l = l.map(|v| v as u8);
    for ((ql, qh), l) in
        y.ql.chunks_exact_mut(64)
            .zip(y.qh.chunks_exact_mut(32))
            .zip(l.chunks_exact(128))
    {
        for k in 0..32 {
            let (l0, l1, l2, l3) = (l[k], l[k + 32], l[k + 64], l[k + 96]);
            ql[k] = (l0 & 0xF) | ((l2 & 0xF) << 4);
            ql[k + 32] = (l1 & 0xF) | ((l3 & 0xF) << 4);
            qh[k] = (l0 >> 4) | ((l1 >> 4) << 2) | ((l2 >> 4) << 4) | ((l3 >> 4) << 6);
        }
    }
}

/// The 256 signed 6-bit values of a block, in element order.
#[inline(always)]
fn unpack_values(b: &BlockQ6K) -> [i8; QK_K] {
    let mut a = [0i8; QK_K];
    for ((a, ql), qh) in a
        .chunks_exact_mut(128)
        .zip(b.ql.chunks_exact(64))
        .zip(b.qh.chunks_exact(32))
    {
        for l in 0..32 {
            a[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            a[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            a[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            a[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    a
}

/// `ggml_vec_dot_q6_K_q8_K_generic`.
pub(super) fn dot_portable(w: &[BlockQ6K], x: &[BlockQ8K]) -> f32 {
    let mut sums = [0f32; 8];
    for (b, y) in w.iter().zip(x) {
        let a = unpack_values(b);
        let mut aux32 = [0i32; 8];
        for (j, (a, q8)) in a.chunks_exact(8).zip(y.qs.chunks_exact(8)).enumerate() {
            let scale = b.scales[j / 2] as i32;
            for l in 0..8 {
                aux32[l] += scale * (q8[l] as i16 * a[l] as i16) as i32;
            }
        }
        let d = from_f16(b.d) * y.d;
        for (s, &v) in sums.iter_mut().zip(&aux32) {
            *s += d * v as f32;
        }
    }
    let mut sumf = 0f32;
    for s in sums {
        sumf += s;
    }
    sumf
}
