//! The plain float element types F32, F16 and BF16, with ggml's own scalar conversions.
//!
//! ggml converts with hand-written bit tricks rather than hardware instructions on its reference
//! path; they round to nearest even like IEEE, but canonicalise NaNs differently from the `half`
//! crate, so the conversions are ported here bit for bit and everything else builds on them.

use super::{Block, GgmlType, RowCodec};
use bytemuck::{Pod, Zeroable};

/// An IEEE binary16 value, converted the way ggml converts (`ggml_compute_fp32_to_fp16`).
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[repr(transparent)]
pub struct F16(pub half::f16);

/// A bfloat16 value, converted the way ggml converts (`ggml_compute_fp32_to_bf16`).
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[repr(transparent)]
pub struct BF16(pub half::bf16);

impl F16 {
    pub const ZERO: F16 = F16(half::f16::ZERO);

    /// Round to nearest even; every NaN becomes the quiet NaN 0x7E00 with the input's sign.
    #[inline]
    pub fn from_f32(f: f32) -> F16 {
        // Multiplying by 2^112 then 2^-110 pushes overflow to infinity and leaves the value
        // scaled so that adding a power of two at the right exponent rounds the mantissa to 10
        // bits in the FPU's own round-to-nearest-even.
        let scale_to_inf = f32::from_bits(0x7780_0000);
        let scale_to_zero = f32::from_bits(0x0880_0000);
        let base = (f.abs() * scale_to_inf) * scale_to_zero;

        let w = f.to_bits();
        let shl1_w = w.wrapping_add(w);
        let sign = w & 0x8000_0000;
        let bias = (shl1_w & 0xFF00_0000).max(0x7100_0000);

        let base = f32::from_bits((bias >> 1) + 0x0780_0000) + base;
        let bits = base.to_bits();
        let exp_bits = (bits >> 13) & 0x0000_7C00;
        let mantissa_bits = bits & 0x0000_0FFF;
        let nonsign = exp_bits + mantissa_bits;
        let h = (sign >> 16)
            | if shl1_w > 0xFF00_0000 {
                0x7E00
            } else {
                nonsign
            };
        // ggml returns a uint16_t: the carry a rounded-up mantissa makes stays within 16 bits.
        F16(half::f16::from_bits(h as u16))
    }

    /// Exact widening (`ggml_compute_fp16_to_fp32`); NaNs come out quiet.
    #[inline]
    pub fn to_f32(self) -> f32 {
        let w = (self.0.to_bits() as u32) << 16;
        let sign = w & 0x8000_0000;
        let two_w = w.wrapping_add(w);

        let exp_offset = 0xE0u32 << 23;
        let exp_scale = f32::from_bits(0x0780_0000); // 2^-112
        let normalized = f32::from_bits((two_w >> 4) + exp_offset) * exp_scale;

        let magic_mask = 126u32 << 23;
        let denormalized = f32::from_bits((two_w >> 17) | magic_mask) - 0.5;

        let result = sign
            | if two_w < (1u32 << 27) {
                denormalized.to_bits()
            } else {
                normalized.to_bits()
            };
        f32::from_bits(result)
    }

    pub fn to_bits(self) -> u16 {
        self.0.to_bits()
    }

    pub fn from_bits(bits: u16) -> F16 {
        F16(half::f16::from_bits(bits))
    }
}

impl BF16 {
    /// Round to nearest even; NaNs keep their top payload bits and are forced quiet.
    #[inline]
    pub fn from_f32(s: f32) -> BF16 {
        let u = s.to_bits();
        let h = if (u & 0x7fff_ffff) > 0x7f80_0000 {
            (u >> 16) | 64
        } else {
            u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16
        };
        BF16(half::bf16::from_bits(h as u16))
    }

    #[inline]
    pub fn to_f32(self) -> f32 {
        f32::from_bits((self.0.to_bits() as u32) << 16)
    }

    pub fn to_bits(self) -> u16 {
        self.0.to_bits()
    }

    pub fn from_bits(bits: u16) -> BF16 {
        BF16(half::bf16::from_bits(bits))
    }
}

impl Block for f32 {
    const TYPE: GgmlType = GgmlType::F32;
    const SIZE: usize = 1;
    type Dot = f32;

    fn quantize(x: &[f32], out: &mut [f32], _imatrix: Option<&[f32]>) {
        out.copy_from_slice(x);
    }

