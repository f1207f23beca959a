//! Parses and validates a whole GGUF header over a byte slice; the mapping and the public
//! accessors live in `file.rs`.
//!
//! Every count is checked against the bytes left before anything is allocated for it, every
//! sum and product is checked, and nesting is capped, so any input gives a result or an error
//! in time and memory linear in its size.

use std::collections::HashMap;

use crate::quant::GgmlType;

use super::error::FormatError;
use super::tensor::{MAX_DIMS, TensorInfo};
use super::value::{Array, Value, ValueType};

/// The ggml default for files without `general.alignment`.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Deepest nesting of arrays in arrays accepted (real files use at most 2).
pub const MAX_ARRAY_DEPTH: usize = 8;

pub(crate) const MAGIC: [u8; 4] = *b"GGUF";

/// Longest vector reserved up front for a count read from the file: beyond it the vector grows
/// only as elements are actually parsed, so a lying count cannot allocate more than the data
/// backs.
const MAX_RESERVE: usize = 1 << 16;

/// Everything the header says, validated.
#[derive(Debug)]
pub(crate) struct Header {
    pub version: u32,
    pub kvs: Vec<(String, Value)>,
    pub kv_index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    pub tensor_index: HashMap<String, usize>,
    pub alignment: u64,
    pub data_offset: u64,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], FormatError> {
        if n > self.remaining() {
            return Err(FormatError::Truncated {
                what,
                offset: self.offset(),
                need: n,
                have: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], FormatError> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, FormatError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, FormatError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// Checks that `count` items of at least `min_size` bytes each can fit in what is left.
    fn check_count(
        &self,
        count: u64,
        min_size: u64,
        what: &'static str,
    ) -> Result<(), FormatError> {
        match count.checked_mul(min_size) {
            Some(n) if n <= self.remaining() => Ok(()),
            _ => Err(FormatError::CountTooLarge {
                what,
                count,
                offset: self.offset(),
                remaining: self.remaining(),
            }),
        }
    }

    fn string(&mut self, what: &'static str) -> Result<String, FormatError> {
        let len = self.u64(what)?;
        let start = self.offset();
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| FormatError::InvalidUtf8 { offset: start })
    }

    fn value_type(&mut self) -> Result<ValueType, FormatError> {
        let offset = self.offset();
        let id = self.u32("value type")?;
        ValueType::from_id(id).ok_or(FormatError::UnknownValueType { id, offset })
    }

    fn value(&mut self, ty: ValueType, depth: usize) -> Result<Value, FormatError> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>("u8")?[0]),
            ValueType::I8 => Value::I8(self.array::<1>("i8")?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array("u16")?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array("i16")?)),
            ValueType::U32 => Value::U32(self.u32("u32")?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array("i32")?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array("f32")?)),
            ValueType::U64 => Value::U64(self.u64("u64")?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array("i64")?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array("f64")?)),
            ValueType::Bool => Value::Bool(self.bool()?),
            ValueType::String => Value::String(self.string("string")?),
            ValueType::Array => Value::Array(self.array_value(depth + 1)?),
        })
    }

    fn bool(&mut self) -> Result<bool, FormatError> {
        let offset = self.offset();
        match self.array::<1>("bool")?[0] {
            0 => Ok(false),
            1 => Ok(true),
            byte => Err(FormatError::BadBool { byte, offset }),
        }
    }

    /// Reads `count` fixed-size little-endian elements in one bounds check.
    fn fixed<T, const N: usize>(
        &mut self,
        count: u64,
        what: &'static str,
        conv: fn([u8; N]) -> T,
    ) -> Result<Vec<T>, FormatError> {
        let bytes = self.take(count * N as u64, what)?;
        Ok(bytes
            .chunks_exact(N)
            .map(|c| conv(c.try_into().expect("chunks_exact gives N bytes")))
            .collect())
    }

    /// An array whose nesting level (1 for a top-level array value) is `depth`.
    fn array_value(&mut self, depth: usize) -> Result<Array, FormatError> {
        if depth > MAX_ARRAY_DEPTH {
            return Err(FormatError::TooDeep {
                max: MAX_ARRAY_DEPTH,
                offset: self.offset(),
            });
        }
        let elem = self.value_type()?;
        let count = self.u64("array length")?;
        self.check_count(count, elem.min_size(), "array element")?;
        // After check_count, `count` elements fit in the buffer, so it fits in usize.
        let n = count as usize;
        Ok(match elem {
            ValueType::U8 => Array::U8(self.take(count, "u8 array")?.to_vec()),
            ValueType::I8 => Array::I8(self.fixed(count, "i8 array", |b: [u8; 1]| b[0] as i8)?),
            ValueType::U16 => Array::U16(self.fixed(count, "u16 array", u16::from_le_bytes)?),
            ValueType::I16 => Array::I16(self.fixed(count, "i16 array", i16::from_le_bytes)?),
            ValueType::U32 => Array::U32(self.fixed(count, "u32 array", u32::from_le_bytes)?),
            ValueType::I32 => Array::I32(self.fixed(count, "i32 array", i32::from_le_bytes)?),
            ValueType::F32 => Array::F32(self.fixed(count, "f32 array", f32::from_le_bytes)?),
            ValueType::U64 => Array::U64(self.fixed(count, "u64 array", u64::from_le_bytes)?),
            ValueType::I64 => Array::I64(self.fixed(count, "i64 array", i64::from_le_bytes)?),
            ValueType::F64 => Array::F64(self.fixed(count, "f64 array", f64::from_le_bytes)?),
            ValueType::Bool => Array::Bool((0..n).map(|_| self.bool()).collect::<Result<_, _>>()?),
            ValueType::String => {
                let mut v = Vec::with_capacity(n.min(MAX_RESERVE));
                for _ in 0..n {
                    v.push(self.string("string")?);
                }
                Array::String(v)
            }
            ValueType::Array => {
                let mut v = Vec::with_capacity(n.min(MAX_RESERVE));
                for _ in 0..n {
                    v.push(self.array_value(depth + 1)?);
                }
                Array::Array(v)
            }
        })
    }
}

