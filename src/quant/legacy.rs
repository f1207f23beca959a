//! ggml's "legacy" 32-element block types: Q4_0, Q5_0, Q5_1 (weights) and Q8_0, Q8_1 (weights
//! and the activation formats their dot products take).
//!
//! Quantizers follow ggml-quants.c operation for operation (ggml-base is built without FMA, so
//! neither side contracts); the portable dots follow ggml-cpu's generic code and the AVX2 dots
//! follow its arch/x86 code, lane order included.

use super::float::F16;
use super::k_quants::common::{c_max, make_qkx3_quants, make_qx_quants};
use super::{Block, GgmlType, RowCodec};
use bytemuck::{Pod, Zeroable};

const QK: usize = 32;

/// 4-bit quants around zero: value = (q - 8) * d.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_0 {
    pub d: F16,
    /// Element j in the low nibble of byte j, element j + 16 in its high nibble.
    pub qs: [u8; QK / 2],
}

/// 5-bit quants around zero: value = (q - 16) * d; the fifth bits live in `qh`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5_0 {
    pub d: F16,
    /// Bit j of this little-endian u32 is the fifth bit of element j.
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

/// 5-bit quants with a minimum: value = q * d + m.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5_1 {
    pub d: F16,
    pub m: F16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

/// 8-bit quants: value = q * d.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8_0 {
    pub d: F16,
    pub qs: [i8; QK],
}

/// 8-bit quants with `s` = d * Σq precomputed, so that a dot with Q5_1's minimum is one multiply.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8_1 {
    pub d: F16,
    pub s: F16,
    pub qs: [i8; QK],
}

const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(std::mem::size_of::<BlockQ8_1>() == 36);