    fn dequantize(blocks: &[f32], out: &mut [f32]) {
        out.copy_from_slice(blocks);
    }

    fn dot(w: &[f32], x: &[f32]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if avx2::available() {
            // SAFETY: the required CPU features were detected just above.
            return unsafe { avx2::dot_f32(w, x) };
        }
        dot_portable(w, x, |v| v)
    }
}

impl Block for F16 {
    const TYPE: GgmlType = GgmlType::F16;
    const SIZE: usize = 1;
    type Dot = F16;

    fn quantize(x: &[f32], out: &mut [F16], _imatrix: Option<&[f32]>) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = F16::from_f32(v);
        }
    }

    fn dequantize(blocks: &[F16], out: &mut [f32]) {
        for (o, b) in out.iter_mut().zip(blocks) {
            *o = b.to_f32();
        }
    }

    fn dot(w: &[F16], x: &[F16]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if avx2::available() && std::arch::is_x86_feature_detected!("f16c") {
            // SAFETY: the required CPU features were detected just above.
            return unsafe { avx2::dot_f16(w, x) };
        }
        dot_portable(w, x, F16::to_f32)
    }
}

impl Block for BF16 {
    const TYPE: GgmlType = GgmlType::BF16;
    const SIZE: usize = 1;
    type Dot = BF16;

    fn quantize(x: &[f32], out: &mut [BF16], _imatrix: Option<&[f32]>) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = BF16::from_f32(v);
        }
    }

    fn dequantize(blocks: &[BF16], out: &mut [f32]) {
        for (o, b) in out.iter_mut().zip(blocks) {
            *o = b.to_f32();
        }
    }

    fn dot(w: &[BF16], x: &[BF16]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if avx2::available() {
            // SAFETY: the required CPU features were detected just above.
            return unsafe { avx2::dot_bf16(w, x) };
        }
        dot_portable(w, x, BF16::to_f32)
    }
}

/// Float dot products accumulate in f64: a product of two f32 values (24-bit mantissas) is exact
/// in f64, so the only rounding left is the f64 sum and the final narrowing. ggml accumulates in
/// f32 lanes; this is at least as accurate and independent of lane count.
fn dot_portable<T: Copy>(w: &[T], x: &[T], to_f32: impl Fn(T) -> f32) -> f32 {
    w.iter()
        .zip(x)
        .map(|(&a, &b)| to_f32(a) as f64 * to_f32(b) as f64)
        .sum::<f64>() as f32
}

