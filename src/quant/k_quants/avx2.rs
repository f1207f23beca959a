//! AVX2 + FMA dot products of the K-quant weight types with Q8_K activations, ported from
//! ggml-cpu's x86 code (`ggml/src/ggml-cpu/arch/x86/quants.c`).
//!
//! They keep ggml's lane layout and its f32 accumulation order (per-lane FMAs, the same
//! horizontal sums), so on the same bytes they return the same bits as a ggml CPU backend built
//! with AVX2, which is what the oracle tests check. The integer parts are exact; only the f32
//! accumulation differs from the portable versions.

use std::arch::x86_64::*;

use super::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, QK_K};
use crate::quant::k_quants::common::{from_f16, unpack_scale_min_k4};

/// Picks, for 32 values of groups of 16, the 16-bit scale of group `2i` into the low 128-bit
/// lane and of group `2i + 1` into the high one (ggml's `get_scale_shuffle_q3k`).
const SHUFFLE_Q3K: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut k = 0;
    while k < 128 {
        let scale = k / 16; // one 16-bit scale per 16 bytes
        t[k] = (2 * scale + k % 2) as u8;
        k += 1;
    }
    t
};

/// Broadcasts 16-bit scale `i` over all 32 bytes (ggml's `get_scale_shuffle_k4`).
const SHUFFLE_K4: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut k = 0;
    while k < 256 {
        t[k] = (2 * (k / 32) + k % 2) as u8;
        k += 1;
    }
    t
};

/// Picks 8-bit scale `2i` into bytes 0..8 and `2i + 1` into bytes 8..16 (ggml's
/// `get_scale_shuffle`).
const SHUFFLE_Q6K: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut k = 0;
    while k < 128 {
        t[k] = (k / 8) as u8;
        k += 1;
    }
    t
};

#[inline]
#[target_feature(enable = "avx2,fma")]
fn load256<T: bytemuck::Pod>(v: &[T]) -> __m256i {
    let bytes: &[u8] = bytemuck::cast_slice(v);
    assert!(bytes.len() >= 32);
    // SAFETY: at least 32 readable bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn load128<T: bytemuck::Pod>(v: &[T]) -> __m128i {
    let bytes: &[u8] = bytemuck::cast_slice(v);
    assert!(bytes.len() >= 16);
    // SAFETY: at least 16 readable bytes; the load is unaligned.
    unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
}

/// ggml's `hsum_float_8`, whose association order the results depend on.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum_float_8(x: __m256) -> f32 {
    let mut res = _mm256_extractf128_ps::<1>(x);
    res = _mm_add_ps(res, _mm256_castps256_ps128(x));
    res = _mm_add_ps(res, _mm_movehl_ps(res, res));
    res = _mm_add_ss(res, _mm_movehdup_ps(res));
    _mm_cvtss_f32(res)
}

/// The 16-bit scales of groups 0..8 and 8..16, each repeated in both 128-bit lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn split_scales_16(scales8: __m128i) -> [__m256i; 2] {
    let all = _mm256_cvtepi8_epi16(scales8);
    let l = _mm256_extracti128_si256::<0>(all);
    let h = _mm256_extracti128_si256::<1>(all);
    [_mm256_set_m128i(l, l), _mm256_set_m128i(h, h)]
}

/// Q4_K/Q5_K's eight scales (as 16-bit values, in both lanes) and the mins·bsums products per
/// pair of groups, the way ggml lays them out.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn k4_scales_and_min_products(scales: &[u8; 12], y: &BlockQ8K) -> (__m256i, __m128i) {
    let (sc, m) = unpack_scale_min_k4(scales);
    let mut packed = [0u8; 16];
    packed[..8].copy_from_slice(&sc);
    packed[8..].copy_from_slice(&m);
    let mins_and_scales = _mm256_cvtepu8_epi16(load128(&packed));
    let q8sums = load256(&y.bsums);
    let q8s = _mm_hadd_epi16(
        _mm256_extracti128_si256::<0>(q8sums),
        _mm256_extracti128_si256::<1>(q8sums),
    );
    let prod = _mm_madd_epi16(_mm256_extracti128_si256::<1>(mins_and_scales), q8s);
    let sc128 = _mm256_extracti128_si256::<0>(mins_and_scales);
    (_mm256_set_m128i(sc128, sc128), prod)
}