pub(super) fn codec(ty: GgmlType) -> Option<&'static dyn RowCodec> {
    match ty {
        GgmlType::Q4_0 => Some(super::codec_of::<BlockQ4_0>()),
        GgmlType::Q5_0 => Some(super::codec_of::<BlockQ5_0>()),
        GgmlType::Q5_1 => Some(super::codec_of::<BlockQ5_1>()),
        GgmlType::Q8_0 => Some(super::codec_of::<BlockQ8_0>()),
        // Not a weight type kiln stores, but Q5_1's activations are quantized through it.
        GgmlType::Q8_1 => Some(super::codec_of::<BlockQ8_1>()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Scalar helpers with C semantics
// ---------------------------------------------------------------------------------------------

/// C's float-to-integer conversion as x86 compilers emit it (cvttss2si): truncation toward zero,
/// and i32::MIN for NaN or out-of-range input, where Rust's `as` would saturate. ggml stores
/// such results into int8_t/uint8_t, which keeps the low byte: 0 for every out-of-range value.
#[inline]
fn cvtt(v: f32) -> i32 {
    if (-2_147_483_648.0..2_147_483_648.0).contains(&v) {
        v as i32
    } else {
        i32::MIN
    }
}

/// The row's mean square, which `quantize_row_q*_impl` mixes into every element's weight.
fn sigma2_of(row: &[f32]) -> f32 {
    let mut sum_x2 = 0f32;
    for &v in row {
        sum_x2 += v * v;
    }
    sum_x2 / row.len() as f32
}

/// Splits 32 5-bit quants into low nibbles (element j and j + 16 share byte j) and the fifth bits.
fn pack_5bit(l: impl Fn(usize) -> u8) -> ([u8; 16], [u8; 4]) {
    let mut qs = [0u8; 16];
    let mut qh = 0u32;
    for (j, q) in qs.iter_mut().enumerate() {
        let (xi0, xi1) = (l(j), l(j + 16));
        *q = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
        qh |= (((xi0 & 0x10) >> 4) as u32) << j;
        qh |= (((xi1 & 0x10) >> 4) as u32) << (j + 16);
    }
    (qs, qh.to_le_bytes())
}

fn blocks_of_row(x: &[f32]) -> impl Iterator<Item = &[f32; QK]> {
    x.chunks_exact(QK)
        .map(|c| c.try_into().expect("chunks_exact yields QK elements"))
}

/// The signed value of largest magnitude (its first occurrence), as ggml's symmetric quantizers
/// pick the value their scale maps to the most negative quant.
fn signed_amax(xb: &[f32; QK]) -> f32 {
    let mut amax = 0f32;
    let mut max = 0f32;
    for &v in xb {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

// ---------------------------------------------------------------------------------------------
// Q4_0
// ---------------------------------------------------------------------------------------------

impl BlockQ4_0 {
    fn quantize_ref(xb: &[f32; QK]) -> Self {
        let max = signed_amax(xb);
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q = |v: f32| (cvtt(v * id + 8.5) as i8 as i32).min(15) as u8;
        let mut qs = [0u8; 16];
        for j in 0..16 {
            qs[j] = q(xb[j]) | (q(xb[j + 16]) << 4);
        }
        BlockQ4_0 {
            d: F16::from_f32(d),
            qs,
        }
    }

    fn quantize_weighted(xb: &[f32; QK], weight: &[f32; QK]) -> Self {
        let mut l = [0i8; QK];
        let d = make_qx_quants(8, xb, &mut l, 1, Some(weight));
        let mut qs = [0u8; 16];
        for j in 0..16 {
            qs[j] = (l[j] as u8) | ((l[j + 16] as u8) << 4);
        }
        BlockQ4_0 {
            d: F16::from_f32(d),
            qs,
        }
    }
}

impl Block for BlockQ4_0 {
    const TYPE: GgmlType = GgmlType::Q4_0;
    const SIZE: usize = QK;
    type Dot = BlockQ8_0;

    fn quantize(x: &[f32], out: &mut [Self], imatrix: Option<&[f32]>) {
        match imatrix {
            None => {
                for (o, xb) in out.iter_mut().zip(blocks_of_row(x)) {
                    *o = Self::quantize_ref(xb);
                }
            }
            Some(qw) => {
                let sigma2 = sigma2_of(x);
                for (i, (o, xb)) in out.iter_mut().zip(blocks_of_row(x)).enumerate() {
                    let w = block_weights(sigma2, xb, &qw[i * QK..(i + 1) * QK]);
                    *o = Self::quantize_weighted(xb, &w);
                }
            }
        }
    }

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
            let d = b.d.to_f32();
            for j in 0..16 {
                y[j] = ((b.qs[j] & 0x0F) as i32 - 8) as f32 * d;
                y[j + 16] = ((b.qs[j] >> 4) as i32 - 8) as f32 * d;
            }
        }
    }

    fn dot(w: &[Self], x: &[BlockQ8_0]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if super::simd::has_avx2_fma() {
            // SAFETY: the required CPU features were detected just above.
            return unsafe { avx2::dot_q4_0_q8_0(w, x) };
        }
        dot_q4_0_q8_0(w, x)
    }
}

fn dot_q4_0_q8_0(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0f32;
    for (a, b) in w.iter().zip(x) {
        let (mut sumi0, mut sumi1) = (0i32, 0i32);
        for j in 0..16 {
            let v0 = (a.qs[j] & 0x0F) as i32 - 8;
            let v1 = (a.qs[j] >> 4) as i32 - 8;
            sumi0 += v0 * b.qs[j] as i32;
            sumi1 += v1 * b.qs[j + 16] as i32;
        }
        let sumi = sumi0 + sumi1;
        sumf += sumi as f32 * a.d.to_f32() * b.d.to_f32();
    }
    sumf
}

/// The per-element weights of ggml's `quantize_row_q*_impl`: importance times the element's
/// magnitude against the row's mean square.
fn block_weights(sigma2: f32, xb: &[f32; QK], qw: &[f32]) -> [f32; QK] {
    std::array::from_fn(|j| qw[j] * (sigma2 + xb[j] * xb[j]).sqrt())
}

// ---------------------------------------------------------------------------------------------
// Q5_0
// ---------------------------------------------------------------------------------------------

impl BlockQ5_0 {
    fn quantize_ref(xb: &[f32; QK]) -> Self {
        let max = signed_amax(xb);
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q = |v: f32| (cvtt(v * id + 16.5) as i8 as i32).min(31) as u8;
        let (qs, qh) = pack_5bit(|j| q(xb[j]));
        BlockQ5_0 {
            d: F16::from_f32(d),
            qh,
            qs,
        }
    }

    fn quantize_weighted(xb: &[f32; QK], weight: &[f32; QK]) -> Self {
        let mut l = [0i8; QK];
        let d = make_qx_quants(16, xb, &mut l, 1, Some(weight));
        let (qs, qh) = pack_5bit(|j| l[j] as u8);
        BlockQ5_0 {
            d: F16::from_f32(d),
            qh,
            qs,
        }
    }
}

impl Block for BlockQ5_0 {
    const TYPE: GgmlType = GgmlType::Q5_0;
    const SIZE: usize = QK;
    type Dot = BlockQ8_0;

    fn quantize(x: &[f32], out: &mut [Self], imatrix: Option<&[f32]>) {
        match imatrix {
            None => {
                for (o, xb) in out.iter_mut().zip(blocks_of_row(x)) {
                    *o = Self::quantize_ref(xb);
                }
            }
            Some(qw) => {
                let sigma2 = sigma2_of(x);
                for (i, (o, xb)) in out.iter_mut().zip(blocks_of_row(x)).enumerate() {
                    let w = block_weights(sigma2, xb, &qw[i * QK..(i + 1) * QK]);
                    *o = Self::quantize_weighted(xb, &w);
                }
            }
        }
    }

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
            let d = b.d.to_f32();
            let qh = u32::from_le_bytes(b.qh);
            for j in 0..16 {
                let xh_0 = ((qh >> j) << 4) & 0x10;
                let xh_1 = (qh >> (j + 12)) & 0x10;
                let x0 = ((b.qs[j] & 0x0F) as u32 | xh_0) as i32 - 16;
                let x1 = ((b.qs[j] >> 4) as u32 | xh_1) as i32 - 16;
                y[j] = x0 as f32 * d;
                y[j + 16] = x1 as f32 * d;
            }
        }
    }

    fn dot(w: &[Self], x: &[BlockQ8_0]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if super::simd::has_avx2_fma() {
            // SAFETY: the required CPU features were detected just above.
            return unsafe { avx2::dot_q5_0_q8_0(w, x) };
        }
        dot_q5_0_q8_0(w, x)
    }
}

