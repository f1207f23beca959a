//! GGUF → GGUF re-quantization (`kiln-convert requant`): every tensor of a kimi-linear GGUF
//! gets the type the recipe gives it, as if the model were converted from its checkpoint, and
//! every metadata entry is copied (vocabulary included) with `general.file_type` updated.
//! Tensors are read through kiln's reader (mmap) and dequantized a chunk of rows at a time.

use crate::convert::TypeChoice;
use crate::recipe::{ModelInfo, RecipeError};
use crate::write::{self, RowSource, Summary, TensorJob, WriteError};
use kiln::gguf::{Gguf, GgufError, Value};
use kiln::quant::{self, GgmlType};
use memmap2::{Mmap, UncheckedAdvice};
use rayon::prelude::*;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum RequantError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("{path}: {reason}")]
    Input { path: String, reason: String },
    #[error(
        "{path}: tensor {tensor} is {from}, a lossy type; re-quantizing it to {to} adds more loss (pass --allow-requant to do it anyway)"
    )]
    Lossy {
        path: String,
        tensor: String,
        from: &'static str,
        to: &'static str,
    },
}

/// Source types that hold the weights exactly (as far as any GGUF can).
fn is_lossless(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
}

/// An opened input with a type for every tensor.
pub struct Plan {
    pub src: Gguf,
    pub jobs: Vec<TensorJob>,
    pub src_types: Vec<GgmlType>,
    /// The input mapped again for the tensor data, so that pages already converted can be
    /// dropped from the resident set (the reader's own map is not exposed).
    map: Mmap,
}

/// What the recipe needs, from the `{arch}.*` keys as the converter writes them.
fn model_info(g: &Gguf, path: &str) -> Result<ModelInfo, RequantError> {
    let arch = g.architecture().ok_or_else(|| RequantError::Input {
        path: path.to_string(),
        reason: "no general.architecture".into(),
    })?;
    let key = |k: &str| format!("{arch}.{k}");
    let n_layer = g
        .get_u32(&key("block_count"))
        .ok_or_else(|| RequantError::Input {
            path: path.to_string(),
            reason: format!("no {}", key("block_count")),
        })? as usize;
    let n_expert = g.get_u32(&key("expert_count")).unwrap_or(0) as usize;
    let n_head = g.get_u32(&key("attention.head_count")).unwrap_or(0) as usize;
    // The per-layer array (layer 0's entry) or a single count.
    let n_head_kv = match g.get(&key("attention.head_count_kv")) {
        Some(Value::Array(a)) => a.to_u64s().and_then(|v| v.first().copied()).unwrap_or(0) as usize,
        Some(v) => v.as_u64().unwrap_or(0) as usize,
        None => n_head,
    };
    // 0 when layer 0 is KDA, as for a checkpoint.
    let n_gqa = n_head.checked_div(n_head_kv).unwrap_or(0);
    Ok(ModelInfo {
        n_layer,
        n_expert,
        n_gqa,
    })
}

/// Opens `input` and gives each tensor its new type; a lossy source tensor that would change
/// type is an error unless `allow_requant`.
pub fn plan(input: &Path, choice: &TypeChoice, allow_requant: bool) -> Result<Plan, RequantError> {
    let src = Gguf::open(input)?;
    let path = input.display().to_string();
    let file = std::fs::File::open(input).map_err(|e| RequantError::Input {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    // SAFETY: read-only map of the input, which (like every mmap-based model reader) must not
    // be truncated or rewritten while this runs.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| RequantError::Input {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if map.len() != src.as_bytes().len() {
        return Err(RequantError::Input {
            path,
            reason: "the file changed while it was opened".into(),
        });
    }
    let info = model_info(&src, &path)?;
    let shapes: Vec<TensorJob> = src
        .tensors()
        .iter()
        .map(|t| TensorJob {
            name: t.name().to_string(),
            ne: t.shape().iter().map(|&d| d as usize).collect(),
            ty: t.ty(),
        })
        .collect();
    let types = choice.assign(&info, &shapes)?;
    let src_types: Vec<GgmlType> = shapes.iter().map(|j| j.ty).collect();
    for (j, &to) in shapes.iter().zip(&types) {
        if j.ty != to && !is_lossless(j.ty) {
            if !allow_requant {
                return Err(RequantError::Lossy {
                    path,
                    tensor: j.name.clone(),
                    from: j.ty.name(),
                    to: to.name(),
                });
            }
            quant::codec(j.ty).map_err(|e| RequantError::Input {
                path: path.clone(),
                reason: format!("tensor {}: {e}", j.name),
            })?;
        }
    }
    let jobs = shapes
        .into_iter()
        .zip(types)
        .map(|(j, ty)| TensorJob { ty, ..j })
        .collect();
    Ok(Plan {
        src,
        jobs,
        src_types,
        map,
    })
}

struct GgufRows<'a> {
    plan: &'a Plan,
}

