//! Every block type kiln supports, against ggml itself (tests/ggml-oracle over llama-cpp-sys-2).
//!
//! One `#[test]` per type, so a failure names its type. For each type, over random rows (uniform,
//! gaussian, heavy-tailed) and adversarial ones (zeros, constants, tiny, subnormal, huge, outliers,
//! infinities and NaNs, alternating signs, values exactly on rounding boundaries) of 1 to 16
//! blocks:
//!
//! (a) quantized bytes equal ggml's, without and with importance weights;
//! (b) dequantized values equal ggml's `to_float` bit for bit;
//! (c) activations quantized to the dot type equal ggml's bytes, and our `vec_dot` agrees with
//!     ggml-cpu's `vec_dot` on the same bytes up to f32 summation order;
//!
//! and on test-quantize-fns' synthetic data, the quantization and dot errors stay within its
//! bounds.

use ggml_oracle as oracle;
use kiln::quant::{GgmlType, RowCodec, codec};

macro_rules! oracle_tests {
    ($($name:ident => $ty:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check_type(GgmlType::$ty);
            }
        )*

        /// The types the macro instantiates, checked against `is_supported` so none is forgotten.
        const TESTED: &[GgmlType] = &[$(GgmlType::$ty),*];
    };
}

oracle_tests!(
    f32 => F32,
    f16 => F16,
    bf16 => BF16,
    q4_0 => Q4_0,
    q5_0 => Q5_0,
    q5_1 => Q5_1,
    q8_0 => Q8_0,
    q2_k => Q2_K,
    q3_k => Q3_K,
    q4_k => Q4_K,
    q5_k => Q5_K,
    q6_k => Q6_K,
    q8_k => Q8_K,
);

#[test]
fn every_supported_type_has_an_oracle_test() {
    let supported: Vec<GgmlType> = GgmlType::all().filter(|t| t.is_supported()).collect();
    for t in &supported {
        assert!(
            TESTED.contains(t),
            "{t} is supported but has no oracle test"
        );
    }
    for t in TESTED {
        assert!(
            supported.contains(t),
            "{t} has an oracle test but is not marked supported"
        );
    }
}

/// Activation formats have no `ggml_quantize_chunk` case; Q8_1 has a reference quantizer and Q8_K
/// only ggml-cpu's (which is `quantize_row_q8_K_ref` on every architecture).
fn ggml_quantize(ty: GgmlType, x: &[f32], n_per_row: usize, imatrix: Option<&[f32]>) -> Vec<u8> {
    match ty {
        GgmlType::Q8_K => oracle::cpu_from_float(ty.id(), x),
        GgmlType::Q8_1 => oracle::from_float_ref(ty.id(), x),
        _ => oracle::quantize_chunk(ty.id(), x, n_per_row, imatrix),
    }
}

/// ggml's `to_float`, or the format's definition where ggml has none (F32 is a copy; Q8_1 and
/// Q8_K are q * d, the only way ggml itself ever reads them).
fn ggml_dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    match ty {
        GgmlType::F32 => bytemuck::pod_collect_to_vec(bytes),
        GgmlType::Q8_1 => bytes
            .chunks_exact(36)
            .flat_map(|b| {
                let d = f16_bits_to_f32(u16::from_le_bytes([b[0], b[1]]));
                b[4..].iter().map(move |&q| q as i8 as f32 * d)
            })
            .collect(),
        GgmlType::Q8_K => bytes
            .chunks_exact(292)
            .flat_map(|b| {
                let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                b[4..260].iter().map(move |&q| d * q as i8 as f32)
            })
            .collect(),
        _ => oracle::to_float(ty.id(), bytes, n),
    }
}

fn f16_bits_to_f32(bits: u16) -> f32 {
    oracle::to_float(GgmlType::F16.id(), &bits.to_le_bytes(), 1)[0]
}

/// Whether ggml-cpu has a dot product with this type as the weight.
fn ggml_has_vec_dot(ty: GgmlType) -> bool {
    !matches!(ty, GgmlType::Q8_K | GgmlType::Q8_1)
}