fn dot_q5_0_q8_0(w: &[BlockQ5_0], x: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0f32;
    for (a, b) in w.iter().zip(x) {
        let qh = u32::from_le_bytes(a.qh);
        let (mut sumi0, mut sumi1) = (0i32, 0i32);
        for j in 0..16 {
            let xh_0 = ((qh >> j) << 4) & 0x10;
            let xh_1 = (qh >> (j + 12)) & 0x10;
            let x0 = ((a.qs[j] & 0x0F) as u32 | xh_0) as i32 - 16;
            let x1 = ((a.qs[j] >> 4) as u32 | xh_1) as i32 - 16;
            sumi0 += x0 * b.qs[j] as i32;
            sumi1 += x1 * b.qs[j + 16] as i32;
        }
        let sumi = sumi0 + sumi1;
        sumf += (a.d.to_f32() * b.d.to_f32()) * sumi as f32;
    }
    sumf
}

// ---------------------------------------------------------------------------------------------
// Q5_1
// ---------------------------------------------------------------------------------------------

impl BlockQ5_1 {
    fn quantize_ref(xb: &[f32; QK]) -> Self {
        let mut min = f32::MAX;
        let mut max = -f32::MAX;
        for &v in xb {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q = |v: f32| cvtt((v - min) * id + 0.5) as u8;
        let (qs, qh) = pack_5bit(|j| q(xb[j]));
        BlockQ5_1 {
            d: F16::from_f32(d),
            m: F16::from_f32(min),
            qh,
            qs,
        }
    }

    fn quantize_weighted(xb: &[f32; QK], weight: &[f32; QK]) -> Self {
        let mut l = [0u8; QK];
        // Q5_1's search as ggml calls it: rmin -0.9, rdelta 0.05, 36 steps, squared error.
        let mut laux = [0u8; QK];
        let (d, min) = make_qkx3_quants(31, xb, weight, &mut l, &mut laux, -0.9, 0.05, 36, false);
        let (qs, qh) = pack_5bit(|j| l[j]);
        BlockQ5_1 {
            d: F16::from_f32(d),
            m: F16::from_f32(-min),
            qh,
            qs,
        }
    }
}

impl Block for BlockQ5_1 {
    const TYPE: GgmlType = GgmlType::Q5_1;
    const SIZE: usize = QK;
    type Dot = BlockQ8_1;