/// `ggml_vec_dot_q2_K_q8_K`, AVX2 branch.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dot_q2_k(w: &[BlockQ2K], x: &[BlockQ8K]) -> f32 {
    let m3 = _mm256_set1_epi8(3);
    let m4 = _mm_set1_epi8(0xF);
    let mut acc = _mm256_setzero_ps();

    for (b, y) in w.iter().zip(x) {
        let d = y.d * from_f16(b.d);
        let dmin = -y.d * from_f16(b.dmin);

        let mins_and_scales = load128(&b.scales);
        let scales8 = _mm_and_si128(mins_and_scales, m4);
        let mins8 = _mm_and_si128(_mm_srli_epi16::<4>(mins_and_scales), m4);
        let mins = _mm256_cvtepi8_epi16(mins8);
        let prod = _mm256_madd_epi16(mins, load256(&y.bsums));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod), acc);

        let scales = split_scales_16(scales8);
        let mut sumi = _mm256_setzero_si256();
        for (j, (q2, q8)) in
            b.qs.chunks_exact(32)
                .zip(y.qs.chunks_exact(128))
                .enumerate()
        {
            let q2bits = load256(q2);
            let q2v = [
                _mm256_and_si256(q2bits, m3),
                _mm256_and_si256(_mm256_srli_epi16::<2>(q2bits), m3),
                _mm256_and_si256(_mm256_srli_epi16::<4>(q2bits), m3),
                _mm256_and_si256(_mm256_srli_epi16::<6>(q2bits), m3),
            ];
            let mut p = [_mm256_setzero_si256(); 4];
            for k in 0..4 {
                let prod = _mm256_maddubs_epi16(q2v[k], load256(&q8[32 * k..]));
                let shuffle = load256(&SHUFFLE_Q3K[32 * k..]);
                p[k] = _mm256_madd_epi16(_mm256_shuffle_epi8(scales[j], shuffle), prod);
            }
            let p01 = _mm256_add_epi32(p[0], p[1]);
            let p23 = _mm256_add_epi32(p[2], p[3]);
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p01, p23));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_float_8(acc)
}

/// `ggml_vec_dot_q3_K_q8_K`, AVX2 branch.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dot_q3_k(w: &[BlockQ3K], x: &[BlockQ8K]) -> f32 {
    let m3 = _mm256_set1_epi8(3);
    let mone = _mm256_set1_epi8(1);
    let m32 = _mm_set1_epi8(32);
    let mut acc = _mm256_setzero_ps();

    for (b, y) in w.iter().zip(x) {
        let d = y.d * from_f16(b.d);

        let scales128 = _mm_sub_epi8(load128(&q3_k_scales(&b.scales)), m32);
        let scales = split_scales_16(scales128);
        let hbits = load256(&b.hmask);

        let mut sumi = _mm256_setzero_si256();
        let mut bit = 0;
        for (j, (q3, q8)) in
            b.qs.chunks_exact(32)
                .zip(y.qs.chunks_exact(128))
                .enumerate()
        {
            let q3bits = load256(q3);
            let mut p = [_mm256_setzero_si256(); 4];
            for k in 0..4 {
                let low = _mm256_and_si256(
                    _mm256_srl_epi16(q3bits, _mm_cvtsi32_si128(2 * k as i32)),
                    m3,
                );
                // 4 where the high bit is clear: that value is `low − 4`.
                let count = _mm_cvtsi32_si128(bit);
                let clear = _mm256_andnot_si256(hbits, _mm256_sll_epi16(mone, count));
                let high = _mm256_slli_epi16::<2>(_mm256_srl_epi16(clear, count));
                bit += 1;

                let q8v = load256(&q8[32 * k..]);
                // Low bits and the subtracted 4 are multiplied separately so that
                // `maddubs` (unsigned × signed) applies.
                let p16 = _mm256_sub_epi16(
                    _mm256_maddubs_epi16(low, q8v),
                    _mm256_maddubs_epi16(high, q8v),
                );
                let shuffle = load256(&SHUFFLE_Q3K[32 * k..]);
                p[k] = _mm256_madd_epi16(_mm256_shuffle_epi8(scales[j], shuffle), p16);
            }
            let p01 = _mm256_add_epi32(p[0], p[1]);
            let p23 = _mm256_add_epi32(p[2], p[3]);
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p01, p23));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_float_8(acc)
}

