//! Errors of the GGUF reader and writer. Every message starts with the file it is about.

use std::io;

use crate::quant::GgmlType;

use super::value::ValueType;

/// An error reading or writing a GGUF file; the `path` is the file's path, or `<memory>` for
/// in-memory buffers, or `<new GGUF>` for declarations not yet bound to a file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    // The io error is part of the message and deliberately not a `#[source]`: anyhow's `{:#}`
    // would print it twice.
    #[error("{path}: {error}")]
    Io { path: String, error: io::Error },
    #[error("{path}: {kind}")]
    Format { path: String, kind: FormatError },
    #[error("{path}: no tensor named {name:?}")]
    NoTensor { path: String, name: String },
    #[error("{path}: tensor {name:?}: declared {expected} bytes of data, got {got}")]
    TensorSize {
        path: String,
        name: String,
        expected: u64,
        got: u64,
    },
    #[error("{path}: all {declared} declared tensors were already written")]
    TooManyTensors { path: String, declared: usize },
    #[error("{path}: only {written} of {declared} declared tensors were written")]
    MissingTensors {
        path: String,
        written: usize,
        declared: usize,
    },
    #[error("{path}: an earlier write failed; the output is incomplete")]
    Poisoned { path: String },
}

impl GgufError {
    pub(crate) fn io(path: &str, source: io::Error) -> Self {
        GgufError::Io {
            path: path.to_owned(),
            error: source,
        }
    }

    pub(crate) fn format(path: &str, kind: FormatError) -> Self {
        GgufError::Format {
            path: path.to_owned(),
            kind,
        }
    }

    /// The structural problem, when this error is about the content of a file.
    pub fn format_kind(&self) -> Option<&FormatError> {
        match self {
            GgufError::Format { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

/// What is wrong with the content of a GGUF file (or with what a writer was asked to declare).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormatError {
    #[error("truncated: {what} needs {need} bytes at offset {offset}, only {have} left")]
    Truncated {
        what: &'static str,
        offset: u64,
        need: u64,
        have: u64,
    },
    #[error("bad magic {0:02x?}, expected \"GGUF\"")]
    BadMagic([u8; 4]),
    #[error("unsupported GGUF version {0} (versions 2 and 3 are supported)")]
    BadVersion(u32),
    #[error("big-endian GGUF files are not supported")]
    BigEndian,
    #[error("{what} count {count} at offset {offset} cannot fit in the {remaining} bytes left")]
    CountTooLarge {
        what: &'static str,
        count: u64,
        offset: u64,
        remaining: u64,
    },
    #[error("string at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { offset: u64 },
    #[error("unknown value type id {id} at offset {offset}")]
    UnknownValueType { id: u32, offset: u64 },
    #[error("bool at offset {offset} is {byte}, expected 0 or 1")]
    BadBool { byte: u8, offset: u64 },
    #[error("arrays nested deeper than {max} levels at offset {offset}")]
    TooDeep { max: usize, offset: u64 },
    #[error("duplicate metadata key {0:?}")]
    DuplicateKey(String),
    #[error("metadata key {key:?}: {source}")]
    InKey {
        key: String,
        source: Box<FormatError>,
    },
    #[error("general.alignment must be a nonzero power of two integer, got {0}")]
    BadAlignment(String),
    #[error("general.alignment must be stored as u32 (for llama.cpp and gguf-py), got {0}")]
    AlignmentType(ValueType),
    #[error("tensor {name:?}: {source}")]
    InTensor {
        name: String,
        source: Box<FormatError>,
    },
    #[error("duplicate tensor name {0:?}")]
    DuplicateTensor(String),
    #[error("{0} dimensions, at most 4 are allowed")]
    TooManyDims(u64),
    #[error("unknown ggml type id {0}")]
    UnknownType(u32),
    #[error("dimension {ne:?} has an element count that overflows")]
    ElementOverflow { ne: Vec<u64> },
    #[error("row length {ne0} is not a multiple of {ty}'s block size {block}")]
    BlockMisaligned {
        ty: GgmlType,
        ne0: u64,
        block: usize,
    },
    #[error("data offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedOffset { offset: u64, alignment: u64 },
    #[error("data [{start}, {end}) runs past the end of the file ({file_len} bytes)")]
    DataPastEnd { start: u64, end: u64, file_len: u64 },
    #[error("data overlaps tensor {other:?}")]
    Overlap { other: String },
    #[error("name is {len} bytes, llama.cpp allows at most 63")]
    NameTooLong { len: usize },
}
