//! Q2_K: 16 groups of 16 two-bit values, each group with a 4-bit scale and a 4-bit min under
//! two fp16 super-block scales; x ≈ d·sc·q − dmin·m. 2.625 bits per weight.

use half::f16;

use super::common::{
    from_f16, make_qkx2_quants, make_qkx3_quants, make_qp_quants, nearest_int, pack_2bit,
    sum_squares, to_f16,
};
use super::{BlockQ8K, QK_K};
use crate::quant::{Block, GgmlType};

/// ggml's `block_q2_K`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ2K {
    /// Low nibble: the group's scale; high nibble: its min.
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: f16,
    pub dmin: f16,
}

const _: () = assert!(std::mem::size_of::<BlockQ2K>() == 84);

impl Block for BlockQ2K {
    const TYPE: GgmlType = GgmlType::Q2_K;
    const SIZE: usize = QK_K;
    type Dot = BlockQ8K;

    fn quantize(x: &[f32], out: &mut [Self], imatrix: Option<&[f32]>) {
        let xs = x.chunks_exact(QK_K).zip(out.iter_mut());
        match imatrix {
            None => xs.for_each(|(x, y)| quantize_block_ref(x.try_into().unwrap(), y)),
            Some(qw) => xs.zip(qw.chunks_exact(QK_K)).for_each(|((x, y), qw)| {
                quantize_block_impl(x.try_into().unwrap(), y, qw.try_into().unwrap())
            }),
        }
    }

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
            dequantize_block(b, y.try_into().unwrap());
        }
    }

    fn dot(w: &[Self], x: &[BlockQ8K]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if super::has_avx2() {
            // SAFETY: AVX2 and FMA were detected at run time.
            return unsafe { super::avx2::dot_q2_k(w, x) };
        }
        dot_portable(w, x)
    }
}

/// The requantization pass and bit packing that both quantizers end with: every element is
/// rounded again against the group's scale and min as stored (fp16 × 4-bit).
fn finish_block(x: &[f32; QK_K], y: &mut BlockQ2K, l: &mut [u8; QK_K]) {
    let d_all = from_f16(y.d);
    let m_all = from_f16(y.dmin);
    for j in 0..QK_K / 16 {
        let d = d_all * (y.scales[j] & 0xF) as f32;
        if d == 0.0 {
            continue;
        }
        let dm = m_all * (y.scales[j] >> 4) as f32;
        for ii in 0..16 {
            let q = nearest_int((x[16 * j + ii] + dm) / d);
            l[16 * j + ii] = q.clamp(0, 3) as u8;
        }
    }
    pack_2bit(l, &mut y.qs);
}

/// `quantize_row_q2_K_ref` for one block.
fn quantize_block_ref(x: &[f32; QK_K], y: &mut BlockQ2K) {
    const Q4SCALE: f32 = 15.0;
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 16];
    let mut weights = [0f32; 16];
    let mut mins = [0f32; QK_K / 16];
    let mut scales = [0f32; QK_K / 16];

    let mut max_scale = 0f32;
    let mut max_min = 0f32;
    for j in 0..QK_K / 16 {
        let xg = &x[16 * j..16 * j + 16];
        for (w, v) in weights.iter_mut().zip(xg) {
            *w = v.abs();
        }
        (scales[j], mins[j]) = make_qkx2_quants(
            3,
            xg,
            &weights,
            &mut l[16 * j..16 * j + 16],
            &mut laux,
            -0.5,
            0.1,
            15,
            true,
        );
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }

    if max_scale > 0.0 {
        let iscale = Q4SCALE / max_scale;
        for (s, &v) in y.scales.iter_mut().zip(&scales) {
            *s = nearest_int(iscale * v) as u8;
        }
        y.d = to_f16(max_scale / Q4SCALE);
    } else {
        y.scales = [0; QK_K / 16];
        y.d = to_f16(0.0);
    }
    if max_min > 0.0 {
        let iscale = Q4SCALE / max_min;
        for (s, &m) in y.scales.iter_mut().zip(&mins) {
            *s |= (nearest_int(iscale * m) << 4) as u8;
        }
        y.dmin = to_f16(max_min / Q4SCALE);
    } else {
        y.dmin = to_f16(0.0);
    }
    finish_block(x, y, &mut l);
}