/// Q3_K's sixteen 6-bit scales, unpacked to one byte each (still offset by 32).
#[inline(always)]
fn q3_k_scales(s: &[u8; 12]) -> [u8; 16] {
    std::array::from_fn(|j| {
        let low = if j < 8 { s[j] & 0xF } else { s[j - 8] >> 4 };
        low | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)
    })
}

/// `ggml_vec_dot_q4_K_q8_K`, AVX2 branch.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dot_q4_k(w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
    let m4 = _mm256_set1_epi8(0xF);
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = _mm_setzero_ps();

    for (b, y) in w.iter().zip(x) {
        let d = y.d * from_f16(b.d);
        let dmin = -y.d * from_f16(b.dmin);

        let (scales, prod) = k4_scales_and_min_products(&b.scales, y);
        acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m);

        let mut sumi = _mm256_setzero_si256();
        for (j, (q4, q8)) in b.qs.chunks_exact(32).zip(y.qs.chunks_exact(64)).enumerate() {
            let scale_l = _mm256_shuffle_epi8(scales, load256(&SHUFFLE_K4[64 * j..]));
            let scale_h = _mm256_shuffle_epi8(scales, load256(&SHUFFLE_K4[64 * j + 32..]));

            let q4bits = load256(q4);
            let q4l = _mm256_and_si256(q4bits, m4);
            let q4h = _mm256_and_si256(_mm256_srli_epi16::<4>(q4bits), m4);

            let p16l = _mm256_madd_epi16(scale_l, _mm256_maddubs_epi16(q4l, load256(&q8[..32])));
            let p16h = _mm256_madd_epi16(scale_h, _mm256_maddubs_epi16(q4h, load256(&q8[32..])));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p16l, p16h));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }

    acc_m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
    acc_m = _mm_add_ss(acc_m, _mm_movehdup_ps(acc_m));
    hsum_float_8(acc) + _mm_cvtss_f32(acc_m)
}

/// `ggml_vec_dot_q5_K_q8_K`, AVX2 branch.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dot_q5_k(w: &[BlockQ5K], x: &[BlockQ8K]) -> f32 {
    let m4 = _mm256_set1_epi8(0xF);
    let mzero = _mm_setzero_si128();
    let mone = _mm256_set1_epi8(1);
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0f32;

    for (b, y) in w.iter().zip(x) {
        let d = y.d * from_f16(b.d);
        let dmin = -y.d * from_f16(b.dmin);

        let (scales, prod) = k4_scales_and_min_products(&b.scales, y);
        let hsum = _mm_hadd_epi32(_mm_hadd_epi32(prod, mzero), mzero);
        // ggml-cpu is compiled with FMA and contracts `summs += dmin * sum` into one.
        summs = dmin.mul_add(_mm_extract_epi32::<0>(hsum) as f32, summs);

        let hbits = load256(&b.qh);
        let mut hmask = mone;
        let mut sumi = _mm256_setzero_si256();
        let mut bit = 0;
        for (j, (q5, q8)) in b.qs.chunks_exact(32).zip(y.qs.chunks_exact(64)).enumerate() {
            let scale_0 = _mm256_shuffle_epi8(scales, load256(&SHUFFLE_K4[64 * j..]));
            let scale_1 = _mm256_shuffle_epi8(scales, load256(&SHUFFLE_K4[64 * j + 32..]));

            let q5bits = load256(q5);
            let q5l_0 = _mm256_and_si256(q5bits, m4);
            let count = _mm_cvtsi32_si128(bit);
            let q5h_0 =
                _mm256_slli_epi16::<4>(_mm256_srl_epi16(_mm256_and_si256(hbits, hmask), count));
            let q5_0 = _mm256_add_epi8(q5l_0, q5h_0);
            hmask = _mm256_slli_epi16::<1>(hmask);
            bit += 1;

            let q5l_1 = _mm256_and_si256(_mm256_srli_epi16::<4>(q5bits), m4);
            let count = _mm_cvtsi32_si128(bit);
            let q5h_1 =
                _mm256_slli_epi16::<4>(_mm256_srl_epi16(_mm256_and_si256(hbits, hmask), count));
            let q5_1 = _mm256_add_epi8(q5l_1, q5h_1);
            hmask = _mm256_slli_epi16::<1>(hmask);
            bit += 1;

            let p16_0 = _mm256_madd_epi16(scale_0, _mm256_maddubs_epi16(q5_0, load256(&q8[..32])));
            let p16_1 = _mm256_madd_epi16(scale_1, _mm256_maddubs_epi16(q5_1, load256(&q8[32..])));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p16_0, p16_1));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_float_8(acc) + summs
}

