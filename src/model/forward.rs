//! The whole model (spec §6): embedding, the pre-norm residual layer loop, final norm, lm head.

use crate::backend::{AddNorm, Backend};

use super::cache::{HybridCache, LayerState};
use super::weights::Mixer;
use super::{Model, ModelError, ffn, kda, mla};

/// Which positions get logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Every position of the call: `[t, vocab]`.
    All,
    /// Only the last position: `[1, vocab]` (generation).
    Last,
}

/// Most tokens one pass through the layers holds (llama.cpp's default micro-batch): a longer
/// prompt runs in passes of this many, so its temporaries (attention scores, expert inputs)
/// stay bounded however long it is.
pub const MAX_UBATCH: usize = 512;

/// Where a pass's token ids are: on the host, or `t` of them on the device as f32 values (the
/// previous pass's [`Backend::argmax_to`]).
enum Ids<'a, Buf> {
    Host(&'a [u32]),
    Device(&'a Buf, usize),
}

impl<Buf> Ids<'_, Buf> {
    fn len(&self) -> usize {
        match self {
            Ids::Host(ids) => ids.len(),
            Ids::Device(_, t) => *t,
        }
    }
}

impl<B: Backend> Model<'_, B> {
    /// Runs `ids` as the next tokens of the sequence in `cache` and returns the logits buffer
    /// (`[t or 1, vocab]`, f32). A prompt of any length is one call; decode is a call per token.
    pub fn forward(
        &self,
        b: &B,
        ids: &[u32],
        cache: &mut HybridCache<B>,
        which: Logits,
    ) -> Result<B::Buf, ModelError> {
        if ids.len() <= MAX_UBATCH {
            return self.forward_ubatch(b, Ids::Host(ids), cache, which);
        }
        let vocab = self.config.vocab;
        if cache.pos + ids.len() > cache.capacity {
            return Err(ModelError::ContextFull {
                needed: cache.pos + ids.len(),
                capacity: cache.capacity,
            });
        }
        let mut all = match which {
            Logits::All => Some(b.alloc(ids.len() * vocab)?),
            Logits::Last => None,
        };
        let mut last = None;
        for (i, chunk) in ids.chunks(MAX_UBATCH).enumerate() {
            let logits = self.forward_ubatch(b, Ids::Host(chunk), cache, which)?;
            if let Some(all) = &mut all {
                b.copy(&logits, 0, all, i * MAX_UBATCH * vocab, chunk.len() * vocab)?;
            }
            last = Some(logits);
        }
        Ok(match all {
            Some(all) => all,
            None => last.expect("a long prompt has chunks"),
        })
    }

    /// [`Model::forward`] of one token whose id the device holds as an f32 value in `id`
    /// (written by [`Backend::argmax_to`] over this model's logits): the host need not know the
    /// id, so the pass can be recorded while the device is still choosing it.
    pub fn forward_device_id(
        &self,
        b: &B,
        id: &B::Buf,
        cache: &mut HybridCache<B>,
        which: Logits,
    ) -> Result<B::Buf, ModelError> {
        self.forward_ubatch(b, Ids::Device(id, 1), cache, which)
    }

    /// [`Model::forward`] for at most [`MAX_UBATCH`] tokens: one pass through the layers.
    fn forward_ubatch(
        &self,
        b: &B,
        ids: Ids<'_, B::Buf>,
        cache: &mut HybridCache<B>,
        which: Logits,
    ) -> Result<B::Buf, ModelError> {
        let cfg = &self.config;
        let w = &self.weights;
        let (t, d) = (ids.len(), cfg.hidden);
        if t == 0 {
            return Err(ModelError::NoTokens);
        }
        if let Ids::Host(ids) = &ids
            && let Some(&id) = ids.iter().find(|&&id| id as usize >= cfg.vocab)
        {
            return Err(ModelError::TokenOutOfRange {
                id,
                vocab: cfg.vocab,
            });
        }
        let pos = cache.pos;
        if pos + t > cache.capacity {
            return Err(ModelError::ContextFull {
                needed: pos + t,
                capacity: cache.capacity,
            });
        }

        let mut h = b.scratch(t * d)?;
        match ids {
            Ids::Host(ids) => b.embed(&w.token_embd, ids, &mut h)?,
            Ids::Device(ids, t) => b.embed_from(&w.token_embd, ids, t, &mut h)?,
        }
        let mut normed = b.scratch(t * d)?;
        // The feed-forward's input: each mixer ends with the residual add of its output and the
        // feed-forward's norm, which a backend may fold into the mixer's last kernel.
        let mut ffn_in = b.scratch(t * d)?;
        let mut branch = b.scratch(t * d)?;
        for (i, (layer, state)) in w.layers.iter().zip(cache.layers.iter_mut()).enumerate() {
            // The previous layer's feed-forward residual is added with this layer's norm.
            if i == 0 {
                b.rms_norm(&h, &layer.attn_norm, cfg.rms_eps, t, &mut normed)?;
            } else {
                b.add_rms_norm(
                    &mut h,
                    &branch,
                    &layer.attn_norm,
                    cfg.rms_eps,
                    t,
                    d,
                    &mut normed,
                )?;
            }
            let next = AddNorm {
                acc: &mut h,
                w: &layer.ffn_norm,
                eps: cfg.rms_eps,
                width: d,
                out: &mut ffn_in,
            };
            match (&layer.mixer, state) {
                (Mixer::Kda(lw), LayerState::Kda { conv, state }) => {
                    kda::forward(b, cfg, lw, conv, state, &normed, t, &mut branch, next)?
                }
                (Mixer::Mla(lw), LayerState::Mla { latents }) => {
                    mla::forward(b, cfg, lw, latents, pos, &normed, t, &mut branch, next)?
                }
                _ => return Err(ModelError::CacheMismatch(i)),
            }
            ffn::forward(b, &layer.ffn, cfg.dense_ff, &ffn_in, t, &mut branch)?;
        }
        cache.pos += t;

        // The lm head is the largest matrix: run it only on the rows that are asked for.
        let rows = match which {
            Logits::All => t,
            Logits::Last => 1,
        };
        if rows == t && !w.layers.is_empty() {
            // The last residual add with the output norm (a decoded token).
            b.add_rms_norm(
                &mut h,
                &branch,
                &w.output_norm,
                cfg.rms_eps,
                t,
                d,
                &mut normed,
            )?;
        } else {
            if !w.layers.is_empty() {
                b.add(&mut h, &branch, t * d)?;
            }
            if rows < t {
                b.copy(&h, (t - 1) * d, &mut branch, 0, d)?;
                std::mem::swap(&mut h, &mut branch);
            }
            b.rms_norm(&h, &w.output_norm, cfg.rms_eps, rows, &mut normed)?;
        }
        let mut logits = b.scratch(rows * cfg.vocab)?;
        b.matmul(&w.output, &normed, rows, &mut logits)?;
        Ok(logits)
    }
}