/// Rounds `x` up to a multiple of `alignment` (a power of two), or `None` on overflow.
pub(crate) fn align_up(x: u64, alignment: u64) -> Option<u64> {
    Some(x.checked_add(alignment - 1)? & !(alignment - 1))
}

/// The alignment a `general.alignment` value asks for, if valid.
pub(crate) fn alignment_of(v: &Value) -> Result<u64, FormatError> {
    match v.as_u64() {
        Some(a) if a.is_power_of_two() => Ok(a),
        _ => Err(FormatError::BadAlignment(format!("{v:?}"))),
    }
}

/// Parses and validates the header of the GGUF file held in `buf`, and checks that every
/// tensor's data lies inside `buf` without overlapping another's.
pub(crate) fn parse(buf: &[u8]) -> Result<Header, FormatError> {
    let mut c = Cursor { buf, pos: 0 };
    let magic = c.array::<4>("magic")?;
    if magic != MAGIC {
        return Err(FormatError::BadMagic(magic));
    }
    let version = c.u32("version")?;
    match version {
        2 | 3 => {}
        // A big-endian writer stores the version byte-swapped; say so rather than "bad version".
        v if v & 0xFFFF == 0 && matches!(v.swap_bytes(), 2 | 3) => {
            return Err(FormatError::BigEndian);
        }
        v => return Err(FormatError::BadVersion(v)),
    }
    let n_tensors = c.u64("tensor count")?;
    let n_kv = c.u64("metadata count")?;

    // key length (8) + value type (4) + smallest value (1)
    c.check_count(n_kv, 13, "metadata entry")?;
    let mut kvs = Vec::with_capacity((n_kv as usize).min(MAX_RESERVE));
    let mut kv_index = HashMap::with_capacity((n_kv as usize).min(MAX_RESERVE));
    for _ in 0..n_kv {
        let key = c.string("metadata key")?;
        if kv_index.contains_key(&key) {
            return Err(FormatError::DuplicateKey(key));
        }
        let value =
            c.value_type()
                .and_then(|ty| c.value(ty, 0))
                .map_err(|e| FormatError::InKey {
                    key: key.clone(),
                    source: Box::new(e),
                })?;
        kv_index.insert(key.clone(), kvs.len());
        kvs.push((key, value));
    }

    let alignment = match kv_index.get("general.alignment") {
        Some(&i) => alignment_of(&kvs[i].1)?,
        None => DEFAULT_ALIGNMENT,
    };

    // name length (8) + n_dims (4) + type (4) + offset (8)
    c.check_count(n_tensors, 24, "tensor info")?;
    let mut tensors = Vec::with_capacity((n_tensors as usize).min(MAX_RESERVE));
    let mut tensor_index = HashMap::with_capacity((n_tensors as usize).min(MAX_RESERVE));
    for _ in 0..n_tensors {
        let name = c.string("tensor name")?;
        let info =
            read_tensor_info(&mut c, &name, alignment).map_err(|e| FormatError::InTensor {
                name: name.clone(),
                source: Box::new(e),
            })?;
        if tensor_index.contains_key(&name) {
            return Err(FormatError::DuplicateTensor(name));
        }
        tensor_index.insert(name, tensors.len());
        tensors.push(info);
    }

    let header_end = c.offset();
    let data_offset = align_up(header_end, alignment).ok_or_else(|| {
        FormatError::BadAlignment(format!("{alignment} (data section start overflows)"))
    })?;
    check_data_ranges(&tensors, data_offset, buf.len() as u64)?;
    Ok(Header {
        version,
        kvs,
        kv_index,
        tensors,
        tensor_index,
        alignment,
        data_offset,
    })
}

