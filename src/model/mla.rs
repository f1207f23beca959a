//! An MLA layer (spec §4) in the absorbed form: the query and the latent down-projection are
//! computed here; normalising and caching the latent and attending over the cache is one
//! backend op.

use crate::backend::{AddNorm, Backend, MlaDims};

use super::ModelError;
use super::config::{Config, MLA_NORM_EPS};
use super::weights::MlaLayerWeights;

pub fn dims(cfg: &Config) -> MlaDims {
    MlaDims {
        heads: cfg.n_head,
        kv_lora: cfg.kv_lora,
        nope: cfg.qk_nope,
        rope: cfg.qk_rope,
        v_dim: cfg.v_head_dim,
        norm_eps: MLA_NORM_EPS,
    }
}

#[allow(clippy::too_many_arguments)]
pub fn forward<B: Backend>(
    b: &B,
    cfg: &Config,
    w: &MlaLayerWeights<B::Weight<'_>>,
    latents: &mut B::Buf,
    pos: usize,
    x: &B::Buf,
    t: usize,
    out: &mut B::Buf,
    next: AddNorm<'_, '_, B>,
) -> Result<(), ModelError> {
    let dm = dims(cfg);
    let mut q = b.scratch(t * dm.heads * (dm.nope + dm.rope))?;
    let mut kv = b.scratch(t * dm.cache_width())?;
    b.matmuls(x, t, &mut [(&w.q, &mut q), (&w.kv_a, &mut kv)])?;
    let mut o = b.scratch(t * dm.heads * dm.v_dim)?;
    b.mla_attention(&q, &kv, &w.attn, latents, pos, t, dm, &mut o)?;
    b.matmul_add_norm(&w.out, &o, t, out, next)?;
    Ok(())
}
