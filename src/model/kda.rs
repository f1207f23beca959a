//! A KDA layer (spec §3.1): projections, short conv + SiLU of the q, k, v streams,
//! per-channel log-space forget gate and per-head beta, the delta rule (chunked for prompts,
//! token loop for decode), gated RMSNorm, output projection.

use crate::backend::{AddNorm, Backend, KdaDims, KdaTail};

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
    next: AddNorm<'_, '_, B>,
) -> Result<(), ModelError> {
    let dm = dims(cfg);
    let c = dm.width();

    // Every projection of x at once, so that a decoded token's run as one dispatch.
    let (mut f_low, mut g_low) = (b.scratch(t * dm.head_dim)?, b.scratch(t * dm.head_dim)?);
    let mut beta = b.scratch(t * dm.heads)?;
    let mut qkv = [b.scratch(t * c)?, b.scratch(t * c)?, b.scratch(t * c)?];
    b.kda_projections(
        x,
        t,
        [&w.q, &w.k, &w.v],
        w.conv.each_ref(),
        conv,
        dm,
        &mut qkv,
        &mut [
            (&w.f_a, &mut f_low),
            (&w.g_a, &mut g_low),
            (&w.beta, &mut beta),
        ],
    )?;

    // The gates' up-projections, the delta rule, the gated norm and the output projection (a
    // decoded token's first three as one dispatch per layer on a GPU).
    let tail = KdaTail {
        q: &qkv[0],
        k: &qkv[1],
        v: &qkv[2],
        beta: &beta,
        f_low: &f_low,
        g_low: &g_low,
        f_b: &w.f_b,
        g_b: &w.g_b,
        dt_bias: &w.dt_bias,
        a: &w.a,
        norm: &w.norm,
        eps: cfg.rms_eps,
        out: &w.out,
    };
    b.kda_tail_add_norm(tail, state, t, dm, out, next)?;
    Ok(())
}