    fn quantize(x: &[f32], out: &mut [Self], imatrix: Option<&[f32]>) {
        match imatrix {
            None => {
                for (o, xb) in out.iter_mut().zip(blocks_of_row(x)) {
                    *o = Self::quantize_ref(xb);
                }
            }
            Some(qw) => {
                let sigma2 = sigma2_of(x);
                for (i, (o, xb)) in out.iter_mut().zip(blocks_of_row(x)).enumerate() {
                    let w = block_weights(sigma2, xb, &qw[i * QK..(i + 1) * QK]);
                    *o = Self::quantize_weighted(xb, &w);
                }
            }
        }
    }

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
            let d = b.d.to_f32();
            let m = b.m.to_f32();
            let qh = u32::from_le_bytes(b.qh);
            for j in 0..16 {
                let xh_0 = ((qh >> j) << 4) & 0x10;
                let xh_1 = (qh >> (j + 12)) & 0x10;
                let x0 = (b.qs[j] & 0x0F) as u32 | xh_0;
                let x1 = (b.qs[j] >> 4) as u32 | xh_1;
                y[j] = x0 as f32 * d + m;
                y[j + 16] = x1 as f32 * d + m;
            }
        }
    }

    fn dot(w: &[Self], x: &[BlockQ8_1]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if super::simd::has_avx2_fma() {
            // SAFETY: the required CPU features were detected just above.
            return unsafe { avx2::dot_q5_1_q8_1(w, x) };
        }
        dot_q5_1_q8_1(w, x)
    }
}

fn dot_q5_1_q8_1(w: &[BlockQ5_1], x: &[BlockQ8_1]) -> f32 {
    let mut sumf = 0f32;
    for (a, b) in w.iter().zip(x) {
        let qh = u32::from_le_bytes(a.qh);
        let (mut sumi0, mut sumi1) = (0i32, 0i32);
        for j in 0..16 {
            let xh_0 = ((qh >> j) << 4) & 0x10;
            let xh_1 = (qh >> (j + 12)) & 0x10;
            let x0 = ((a.qs[j] & 0x0F) as u32 | xh_0) as i32;
            let x1 = ((a.qs[j] >> 4) as u32 | xh_1) as i32;
            sumi0 += x0 * b.qs[j] as i32;
            sumi1 += x1 * b.qs[j + 16] as i32;
        }
        let sumi = sumi0 + sumi1;
        sumf += (a.d.to_f32() * b.d.to_f32()) * sumi as f32 + a.m.to_f32() * b.s.to_f32();
    }
    sumf
}

// ---------------------------------------------------------------------------------------------
// Q8_0 and Q8_1
// ---------------------------------------------------------------------------------------------

/// Scale and inverse scale of a symmetric 8-bit block, as `quantize_row_q8_{0,1}_ref` computes.
fn q8_scale(xb: &[f32; QK]) -> (f32, f32) {
    let mut amax = 0f32;
    for &v in xb {
        amax = c_max(amax, v.abs());
    }
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    (d, id)
}

impl BlockQ8_0 {
    fn quantize_ref(xb: &[f32; QK]) -> Self {
        let (d, id) = q8_scale(xb);
        let qs = std::array::from_fn(|j| cvtt((xb[j] * id).round()) as i8);
        BlockQ8_0 {
            d: F16::from_f32(d),
            qs,
        }
    }
}

