//! The GGUF file format (versions 2 and 3, little-endian): a validating reader over a memory
//! map with zero-copy tensor views, and a streaming writer.
//!
//! Layout: magic `GGUF`, u32 version, u64 tensor count, u64 metadata count; metadata entries
//! (string key, u32 value type, value); tensor infos (string name, u32 n_dims, n_dims × u64
//! `ne`, u32 ggml type, u64 offset from the data section); padding to `general.alignment`
//! (default 32); the data section, each tensor padded to the alignment.
//!
//! - `value`: metadata values, [`Value`] and typed [`Array`]s.
//! - `tensor`: [`TensorInfo`] and its checked size arithmetic.
//! - `reader`: parsing and validation of a whole header from bytes.
//! - `file`: [`Gguf`], the opened file and its getters.
//! - `writer`: [`GgufWriter`] (declarations), [`TensorWriter`] and [`GgufFileWriter`] (data).
//!
//! Opening never panics, hangs or allocates much more than the file's size, whatever the
//! bytes; every error names the file and what is wrong.

mod error;
mod file;
mod reader;
mod tensor;
mod value;
mod writer;

pub use error::{FormatError, GgufError};
pub use file::Gguf;
pub use reader::{DEFAULT_ALIGNMENT, MAX_ARRAY_DEPTH};
pub use tensor::{MAX_DIMS, TensorInfo};
pub use value::{Array, Value, ValueType};
pub use writer::{GgufFileWriter, GgufWriter, TensorWriter};

#[cfg(test)]
mod tests;
