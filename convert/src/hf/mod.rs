//! The Hugging Face side of a conversion: `config.json` as a typed, validated config, and the
//! (possibly sharded) safetensors checkpoint read over mmap.

mod checkpoint;
mod config;
mod dtype;

pub use checkpoint::{Checkpoint, TensorEntry};
pub use config::{ConfigError, KimiConfig};
pub use dtype::SrcDtype;

#[cfg(test)]
pub(crate) use config::tests as config_tests;

use std::path::PathBuf;

/// Everything that can be wrong with a checkpoint directory. Each message names the file or
/// tensor and what is wrong with it, so one line is enough for the user to act on.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{path}: not a readable safetensors file ({reason})")]
    BadShard { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    BadIndex { path: PathBuf, reason: String },
    #[error(
        "{dir}: no safetensors files (expected model.safetensors or model.safetensors.index.json)"
    )]
    NoWeights { dir: PathBuf },
    #[error("shard {shard} listed in {index} is missing")]
    MissingShard { shard: PathBuf, index: PathBuf },
    #[error("{index} says tensor {tensor} is in {shard}, but {shard} does not hold it")]
    IndexTensorMissing {
        index: PathBuf,
        tensor: String,
        shard: String,
    },
    #[error("{shard} holds tensor {tensor}, which {index} does not list for that shard")]
    IndexTensorExtra {
        index: PathBuf,
        tensor: String,
        shard: String,
    },
    #[error("tensor {tensor} appears in both {first} and {second}")]
    DuplicateTensor {
        tensor: String,
        first: String,
        second: String,
    },
    #[error(
        "tensor {tensor} in {shard}: dtype {dtype} is not supported (bf16, f16 or f32 expected)"
    )]
    UnsupportedDtype {
        tensor: String,
        shard: String,
        dtype: String,
    },
}