/// Whether ggml takes importance weights for this type at all (Q8_K has no such entry point).
fn takes_imatrix(ty: GgmlType) -> bool {
    !matches!(ty, GgmlType::Q8_K | GgmlType::Q8_1)
}

// ---------------------------------------------------------------------------------------------
// Test data
// ---------------------------------------------------------------------------------------------

/// SplitMix64: deterministic, dependency-free, good enough for test rows.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn uniform(&mut self, lo: f64, hi: f64) -> f32 {
        (lo + (hi - lo) * self.unit()) as f32
    }

    fn gauss(&mut self) -> f64 {
        let u1 = self.unit().max(1e-300);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A named family of rows: `make(rng, n, block)` gives a row of `n` values.
type RowFn = fn(&mut Rng, usize, usize) -> Vec<f32>;

fn gauss_scaled(r: &mut Rng, n: usize, scale: f64) -> Vec<f32> {
    (0..n).map(|_| (r.gauss() * scale) as f32).collect()
}

/// Half-integers in (-n, n) with each 32-element group's extreme pinned to exactly -n: for the
/// symmetric quantizers whose divisor is n (Q4_0: 8, Q5_0: 16, Q8_0: 127) every x * id lands
/// exactly halfway between two quants.
fn half_steps(r: &mut Rng, len: usize, n: i32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            if i % 32 == 0 {
                -(n as f32)
            } else {
                (r.below(2 * n as usize) as i32 - n) as f32 + 0.5
            }
        })
        .collect()
}

