//! The per-sequence state of the hybrid model: for each KDA layer the short-conv inputs of the
//! q, k and v streams and the f32 recurrent state of every head; for each MLA layer the cache of
//! normalised latents and shared rope keys, one row per position.

use crate::backend::Backend;

use super::ModelError;
use super::config::{Config, LayerKind};

pub enum LayerState<Buf> {
    Kda {
        /// `[conv_kernel - 1, width]` past inputs per stream (q, k, v), oldest first.
        conv: [Buf; 3],
        /// `[heads, head_dim, head_dim]`.
        state: Buf,
    },
    Mla {
        /// `[capacity, kv_lora + rope]`.
        latents: Buf,
    },
}

pub struct HybridCache<B: Backend> {
    pub layers: Vec<LayerState<B::Buf>>,
    /// Tokens seen so far: the position of the next token.
    pub pos: usize,
    /// Positions the MLA caches can hold.
    pub capacity: usize,
}

impl<B: Backend> HybridCache<B> {
    /// A fresh sequence (zero state) that can grow to `capacity` tokens.
    pub fn new(backend: &B, cfg: &Config, capacity: usize) -> Result<Self, ModelError> {
        let layers = cfg
            .layers
            .iter()
            .map(|kind| {
                Ok(match kind {
                    LayerKind::Kda => {
                        let w = cfg.kda_width();
                        let conv = (cfg.conv_kernel - 1) * w;
                        LayerState::Kda {
                            conv: [
                                backend.alloc(conv)?,
                                backend.alloc(conv)?,
                                backend.alloc(conv)?,
                            ],
                            state: backend
                                .alloc(cfg.n_head * cfg.kda_head_dim * cfg.kda_head_dim)?,
                        }
                    }
                    LayerKind::Mla => LayerState::Mla {
                        latents: backend.alloc(capacity * cfg.mla_cache_width())?,
                    },
                })
            })
            .collect::<Result<_, ModelError>>()?;
        Ok(HybridCache {
            layers,
            pos: 0,
            capacity,
        })
    }

    /// Bytes of f32 state this cache holds.
    pub fn bytes(cfg: &Config, capacity: usize) -> usize {
        let per_kda = 3 * (cfg.conv_kernel - 1) * cfg.kda_width()
            + cfg.n_head * cfg.kda_head_dim * cfg.kda_head_dim;
        let per_mla = capacity * cfg.mla_cache_width();
        4 * cfg
            .layers
            .iter()
            .map(|k| {
                if *k == LayerKind::Kda {
                    per_kda
                } else {
                    per_mla
                }
            })
            .sum::<usize>()
    }
}