impl Block for BlockQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;
    const SIZE: usize = QK;
    type Dot = BlockQ8_0;

    /// ggml's Q8_0 has no importance-weighted quantizer; the weights are ignored, as there.
    fn quantize(x: &[f32], out: &mut [Self], _imatrix: Option<&[f32]>) {
        for (o, xb) in out.iter_mut().zip(blocks_of_row(x)) {
            *o = Self::quantize_ref(xb);
        }
    }

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
            let d = b.d.to_f32();
            for (o, &q) in y.iter_mut().zip(&b.qs) {
                *o = q as f32 * d;
            }
        }
    }

    fn dot(w: &[Self], x: &[BlockQ8_0]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if super::simd::has_avx2_fma() {
            // SAFETY: the required CPU features were detected just above.
            return unsafe { avx2::dot_q8_0_q8_0(w, x) };
        }
        dot_q8_0_q8_0(w, x)
    }
}

fn dot_q8_0_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0f32;
    for (a, b) in w.iter().zip(x) {
        let sumi: i32 =
            a.qs.iter()
                .zip(&b.qs)
                .map(|(&p, &q)| p as i32 * q as i32)
                .sum();
        sumf += sumi as f32 * (a.d.to_f32() * b.d.to_f32());
    }
    sumf
}

impl BlockQ8_1 {
    fn quantize_ref(xb: &[f32; QK]) -> Self {
        let (d, id) = q8_scale(xb);
        let qs: [i8; QK] = std::array::from_fn(|j| cvtt((xb[j] * id).round()) as i8);
        let sum: i32 = qs.iter().map(|&q| q as i32).sum();
        BlockQ8_1 {
            d: F16::from_f32(d),
            s: F16::from_f32(sum as f32 * d),
            qs,
        }
    }
}

impl Block for BlockQ8_1 {
    const TYPE: GgmlType = GgmlType::Q8_1;
    const SIZE: usize = QK;
    /// ggml-cpu has no Q8_1 weight dot; Q8_1 × Q8_1 here is the plain scaled integer dot.
    type Dot = BlockQ8_1;

    fn quantize(x: &[f32], out: &mut [Self], _imatrix: Option<&[f32]>) {
        for (o, xb) in out.iter_mut().zip(blocks_of_row(x)) {
            *o = Self::quantize_ref(xb);
        }
    }

    /// ggml has no Q8_1 `to_float`; this is the format's meaning, q * d.
    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
            let d = b.d.to_f32();
            for (o, &q) in y.iter_mut().zip(&b.qs) {
                *o = q as f32 * d;
            }
        }
    }

    fn dot(w: &[Self], x: &[BlockQ8_1]) -> f32 {
        let mut sumf = 0f32;
        for (a, b) in w.iter().zip(x) {
            let sumi: i32 =
                a.qs.iter()
                    .zip(&b.qs)
                    .map(|(&p, &q)| p as i32 * q as i32)
                    .sum();
            sumf += sumi as f32 * (a.d.to_f32() * b.d.to_f32());
        }
        sumf
    }
}

