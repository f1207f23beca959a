//! MLA in the absorbed form (spec §4): attention runs over the latent cache as one shared
//! "KV head" of width kv_lora + rope; per-head keys and values are never materialised.

use rayon::prelude::*;

use super::super::{MlaDims, Result};
use super::elementwise::inv_rms;
use super::matmul::{MatView, dot, matmul};

/// Normalises the latent part of each new row of `kv` and stores the rows at `pos..` of `cache`.
pub fn append_latents(kv: &[f32], norm: &[f32], cache: &mut [f32], pos: usize, dims: MlaDims) {
    let (cw, l) = (dims.cache_width(), dims.kv_lora);
    for (i, row) in kv.chunks_exact(cw).enumerate() {
        let dst = &mut cache[(pos + i) * cw..(pos + i + 1) * cw];
        let inv = inv_rms(&row[..l], dims.norm_eps);
        for ((d, &x), &w) in dst[..l].iter_mut().zip(&row[..l]).zip(norm) {
            *d = w * (x * inv);
        }
        dst[l..].copy_from_slice(&row[l..]);
    }
}

pub struct Mla<'a> {
    pub k_b: MatView<'a>,
    pub v_b: MatView<'a>,
    pub dims: MlaDims,
    pub exact: bool,
}

impl Mla<'_> {
    /// Attention of the `t` query rows (at positions `pos..pos + t`) over the cache.
    pub fn attend(
        &self,
        q: &[f32],
        cache: &[f32],
        pos: usize,
        t: usize,
        out: &mut [f32],
    ) -> Result<()> {
        let dm = self.dims;
        let outs: Vec<Vec<f32>> = (0..dm.heads)
            .into_par_iter()
            .map(|h| self.head(h, q, cache, pos, t))
            .collect::<Result<_>>()?;
        for (h, o) in outs.iter().enumerate() {
            for i in 0..t {
                let dst = (i * dm.heads + h) * dm.v_dim;
                out[dst..dst + dm.v_dim].copy_from_slice(&o[i * dm.v_dim..(i + 1) * dm.v_dim]);
            }
        }
        Ok(())
    }

    /// One head's output `[t, v_dim]`.
    fn head(&self, h: usize, q: &[f32], cache: &[f32], pos: usize, t: usize) -> Result<Vec<f32>> {
        let dm = self.dims;
        let (qw, cw, l) = (dm.nope + dm.rope, dm.cache_width(), dm.kv_lora);
        let q_row = |i: usize| &q[(i * dm.heads + h) * qw..(i * dm.heads + h + 1) * qw];

        // q_abs = W_UK(h)ᵀ q_nope: the query moved into latent space.
        let q_nope: Vec<f32> = (0..t)
            .flat_map(|i| q_row(i)[..dm.nope].iter().copied())
            .collect();
        let mut q_abs = vec![0f32; t * l];
        matmul(
            self.k_b.slice(h, dm.heads),
            &q_nope,
            t,
            &mut q_abs,
            self.exact,
        )?;

        let scale = 1.0 / (qw as f32).sqrt();
        let mut o_lat = vec![0f32; t * l];
        let mut p = Vec::with_capacity(pos + t);
        for i in 0..t {
            let (qa, q_pe) = (&q_abs[i * l..(i + 1) * l], &q_row(i)[dm.nope..]);
            let ctx = &cache[..(pos + i + 1) * cw];
            p.clear();
            p.extend(
                ctx.chunks_exact(cw)
                    .map(|c| (dot(qa, &c[..l]) + dot(q_pe, &c[l..])) * scale),
            );
            softmax(&mut p);
            let oi = &mut o_lat[i * l..(i + 1) * l];
            for (&pt, c) in p.iter().zip(ctx.chunks_exact(cw)) {
                oi.iter_mut()
                    .zip(&c[..l])
                    .for_each(|(o, &cv)| *o += pt * cv);
            }
        }

        // o = W_UV(h) o_lat.
        let mut o = vec![0f32; t * dm.v_dim];
        matmul(self.v_b.slice(h, dm.heads), &o_lat, t, &mut o, self.exact)?;
        Ok(o)
    }
}

fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0f32;
    x.iter_mut().for_each(|v| {
        *v = (*v - max).exp();
        sum += *v;
    });
    x.iter_mut().for_each(|v| *v /= sum);
}