/// `ggml_vec_dot_q6_K_q8_K`, AVX2 branch.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dot_q6_k(w: &[BlockQ6K], x: &[BlockQ8K]) -> f32 {
    let m3 = _mm256_set1_epi8(3);
    let m15 = _mm256_set1_epi8(15);
    let mut acc = _mm256_setzero_ps();

    for (b, y) in w.iter().zip(x) {
        let d = y.d * from_f16(b.d);

        let q8sums = load256(&y.bsums);
        let scales = load128(&b.scales);
        let scales_16 = _mm256_cvtepi8_epi16(scales);
        // The values are stored offset by 32; their Σ 32·scale·q8 comes off through bsums.
        let q8sclsub = _mm256_slli_epi32::<5>(_mm256_madd_epi16(q8sums, scales_16));

        let mut sumi = _mm256_setzero_si256();
        let halves =
            b.ql.chunks_exact(64)
                .zip(b.qh.chunks_exact(32))
                .zip(y.qs.chunks_exact(128));
        for (j, ((ql, qh), q8)) in halves.enumerate() {
            let q4bits1 = load256(&ql[..32]);
            let q4bits2 = load256(&ql[32..]);
            let q4bits_h = load256(qh);

            let q4h_0 = _mm256_slli_epi16::<4>(_mm256_and_si256(q4bits_h, m3));
            let q4h_1 = _mm256_slli_epi16::<2>(_mm256_and_si256(q4bits_h, _mm256_set1_epi8(12)));
            let q4h_2 = _mm256_and_si256(q4bits_h, _mm256_set1_epi8(48));
            let q4h_3 = _mm256_srli_epi16::<2>(_mm256_and_si256(q4bits_h, _mm256_set1_epi8(-64)));

            let q6 = [
                _mm256_or_si256(_mm256_and_si256(q4bits1, m15), q4h_0),
                _mm256_or_si256(_mm256_and_si256(q4bits2, m15), q4h_1),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(q4bits1), m15),
                    q4h_2,
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(q4bits2), m15),
                    q4h_3,
                ),
            ];
            let mut p = [_mm256_setzero_si256(); 4];
            for k in 0..4 {
                let p16 = _mm256_maddubs_epi16(q6[k], load256(&q8[32 * k..]));
                let scale = _mm_shuffle_epi8(scales, load128(&SHUFFLE_Q6K[16 * (4 * j + k)..]));
                p[k] = _mm256_madd_epi16(_mm256_cvtepi8_epi16(scale), p16);
            }
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p[0], p[1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p[2], p[3]));
        }
        sumi = _mm256_sub_epi32(sumi, q8sclsub);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_float_8(acc)
}

const _: () = assert!(
    QK_K == 256,
    "the AVX2 kernels assume 256-value super-blocks"
);