const FAMILIES: &[(&str, RowFn)] = &[
    ("uniform", |r, n, _| {
        (0..n).map(|_| r.uniform(-1.0, 1.0)).collect()
    }),
    ("uniform_positive", |r, n, _| {
        (0..n).map(|_| r.uniform(0.5, 3.0)).collect()
    }),
    ("uniform_negative", |r, n, _| {
        (0..n).map(|_| r.uniform(-3.0, -0.5)).collect()
    }),
    ("gaussian", |r, n, _| gauss_scaled(r, n, 1.0)),
    ("gaussian_small", |r, n, _| gauss_scaled(r, n, 0.02)),
    ("cauchy", |r, n, _| {
        (0..n)
            .map(|_| (std::f64::consts::PI * (r.unit() - 0.5)).tan() as f32)
            .collect()
    }),
    ("laplace_cubed", |r, n, _| {
        (0..n)
            .map(|_| {
                let e = -r.unit().max(1e-300).ln();
                let v = if r.next_u64() & 1 == 0 { e } else { -e };
                (v * v * v) as f32
            })
            .collect()
    }),
    ("zeros", |_, n, _| vec![0.0; n]),
    ("negative_zeros", |_, n, _| vec![-0.0; n]),
    ("const_one", |_, n, _| vec![1.0; n]),
    ("const_positive", |_, n, _| vec![0.3712; n]),
    ("const_negative", |_, n, _| vec![-2.5; n]),
    ("tiny_1e-8", |r, n, _| gauss_scaled(r, n, 1e-8)),
    ("tiny_1e-30", |r, n, _| gauss_scaled(r, n, 1e-30)),
    ("tiny_1e-38", |r, n, _| gauss_scaled(r, n, 1e-38)),
    ("subnormal_1e-40", |r, n, _| gauss_scaled(r, n, 1e-40)),
    ("const_subnormal", |_, n, _| vec![f32::from_bits(1); n]),
    ("huge_1e30", |r, n, _| gauss_scaled(r, n, 1e30)),
    ("near_f16_max", |r, n, _| {
        (0..n).map(|_| r.uniform(-6e4, 6e4)).collect()
    }),
    ("const_65504", |_, n, _| vec![65504.0; n]),
    ("const_65520", |_, n, _| vec![-65520.0; n]),
    ("huge_1e38", |r, n, _| {
        (0..n).map(|_| r.uniform(-1e38, 1e38)).collect()
    }),
    ("const_f32_max", |_, n, _| vec![f32::MAX; n]),
    ("mixed_scales", |r, n, _| {
        (0..n)
            .map(|_| (r.gauss() * 10f64.powf(r.uniform(-30.0, 30.0) as f64)) as f32)
            .collect()
    }),
    ("outlier_per_block", |r, n, block| {
        let mut v = gauss_scaled(r, n, 0.01);
        let group = block.max(32).min(n);
        for g in (0..n).step_by(group) {
            let i = g + r.below(group.min(n - g));
            v[i] = if r.next_u64() & 1 == 0 { 100.0 } else { -100.0 };
        }
        v
    }),
    ("with_infinities", |r, n, _| {
        let mut v = gauss_scaled(r, n, 1.0);
        for i in (0..n).step_by(13) {
            v[i] = if i % 2 == 0 {
                f32::INFINITY
            } else {
                f32::NEG_INFINITY
            };
        }
        v
    }),
    ("with_nans", |r, n, _| {
        // Quiet, signalling and payload-carrying NaNs of both signs: conversions must keep
        // ggml's exact NaN bits.
        const NANS: [u32; 4] = [0x7fc0_0000, 0x7f80_0001, 0xffc1_2345, 0xff80_4000];
        let mut v = gauss_scaled(r, n, 1.0);
        for (k, i) in (0..n).step_by(7).enumerate() {
            v[i] = f32::from_bits(NANS[k % 4]);
        }
        v
    }),
    ("alternating_unit", |_, n, _| {
        (0..n)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect()
    }),
    ("alternating_ramp", |_, n, _| {
        (0..n)
            .map(|i| (1 + i % 7) as f32 * if i % 2 == 0 { 0.25 } else { -0.25 })
            .collect()
    }),
    ("positive_ramp", |_, n, _| {
        (0..n).map(|i| (i % 32) as f32).collect()
    }),
    ("half_steps_8", |r, n, _| half_steps(r, n, 8)),
    ("half_steps_16", |r, n, _| half_steps(r, n, 16)),
    ("half_steps_127", |r, n, _| half_steps(r, n, 127)),
    ("q5_1_half_steps", |r, n, _| {
        // min 0 and max 31 in every group, so d = 1 and (x - min) * id + 0.5 is an integer.
        (0..n)
            .map(|i| match i % 32 {
                0 => 0.0,
                1 => 31.0,
                _ => r.below(31) as f32 + 0.5,
            })
            .collect()
    }),
    ("f16_ties", |r, n, _| {
        // Exactly halfway between neighbouring f16 values: ties to even decide.
        (0..n)
            .map(|_| {
                let k = r.below(1024) as f32;
                let e = (r.below(20) as i32 - 10) as f32;
                let s = if r.next_u64() & 1 == 0 { 1.0 } else { -1.0 };
                s * (1.0 + (2.0 * k + 1.0) / 2048.0) * e.exp2()
            })
            .collect()
    }),
    ("bf16_ties", |r, n, _| {
        (0..n)
            .map(|_| {
                let k = r.below(128) as f32;
                let e = (r.below(60) as i32 - 30) as f32;
                (1.0 + (2.0 * k + 1.0) / 256.0) * e.exp2()
            })
            .collect()
    }),
];

/// Row lengths in elements: 1 to 16 blocks, and for the scalar types also lengths that cover
/// SIMD bodies and tails.
fn row_lengths(ty: GgmlType) -> Vec<usize> {
    let bs = ty.block_size();
    let mut v: Vec<usize> = [1, 2, 3, 7, 16].iter().map(|b| b * bs).collect();
    if bs == 1 {
        v.extend([31, 32, 100, 512]);
    }
    v
}

