//! Streams tensors into a GGUF file: each tensor is produced a bounded chunk of rows at a time
//! as f32, quantized to its type (rows in parallel), and appended. Memory stays at a chunk or
//! two whatever the model size. The file only appears under its name when every byte is written.

use crate::metadata::Metadata;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln::gguf::GgufWriter;
use kiln::quant::{self, GgmlType};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// About 16 MiB of f32 per chunk: big enough to keep every core busy quantizing, small enough
/// that two of them (f32 in, blocks out) are a rounding error next to the model.
pub const CHUNK_ELEMS: usize = 4 << 20;

/// A tensor to write: name, ggml dims and type.
#[derive(Clone, Debug)]
pub struct TensorJob {
    pub name: String,
    pub ne: Vec<usize>,
    pub ty: GgmlType,
}

impl TensorJob {
    pub fn n_rows(&self) -> usize {
        self.ne[1..].iter().product()
    }

    pub fn bytes(&self) -> u64 {
        crate::recipe::tensor_bytes(self.ty, &self.ne)
    }
}

/// Produces the f32 rows of the tensors being written.
pub trait RowSource: Sync {
    /// Fills `out` (whole rows) with rows starting at `r0` of tensor `index`.
    fn fill(&self, index: usize, r0: usize, out: &mut [f32]) -> Result<(), String>;
    /// Rows `[r0, r1)` of tensor `index` are written; their source may be released.
    fn done(&self, _index: usize, _r0: usize, _r1: usize) {}
    /// `rows` rows from `r0` of tensor `index` already encoded as `ty`, for sources that can
    /// make blocks directly (random models); `None` sends them through `fill` and quantization.
    fn raw(&self, _index: usize, _ty: GgmlType, _r0: usize, _rows: usize) -> Option<Vec<u8>> {
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Gguf(kiln::gguf::GgufError),
    #[error("tensor {tensor}: {reason}")]
    Tensor { tensor: String, reason: String },
    /// The output could not take the bytes (disk full, file size limit, I/O error).
    #[error("{path}: writing failed: {error}{}", full_hint(.error))]
    Output { path: String, error: std::io::Error },
}

fn full_hint(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind::*;
    match e.kind() {
        StorageFull | FileTooLarge | QuotaExceeded => " (disk full?)",
        _ => "",
    }
}

impl From<kiln::gguf::GgufError> for WriteError {
    fn from(e: kiln::gguf::GgufError) -> Self {
        match e {
            kiln::gguf::GgufError::Io { path, error } => WriteError::Output { path, error },
            e => WriteError::Gguf(e),
        }
    }
}

/// Why a tensor could not be written: its source failed, or the output did.
enum TensorFailure {
    Source(String),
    Output(std::io::Error),
}

/// What was written.
#[derive(Clone, Debug)]
pub struct Summary {
    pub tensors: usize,
    pub data_bytes: u64,
    pub file_bytes: u64,
    pub params: u64,
    pub elapsed: Duration,
}

impl Summary {
    pub fn bits_per_weight(&self) -> f64 {
        if self.params == 0 {
            0.0
        } else {
            self.data_bytes as f64 * 8.0 / self.params as f64
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "{} tensors, {:.2} GiB ({} bytes), {:.3} B params, {:.2} bits per weight, {:.1} s ({:.0} MiB/s)",
            self.tensors,
            self.file_bytes as f64 / (1u64 << 30) as f64,
            self.file_bytes,
            self.params as f64 / 1e9,
            self.bits_per_weight(),
            secs,
            self.data_bytes as f64 / (1u64 << 20) as f64 / secs.max(1e-9),
        )
    }
}

fn progress_bar(total: u64, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb
}

/// Writes `meta` and `jobs` to `path` (atomically) with data from `rows`. On any failure the
/// temporary file is removed and nothing appears at `path`.
pub fn write_gguf(
    path: &Path,
    meta: &Metadata,
    jobs: &[TensorJob],
    rows: &dyn RowSource,
    show_progress: bool,
) -> Result<Summary, WriteError> {
    let start = Instant::now();
    let total: u64 = jobs.iter().map(TensorJob::bytes).sum();
    let pb = progress_bar(total, show_progress);
    let result = write_all(path, meta, jobs, rows, &pb);
    // Cleared on failure too, so that an error is the only line left on the terminal.
    pb.finish_and_clear();
    result?;
    let file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Ok(Summary {
        tensors: jobs.len(),
        data_bytes: total,
        file_bytes,
        params: jobs
            .iter()
            .map(|j| j.ne.iter().product::<usize>() as u64)
            .sum(),
        elapsed: start.elapsed(),
    })
}

fn write_all(
    path: &Path,
    meta: &Metadata,
    jobs: &[TensorJob],
    rows: &dyn RowSource,
    pb: &ProgressBar,
) -> Result<(), WriteError> {
    let mut w = GgufWriter::new();
    for (k, v) in meta {
        w.add_kv(k.clone(), v.clone())?;
    }
    for j in jobs {
        let ne: Vec<u64> = j.ne.iter().map(|&d| d as u64).collect();
        w.add_tensor(j.name.clone(), &ne, j.ty)?;
    }
    let mut out = w.create(path)?;
    for (i, j) in jobs.iter().enumerate() {
        pb.set_message(j.name.clone());
        let mut failure: Option<String> = None;
        let res = out.write_tensor_with(|wr| match write_tensor(i, j, rows, wr, pb) {
            Ok(()) => Ok(()),
            Err(TensorFailure::Output(e)) => Err(e),
            Err(TensorFailure::Source(e)) => {
                failure = Some(e.clone());
                Err(std::io::Error::other(e))
            }
        });
        if let Some(reason) = failure {
            return Err(WriteError::Tensor {
                tensor: j.name.clone(),
                reason,
            });
        }
        res?;
    }
    out.finish()?;
    Ok(())
}

fn write_tensor(
    i: usize,
    j: &TensorJob,
    rows: &dyn RowSource,
    wr: &mut dyn Write,
    pb: &ProgressBar,
) -> Result<(), TensorFailure> {
    let n = j.ne[0];
    let nrows = j.n_rows();
    let per = (CHUNK_ELEMS / n).max(1);
    // Allocated on first use: sources that make blocks directly never need it.
    let mut buf: Vec<f32> = Vec::new();
    let mut r0 = 0;
    while r0 < nrows {
        let r1 = (r0 + per).min(nrows);
        let bytes = match rows.raw(i, j.ty, r0, r1 - r0) {
            Some(b) => b,
            None => {
                buf.resize(per.min(nrows) * n, 0.0);
                let chunk = &mut buf[..(r1 - r0) * n];
                rows.fill(i, r0, chunk).map_err(TensorFailure::Source)?;
                quant::quantize_rows(j.ty, chunk, n, None)
                    .map_err(|e| TensorFailure::Source(e.to_string()))?
            }
        };
        wr.write_all(&bytes).map_err(TensorFailure::Output)?;
        rows.done(i, r0, r1);
        pb.inc(bytes.len() as u64);
        r0 = r1;
    }
    Ok(())
}
