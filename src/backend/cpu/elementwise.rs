//! Row-wise helpers: embedding lookup, RMSNorm, SwiGLU, argmax.

use super::super::{BackendError, Result};
use super::matmul::MatView;

/// Dequantizes rows `ids` of `table` into `out`.
pub fn embed(table: MatView<'_>, ids: &[u32], out: &mut [f32]) -> Result<()> {
    let n = table.cols;
    if out.len() < ids.len() * n {
        return Err(BackendError::BufferTooSmall {
            len: out.len(),
            needed: ids.len() * n,
        });
    }
    for (&id, o) in ids.iter().zip(out.chunks_exact_mut(n)) {
        if id as usize >= table.rows {
            return Err(BackendError::TokenOutOfRange {
                id,
                rows: table.rows,
            });
        }
        table.codec.dequantize_row(table.row(id as usize), o)?;
    }
    Ok(())
}

/// `out = w ⊙ x / sqrt(mean(x²) + eps)`, per row of `w.len()` values.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let n = w.len();
    for (xr, or) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let inv = inv_rms(xr, eps);
        for ((o, &v), &wi) in or.iter_mut().zip(xr).zip(w) {
            *o = wi * (v * inv);
        }
    }
}

/// `1 / sqrt(mean(x²) + eps)`, the sum taken in f64 so that long rows do not lose bits.
pub fn inv_rms(x: &[f32], eps: f32) -> f32 {
    let ss: f64 = x.iter().map(|&v| v as f64 * v as f64).sum();
    1.0 / ((ss / x.len() as f64) as f32 + eps).sqrt()
}

pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `gate ← silu(gate) ⊙ up`.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    gate.iter_mut()
        .zip(up)
        .for_each(|(g, &u)| *g = silu(*g) * u);
}

/// Index of the largest value; the first one on ties, as torch's argmax.
pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}
