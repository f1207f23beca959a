//! Row-parallel products of a GGUF weight matrix with f32 activations.
//!
//! Two ways to take a dot product of a weight row:
//! - quantized (ggml's way): the activation rows are quantized once to the weight type's dot
//!   type (Q8_0, Q8_K, ...) and every weight row is dotted in its own block format;
//! - widened: the weight row is dequantized to f32 and dotted with the f32 activations.
//!
//! Float weights (F32/F16/BF16) are always widened: rounding the activations to 16 bits would buy
//! no speed on a CPU and would cost the model its f32 exactness. Quantized weights use the
//! quantized dot unless the backend runs in exact mode.

use crate::quant::{GgmlType, RowCodec, codec};
use rayon::prelude::*;

use super::super::{BackendError, Result};

/// A 2-D matrix inside a weight: `rows` rows of `cols` values, in `ty`'s block format.
#[derive(Clone, Copy)]
pub struct MatView<'a> {
    pub ty: GgmlType,
    pub codec: &'static dyn RowCodec,
    pub cols: usize,
    pub rows: usize,
    pub bytes: &'a [u8],
}

impl<'a> MatView<'a> {
    pub fn new(ty: GgmlType, cols: usize, rows: usize, bytes: &'a [u8]) -> Result<Self> {
        let codec = codec(ty)?;
        let row_bytes = ty
            .row_bytes(cols)
            .ok_or(crate::quant::QuantError::RowNotBlockAligned {
                ty,
                n: cols,
                block: ty.block_size(),
            })?;
        if row_bytes * rows != bytes.len() {
            return Err(BackendError::BufferTooSmall {
                len: bytes.len(),
                needed: row_bytes * rows,
            });
        }
        Ok(MatView {
            ty,
            codec,
            cols,
            rows,
            bytes,
        })
    }

    pub fn row_bytes(&self) -> usize {
        self.bytes.len() / self.rows.max(1)
    }

    pub fn row(&self, r: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.bytes[r * rb..(r + 1) * rb]
    }

    /// The `i`-th of `n` equal consecutive sub-matrices (one expert, one head).
    pub fn slice(&self, i: usize, n: usize) -> MatView<'a> {
        let rows = self.rows / n;
        let rb = self.row_bytes();
        MatView {
            rows,
            bytes: &self.bytes[i * rows * rb..(i + 1) * rows * rb],
            ..*self
        }
    }

    fn is_float(&self) -> bool {
        matches!(self.ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
    }
}

/// Rows of weight per rayon task: enough work to amortise the task, small enough to balance.
const ROWS_PER_TASK: usize = 16;

/// `out[t, rows] = x[t, cols] · Wᵀ`.
pub fn matmul(w: MatView<'_>, x: &[f32], t: usize, out: &mut [f32], exact: bool) -> Result<()> {
    let (cols, rows) = (w.cols, w.rows);
    if x.len() < t * cols {
        return Err(BackendError::BufferTooSmall {
            len: x.len(),
            needed: t * cols,
        });
    }
    if out.len() < t * rows {
        return Err(BackendError::BufferTooSmall {
            len: out.len(),
            needed: t * rows,
        });
    }
    let x = &x[..t * cols];
    let out = &mut out[..t * rows];
    if t == 1 {
        return rows_times(w, x, 1, out, exact);
    }
    // Each task reads its weight rows once for all t tokens; the result comes out transposed.
    let mut tr = vec![0f32; rows * t];
    rows_times(w, x, t, &mut tr, exact)?;
    for (r, col) in tr.chunks_exact(t).enumerate() {
        for (i, &v) in col.iter().enumerate() {
            out[i * rows + r] = v;
        }
    }
    Ok(())
}

/// `out[r * t + i] = W[r] · x[i]` for all rows r and tokens i.
fn rows_times(w: MatView<'_>, x: &[f32], t: usize, out: &mut [f32], exact: bool) -> Result<()> {
    if w.is_float() || exact {
        widened(w, x, t, out)
    } else {
        quantized(w, x, t, out)
    }
}

fn widened(w: MatView<'_>, x: &[f32], t: usize, out: &mut [f32]) -> Result<()> {
    let cols = w.cols;
    out.par_chunks_mut(ROWS_PER_TASK * t)
        .enumerate()
        .try_for_each(|(task, chunk)| {
            let mut row = vec![0f32; if w.ty == GgmlType::F32 { 0 } else { cols }];
            for (k, o) in chunk.chunks_exact_mut(t).enumerate() {
                let bytes = w.row(task * ROWS_PER_TASK + k);
                let wr: &[f32] = match bytemuck::try_cast_slice::<u8, f32>(bytes) {
                    Ok(f) if w.ty == GgmlType::F32 => f,
                    _ => {
                        w.codec.dequantize_row(bytes, &mut row)?;
                        &row
                    }
                };
                for (i, o) in o.iter_mut().enumerate() {
                    *o = dot(wr, &x[i * cols..(i + 1) * cols]);
                }
            }
            Ok(())
        })
}

