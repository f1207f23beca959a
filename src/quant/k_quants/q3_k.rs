//! Q3_K: 16 groups of 16 three-bit values (two low bits in `qs`, the high bit in `hmask`), each
//! group with a signed 6-bit scale under one fp16 super-block scale; x ≈ d·sc·q, q ∈ [−4, 3].
//! 3.4375 bits per weight.

use half::f16;

use super::common::{
    from_f16, make_q3_quants, make_qx_quants, nearest_int, pack_2bit, sum_squares, to_f16,
};
use super::{BlockQ8K, QK_K};
use crate::quant::{Block, GgmlType};

/// ggml's `block_q3_K`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ3K {
    /// Bit `k` of byte `m`: the high bit of element `32·k + m`.
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    /// Sixteen 6-bit scales, offset by 32: low nibbles in bytes 0..8, high 2 bits in 8..12.
    pub scales: [u8; 12],
    pub d: f16,
}

const _: () = assert!(std::mem::size_of::<BlockQ3K>() == 110);

impl Block for BlockQ3K {
    const TYPE: GgmlType = GgmlType::Q3_K;
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
            return unsafe { super::avx2::dot_q3_k(w, x) };
        }
        dot_portable(w, x)
    }
}

/// Packs sixteen 6-bit values (already offset to `0..64`) into Q3_K's 12 scale bytes.
fn pack_scales(ls: impl Iterator<Item = i32>) -> [u8; 12] {
    let mut s = [0u8; 12];
    for (j, l) in ls.enumerate() {
        if j < 8 {
            s[j] = (l & 0xF) as u8;
        } else {
            s[j - 8] |= ((l & 0xF) << 4) as u8;
        }
        s[j % 4 + 8] |= ((l >> 4) << (2 * (j / 4))) as u8;
    }
    s
}

/// The sixteen signed group scales (`sc − 32`).
#[inline(always)]
pub(super) fn unpack_scales(s: &[u8; 12]) -> [i8; 16] {
    std::array::from_fn(|j| {
        let low = if j < 8 { s[j] & 0xF } else { s[j - 8] >> 4 };
        (low | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) as i8 - 32
    })
}

/// The requantization pass and bit packing that both quantizers end with.
fn finish_block(x: &[f32; QK_K], y: &mut BlockQ3K, l: &mut [i8; QK_K]) {
    let d_all = from_f16(y.d);
    for (j, sc) in unpack_scales(&y.scales).into_iter().enumerate() {
        let d = d_all * sc as f32;
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            let q = nearest_int(x[16 * j + ii] / d).clamp(-4, 3);
            l[16 * j + ii] = (q + 4) as i8;
        }
    }

    // The high bit of the first 32 values goes to bit 0 of hmask[0..32], the next 32 to bit 1...
    y.hmask = [0; QK_K / 8];
    let mut low = [0u8; QK_K];
    for (j, (&v, lo)) in l.iter().zip(&mut low).enumerate() {
        let mut v = v as u8;
        if v > 3 {
            y.hmask[j % 32] |= 1 << (j / 32);
            v -= 4;
        }
        *lo = v;
    }
    pack_2bit(&low, &mut y.qs);
}

/// `quantize_row_q3_K_ref` for one block.
fn quantize_block_ref(x: &[f32; QK_K], y: &mut BlockQ3K) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];

    let mut max_scale = 0f32;
    let mut amax = 0f32;
    for j in 0..QK_K / 16 {
        scales[j] = make_q3_quants(
            4,
            &x[16 * j..16 * j + 16],
            &mut l[16 * j..16 * j + 16],
            true,
        );
        let scale = scales[j].abs();
        if scale > amax {
            amax = scale;
            max_scale = scales[j];
        }
    }

    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        // ggml rounds into an int8_t before clamping, so out-of-range values wrap first.
        y.scales = pack_scales(
            scales
                .iter()
                .map(|&s| (nearest_int(iscale * s) as i8).clamp(-32, 31) as i32 + 32),
        );
        y.d = to_f16(1.0 / iscale);
    } else {
        y.scales = [0; 12];
        y.d = to_f16(0.0);
    }
    finish_block(x, y, &mut l);
}

/// `quantize_row_q3_K_impl` for one block.
fn quantize_block_impl(x: &[f32; QK_K], y: &mut BlockQ3K, qw: &[f32; QK_K]) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];
    let mut weight = [0f32; 16];
    let mut sw = [0f32; QK_K / 16];
    let mut ls = [0i8; QK_K / 16];

    let sigma2 = 2.0 * sum_squares(x) / QK_K as f32;
    for j in 0..QK_K / 16 {
        let xg = &x[16 * j..16 * j + 16];
        for ((w, &q), &v) in weight.iter_mut().zip(&qw[16 * j..16 * j + 16]).zip(xg) {
            *w = q * (sigma2 + v * v).sqrt();
        }
        let mut sumw = 0f32;
        for &w in &weight {
            sumw += w;
        }
        sw[j] = sumw;
        scales[j] = make_qx_quants(4, xg, &mut l[16 * j..16 * j + 16], 1, Some(&weight));
    }

    let d_block = make_qx_quants(32, &scales, &mut ls, 1, Some(&sw));
    y.scales = pack_scales(ls.iter().map(|&v| v as i32));
    y.d = to_f16(d_block);
    finish_block(x, y, &mut l);
}

/// `dequantize_row_q3_K` for one block.
fn dequantize_block(b: &BlockQ3K, y: &mut [f32; QK_K]) {
    let d_all = from_f16(b.d);
    let scales = unpack_scales(&b.scales);
    let mut out = y.iter_mut();
    let mut is = 0;
    let mut m = 1u8;
    for q in b.qs.chunks_exact(32) {
        for shift in [0, 2, 4, 6] {
            for (q, hm) in [(&q[..16], &b.hmask[..16]), (&q[16..], &b.hmask[16..])] {
                let dl = d_all * scales[is] as f32;
                is += 1;
                for ((&v, &h), o) in q.iter().zip(hm).zip(out.by_ref()) {
                    let hi = if h & m != 0 { 0 } else { 4 };
                    *o = dl * (((v >> shift) & 3) as i32 - hi) as f32;
                }
            }
            m <<= 1;
        }
    }
}

/// The 256 signed 3-bit values of a block, in element order.
#[inline(always)]
fn unpack_values(b: &BlockQ3K) -> [i8; QK_K] {
    std::array::from_fn(|i| {
        let (half, k) = (i / 128, i % 128);
        let (shift, l) = (2 * (k / 32), k % 32);
        let low = ((b.qs[32 * half + l] >> shift) & 3) as i8;
        let high = b.hmask[l] & (1 << (i / 32)) != 0;
        low - if high { 0 } else { 4 }
    })
}

/// `ggml_vec_dot_q3_K_q8_K_generic`: eight lanes of integer sums per block, scaled in f32 into
/// eight running sums that are added up at the end (the order ggml uses).
pub(super) fn dot_portable(w: &[BlockQ3K], x: &[BlockQ8K]) -> f32 {
    let mut sums = [0f32; 8];
    for (b, y) in w.iter().zip(x) {
        let a = unpack_values(b);
        let scales = unpack_scales(&b.scales);
        let mut aux32 = [0i32; 8];
        for (j, (a, q8)) in a.chunks_exact(8).zip(y.qs.chunks_exact(8)).enumerate() {
            let scale = scales[j / 2] as i32;
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