impl GgufRows<'_> {
    /// The file range of rows `[r0, r0 + rows)` of tensor `index`.
    fn range(&self, index: usize, r0: usize, rows: usize) -> Result<(usize, usize), String> {
        let j = &self.plan.jobs[index];
        let ty = self.plan.src_types[index];
        let t = &self.plan.src.tensors()[index];
        let rb = ty
            .row_bytes(j.ne[0])
            .ok_or_else(|| format!("rows of {} are not whole {} blocks", j.ne[0], ty.name()))?;
        let start = (self.plan.src.data_offset() + t.offset()) as usize + r0 * rb;
        let end = start + rows * rb;
        if end > self.plan.map.len() {
            return Err("tensor data runs past the end of the file".into());
        }
        Ok((start, end))
    }

    fn rows(&self, index: usize, r0: usize, rows: usize) -> Result<&[u8], String> {
        let (a, b) = self.range(index, r0, rows)?;
        Ok(&self.plan.map[a..b])
    }
}

impl RowSource for GgufRows<'_> {
    fn fill(&self, index: usize, r0: usize, out: &mut [f32]) -> Result<(), String> {
        let n = self.plan.jobs[index].ne[0];
        let ty = self.plan.src_types[index];
        let src = self.rows(index, r0, out.len() / n)?;
        let codec = quant::codec(ty).map_err(|e| e.to_string())?;
        let rb = src.len() / (out.len() / n).max(1);
        out.par_chunks_mut(n)
            .zip(src.par_chunks(rb))
            .try_for_each(|(o, s)| codec.dequantize_row(s, o))
            .map_err(|e| e.to_string())
    }

    fn raw(&self, index: usize, ty: GgmlType, r0: usize, rows: usize) -> Option<Vec<u8>> {
        // Same type: the bytes as they are (no dequantize/quantize round trip).
        if ty != self.plan.src_types[index] {
            return None;
        }
        self.rows(index, r0, rows).ok().map(<[u8]>::to_vec)
    }

    fn done(&self, index: usize, r0: usize, r1: usize) {
        let Ok((a, b)) = self.range(index, r0, r1 - r0) else {
            return;
        };
        if b > a {
            // SAFETY: a private read-only file mapping; the rows were copied or dequantized
            // into owned buffers, and MADV_DONTNEED only drops pages that a later access
            // would fault back in from the file unchanged.
            let _ = unsafe {
                self.plan
                    .map
                    .unchecked_advise_range(UncheckedAdvice::DontNeed, a, b - a)
            };
        }
    }
}

/// Writes the re-quantized file: all of the input's metadata with `general.file_type` set to
/// `file_type`, then every tensor in its new type.
pub fn write(
    plan: &Plan,
    out: &Path,
    file_type: u32,
    progress: bool,
) -> Result<Summary, RequantError> {
    let mut meta: Vec<(String, Value)> = plan
        .src
        .metadata()
        .map(|(k, v)| {
            let v = if k == "general.file_type" {
                Value::U32(file_type)
            } else {
                v.clone()
            };
            (k.to_string(), v)
        })
        .collect();
    if !meta.iter().any(|(k, _)| k == "general.file_type") {
        meta.push(("general.file_type".into(), Value::U32(file_type)));
    }
    Ok(write::write_gguf(
        out,
        &meta,
        &plan.jobs,
        &GgufRows { plan },
        progress,
    )?)
}
