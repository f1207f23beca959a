//! Kimi Linear: hyper-parameters from GGUF metadata ([`config`]), weights by their GGUF names
//! ([`weights`]), the per-sequence hybrid state ([`cache`]) and the forward pass, written once
//! over [`Backend`]: [`forward`] runs the layer loop, [`kda`], [`mla`] and [`ffn`] one block each;
//! [`greedy`] decodes with the device a step ahead of the host.

pub mod cache;
pub mod config;
mod ffn;
mod forward;
mod greedy;
mod kda;
mod mla;
pub mod weights;

use crate::backend::{Backend, BackendError};
use crate::gguf::Gguf;

pub use cache::HybridCache;
pub use config::{Config, LayerKind};
pub use forward::{Logits, MAX_UBATCH};
pub use greedy::Greedy;
use weights::Weights;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: general.architecture is {found:?}, expected \"kimi-linear\"")]
    Architecture { path: String, found: String },
    #[error("{path}: missing metadata key {key}")]
    MissingKey { path: String, key: String },
    #[error("{path}: metadata key {key}: {msg}")]
    BadKey {
        path: String,
        key: String,
        msg: String,
    },
    #[error("{path}: missing tensor {name}")]
    MissingTensor { path: String, name: String },
    #[error("{path}: tensor {name}: expected ne {expected:?}, found {found:?}")]
    TensorShape {
        path: String,
        name: String,
        expected: [usize; 4],
        found: [usize; 4],
    },
    #[error("token id {id} is not below the vocabulary size {vocab}")]
    TokenOutOfRange { id: u32, vocab: usize },
    #[error("the sequence would reach {needed} tokens; the cache was made for {capacity}")]
    ContextFull { needed: usize, capacity: usize },
    #[error("no tokens to run")]
    NoTokens,
    #[error("cache layer {0} does not match the model's layer type")]
    CacheMismatch(usize),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// A loaded model: its config and its weights as the backend holds them (for the CPU backend,
/// views into the mapped file: loading copies nothing).
pub struct Model<'w, B: Backend> {
    pub config: Config,
    pub weights: Weights<B::Weight<'w>>,
}

impl<'w, B: Backend> Model<'w, B> {
    pub fn load(file: &'w Gguf, backend: &B) -> Result<Self, ModelError> {
        let config = Config::from_gguf(file)?;
        let weights = Weights::load(file, &config, backend)?;
        Ok(Model { config, weights })
    }

    /// A fresh sequence state for up to `capacity` tokens.
    pub fn new_cache(&self, backend: &B, capacity: usize) -> Result<HybridCache<B>, ModelError> {
        HybridCache::new(backend, &self.config, capacity)
    }
}
