//! AVX2 building blocks shared by the block-type dot products, ported from ggml-cpu's
//! arch/x86/quants.c so that our SIMD dots sum in the same order as ggml's and give its bits.

/// Whether the AVX2 + FMA kernels may run on this CPU. Setting `KILN_PORTABLE=1` forces the
/// portable kernels, so that tests can hold them against ggml on machines that have AVX2.
pub(super) fn has_avx2_fma() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let forced_off = std::env::var_os("KILN_PORTABLE").is_some_and(|v| v == "1");
        #[cfg(target_arch = "x86_64")]
        let detected = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        #[cfg(not(target_arch = "x86_64"))]
        let detected = false;
        detected && !forced_off
    })
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    /// Sum of the 8 lanes, in ggml's order: high half onto low half, then pairs, then the last two.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn hsum_float_8(x: __m256) -> f32 {
        let mut res = _mm256_extractf128_ps(x, 1);
        res = _mm_add_ps(res, _mm256_castps256_ps128(x));
        res = _mm_add_ps(res, _mm_movehl_ps(res, res));
        res = _mm_add_ss(res, _mm_movehdup_ps(res));
        _mm_cvtss_f32(res)
    }

    /// 32 nibbles to 32 bytes in 0..=15: low nibbles of the 16 bytes first, then the high ones.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn bytes_from_nibbles_32(qs: &[u8; 16]) -> __m256i {
        // SAFETY: `qs` is exactly 16 readable bytes.
        let tmp = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
        let bytes = _mm256_set_m128i(_mm_srli_epi16(tmp, 4), tmp);
        _mm256_and_si256(_mm256_set1_epi8(0x0F), bytes)
    }

    /// The 32 bits of `bits` (little-endian) spread to 32 bytes of 0x00 or 0xFF.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn bytes_from_bits_32(bits: &[u8; 4]) -> __m256i {
        let x32 = i32::from_le_bytes(*bits);
        let shuf_mask = _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0x0000_0000_0000_0000,
        );
        let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x32), shuf_mask);
        let bit_mask = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe);
        let bytes = _mm256_or_si256(bytes, bit_mask);
        _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
    }

    /// Unsigned `ax` times signed `sy`, summed in groups of 4 into 8 f32 lanes. maddubs saturates
    /// its i16 pair sums, which no operand pair reachable from ggml's quantizers can hit.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn mul_sum_us8_pairs_float(ax: __m256i, sy: __m256i) -> __m256 {
        let dot = _mm256_maddubs_epi16(ax, sy);
        let summed_pairs = _mm256_madd_epi16(_mm256_set1_epi16(1), dot);
        _mm256_cvtepi32_ps(summed_pairs)
    }

    /// Signed `x` times signed `y`, summed in groups of 4: the sign of `x` moves onto `y` so the
    /// unsigned-by-signed multiply applies (exact unless `y` holds -128, which Q8 quantizers never
    /// produce).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn mul_sum_i8_pairs_float(x: __m256i, y: __m256i) -> __m256 {
        let ax = _mm256_sign_epi8(x, x);
        let sy = _mm256_sign_epi8(y, x);
        mul_sum_us8_pairs_float(ax, sy)
    }

    /// 32 signed bytes from a 32-byte array.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn load_i8_32(qs: &[i8; 32]) -> __m256i {
        // SAFETY: `qs` is exactly 32 readable bytes.
        unsafe { _mm256_loadu_si256(qs.as_ptr().cast()) }
    }
}