/// `quantize_row_q2_K_impl` for one block: importance-weighted group fits, then the group
/// scales and mins themselves fitted under the groups' total weights.
fn quantize_block_impl(x: &[f32; QK_K], y: &mut BlockQ2K, qw: &[f32; QK_K]) {
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 16];
    let mut mins = [0f32; QK_K / 16];
    let mut scales = [0f32; QK_K / 16];
    let mut sw = [0f32; QK_K / 16];
    let mut weight = [0f32; 16];
    let mut ls = [0u8; QK_K / 16];
    let mut lm = [0u8; QK_K / 16];

    let sigma2 = sum_squares(x) / QK_K as f32;
    for j in 0..QK_K / 16 {
        let xg = &x[16 * j..16 * j + 16];
        for ((w, &q), &v) in weight.iter_mut().zip(&qw[16 * j..16 * j + 16]).zip(xg) {
            *w = q * (sigma2 + v * v).sqrt();
        }
        for &w in &weight {
            sw[j] += w;
        }
        (scales[j], mins[j]) = make_qkx3_quants(
            3,
            xg,
            &weight,
            &mut l[16 * j..16 * j + 16],
            &mut laux,
            -0.9,
            0.05,
            36,
            false,
        );
    }

    let dm = make_qp_quants(15, &scales, &mut ls, &sw);
    let mm = make_qp_quants(15, &mins, &mut lm, &sw);
    y.d = to_f16(dm);
    y.dmin = to_f16(mm);
    for j in 0..QK_K / 16 {
        y.scales[j] = ls[j] | (lm[j] << 4);
    }
    finish_block(x, y, &mut l);
}

/// `dequantize_row_q2_K` for one block.
fn dequantize_block(b: &BlockQ2K, y: &mut [f32; QK_K]) {
    let d = from_f16(b.d);
    let min = from_f16(b.dmin);
    let mut out = y.iter_mut();
    let mut is = 0;
    for q in b.qs.chunks_exact(32) {
        for shift in [0, 2, 4, 6] {
            for half in [&q[..16], &q[16..]] {
                let sc = b.scales[is];
                is += 1;
                let dl = d * (sc & 0xF) as f32;
                let ml = min * (sc >> 4) as f32;
                for (&v, o) in half.iter().zip(out.by_ref()) {
                    *o = dl * ((v >> shift) & 3) as f32 - ml;
                }
            }
        }
    }
}

/// `ggml_vec_dot_q2_K_q8_K_generic`: integer sums per group, the mins folded in through the
/// activations' group sums (`bsums`).
pub(super) fn dot_portable(w: &[BlockQ2K], x: &[BlockQ8K]) -> f32 {
    let mut sumf = 0f32;
    for (b, y) in w.iter().zip(x) {
        let mut summs = 0i32;
        for (&s, &sc) in y.bsums.iter().zip(&b.scales) {
            summs += s as i32 * (sc >> 4) as i32;
        }
        let dall = y.d * from_f16(b.d);
        let dmin = y.d * from_f16(b.dmin);

        let mut isum = 0i32;
        let mut is = 0;
        let mut q8 = y.qs.chunks_exact(16);
        for q2 in b.qs.chunks_exact(32) {
            for shift in [0, 2, 4, 6] {
                for half in [&q2[..16], &q2[16..]] {
                    let q8 = q8.next().unwrap();
                    let isuml: i32 = half
                        .iter()
                        .zip(q8)
                        .map(|(&q, &a)| a as i32 * ((q >> shift) & 3) as i32)
                        .sum();
                    isum += (b.scales[is] & 0xF) as i32 * isuml;
                    is += 1;
                }
            }
        }
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}
