//! A KDA layer (spec §3.1): projections, short conv + SiLU per stream, per-channel log-space
//! forget gate and per-head beta, the delta rule (chunked for prompts, token loop for decode),
//! gated RMSNorm, output projection.

use crate::backend::{Backend, KdaDims, KdaInputs};

use super::ModelError;
use super::config::{Config, KDA_L2_EPS};
use super::weights::KdaWeights;

pub fn dims(cfg: &Config) -> KdaDims {
    KdaDims {
        heads: cfg.n_head,
        head_dim: cfg.kda_head_dim,
        conv_kernel: cfg.conv_kernel,
        l2_eps: KDA_L2_EPS,
    }
}

#[allow(clippy::too_many_arguments)]
pub fn forward<B: Backend>(
    b: &B,
    cfg: &Config,
    w: &KdaWeights<B::Weight<'_>>,
    conv: &mut [B::Buf; 3],
    state: &mut B::Buf,
    x: &B::Buf,
    t: usize,
    out: &mut B::Buf,
) -> Result<(), ModelError> {
    let dm = dims(cfg);
    let c = dm.width();

    let mut z = b.scratch(t * c)?;
    let mut qkv = [b.scratch(t * c)?, b.scratch(t * c)?, b.scratch(t * c)?];
    for (s, (proj, y)) in [&w.q, &w.k, &w.v]
        .into_iter()
        .zip(qkv.iter_mut())
        .enumerate()
    {
        b.matmul(proj, x, t, &mut z)?;
        b.short_conv(&z, &w.conv[s], &mut conv[s], t, dm, y)?;
    }

    let mut low = b.scratch(t * dm.head_dim)?;
    let mut g = b.scratch(t * c)?;
    b.matmul(&w.f_a, x, t, &mut low)?;
    b.matmul(&w.f_b, &low, t, &mut g)?;
    let mut beta = b.scratch(t * dm.heads)?;
    b.matmul(&w.beta, x, t, &mut beta)?;
    b.kda_gate(&mut g, &mut beta, &w.dt_bias, &w.a, t, dm)?;

    let mut o = b.scratch(t * c)?;
    let inputs = KdaInputs {
        q: &qkv[0],
        k: &qkv[1],
        v: &qkv[2],
        g: &g,
        beta: &beta,
    };
    if t == 1 {
        b.kda_recurrent(inputs, state, t, dm, &mut o)?;
    } else {
        b.kda_chunked(inputs, state, t, dm, &mut o)?;
    }

    // The output gate reuses the projection scratch buffers.
    b.matmul(&w.g_a, x, t, &mut low)?;
    b.matmul(&w.g_b, &low, t, &mut z)?;
    b.gated_rms_norm(&mut o, &z, &w.norm, cfg.rms_eps, t, dm)?;
    b.matmul(&w.out, &o, t, out)?;
    Ok(())
}
