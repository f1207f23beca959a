//! [`Gguf`]: an opened, validated GGUF file over a memory map (or an owned buffer), with
//! metadata getters and zero-copy tensor views.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Deref;
use std::path::Path;

use memmap2::Mmap;

use super::error::GgufError;
use super::reader::{self, Header};
use super::tensor::TensorInfo;
use super::value::{Array, Value};

enum Backing {
    Mmap(Mmap),
    Owned(Vec<u8>),
}

impl Deref for Backing {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Backing::Mmap(m) => m,
            Backing::Owned(v) => v,
        }
    }
}

/// A validated GGUF file (version 2 or 3). Every tensor's data is known to lie inside the
/// file, aligned, and apart from every other tensor's.
pub struct Gguf {
    bytes: Backing,
    path: String,
    version: u32,
    kvs: Vec<(String, Value)>,
    kv_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.kvs.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

impl Gguf {
    /// Maps and validates the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Gguf, GgufError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| GgufError::io(&name, e))?;
        let len = file.metadata().map_err(|e| GgufError::io(&name, e))?.len();
        let bytes = if len == 0 {
            // Mapping an empty file fails on some platforms; an empty buffer gives the same
            // "truncated" error as any other short file.
            Backing::Owned(Vec::new())
        } else {
            // SAFETY: the map is read-only. Another process truncating or rewriting the file
            // while it is mapped would change these bytes under us; like every mmap-based model
            // loader we accept that, since copying multi-gigabyte weights is not an option.
            Backing::Mmap(unsafe { Mmap::map(&file) }.map_err(|e| GgufError::io(&name, e))?)
        };
        Gguf::from_backing(bytes, name)
    }

    /// Validates a GGUF held in memory; errors name it `<memory>`.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Gguf, GgufError> {
        Gguf::from_bytes_named(bytes, "<memory>")
    }

    /// Validates a GGUF held in memory; errors name it `name`.
    pub fn from_bytes_named(bytes: Vec<u8>, name: impl Into<String>) -> Result<Gguf, GgufError> {
        Gguf::from_backing(Backing::Owned(bytes), name.into())
    }

    fn from_backing(bytes: Backing, path: String) -> Result<Gguf, GgufError> {
        let Header {
            version,
            kvs,
            kv_index,
            tensors,
            tensor_index,
            alignment,
            data_offset,
        } = reader::parse(&bytes).map_err(|kind| GgufError::format(&path, kind))?;
        Ok(Gguf {
            bytes,
            path,
            version,
            kvs,
            kv_index,
            tensors,
            tensor_index,
            alignment,
            data_offset,
        })
    }

    /// The path the file was opened from (or the name given to an in-memory buffer).
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// The alignment of tensor data: `general.alignment`, or 32 when absent.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// File offset of the data section; tensor offsets are relative to it.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The whole file.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Metadata entries in file order.
    pub fn metadata(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.kvs.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.kv_index.get(key).map(|&i| &self.kvs[i].1)
    }

    /// An integer of any width whose value fits in `u64`.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.as_u64()
    }

    /// An integer of any width whose value fits in `u32`.
    pub fn get_u32(&self, key: &str) -> Option<u32> {
        self.get(key)?.as_u32()
    }

    /// An integer of any width whose value fits in `i64`.
    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.get(key)?.as_i64()
    }

    /// An integer of any width whose value fits in `i32`.
    pub fn get_i32(&self, key: &str) -> Option<i32> {
        self.get(key)?.as_i32()
    }

    /// An `f32`, `f64` or integer value, as `f32`.
    pub fn get_f32(&self, key: &str) -> Option<f32> {
        self.get(key)?.as_f32()
    }

    /// An `f32`, `f64` or integer value, as `f64`.
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get(key)?.as_f64()
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key)?.as_bool()
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }

    pub fn get_arr(&self, key: &str) -> Option<&Array> {
        self.get(key)?.as_array()
    }

    /// An array of strings, such as `tokenizer.ggml.tokens`.
    pub fn get_str_arr(&self, key: &str) -> Option<&[String]> {
        self.get_arr(key)?.as_strings()
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The data of tensor `t`, borrowed from the map.
    ///
    /// # Panics
    /// If `t` comes from another file and its data lies past the end of this one.
    pub fn tensor_bytes(&self, t: &TensorInfo) -> &[u8] {
        // Validated at open for this file's infos, so the casts and the slice cannot fail.
        let start = (self.data_offset + t.offset()) as usize;
        &self.bytes[start..start + t.n_bytes() as usize]
    }

    /// The data of the tensor named `name`, borrowed from the map.
    pub fn tensor_data(&self, name: &str) -> Result<&[u8], GgufError> {
        let t = self.tensor(name).ok_or_else(|| GgufError::NoTensor {
            path: self.path.clone(),
            name: name.to_owned(),
        })?;
        Ok(self.tensor_bytes(t))
    }
}
