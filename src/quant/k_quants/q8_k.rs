//! Q8_K: the activation type of every K-quant dot product. 256 int8 values under an f32 scale,
//! with the sums of each 16 values precomputed for the weight types' min corrections.

use super::QK_K;
use super::common::nearest_int;
use crate::quant::{Block, GgmlType};

/// ggml's `block_q8_K`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    /// Σ qs over each group of 16.
    pub bsums: [i16; QK_K / 16],
}

const _: () = assert!(std::mem::size_of::<BlockQ8K>() == 292);

impl Block for BlockQ8K {
    const TYPE: GgmlType = GgmlType::Q8_K;
    const SIZE: usize = QK_K;
    type Dot = BlockQ8K;

    /// `quantize_row_q8_K_ref`; ggml has no importance-weighted Q8_K quantizer, so `imatrix`
    /// is ignored.
    fn quantize(x: &[f32], out: &mut [Self], _imatrix: Option<&[f32]>) {
        for (x, y) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
            quantize_block(x, y);
        }
    }

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
            for (y, &q) in y.iter_mut().zip(&b.qs) {
                *y = b.d * q as f32;
            }
        }
    }

    /// ggml has no Q8_K × Q8_K dot; this is the exact integer dot per block, scaled once.
    fn dot(w: &[Self], x: &[Self]) -> f32 {
        let mut sumf = 0f32;
        for (a, b) in w.iter().zip(x) {
            let isum: i32 =
                a.qs.iter()
                    .zip(&b.qs)
                    .map(|(&p, &q)| p as i32 * q as i32)
                    .sum();
            sumf += a.d * b.d * isum as f32;
        }
        sumf
    }
}

fn quantize_block(x: &[f32], y: &mut BlockQ8K) {
    let mut max = 0f32;
    let mut amax = 0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        // ggml leaves `bsums` untouched here; callers hand it zeroed memory.
        *y = bytemuck::Zeroable::zeroed();
        return;
    }
    // -127 rather than -128 keeps every value's negation in range, which ggml's IQ AVX2 dots
    // rely on; kept for bit-exactness.
    let iscale = -127.0 / max;
    for (q, &v) in y.qs.iter_mut().zip(x) {
        *q = nearest_int(iscale * v).min(127) as i8;
    }
    for (s, q) in y.bsums.iter_mut().zip(y.qs.chunks_exact(16)) {
        *s = q.iter().map(|&v| v as i16).sum();
    }
    y.d = 1.0 / iscale;
}