fn read_tensor_info(
    c: &mut Cursor<'_>,
    name: &str,
    alignment: u64,
) -> Result<TensorInfo, FormatError> {
    let n_dims = c.u32("tensor dimension count")?;
    if n_dims as usize > MAX_DIMS {
        return Err(FormatError::TooManyDims(n_dims.into()));
    }
    let mut shape = [0u64; MAX_DIMS];
    for d in shape.iter_mut().take(n_dims as usize) {
        *d = c.u64("tensor dimension")?;
    }
    let ty_id = c.u32("tensor type")?;
    let ty = GgmlType::from_id(ty_id).ok_or(FormatError::UnknownType(ty_id))?;
    let offset = c.u64("tensor offset")?;
    if offset % alignment != 0 {
        return Err(FormatError::MisalignedOffset { offset, alignment });
    }
    // TensorInfo::new names the tensor in its errors; unwrap that layer since the caller adds it.
    TensorInfo::new(name, &shape[..n_dims as usize], ty, offset).map_err(|e| match e {
        FormatError::InTensor { source, .. } => *source,
        e => e,
    })
}

fn check_data_ranges(
    tensors: &[TensorInfo],
    data_offset: u64,
    file_len: u64,
) -> Result<(), FormatError> {
    let mut ranges = Vec::with_capacity(tensors.len());
    for (i, t) in tensors.iter().enumerate() {
        let in_tensor = |e| FormatError::InTensor {
            name: t.name().to_owned(),
            source: Box::new(e),
        };
        let start = data_offset.checked_add(t.offset());
        let end = start.and_then(|s| s.checked_add(t.n_bytes()));
        match (start, end) {
            (Some(start), Some(end)) if end <= file_len => {
                if start < end {
                    ranges.push((start, end, i));
                }
            }
            _ => {
                let start = start.unwrap_or(u64::MAX);
                let end = end.unwrap_or(u64::MAX);
                return Err(in_tensor(FormatError::DataPastEnd {
                    start,
                    end,
                    file_len,
                }));
            }
        }
    }
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        let ((_, prev_end, prev), (start, _, this)) = (w[0], w[1]);
        if start < prev_end {
            return Err(FormatError::InTensor {
                name: tensors[this].name().to_owned(),
                source: Box::new(FormatError::Overlap {
                    other: tensors[prev].name().to_owned(),
                }),
            });
        }
    }
    Ok(())
}
