//! A safetensors checkpoint: one `model.safetensors` or shards listed by
//! `model.safetensors.index.json`, each mapped read-only. Tensor data is read straight from the
//! maps and the pages are handed back to the kernel once a range has been consumed, so resident
//! memory stays bounded by what is being converted, not by the checkpoint size.

use super::{HfError, SrcDtype};
use memmap2::{Mmap, UncheckedAdvice};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

struct Shard {
    file_name: String,
    map: Mmap,
}

#[derive(Clone, Debug)]
pub struct TensorEntry {
    pub shard: usize,
    pub dtype: SrcDtype,
    pub shape: Vec<usize>,
    /// Absolute byte range inside the shard's map.
    pub start: usize,
    pub end: usize,
}

impl TensorEntry {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

pub struct Checkpoint {
    dir: PathBuf,
    shards: Vec<Shard>,
    tensors: BTreeMap<String, TensorEntry>,
}

const INDEX: &str = "model.safetensors.index.json";

impl Checkpoint {
    pub fn open(dir: &Path) -> Result<Checkpoint, HfError> {
        let index_path = dir.join(INDEX);
        let index = if index_path.is_file() {
            Some(read_index(&index_path)?)
        } else {
            None
        };
        let shard_names: Vec<String> = match &index {
            Some(map) => {
                let mut names: Vec<String> = map.values().cloned().collect();
                names.sort();
                names.dedup();
                names
            }
            None => list_safetensors(dir)?,
        };
        if shard_names.is_empty() {
            return Err(HfError::NoWeights { dir: dir.into() });
        }

        let mut shards = Vec::with_capacity(shard_names.len());
        let mut tensors: BTreeMap<String, TensorEntry> = BTreeMap::new();
        for (si, name) in shard_names.iter().enumerate() {
            let path = dir.join(name);
            if index.is_some() && !path.is_file() {
                return Err(HfError::MissingShard {
                    shard: path,
                    index: index_path,
                });
            }
            let (shard, entries) = open_shard(&path, name, si)?;
            for (tname, entry) in entries {
                if let Some(prev) = tensors.get(&tname) {
                    return Err(HfError::DuplicateTensor {
                        tensor: tname,
                        first: shard_names[prev.shard].clone(),
                        second: name.clone(),
                    });
                }
                tensors.insert(tname, entry);
            }
            shards.push(shard);
        }

        if let Some(map) = &index {
            for (tensor, shard) in map {
                match tensors.get(tensor) {
                    Some(e) if &shard_names[e.shard] == shard => {}
                    _ => {
                        return Err(HfError::IndexTensorMissing {
                            index: index_path,
                            tensor: tensor.clone(),
                            shard: shard.clone(),
                        });
                    }
                }
            }
            if let Some((tensor, e)) = tensors.iter().find(|(t, _)| !map.contains_key(*t)) {
                return Err(HfError::IndexTensorExtra {
                    index: index_path,
                    tensor: tensor.clone(),
                    shard: shard_names[e.shard].clone(),
                });
            }
        }
        Ok(Checkpoint {
            dir: dir.into(),
            shards,
            tensors,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn get(&self, name: &str) -> Option<&TensorEntry> {
        self.tensors.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The shard file a tensor lives in, for messages.
    pub fn shard_name(&self, e: &TensorEntry) -> &str {
        &self.shards[e.shard].file_name
    }

    /// Total bytes of tensor data over all shards.
    pub fn data_bytes(&self) -> u64 {
        self.tensors
            .values()
            .map(|e| (e.end - e.start) as u64)
            .sum()
    }

    /// Reads elements `[first, first + out.len())` of tensor `e` (row-major) as f32.
    pub fn read_f32(&self, e: &TensorEntry, first: usize, out: &mut [f32]) {
        let sz = e.dtype.size();
        let a = e.start + first * sz;
        let b = a + out.len() * sz;
        assert!(b <= e.end, "read past the end of a tensor");
        e.dtype.to_f32(&self.shards[e.shard].map[a..b], out);
    }

    /// Tells the kernel that elements `[first, first + n)` of `e` will not be read again, so
    /// their pages leave this process's resident set.
    pub fn release(&self, e: &TensorEntry, first: usize, n: usize) {
        let sz = e.dtype.size();
        let off = e.start + first * sz;
        let len = (n * sz).min(e.end - off);
        if len == 0 {
            return;
        }
        // SAFETY: the map is a private read-only file mapping and no slice into this range
        // outlives the read that produced owned f32 data; MADV_DONTNEED only drops the pages,
        // which a later access would fault back in from the file unchanged.
        let _ = unsafe {
            self.shards[e.shard]
                .map
                .unchecked_advise_range(UncheckedAdvice::DontNeed, off, len)
        };
    }
}

fn read_index(path: &Path) -> Result<BTreeMap<String, String>, HfError> {
    let text = std::fs::read_to_string(path).map_err(|source| HfError::Io {
        path: path.into(),
        source,
    })?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| HfError::BadIndex {
        path: path.into(),
        reason: format!("not valid JSON: {e}"),
    })?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| HfError::BadIndex {
            path: path.into(),
            reason: "no weight_map object".into(),
        })?;
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let shard = v.as_str().ok_or_else(|| HfError::BadIndex {
            path: path.into(),
            reason: format!("weight_map[{k}] is not a file name"),
        })?;
        // A shard name is a plain file inside the checkpoint directory.
        if shard.contains('/') || shard.contains('\\') || shard == ".." {
            return Err(HfError::BadIndex {
                path: path.into(),
                reason: format!("shard name {shard:?} is not a plain file name"),
            });
        }
        out.insert(k.clone(), shard.to_string());
    }
    Ok(out)
}

fn list_safetensors(dir: &Path) -> Result<Vec<String>, HfError> {
    let rd = std::fs::read_dir(dir).map_err(|source| HfError::Io {
        path: dir.into(),
        source,
    })?;
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    names.sort();
    Ok(names)
}

fn open_shard(
    path: &Path,
    name: &str,
    index: usize,
) -> Result<(Shard, HashMap<String, TensorEntry>), HfError> {
    let file = File::open(path).map_err(|source| HfError::Io {
        path: path.into(),
        source,
    })?;
    // SAFETY: the checkpoint is opened read-only; as with every mmap-based loader, a file
    // truncated by another process while we convert would fault, which we accept.
    let map = unsafe { Mmap::map(&file) }.map_err(|source| HfError::Io {
        path: path.into(),
        source,
    })?;
    let (header_len, meta) =
        safetensors::SafeTensors::read_metadata(&map).map_err(|e| HfError::BadShard {
            path: path.into(),
            reason: describe(&e, map.len(), declared_len(&map)),
        })?;
    let data_start = 8 + header_len;
    let mut entries = HashMap::new();
    for (tname, info) in meta.tensors() {
        let dtype =
            SrcDtype::from_safetensors(info.dtype).ok_or_else(|| HfError::UnsupportedDtype {
                tensor: tname.clone(),
                shard: name.to_string(),
                dtype: format!("{:?}", info.dtype),
            })?;
        let (a, b) = info.data_offsets;
        entries.insert(
            tname,
            TensorEntry {
                shard: index,
                dtype,
                shape: info.shape.clone(),
                start: data_start + a,
                end: data_start + b,
            },
        );
    }
    Ok((
        Shard {
            file_name: name.to_string(),
            map,
        },
        entries,
    ))
}

fn describe(
    e: &safetensors::SafeTensorError,
    file_len: usize,
    header_len: Option<usize>,
) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::MetadataIncompleteBuffer => {
            let expected =
                header_len.map_or(String::new(), |n| format!(", the header describes {n}"));
            format!("truncated or padded: the file has {file_len} bytes{expected}")
        }
        E::HeaderTooSmall | E::HeaderTooLarge => {
            format!("truncated or corrupt header ({file_len} bytes)")
        }
        other => other.to_string(),
    }
}

/// The file size the header's offsets imply, for the error message of a size mismatch.
fn declared_len(map: &[u8]) -> Option<usize> {
    let n = u64::from_le_bytes(map.get(..8)?.try_into().ok()?) as usize;
    let header: serde_json::Value =
        serde_json::from_slice(map.get(8..8usize.checked_add(n)?)?).ok()?;
    let end = header
        .as_object()?
        .values()
        .filter_map(|t| t.get("data_offsets")?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    Some(8 + n + end as usize)
}