fn quantized(w: MatView<'_>, x: &[f32], t: usize, out: &mut [f32]) -> Result<()> {
    let xq = quantize_activations(w.codec.dot_type(), x, w.cols, t)?;
    let xrb = xq.len() / t;
    out.par_chunks_mut(ROWS_PER_TASK * t)
        .enumerate()
        .try_for_each(|(task, chunk)| {
            for (k, o) in chunk.chunks_exact_mut(t).enumerate() {
                let wr = w.row(task * ROWS_PER_TASK + k);
                for (i, o) in o.iter_mut().enumerate() {
                    *o = w.codec.vec_dot(wr, &xq[i * xrb..(i + 1) * xrb])?;
                }
            }
            Ok::<(), BackendError>(())
        })
}

/// The `t` activation rows of `cols` values quantized to `ty`, rows back to back.
pub fn quantize_activations(ty: GgmlType, x: &[f32], cols: usize, t: usize) -> Result<Vec<u8>> {
    let c = codec(ty)?;
    let rb = ty
        .row_bytes(cols)
        .ok_or(crate::quant::QuantError::RowNotBlockAligned {
            ty,
            n: cols,
            block: ty.block_size(),
        })?;
    let mut xq = vec![0u8; rb * t];
    xq.par_chunks_mut(rb)
        .zip(x.par_chunks(cols))
        .try_for_each(|(o, xr)| c.quantize_row(xr, o, None))?;
    Ok(xq)
}

/// f32 dot product with eight independent partial sums, so that the compiler vectorises it.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::quantize_rows;

    fn lcg(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
            })
            .collect()
    }

    fn reference(w: &[f32], x: &[f32], cols: usize, rows: usize, t: usize) -> Vec<f64> {
        let mut out = vec![0f64; t * rows];
        for i in 0..t {
            for r in 0..rows {
                out[i * rows + r] = (0..cols)
                    .map(|c| w[r * cols + c] as f64 * x[i * cols + c] as f64)
                    .sum();
            }
        }
        out
    }

    /// Exact mode and float weights: the product of the dequantized weights, to f32 rounding.
    #[test]
    fn widened_equals_dequantized_product() {
        let (cols, rows) = (512, 37);
        let w = lcg(cols * rows, 1);
        for ty in [
            GgmlType::F32,
            GgmlType::F16,
            GgmlType::BF16,
            GgmlType::Q8_0,
            GgmlType::Q4_K,
            GgmlType::Q6_K,
        ] {
            let bytes = quantize_rows(ty, &w, cols, None).unwrap();
            let wd = crate::quant::dequantize(ty, &bytes, w.len()).unwrap();
            let view = MatView::new(ty, cols, rows, &bytes).unwrap();
            for t in [1, 5] {
                let x = lcg(cols * t, 2 + t as u64);
                let mut out = vec![0f32; t * rows];
                matmul(view, &x, t, &mut out, true).unwrap();
                let want = reference(&wd, &x, cols, rows, t);
                for (a, b) in out.iter().zip(&want) {
                    assert!(
                        (*a as f64 - b).abs() <= 1e-5 * (1.0 + b.abs()),
                        "{ty} t={t}: {a} vs {b}"
                    );
                }
            }
        }
    }

    /// ggml's test data (tests/test-quantize-fns.cpp): `0.1 + 2 cos(i + offset)`.
    fn ggml_data(n: usize, offset: f32) -> Vec<f32> {
        (0..n)
            .map(|i| 0.1 + 2.0 * (i as f32 + offset).cos())
            .collect()
    }

    /// The fast path (activations quantized to the dot type) against the f32 product with the
    /// dequantized weights, within ggml's dot-product bound: |error| / n ≤ 0.02 (0.04 for the
    /// 2- and 3-bit types), as test-quantize-fns checks it.
    #[test]
    fn quantized_matmul_within_ggml_dot_error() {
        let (cols, rows, t) = (4096, 8, 3);
        let w: Vec<f32> = (0..rows)
            .flat_map(|r| ggml_data(cols, r as f32 * 0.37))
            .collect();
        let x: Vec<f32> = (0..t)
            .flat_map(|i| ggml_data(cols, 1.0 + i as f32))
            .collect();
        use GgmlType::*;
        for ty in [Q4_0, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K] {
            let bound = if matches!(ty, Q2_K | Q3_K) {
                0.04
            } else {
                0.02
            };
            let bytes = quantize_rows(ty, &w, cols, None).unwrap();
            let view = MatView::new(ty, cols, rows, &bytes).unwrap();
            let (mut fast, mut exact) = (vec![0f32; t * rows], vec![0f32; t * rows]);
            matmul(view, &x, t, &mut fast, false).unwrap();
            matmul(view, &x, t, &mut exact, true).unwrap();
            let worst = fast
                .iter()
                .zip(&exact)
                .map(|(a, b)| (a - b).abs() / cols as f32)
                .fold(0f32, f32::max);
            eprintln!("{ty}: worst dot error per element {worst:.2e} (bound {bound})");
            assert!(
                worst <= bound,
                "{ty}: dot error {worst} per element > {bound}"
            );
            // The fast path must really take the quantized dot: Q8_K/Q8_0 activations round.
            assert!(
                fast != exact,
                "{ty}: fast path equals the exact path bit for bit"
            );
        }
    }
}
