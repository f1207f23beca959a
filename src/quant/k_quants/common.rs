//! Helpers shared by the K-quant types, ported from ggml-quants.c and ggml-impl.h.
//!
//! Bit-exactness with ggml rests on doing the same f32 operations in the same order: every
//! expression below keeps C's evaluation order and its implicit int → float conversions, and
//! `fmin`/`fmax`-like choices are written as the C `MIN`/`MAX` macros (which treat NaN
//! differently from `f32::min`/`f32::max`).

use super::QK_K;
use half::f16;

/// ggml's `GROUP_MAX_EPS`: a group whose largest magnitude is below this is quantized as zeros.
pub(super) const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `nearest_int`: round to nearest (ties to even) through the 1.5·2²³ magic constant.
///
/// Out-of-range, infinite or NaN inputs do not fail; they give whatever the bit trick gives,
/// and that garbage is part of ggml's output on adversarial data, so it is reproduced.
#[inline(always)]
pub(in crate::quant) fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12_582_912.0;
    (val.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// The C macro `MIN(a, b)`: `a < b ? a : b` (returns `b` when either is NaN).
#[inline(always)]
pub(super) fn c_min(a: f32, b: f32) -> f32 {
    if a < b { a } else { b }
}

/// The C macro `MAX(a, b)`: `a > b ? a : b` (returns `b` when either is NaN).
#[inline(always)]
pub(in crate::quant) fn c_max(a: f32, b: f32) -> f32 {
    if a > b { a } else { b }
}

/// ggml's software `fp16 → fp32` (`ggml_compute_fp16_to_fp32`); exact for every input.
#[inline]
pub(super) fn f16_to_f32(h: u16) -> f32 {
    let w = (h as u32) << 16;
    let sign = w & 0x8000_0000;
    let two_w = w.wrapping_add(w);

    let exp_offset: u32 = 0xE0 << 23;
    let exp_scale = f32::from_bits(0x0780_0000); // 2^-112
    let normalized_value = f32::from_bits((two_w >> 4) + exp_offset) * exp_scale;

    let magic_mask: u32 = 126 << 23;
    let magic_bias = 0.5f32;
    let denormalized_value = f32::from_bits((two_w >> 17) | magic_mask) - magic_bias;

    let denormalized_cutoff: u32 = 1 << 27;
    let result = sign
        | if two_w < denormalized_cutoff {
            denormalized_value.to_bits()
        } else {
            normalized_value.to_bits()
        };
    f32::from_bits(result)
}

/// ggml's software `fp32 → fp16` (`ggml_compute_fp32_to_fp16`): round to nearest even, every
/// NaN becomes the canonical 0x7E00 with the input's sign (where `half` would keep the payload).
#[inline]
pub(super) fn f32_to_f16(f: f32) -> u16 {
    let scale_to_inf = f32::from_bits(0x7780_0000); // 2^112
    let scale_to_zero = f32::from_bits(0x0880_0000); // 2^-110
    let mut base = (f.abs() * scale_to_inf) * scale_to_zero;

    let w = f.to_bits();
    let shl1_w = w.wrapping_add(w);
    let sign = w & 0x8000_0000;
    let bias = (shl1_w & 0xFF00_0000).max(0x7100_0000);

    // ggml adds in the other order; IEEE addition commutes, so the bits are the same.
    base += f32::from_bits((bias >> 1) + 0x0780_0000);
    let bits = base.to_bits();
    let exp_bits = (bits >> 13) & 0x0000_7C00;
    let mantissa_bits = bits & 0x0000_0FFF;
    let nonsign = exp_bits + mantissa_bits;
    ((sign >> 16)
        | if shl1_w > 0xFF00_0000 {
            0x7E00
        } else {
            nonsign
        }) as u16
}

/// `GGML_FP32_TO_FP16` into the `f16` fields of the block structs.
#[inline]
pub(super) fn to_f16(f: f32) -> f16 {
    f16::from_bits(f32_to_f16(f))
}

/// `GGML_FP16_TO_FP32` from the `f16` fields of the block structs.
#[inline(always)]
pub(super) fn from_f16(h: f16) -> f32 {
    f16_to_f32(h.to_bits())
}

/// The per-element weight of `make_qx_quants` when no importance weights are given.
#[inline(always)]
fn rmse_weight(rmse_type: i32, x: f32) -> f32 {
    match rmse_type {
        1 => x * x,
        2 => 1.0,
        3 => x.abs(),
        _ => x.abs().sqrt(),
    }
}

/// Index of the first element of largest magnitude and that element (ggml's `amax`/`max` scan).
#[inline]
fn signed_absmax(x: &[f32]) -> (f32, f32) {
    let mut max = 0f32;
    let mut amax = 0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    (amax, max)
}

/// ggml's `make_qx_quants`: symmetric quantization of `x` to `[-nmax, nmax)`, stored in `l`
/// offset by `nmax`; returns the scale. `rmse_type` 0 is plain rounding, a negative value
/// returns after one least-squares step, otherwise 18 nearby scales are tried.
pub(in crate::quant) fn make_qx_quants(
    nmax: i32,
    x: &[f32],
    l: &mut [i8],
    mut rmse_type: i32,
    qw: Option<&[f32]>,
) -> f32 {
    let n = x.len();
    let (amax, max) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        l[..n].fill(0);
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let mut iscale = -nmaxf / max;
    if rmse_type == 0 {
        for i in 0..n {
            let q = nearest_int(iscale * x[i]);
            l[i] = (nmax + q.clamp(-nmax, nmax - 1)) as i8;
        }
        return 1.0 / iscale;
    }
    let return_early = rmse_type < 0;
    if return_early {
        rmse_type = -rmse_type;
    }
    let weight = |i: usize| qw.map_or_else(|| rmse_weight(rmse_type, x[i]), |w| w[i]);

    let mut sumlx = 0f32;
    let mut suml2 = 0f32;
    for i in 0..n {
        let q = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l[i] = (q + nmax) as i8;
        let w = weight(i);
        let qf = q as f32;
        sumlx += w * x[i] * qf;
        suml2 += w * qf * qf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    if return_early {
        return if suml2 > 0.0 {
            0.5 * (scale + 1.0 / iscale)
        } else {
            1.0 / iscale
        };
    }
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmaxf + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for (i, &xi) in x.iter().enumerate() {
            let qf = nearest_int(iscale * xi).clamp(-nmax, nmax - 1) as f32;
            let w = weight(i);
            sumlx += w * xi * qf;
            suml2 += w * qf * qf;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..n {
                let q = nearest_int(iscale * x[i]);
                l[i] = (nmax + q.clamp(-nmax, nmax - 1)) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// ggml's `make_q3_quants`: like `make_qx_quants` with x² weights, refined by coordinate descent
/// on each element (`do_rmse`), for Q3_K's reference quantizer.
pub(super) fn make_q3_quants(nmax: i32, x: &[f32], l: &mut [i8], do_rmse: bool) -> f32 {
    let n = x.len();
    let (amax, max) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        l[..n].fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    if do_rmse {
        let mut sumlx = 0f32;
        let mut suml2 = 0f32;
        for i in 0..n {
            let q = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
            l[i] = q as i8;
            let w = x[i] * x[i];
            let qf = q as f32;
            sumlx += w * x[i] * qf;
            suml2 += w * qf * qf;
        }
        for _ in 0..5 {
            let mut n_changed = 0;
            for i in 0..n {
                let w = x[i] * x[i];
                let li = l[i] as f32;
                let mut slx = sumlx - w * x[i] * li;
                if slx > 0.0 {
                    let mut sl2 = suml2 - w * li * li;
                    let new_l = nearest_int(x[i] * sl2 / slx).clamp(-nmax, nmax - 1);
                    if new_l != l[i] as i32 {
                        let nl = new_l as f32;
                        slx += w * x[i] * nl;
                        sl2 += w * nl * nl;
                        if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                            l[i] = new_l as i8;
                            sumlx = slx;
                            suml2 = sl2;
                            n_changed += 1;
                        }
                    }
                }
            }
            if n_changed == 0 {
                break;
            }
        }
        for v in &mut l[..n] {
            *v += nmax as i8;
        }
        return if suml2 > 0.0 { sumlx / suml2 } else { 0.0 };
    }
    for i in 0..n {
        let q = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l[i] = (q + nmax) as i8;
    }
    1.0 / iscale
}

/// The weighted error term of `make_qkx2_quants`/`make_qkx3_quants`.
#[inline(always)]
fn affine_error(scale: f32, q: u8, min: f32, x: f32, use_mad: bool) -> f32 {
    let diff = scale * q as f32 + min - x;
    if use_mad { diff.abs() } else { diff * diff }
}

/// The search shared by ggml's `make_qkx2_quants` and `make_qkx3_quants`: quantize `x` to
/// `[0, nmax]` with a scale and a (non-positive) offset, trying `nstep + 1` scales.
/// Returns `(scale, -min)`. The two ggml functions differ only where `QkxVariant` says.
#[allow(clippy::too_many_arguments)]
fn make_qkx_quants(
    variant: QkxVariant,
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l: &mut [u8],
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let nmaxf = nmax as f32;
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    let degenerate = match variant {
        QkxVariant::X2 => max == min,
        QkxVariant::X3 => max <= min,
    };
    if degenerate {
        l[..n].fill(0);
        return (0.0, -min);
    }
    let mut iscale = nmaxf / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..n {
        let q = nearest_int(iscale * (x[i] - min));
        l[i] = q.clamp(0, nmax) as u8;
        best_error += weights[i] * affine_error(scale, l[i], min, x[i], use_mad);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmaxf) / (max - min);
        let mut sum_l = 0f32;
        let mut sum_l2 = 0f32;
        let mut sum_xl = 0f32;
        for i in 0..n {
            let q = match variant {
                QkxVariant::X2 => nearest_int(iscale * (x[i] - min)).clamp(0, nmax),
                // The best offset so far can sit at or near `max`, so `v` may be inf, NaN or
                // out of range for `nearest_int`; ggml guards it this way.
                QkxVariant::X3 => {
                    let v = iscale * (x[i] - min);
                    if v > 0.0 {
                        nearest_int(c_min(v, nmaxf))
                    } else {
                        0
                    }
                }
            };
            laux[i] = q as u8;
            let w = weights[i];
            let qf = q as f32;
            sum_l += w * qf;
            sum_l2 += w * qf * qf;
            sum_xl += w * qf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for i in 0..n {
                cur_error +=
                    weights[i] * affine_error(this_scale, laux[i], this_min, x[i], use_mad);
            }
            if cur_error < best_error {
                l[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

#[derive(Clone, Copy)]
enum QkxVariant {
    X2,
    X3,
}

/// ggml's `make_qkx2_quants` (the reference quantizers of Q2_K, Q4_K, Q5_K).
/// Returns `(scale, min)` where the group is reconstructed as `scale·q − min`.
#[allow(clippy::too_many_arguments)]
pub(super) fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l: &mut [u8],
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    make_qkx_quants(
        QkxVariant::X2,
        nmax,
        x,
        weights,
        l,
        laux,
        rmin,
        rdelta,
        nstep,
        use_mad,
    )
}

/// ggml's `make_qkx3_quants` (the importance-weighted quantizers of Q2_K, Q4_K, Q5_K). Every
/// caller in ggml passes weights, so the x² fallback for missing weights is not needed.
#[allow(clippy::too_many_arguments)]
pub(in crate::quant) fn make_qkx3_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l: &mut [u8],
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    make_qkx_quants(
        QkxVariant::X3,
        nmax,
        x,
        weights,
        l,
        laux,
        rmin,
        rdelta,
        nstep,
        use_mad,
    )
}

/// ggml's `make_qp_quants`: quantizes non-negative `x` (sub-block scales or mins) to
/// `[0, nmax]` under `quant_weights`, returning the super-block scale.
pub(super) fn make_qp_quants(nmax: i32, x: &[f32], l: &mut [u8], quant_weights: &[f32]) -> f32 {
    let n = x.len();
    let nmaxf = nmax as f32;
    let mut max = 0f32;
    for &v in x {
        max = c_max(max, v);
    }
    if max < GROUP_MAX_EPS {
        l[..n].fill(0);
        return 0.0;
    }
    let mut iscale = nmaxf / max;
    for i in 0..n {
        // ggml stores the unclamped value into a uint8_t here; only the error sum below reads it.
        l[i] = nearest_int(iscale * x[i]) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best_mse = 0f32;
    for i in 0..n {
        let diff = x[i] - scale * l[i] as f32;
        best_mse += quant_weights[i] * diff * diff;
    }
    for is in -4..=4 {
        if is == 0 {
            continue;
        }
        let iscale_is = (0.1 * is as f32 + nmaxf) / max;
        let scale_is = 1.0 / iscale_is;
        let mut mse = 0f32;
        for i in 0..n {
            let q = nearest_int(iscale_is * x[i]).min(nmax);
            let diff = x[i] - scale_is * q as f32;
            mse += quant_weights[i] * diff * diff;
        }
        if mse < best_mse {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    let mut sumlx = 0f32;
    let mut suml2 = 0f32;
    for i in 0..n {
        let q = nearest_int(iscale * x[i]).min(nmax);
        l[i] = q as u8;
        let w = quant_weights[i];
        // The sums take the int, not the uint8_t it was stored as.
        let qf = q as f32;
        sumlx += w * x[i] * qf;
        suml2 += w * qf * qf;
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for i in 0..n {
            let w = quant_weights[i];
            let li = l[i] as f32;
            let mut slx = sumlx - w * x[i] * li;
            let mut sl2 = suml2 - w * li * li;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest_int(x[i] * sl2 / slx).min(nmax);
                // ggml compares the int with the uint8_t it would replace.
                if new_l != l[i] as i32 {
                    let nl = new_l as f32;
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l[i] = new_l as u8;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    if suml2 > 0.0 { sumlx / suml2 } else { 0.0 }
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` of Q4_K/Q5_K.
#[inline(always)]
pub(super) fn get_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Packs eight 6-bit scales and eight 6-bit mins into Q4_K/Q5_K's 12 bytes (the inverse of
/// `get_scale_min_k4`).
pub(super) fn pack_scale_min_k4(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
    s
}

/// The 12 packed 6-bit scales of Q4_K/Q5_K as 8 scales and 8 mins, the `utmp` shuffle of
/// ggml's dot products.
#[inline(always)]
pub(super) fn unpack_scale_min_k4(scales: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    for j in 0..8 {
        (sc[j], m[j]) = get_scale_min_k4(j, scales);
    }
    (sc, m)
}

/// Packs 2-bit values (256 of them) four to a byte the way Q2_K and Q3_K store them: byte `l`
/// of each 32-byte run holds elements `l`, `l+32`, `l+64`, `l+96` of a 128-element half.
pub(super) fn pack_2bit(l: &[u8; QK_K], qs: &mut [u8; QK_K / 4]) {
    for j in (0..QK_K).step_by(128) {
        for k in 0..32 {
            qs[j / 4 + k] =
                l[j + k] | (l[j + k + 32] << 2) | (l[j + k + 64] << 4) | (l[j + k + 96] << 6);
        }
    }
}

/// Σx² over a super-block, in ggml's summation order.
#[inline]
pub(super) fn sum_squares(x: &[f32]) -> f32 {
    let mut sumx2 = 0f32;
    for &v in x {
        sumx2 += v * v;
    }
    sumx2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(-3.7), -4);
        assert_eq!(nearest_int(4_194_303.0), 4_194_303);
    }

    #[test]
    fn fp16_conversions_agree_with_half_off_nan() {
        for h in 0..=u16::MAX {
            let v = half::f16::from_bits(h);
            if v.is_nan() {
                continue;
            }
            assert_eq!(f16_to_f32(h).to_bits(), v.to_f32().to_bits(), "{h:#06x}");
        }
        for bits in (0..=u32::MAX).step_by(65_537) {
            let f = f32::from_bits(bits);
            if f.is_nan() {
                assert_eq!(f32_to_f16(f) & 0x7fff, 0x7E00);
                continue;
            }
            assert_eq!(f32_to_f16(f), half::f16::from_f32(f).to_bits(), "{f:e}");
        }
    }

    #[test]
    fn scale_min_packing_round_trips() {
        let ls = [0, 1, 17, 63, 32, 5, 48, 63];
        let lm = [63, 2, 33, 0, 15, 16, 47, 1];
        let packed = pack_scale_min_k4(&ls, &lm);
        assert_eq!(unpack_scale_min_k4(&packed), (ls, lm));
    }
}