/// Importance-weight variants: none, moderate and wide-ranging positive weights.
fn imatrices(ty: GgmlType, r: &mut Rng, n: usize) -> Vec<(&'static str, Option<Vec<f32>>)> {
    let mut v = vec![("none", None)];
    if takes_imatrix(ty) {
        v.push((
            "uniform",
            Some((0..n).map(|_| r.uniform(0.1, 2.0)).collect()),
        ));
        v.push((
            "log_uniform",
            Some(
                (0..n)
                    .map(|_| 10f64.powf(r.uniform(-3.0, 3.0) as f64) as f32)
                    .collect(),
            ),
        ));
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

struct Failures {
    ty: GgmlType,
    list: Vec<String>,
}

impl Failures {
    fn push(&mut self, msg: String) {
        self.list.push(msg);
    }

    fn finish(self) {
        if self.list.is_empty() {
            return;
        }
        let shown: Vec<&str> = self.list.iter().take(30).map(String::as_str).collect();
        panic!(
            "{}: {} failed checks; first {}:\n{}",
            self.ty,
            self.list.len(),
            shown.len(),
            shown.join("\n")
        );
    }
}

fn first_block_diff(ours: &[u8], theirs: &[u8], type_size: usize) -> String {
    match ours.iter().zip(theirs).position(|(a, b)| a != b) {
        None => format!("lengths {} vs {}", ours.len(), theirs.len()),
        Some(i) => {
            let b = i / type_size;
            let r = b * type_size..(b + 1) * type_size;
            format!(
                "byte {i} (block {b}):\n  ours {:02x?}\n  ggml {:02x?}",
                &ours[r.clone()],
                &theirs[r]
            )
        }
    }
}

fn first_bits_diff(ours: &[f32], theirs: &[f32]) -> Option<String> {
    if ours.len() != theirs.len() {
        return Some(format!("lengths {} vs {}", ours.len(), theirs.len()));
    }
    let i = ours
        .iter()
        .zip(theirs)
        .position(|(a, b)| a.to_bits() != b.to_bits())?;
    Some(format!(
        "element {i}: {:e} ({:#010x}) vs ggml {:e} ({:#010x})",
        ours[i],
        ours[i].to_bits(),
        theirs[i],
        theirs[i].to_bits()
    ))
}

fn our_quantize(c: &dyn RowCodec, x: &[f32], imatrix: Option<&[f32]>) -> Result<Vec<u8>, String> {
    let ty = c.ty();
    let mut out = vec![0u8; ty.row_bytes(x.len()).expect("lengths are whole blocks")];
    c.quantize_row(x, &mut out, imatrix)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn our_dequantize(c: &dyn RowCodec, bytes: &[u8], n: usize) -> Result<Vec<f32>, String> {
    let mut out = vec![0f32; n];
    c.dequantize_row(bytes, &mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// The f64 sum of |w_i * x_i|: the scale of the rounding error any f32 summation order can make.
fn abs_dot(w: &[f32], x: &[f32]) -> f64 {
    w.iter()
        .zip(x)
        .map(|(&a, &b)| (a as f64 * b as f64).abs())
        .sum()
}

fn exact_dot(w: &[f32], x: &[f32]) -> f64 {
    w.iter().zip(x).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Our dot and ggml's agree: the same non-finite class, or within 1e-5 of Σ|w·x| (+1e-30).
///
/// Two cases are looser, because there ggml's own kernels disagree with each other:
/// - Σ|w·x| not finite (a scale overflowed to inf, so some w_i is inf or inf·0 = NaN): ggml's
///   generic dot gives ±inf where its AVX2 dot gives NaN (lanes with a zero integer sum), so
///   equal bits or "both non-finite" is required.
/// - Σ|w·x| beyond f32's range: whether a partial sum overflows depends on the summation order
///   (ggml's f32 lanes overflow where kiln's f64 float dots do not), so a finite result is
///   checked against the exact f64 dot instead.
fn dots_agree(ours: f32, ggml: f32, abs: f64, exact: f64) -> bool {
    if !abs.is_finite() {
        return ours.to_bits() == ggml.to_bits() || (!ours.is_finite() && !ggml.is_finite());
    }
    let tol = 1e-5 * abs + 1e-30;
    if abs > f32::MAX as f64 {
        return !ours.is_finite()
            || exact.abs() > f32::MAX as f64
            || (ours as f64 - exact).abs() <= tol;
    }
    if ggml.is_nan() || ours.is_nan() {
        return ggml.is_nan() && ours.is_nan();
    }
    if ggml.is_infinite() || ours.is_infinite() {
        return ggml == ours;
    }
    (ours as f64 - ggml as f64).abs() <= tol
}

/// Quantizes `x` to the dot type both ways; returns the bytes (ggml's) or records a mismatch.
fn quantize_activations(
    f: &mut Failures,
    ctx: &str,
    dc: &dyn RowCodec,
    x: &[f32],
) -> Option<Vec<u8>> {
    let dt = dc.ty();
    let theirs = ggml_quantize(dt, x, x.len(), None);
    match our_quantize(dc, x, None) {
        Ok(ours) if ours == theirs => Some(theirs),
        Ok(ours) => {
            f.push(format!(
                "{ctx}: activations as {dt}: {}",
                first_block_diff(&ours, &theirs, dt.type_size())
            ));
            None
        }
        Err(e) => {
            f.push(format!("{ctx}: activations as {dt}: {e}"));
            None
        }
    }
}

fn check_type(ty: GgmlType) {
    let c = match codec(ty) {
        Ok(c) => c,
        Err(e) => panic!("{ty}: no codec: {e}"),
    };
    assert_eq!(c.ty(), ty);
    assert_eq!(
        oracle::block_size(ty.id()),
        ty.block_size(),
        "{ty} block size"
    );
    assert_eq!(oracle::type_size(ty.id()), ty.type_size(), "{ty} type size");

    let dt = c.dot_type();
    if ggml_has_vec_dot(ty) {
        assert_eq!(
            dt.id(),
            oracle::vec_dot_type(ty.id()),
            "{ty}: dot type {dt} differs from ggml's"
        );
    }
    let dc = codec(dt).unwrap_or_else(|e| panic!("{ty}: dot type {dt} has no codec: {e}"));

    let mut f = Failures {
        ty,
        list: Vec::new(),
    };
    let mut r = Rng(0x6b69_6c6e ^ ty.id() as u64);
    for n in row_lengths(ty) {
        for &(fam, make) in FAMILIES {
            let row = make(&mut r, n, ty.block_size());
            let ctx = format!("{ty} n={n} row {fam}");
            check_row(&mut f, &ctx, c, dc, &row, &mut r);
        }
    }
    check_synthetic(&mut f, c, dc);
    f.finish();
}

/// When a block's arithmetic combines two NaNs, which one comes out (and so the sign of a NaN
/// scale) is not specified: x86 returns the first operand, and both GCC and LLVM may commute
/// operands freely. For rows holding NaNs, quantizers that do arithmetic across elements are
/// held to equal dequantized values with any NaN matching any NaN; conversions of single values
/// (the float types) stay byte-exact.
fn same_up_to_nan_choice(ty: GgmlType, row: &[f32], ours: &[u8], theirs: &[u8]) -> bool {
    if ty.block_size() == 1 || !row.iter().any(|v| v.is_nan()) {
        return false;
    }
    let (a, b) = (
        ggml_dequantize(ty, ours, row.len()),
        ggml_dequantize(ty, theirs, row.len()),
    );
    a.iter()
        .zip(&b)
        .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

fn check_row(
    f: &mut Failures,
    ctx: &str,
    c: &dyn RowCodec,
    dc: &dyn RowCodec,
    row: &[f32],
    r: &mut Rng,
) {
    let ty = c.ty();
    let n = row.len();
    let mut weight_bytes = None;
    for (iname, imatrix) in imatrices(ty, r, n) {
        let ctx = format!("{ctx} imatrix {iname}");
        let theirs = ggml_quantize(ty, row, n, imatrix.as_deref());
        // (a) bytes
        match our_quantize(c, row, imatrix.as_deref()) {
            Ok(ours) if ours != theirs && !same_up_to_nan_choice(ty, row, &ours, &theirs) => {
                f.push(format!(
                    "{ctx}: quantize: {}",
                    first_block_diff(&ours, &theirs, ty.type_size())
                ));
            }
            Ok(_) => {}
            Err(e) => f.push(format!("{ctx}: quantize: {e}")),
        }
        // (b) values, from ggml's bytes so that a quantizer bug does not hide a dequantizer one
        let expected = ggml_dequantize(ty, &theirs, n);
        match our_dequantize(c, &theirs, n) {
            Ok(ours) => {
                if let Some(d) = first_bits_diff(&ours, &expected) {
                    f.push(format!("{ctx}: dequantize: {d}"));
                }
            }
            Err(e) => f.push(format!("{ctx}: dequantize: {e}")),
        }
        if weight_bytes.is_none() {
            weight_bytes = Some((theirs, expected));
        }
    }

    // (c) dots: the row as weights against gaussian activations, and against itself.
    let Some((w, wv)) = weight_bytes else { return };
    let gauss: Vec<f32> = (0..n).map(|_| r.gauss() as f32).collect();
    for (xname, x) in [("gaussian", &gauss[..]), ("itself", row)] {
        let ctx = format!("{ctx} dot with {xname}");
        let Some(xq) = quantize_activations(f, &ctx, dc, x) else {
            continue;
        };
        let ours = match c.vec_dot(&w, &xq) {
            Ok(v) => v,
            Err(e) => {
                f.push(format!("{ctx}: vec_dot: {e}"));
                continue;
            }
        };
        if ggml_has_vec_dot(ty) {
            let theirs = oracle::vec_dot(ty.id(), n, &w, &xq);
            let xv = ggml_dequantize(dc.ty(), &xq, n);
            let abs = abs_dot(&wv, &xv);
            if !dots_agree(ours, theirs, abs, exact_dot(&wv, &xv)) {
                f.push(format!(
                    "{ctx}: vec_dot {ours:e} vs ggml {theirs:e} (Σ|w·x| = {abs:e})"
                ));
            }
        }
    }
}

/// test-quantize-fns' data: 0.1 + 2 cos(i + offset), 32 * 128 values.
fn synthetic(offset: f64) -> Vec<f32> {
    (0..32 * 128)
        .map(|i| (0.1 + 2.0 * (i as f64 + offset).cos()) as f32)
        .collect()
}

/// test-quantize-fns' bounds: total quantization error and per-element dot error.
fn bounds(ty: GgmlType) -> (f64, f64) {
    match ty {
        GgmlType::Q2_K => (0.0075, 0.04),
        GgmlType::Q3_K => (0.0040, 0.04),
        _ => (0.002, 0.02),
    }
}

fn check_synthetic(f: &mut Failures, c: &dyn RowCodec, dc: &dyn RowCodec) {
    let ty = c.ty();
    let (max_rmse, max_dot) = bounds(ty);
    let w = synthetic(0.0);
    let x = synthetic(1.0);
    let n = w.len();
    let ctx = format!("{ty} synthetic");

    let theirs = ggml_quantize(ty, &w, n, None);
    let wq = match our_quantize(c, &w, None) {
        Ok(ours) if ours == theirs => ours,
        Ok(ours) => {
            f.push(format!(
                "{ctx}: quantize: {}",
                first_block_diff(&ours, &theirs, ty.type_size())
            ));
            return;
        }
        Err(e) => {
            f.push(format!("{ctx}: quantize: {e}"));
            return;
        }
    };
    let wv = match our_dequantize(c, &wq, n) {
        Ok(v) => v,
        Err(e) => {
            f.push(format!("{ctx}: dequantize: {e}"));
            return;
        }
    };
    // test-quantize-fns' "total quantization error": sqrt(Σ diff²) / n (its array_rmse).
    let rmse = w
        .iter()
        .zip(&wv)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum::<f64>()
        .sqrt()
        / n as f64;
    if rmse > max_rmse {
        f.push(format!(
            "{ctx}: total quantization error {rmse:e} > {max_rmse}"
        ));
    }

    let Some(xq) = quantize_activations(f, &ctx, dc, &x) else {
        return;
    };
    let dot = match c.vec_dot(&wq, &xq) {
        Ok(v) => v as f64,
        Err(e) => {
            f.push(format!("{ctx}: vec_dot: {e}"));
            return;
        }
    };
    // Against the dequantized weights (only the activations' quantization and the summation
    // contribute) and against the original weights (test-quantize-fns' own measure).
    for (what, reference) in [
        ("dequantized", exact_dot(&wv, &x)),
        ("original", exact_dot(&w, &x)),
    ] {
        let err = (dot - reference).abs() / n as f64;
        if err.is_nan() || err > max_dot {
            f.push(format!(
                "{ctx}: dot error vs {what} weights {err:e} > {max_dot} ({dot} vs {reference})"
            ));
        }
    }
}