pub(super) fn codec(ty: GgmlType) -> Option<&'static dyn RowCodec> {
    match ty {
        GgmlType::F32 => Some(super::codec_of::<f32>()),
        GgmlType::F16 => Some(super::codec_of::<F16>()),
        GgmlType::BF16 => Some(super::codec_of::<BF16>()),
        _ => None,
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{BF16, F16};
    use std::arch::x86_64::*;

    pub(super) fn available() -> bool {
        super::super::simd::has_avx2_fma()
    }

    /// Generates an AVX2 dot product whose `$load8` turns 8 elements at a pointer into 8 f32.
    /// Each f32 lane is widened to f64 before the multiply, matching `dot_portable`'s exactness.
    macro_rules! dot_f64_acc {
        ($name:ident, $t:ty, $features:literal, |$p:ident| $load8:expr, $scalar:expr) => {
            #[target_feature(enable = $features)]
            pub(super) fn $name(w: &[$t], x: &[$t]) -> f32 {
                let n = w.len().min(x.len());
                // Defined inside the function so that it inherits the target features.
                let load8 = |$p: *const $t| -> __m256 {
                    // SAFETY: callers pass pointers with 8 readable elements.
                    unsafe { $load8 }
                };
                let mut acc = [_mm256_setzero_pd(); 4];
                let mut i = 0;
                while i + 16 <= n {
                    // i + 16 <= n: the 8-element loads at i and i + 8 are in bounds.
                    let (wa, wb) = (load8(w[i..].as_ptr()), load8(w[i + 8..].as_ptr()));
                    let (xa, xb) = (load8(x[i..].as_ptr()), load8(x[i + 8..].as_ptr()));
                    let lo = |v: __m256| _mm256_cvtps_pd(_mm256_castps256_ps128(v));
                    let hi = |v: __m256| _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
                    acc[0] = _mm256_fmadd_pd(lo(wa), lo(xa), acc[0]);
                    acc[1] = _mm256_fmadd_pd(hi(wa), hi(xa), acc[1]);
                    acc[2] = _mm256_fmadd_pd(lo(wb), lo(xb), acc[2]);
                    acc[3] = _mm256_fmadd_pd(hi(wb), hi(xb), acc[3]);
                    i += 16;
                }
                let s = _mm256_add_pd(_mm256_add_pd(acc[0], acc[1]), _mm256_add_pd(acc[2], acc[3]));
                let mut lanes = [0f64; 4];
                // SAFETY: `lanes` holds exactly one __m256d.
                unsafe { _mm256_storeu_pd(lanes.as_mut_ptr(), s) };
                let mut sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
                let scalar: fn($t) -> f32 = $scalar;
                for j in i..n {
                    sum += scalar(w[j]) as f64 * scalar(x[j]) as f64;
                }
                sum as f32
            }
        };
    }

    dot_f64_acc!(dot_f32, f32, "avx2,fma", |p| _mm256_loadu_ps(p), |v| v);
    dot_f64_acc!(
        dot_f16,
        F16,
        "avx2,fma,f16c",
        |p| _mm256_cvtph_ps(_mm_loadu_si128(p.cast())),
        F16::to_f32
    );
    dot_f64_acc!(
        dot_bf16,
        BF16,
        "avx2,fma",
        |p| _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast())),
            16
        )),
        BF16::to_f32
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const _: () = assert!(std::mem::size_of::<F16>() == 2 && std::mem::size_of::<BF16>() == 2);

    #[test]
    fn f16_finite_conversions_agree_with_ieee_rounding() {
        // half's conversion is IEEE round-to-nearest-even; ggml's bit trick must agree on every
        // non-NaN input, and widening must agree on every one of the 65536 encodings.
        for bits in 0..=u16::MAX {
            let h = half::f16::from_bits(bits);
            let ours = F16(h).to_f32();
            if h.is_nan() {
                assert!(ours.is_nan());
            } else {
                assert_eq!(ours.to_bits(), h.to_f32().to_bits(), "{bits:#06x}");
            }
        }
        let mut s = 0x1234_5678u32;
        for _ in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let f = f32::from_bits(s);
            if !f.is_nan() {
                assert_eq!(
                    F16::from_f32(f).to_bits(),
                    half::f16::from_f32(f).to_bits(),
                    "{f:e}"
                );
                assert_eq!(
                    BF16::from_f32(f).to_bits(),
                    half::bf16::from_f32(f).to_bits(),
                    "{f:e}"
                );
            }
        }
        assert_eq!(F16::from_f32(f32::from_bits(0xFF80_0001)).to_bits(), 0xFE00);
        assert_eq!(
            BF16::from_f32(f32::from_bits(0x7F80_0001)).to_bits(),
            0x7FC0
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_dots_agree_with_portable() {
        if !avx2::available() || !std::arch::is_x86_feature_detected!("f16c") {
            return;
        }
        for n in [0usize, 1, 15, 16, 17, 100, 4096] {
            let w: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
                .collect();
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.021)
                .collect();
            // Both paths sum exact f64 products; only the f64 summation order differs.
            let close = |a: f32, b: f32| (a - b).abs() <= 1e-6 * (1.0 + a.abs());
            let (a, b) = (dot_portable(&w, &x, |v| v), unsafe {
                avx2::dot_f32(&w, &x)
            });
            assert!(close(a, b), "f32 n={n}: {a} vs {b}");
            let wh: Vec<F16> = w.iter().map(|&v| F16::from_f32(v)).collect();
            let xh: Vec<F16> = x.iter().map(|&v| F16::from_f32(v)).collect();
            let (a, b) = (dot_portable(&wh, &xh, F16::to_f32), unsafe {
                avx2::dot_f16(&wh, &xh)
            });
            assert!(close(a, b), "f16 n={n}: {a} vs {b}");
            let wb: Vec<BF16> = w.iter().map(|&v| BF16::from_f32(v)).collect();
            let xb: Vec<BF16> = x.iter().map(|&v| BF16::from_f32(v)).collect();
            let (a, b) = (dot_portable(&wb, &xb, BF16::to_f32), unsafe {
                avx2::dot_bf16(&wb, &xb)
            });
            assert!(close(a, b), "bf16 n={n}: {a} vs {b}");
        }
    }
}