// ---------------------------------------------------------------------------------------------
// AVX2 dots, lane for lane as ggml-cpu's arch/x86/quants.c
// ---------------------------------------------------------------------------------------------

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::super::simd::x86::*;
    use super::{BlockQ4_0, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot_q4_0_q8_0(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        for (a, b) in w.iter().zip(x) {
            let d = _mm256_set1_ps(a.d.to_f32() * b.d.to_f32());
            let qx = _mm256_sub_epi8(bytes_from_nibbles_32(&a.qs), _mm256_set1_epi8(8));
            let q = mul_sum_i8_pairs_float(qx, load_i8_32(&b.qs));
            acc = _mm256_fmadd_ps(d, q, acc);
        }
        hsum_float_8(acc)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot_q5_0_q8_0(w: &[BlockQ5_0], x: &[BlockQ8_0]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        for (a, b) in w.iter().zip(x) {
            let d = _mm256_set1_ps(a.d.to_f32() * b.d.to_f32());
            // A clear fifth bit means q - 16 < 0: set the high nibble to make the byte negative.
            let bxhi =
                _mm256_andnot_si256(bytes_from_bits_32(&a.qh), _mm256_set1_epi8(0xF0u8 as i8));
            let qx = _mm256_or_si256(bytes_from_nibbles_32(&a.qs), bxhi);
            let q = mul_sum_i8_pairs_float(qx, load_i8_32(&b.qs));
            acc = _mm256_fmadd_ps(d, q, acc);
        }
        hsum_float_8(acc)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot_q5_1_q8_1(w: &[BlockQ5_1], x: &[BlockQ8_1]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let mut summs = 0f32;
        for (a, b) in w.iter().zip(x) {
            let dx = _mm256_set1_ps(a.d.to_f32());
            summs += a.m.to_f32() * b.s.to_f32();
            let bxhi = _mm256_and_si256(bytes_from_bits_32(&a.qh), _mm256_set1_epi8(0x10));
            let qx = _mm256_or_si256(bytes_from_nibbles_32(&a.qs), bxhi);
            let dy = _mm256_set1_ps(b.d.to_f32());
            let q = mul_sum_us8_pairs_float(qx, load_i8_32(&b.qs));
            acc = _mm256_fmadd_ps(q, _mm256_mul_ps(dx, dy), acc);
        }
        hsum_float_8(acc) + summs
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot_q8_0_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        for (a, b) in w.iter().zip(x) {
            let d = _mm256_set1_ps(a.d.to_f32() * b.d.to_f32());
            let q = mul_sum_i8_pairs_float(load_i8_32(&a.qs), load_i8_32(&b.qs));
            acc = _mm256_fmadd_ps(d, q, acc);
        }
        hsum_float_8(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::k_quants::common::nearest_int;

    fn row(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32 - 0.5) * 4.0
            })
            .collect()
    }

    fn quantize<B: Block>(x: &[f32]) -> Vec<B> {
        let mut out = vec![B::zeroed(); x.len() / B::SIZE];
        B::quantize(x, &mut out, None);
        out
    }

    #[test]
    fn c_conversions() {
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(3.5), 4);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(-0.4), 0);
        assert_eq!(cvtt(f32::INFINITY) as i8, 0);
        assert_eq!(cvtt(f32::NAN) as u8, 0);
        assert_eq!(cvtt(-7.9), -7);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_dots_agree_with_portable() {
        if !super::super::simd::has_avx2_fma() {
            return;
        }
        for nb in [1usize, 2, 7, 16, 128] {
            let w = row(nb * QK, 7 + nb as u32);
            let x = row(nb * QK, 1000 + nb as u32);
            let x8: Vec<BlockQ8_0> = quantize(&x);
            let x81: Vec<BlockQ8_1> = quantize(&x);
            // Both sum the same integer block dots; only f32 accumulation order differs.
            let tol = |a: f32| 1e-5 * (1.0 + a.abs()) * nb as f32;
            let cases = [
                ("q4_0", dot_q4_0_q8_0(&quantize(&w), &x8), unsafe {
                    avx2::dot_q4_0_q8_0(&quantize(&w), &x8)
                }),
                ("q5_0", dot_q5_0_q8_0(&quantize(&w), &x8), unsafe {
                    avx2::dot_q5_0_q8_0(&quantize(&w), &x8)
                }),
                ("q5_1", dot_q5_1_q8_1(&quantize(&w), &x81), unsafe {
                    avx2::dot_q5_1_q8_1(&quantize(&w), &x81)
                }),
                ("q8_0", dot_q8_0_q8_0(&quantize(&w), &x8), unsafe {
                    avx2::dot_q8_0_q8_0(&quantize(&w), &x8)
                }),
            ];
            for (name, p, v) in cases {
                assert!(
                    (p - v).abs() <= tol(p),
                    "{name} nb={nb}: portable {p} vs avx2 {v}"
                );
            }
        }
    }

    #[test]
    fn fifth_bits_round_trip() {
        let l: [u8; QK] = std::array::from_fn(|j| (j as u8 * 7) % 32);
        let (qs, qh) = pack_5bit(|j| l[j]);
        let b = BlockQ5_1 {
            d: F16::from_f32(1.0),
            m: F16::ZERO,
            qh,
            qs,
        };
        let mut y = [0f32; QK];
        BlockQ5_1::dequantize(&[b], &mut y);
        for j in 0..QK {
            assert_eq!(y[j], l[j] as f32);
        }
    }
}
