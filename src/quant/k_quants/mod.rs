//! K-quants: super-blocks of 256 values split into groups that each carry a small quantized
//! scale (and, for Q2_K/Q4_K/Q5_K, a min) under fp16 super-block scales. Weight types Q2_K..Q6_K
//! take their dot products against activations quantized to Q8_K.
//!
//! Quantizers follow `ggml_quantize_chunk`: without importance weights the `_ref` quantizers,
//! with them the `_impl` ones. Dot products come as a portable port of ggml-cpu's generic code
//! and an AVX2 version chosen at run time.

// Shared with the legacy types, whose importance-weighted quantizers use the same searches.
pub(super) mod common;
mod q2_k;
mod q3_k;
mod q4_k;
mod q5_k;
mod q6_k;
mod q8_k;

#[cfg(target_arch = "x86_64")]
mod avx2;

pub use q2_k::BlockQ2K;
pub use q3_k::BlockQ3K;
pub use q4_k::BlockQ4K;
pub use q5_k::BlockQ5K;
pub use q6_k::BlockQ6K;
pub use q8_k::BlockQ8K;

use super::{GgmlType, RowCodec, codec_of};

/// Values per super-block.
pub const QK_K: usize = 256;

pub(super) fn codec(ty: GgmlType) -> Option<&'static dyn RowCodec> {
    Some(match ty {
        GgmlType::Q2_K => codec_of::<BlockQ2K>(),
        GgmlType::Q3_K => codec_of::<BlockQ3K>(),
        GgmlType::Q4_K => codec_of::<BlockQ4K>(),
        GgmlType::Q5_K => codec_of::<BlockQ5K>(),
        GgmlType::Q6_K => codec_of::<BlockQ6K>(),
        GgmlType::Q8_K => codec_of::<BlockQ8K>(),
        _ => return None,
    })
}

/// Whether the AVX2 dot products may run: detected once, then read from a static.
#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    use std::sync::LazyLock;
    static AVX2: LazyLock<bool> =
        LazyLock::new(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"));
    *AVX2
}

#[cfg(test)]
mod tests;
