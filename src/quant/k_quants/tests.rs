//! The K-quants against ggml itself (through tests/ggml-oracle): quantized bytes (both of
//! `ggml_quantize_chunk`'s paths) and dequantized floats bit for bit, the AVX2 dots bit for bit
//! against the oracle's ggml-cpu (built with AVX2 and FMA), the portable dots to f32 rounding.
//! Inputs include the adversarial rows that break naive ports: zeros, constants, denormals,
//! values near f32's limits, lone outliers, inf and NaN.

use super::*;
use crate::quant::{Block, codec};

/// splitmix64: a deterministic source of test data without a dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-7);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
}

const WEIGHT_TYPES: [GgmlType; 5] = [
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// Named rows of `n` values, ordinary and adversarial.
fn rows(rng: &mut Rng, n: usize) -> Vec<(&'static str, Vec<f32>)> {
    let normal = |rng: &mut Rng, s: f32| (0..n).map(|_| rng.normal() * s).collect::<Vec<_>>();
    let mut out = vec![
        ("normal", normal(rng, 1.0)),
        ("positive", (0..n).map(|_| rng.uniform() + 0.01).collect()),
        ("negative", (0..n).map(|_| -rng.uniform() - 0.5).collect()),
        ("zeros", vec![0.0; n]),
        ("const_pos", vec![0.75; n]),
        ("const_neg", vec![-3.0; n]),
        ("tiny_1e-30", normal(rng, 1e-30)),
        ("denormal_1e-40", normal(rng, 1e-40)),
        ("huge_1e30", normal(rng, 1e30)),
        ("huge_1e38", normal(rng, 1e38)),
        (
            "sparse",
            (0..n)
                .map(|_| {
                    if rng.uniform() < 0.05 {
                        rng.normal()
                    } else {
                        0.0
                    }
                })
                .collect(),
        ),
        (
            "group_scales",
            (0..n)
                .map(|i| rng.normal() * 10f32.powi((i / 16 % 16) as i32 - 8))
                .collect(),
        ),
        (
            "pos_and_zero_groups",
            (0..n)
                .map(|i| if i / 32 % 2 == 0 { rng.uniform() } else { 0.0 })
                .collect(),
        ),
    ];
    let mut outlier = normal(rng, 0.1);
    for b in 0..n / QK_K {
        outlier[b * QK_K + (b * 37 + 11) % QK_K] = if b % 2 == 0 { 50.0 } else { -80.0 };
    }
    out.push(("outlier", outlier));
    let mut nonfinite = normal(rng, 1.0);
    nonfinite[3] = f32::INFINITY;
    nonfinite[n - 5] = f32::NAN;
    out.push(("nonfinite", nonfinite));
    out
}

/// Importance weights (one per column), or none.
fn imatrices(rng: &mut Rng, n: usize) -> Vec<(&'static str, Option<Vec<f32>>)> {
    vec![
        ("none", None),
        (
            "random",
            Some(
                (0..n)
                    .map(|_| rng.uniform() * rng.uniform() * 4.0)
                    .collect(),
            ),
        ),
        (
            "with_zeros",
            Some(
                (0..n)
                    .map(|i| if i % 7 == 0 { 0.0 } else { rng.uniform() })
                    .collect(),
            ),
        ),
    ]
}

fn first_difference(a: &[u8], b: &[u8], block: usize) -> String {
    let i = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(0);
    let blk = i / block;
    format!(
        "first difference at byte {i} (block {blk}, offset {})\n ours: {:?}\n ggml: {:?}",
        i % block,
        &a[blk * block..(blk + 1) * block],
        &b[blk * block..(blk + 1) * block]
    )
}

#[test]
fn sizes_match_ggml() {
    for ty in WEIGHT_TYPES.into_iter().chain([GgmlType::Q8_K]) {
        assert_eq!(ggml_oracle::type_size(ty.id()), ty.type_size(), "{ty}");
        assert_eq!(ggml_oracle::block_size(ty.id()), QK_K, "{ty}");
    }
    for ty in WEIGHT_TYPES {
        assert_eq!(
            ggml_oracle::vec_dot_type(ty.id()),
            GgmlType::Q8_K.id(),
            "{ty}"
        );
    }
    assert_eq!(std::mem::size_of::<BlockQ2K>(), 84);
    assert_eq!(std::mem::size_of::<BlockQ3K>(), 110);
    assert_eq!(std::mem::size_of::<BlockQ4K>(), 144);
    assert_eq!(std::mem::size_of::<BlockQ5K>(), 176);
    assert_eq!(std::mem::size_of::<BlockQ6K>(), 210);
    assert_eq!(std::mem::size_of::<BlockQ8K>(), 292);
}

/// Quantize (both ggml paths) and dequantize bit-exact against ggml for every weight type.
#[test]
fn quantize_and_dequantize_match_ggml() {
    let mut rng = Rng(0x5EED);
    let mut failures = Vec::new();
    for nb in [1, 2, 3, 16] {
        let n = nb * QK_K;
        let rows = rows(&mut rng, n);
        let imatrices = imatrices(&mut rng, n);
        for ty in WEIGHT_TYPES {
            let c = codec(ty).unwrap();
            for (row_name, x) in &rows {
                for (qw_name, qw) in &imatrices {
                    let theirs = ggml_oracle::quantize_chunk(ty.id(), x, n, qw.as_deref());
                    let mut ours = vec![0u8; theirs.len()];
                    c.quantize_row(x, &mut ours, qw.as_deref()).unwrap();
                    let case = format!("{ty} {nb} blocks, row {row_name}, imatrix {qw_name}");
                    if ours != theirs {
                        failures.push(format!(
                            "{case}: quantize: {}",
                            first_difference(&ours, &theirs, ty.type_size())
                        ));
                        continue;
                    }
                    let want = ggml_oracle::to_float(ty.id(), &theirs, n);
                    let mut got = vec![0f32; n];
                    c.dequantize_row(&theirs, &mut got).unwrap();
                    if let Some(i) = got
                        .iter()
                        .zip(&want)
                        .position(|(a, b)| a.to_bits() != b.to_bits())
                    {
                        failures.push(format!(
                            "{case}: dequantize: element {i}: {} vs ggml {}",
                            got[i], want[i]
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn q8_k_matches_ggml() {
    let mut rng = Rng(0xA11CE);
    let c = codec(GgmlType::Q8_K).unwrap();
    for nb in [1, 3, 16] {
        let n = nb * QK_K;
        for (name, x) in rows(&mut rng, n) {
            // ggml registers Q8_K's quantizer only with the CPU backend (`quantize_row_q8_K`,
            // which is `quantize_row_q8_K_ref`), and gives it no `to_float`.
            let theirs = ggml_oracle::cpu_from_float(GgmlType::Q8_K.id(), &x);
            let mut ours = vec![0u8; theirs.len()];
            c.quantize_row(&x, &mut ours, None).unwrap();
            assert!(
                ours == theirs,
                "Q8_K {name}: {}",
                first_difference(&ours, &theirs, 292)
            );
            let want: Vec<f32> = blocks::<BlockQ8K>(&theirs)
                .iter()
                .flat_map(|b| b.qs.map(|q| b.d * q as f32))
                .collect();
            let got = crate::quant::dequantize(GgmlType::Q8_K, &theirs, n).unwrap();
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "Q8_K {name} element {i}");
            }
        }
    }
}

fn blocks<B: Block>(bytes: &[u8]) -> Vec<B> {
    bytemuck::pod_collect_to_vec(bytes)
}

fn portable_dot(ty: GgmlType, w: &[u8], x: &[BlockQ8K]) -> f32 {
    match ty {
        GgmlType::Q2_K => q2_k::dot_portable(&blocks(w), x),
        GgmlType::Q3_K => q3_k::dot_portable(&blocks(w), x),
        GgmlType::Q4_K => q4_k::dot_portable(&blocks(w), x),
        GgmlType::Q5_K => q5_k::dot_portable(&blocks(w), x),
        GgmlType::Q6_K => q6_k::dot_portable(&blocks(w), x),
        _ => unreachable!("not a K weight type"),
    }
}

/// Σ over elements of |scale·q·x| plus |min·x|: the magnitude the f32 rounding of a dot
/// product is relative to (the mins can cancel the scaled values).
fn dot_magnitude(ty: GgmlType, w: &[u8], x: &[BlockQ8K]) -> f32 {
    let n = x.len() * QK_K;
    let xs: Vec<f32> = x
        .iter()
        .flat_map(|b| b.qs.map(|q| b.d * q as f32))
        .collect();
    let wv = crate::quant::dequantize(ty, w, n).unwrap();
    let mins: Vec<f32> = match ty {
        GgmlType::Q2_K => blocks::<BlockQ2K>(w)
            .iter()
            .flat_map(|b| {
                (0..QK_K)
                    .map(|i| common::from_f16(b.dmin) * (b.scales[i / 16] >> 4) as f32)
                    .collect::<Vec<_>>()
            })
            .collect(),
        GgmlType::Q4_K | GgmlType::Q5_K => {
            let per_block: Vec<(half::f16, [u8; 12])> = if ty == GgmlType::Q4_K {
                blocks::<BlockQ4K>(w)
                    .iter()
                    .map(|b| (b.dmin, b.scales))
                    .collect()
            } else {
                blocks::<BlockQ5K>(w)
                    .iter()
                    .map(|b| (b.dmin, b.scales))
                    .collect()
            };
            per_block
                .iter()
                .flat_map(|(dmin, s)| {
                    let (_, m) = common::unpack_scale_min_k4(s);
                    (0..QK_K).map(move |i| common::from_f16(*dmin) * m[i / 32] as f32)
                })
                .collect()
        }
        _ => vec![0.0; n],
    };
    (0..n)
        .map(|i| (wv[i].abs() + 2.0 * mins[i].abs()) * xs[i].abs())
        .sum()
}

/// The oracle's ggml-cpu is built with AVX2 and FMA (ggml enables them by default when not
/// building for the native CPU), so its dots are the AVX2 ones: the codec's dot (AVX2 here)
/// must give the same bits, the portable one the same value to f32 rounding.
#[test]
fn dots_match_ggml() {
    let mut rng = Rng(0xD07);
    let mut failures = Vec::new();
    for nb in [1, 2, 5, 16] {
        let n = nb * QK_K;
        let act: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
        let xq = ggml_oracle::cpu_from_float(GgmlType::Q8_K.id(), &act);
        let xb: Vec<BlockQ8K> = blocks(&xq);
        let rows = rows(&mut rng, n);
        let imatrix: Vec<f32> = (0..n).map(|_| rng.uniform()).collect();
        for ty in WEIGHT_TYPES {
            for (name, w) in &rows {
                for qw in [None, Some(imatrix.as_slice())] {
                    let wq = ggml_oracle::quantize_chunk(ty.id(), w, n, qw);
                    let want = ggml_oracle::vec_dot(ty.id(), n, &wq, &xq);
                    let case = format!("{ty} {nb} blocks {name} imatrix {}", qw.is_some());
                    let same =
                        |v: f32| v.to_bits() == want.to_bits() || (v.is_nan() && want.is_nan());

                    let fast = codec(ty).unwrap().vec_dot(&wq, &xq).unwrap();
                    #[cfg(target_arch = "x86_64")]
                    if has_avx2() && !same(fast) {
                        failures.push(format!("{case}: codec dot {fast} vs ggml {want}"));
                    }

                    let portable = portable_dot(ty, &wq, &xb);
                    let tol = 1e-5 * dot_magnitude(ty, &wq, &xb);
                    let close = (portable - want).abs() <= tol;
                    if want.is_finite() && !same(portable) && !close {
                        failures.push(format!(
                            "{case}: portable {portable} vs ggml {want} (tol {tol})"
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_dots_agree_with_portable_on_random_blocks() {
    if !has_avx2() {
        eprintln!("no AVX2 on this machine; skipped");
        return;
    }
    // Random bytes make every field take every value, far beyond what a quantizer writes.
    let mut rng = Rng(0xB17E5);
    for nb in [1, 4, 9] {
        let mut bytes = |len: usize| (0..len).map(|_| rng.next_u64() as u8).collect::<Vec<u8>>();
        let mut x: Vec<BlockQ8K> = blocks(&bytes(nb * 292));
        for b in &mut x {
            b.d = 0.01 + (b.qs[0] as f32).abs() / 1000.0;
            for (s, q) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
                *s = q.iter().map(|&v| v as i16).sum();
            }
        }
        for ty in WEIGHT_TYPES {
            let mut w = bytes(nb * ty.type_size());
            // Keep the fp16 scales finite and moderate: random bits would give inf and NaN.
            let d_offsets: &[usize] = match ty {
                GgmlType::Q2_K => &[80, 82],
                GgmlType::Q3_K => &[108],
                GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
                _ => &[208],
            };
            for b in w.chunks_exact_mut(ty.type_size()) {
                for &o in d_offsets {
                    let h = common::f32_to_f16(0.001 + (b[o + 1] as f32) / 5000.0);
                    b[o..o + 2].copy_from_slice(&h.to_le_bytes());
                }
            }
            let portable = portable_dot(ty, &w, &x);
            // SAFETY: AVX2 and FMA were detected above.
            let fast = unsafe {
                match ty {
                    GgmlType::Q2_K => avx2::dot_q2_k(&blocks(&w), &x),
                    GgmlType::Q3_K => avx2::dot_q3_k(&blocks(&w), &x),
                    GgmlType::Q4_K => avx2::dot_q4_k(&blocks(&w), &x),
                    GgmlType::Q5_K => avx2::dot_q5_k(&blocks(&w), &x),
                    _ => avx2::dot_q6_k(&blocks(&w), &x),
                }
            };
            let tol = 1e-5 * dot_magnitude(ty, &w, &x);
            assert!(
                (fast - portable).abs() <= tol,
                "{ty} {nb} blocks: avx2 {fast} vs portable {portable} (tol {tol})"
            );
        }
    }
}
