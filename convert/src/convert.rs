//! HF checkpoint → GGUF: plans every tensor and its type, then streams the rows through the
//! writer.

use crate::hf::{Checkpoint, HfError, KimiConfig};
use crate::mapping::{self, MappingError, OutTensor};
use crate::metadata::{self, Metadata};
use crate::recipe::{self, ModelInfo, Recipe, RecipeError};
use crate::vocab::{self, Vocab, VocabError};
use crate::write::{self, RowSource, Summary, TensorJob, WriteError};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Hf(#[from] HfError),
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Vocab(#[from] VocabError),
    #[error("{0}")]
    Other(String),
}

/// How to choose types.
#[derive(Clone, Debug)]
pub struct TypeChoice {
    pub recipe: Recipe,
    pub target_size: Option<u64>,
}

impl TypeChoice {
    pub fn assign<T: recipe::TensorShape>(
        &self,
        info: &ModelInfo,
        tensors: &[T],
    ) -> Result<Vec<kiln::quant::GgmlType>, RecipeError> {
        match self.target_size {
            Some(t) => recipe::fit_to_size(&self.recipe, info, tensors, t),
            None => Ok(self.recipe.assign(info, tensors)),
        }
    }
}

pub fn model_info(cfg: &KimiConfig) -> ModelInfo {
    let n_gqa = if cfg.is_mla(0) {
        cfg.num_attention_heads
    } else {
        0
    };
    ModelInfo {
        n_layer: cfg.num_hidden_layers,
        n_expert: cfg.num_experts,
        n_gqa,
    }
}

/// A checkpoint opened, validated against its config, with a type for every tensor.
pub struct Plan {
    pub config: KimiConfig,
    pub checkpoint: Checkpoint,
    pub tensors: Vec<OutTensor>,
    pub jobs: Vec<TensorJob>,
}

pub fn plan(dir: &Path, types: &TypeChoice) -> Result<Plan, ConvertError> {
    let config = KimiConfig::from_file(&dir.join("config.json")).map_err(HfError::from)?;
    let checkpoint = Checkpoint::open(dir)?;
    let tensors = mapping::layout(&config);
    mapping::validate(&tensors, &checkpoint)?;
    let tys = types.assign(&model_info(&config), &tensors)?;
    let jobs = tensors
        .iter()
        .zip(tys)
        .map(|(t, ty)| TensorJob {
            name: t.name.clone(),
            ne: t.ne.clone(),
            ty,
        })
        .collect();
    Ok(Plan {
        config,
        checkpoint,
        tensors,
        jobs,
    })
}

/// The model name for `general.name`: the checkpoint directory's name (its parent's when the
/// directory is a generic `hf`).
pub fn model_name(dir: &Path) -> String {
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut name = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name == "hf"
        && let Some(p) = abs.parent().and_then(|p| p.file_name())
    {
        name = p.to_string_lossy().into_owned();
    }
    name
}

struct CheckpointRows<'a> {
    plan: &'a Plan,
}

impl RowSource for CheckpointRows<'_> {
    fn fill(&self, index: usize, r0: usize, out: &mut [f32]) -> Result<(), String> {
        self.plan.tensors[index].fill_rows(&self.plan.checkpoint, r0, out);
        Ok(())
    }

    fn done(&self, index: usize, r0: usize, r1: usize) {
        self.plan.tensors[index].release_rows(&self.plan.checkpoint, r0, r1);
    }
}

/// Writes the planned model, with `extra` metadata (the vocabulary) after the hyperparameters.
pub fn write(
    plan: &Plan,
    out: &Path,
    name: &str,
    file_type: u32,
    extra: Metadata,
    progress: bool,
) -> Result<Summary, ConvertError> {
    let mut meta = metadata::general(name, file_type);
    meta.extend(metadata::hparams(&plan.config));
    meta.extend(extra);
    Ok(write::write_gguf(
        out,
        &meta,
        &plan.jobs,
        &CheckpointRows { plan },
        progress,
    )?)
}

/// The tokenizer of checkpoint `dir` (see [`vocab`]) for `config`'s vocabulary size; `None`
/// when the directory has no `tiktoken.model`.
pub fn load_vocab(dir: &Path, config: &KimiConfig) -> Result<Option<Vocab>, ConvertError> {
    Ok(vocab::load(dir, config.vocab_size)?)
}

/// `--vocab-only`: a GGUF with the general keys, the hyperparameters and the vocabulary of
/// checkpoint `dir`, and no tensors (llama.cpp's `convert_hf_to_gguf.py --vocab-only`). Only
/// `config.json` and the tokenizer files are read.
pub fn write_vocab_only(
    dir: &Path,
    out: &Path,
    name: &str,
    file_type: u32,
) -> Result<Summary, ConvertError> {
    let config = KimiConfig::from_file(&dir.join("config.json")).map_err(HfError::from)?;
    let vocab = load_vocab(dir, &config)?.ok_or_else(|| {
        ConvertError::Other(format!(
            "{}: no tiktoken.model, so --vocab-only has no vocabulary to write",
            dir.display()
        ))
    })?;
    let mut meta = metadata::general(name, file_type);
    meta.extend(metadata::hparams(&config));
    meta.extend(vocab.metadata());
    struct NoRows;
    impl RowSource for NoRows {
        fn fill(&self, _: usize, _: usize, _: &mut [f32]) -> Result<(), String> {
            Err("a vocab-only file has no tensors".into())
        }
    }
    Ok(write::write_gguf(out, &meta, &[], &NoRows, false)?)
}
