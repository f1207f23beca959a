//! The streaming GGUF writer: metadata and tensor infos are declared first, then each tensor's
//! data is written in declared order, so a model is never held in memory whole.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::quant::GgmlType;

use super::error::{FormatError, GgufError};
use super::reader::{DEFAULT_ALIGNMENT, MAGIC, MAX_ARRAY_DEPTH, align_up, alignment_of};
use super::tensor::TensorInfo;
use super::value::{Array, Value, ValueType};

/// Errors from declarations name the file this way, since it has no path yet.
const DECLARING: &str = "<new GGUF>";

/// What `write_to` output is called in errors.
const STREAM: &str = "<output stream>";

/// Big enough that the many small header writes and the padding never reach the OS one by one.
const BUF_CAPACITY: usize = 8 << 20;

/// ggml's `GGML_MAX_NAME` is 64 including the terminating NUL; llama.cpp refuses longer names.
const MAX_NAME_BYTES: usize = 63;

/// Declares the metadata and tensors of a GGUF v3 file to be written.
///
/// ```no_run
/// # use kiln::gguf::GgufWriter;
/// # use kiln::quant::GgmlType;
/// let mut w = GgufWriter::new();
/// w.add_kv("general.architecture", "kimi-linear")?;
/// w.add_tensor("output_norm.weight", &[2304], GgmlType::F32)?;
/// let mut out = w.create("model.gguf")?;
/// out.write_tensor_data(&vec![0u8; 2304 * 4])?;
/// out.finish()?;
/// # Ok::<(), kiln::gguf::GgufError>(())
/// ```
#[derive(Debug, Default)]
pub struct GgufWriter {
    alignment: Option<u64>,
    kvs: Vec<(String, Value)>,
    keys: HashSet<String>,
    tensors: Vec<TensorInfo>,
    names: HashSet<String>,
}

fn declaring(kind: FormatError) -> GgufError {
    GgufError::format(DECLARING, kind)
}

fn array_depth(a: &Array) -> usize {
    match a {
        Array::Array(v) => 1 + v.iter().map(array_depth).max().unwrap_or(0),
        _ => 1,
    }
}

impl GgufWriter {
    pub fn new() -> GgufWriter {
        GgufWriter::default()
    }

    /// Sets the data alignment (a nonzero power of two) and stores it as the `general.alignment`
    /// entry, replacing that entry's value if it was already declared.
    pub fn set_alignment(&mut self, alignment: u32) -> Result<(), GgufError> {
        let value = Value::U32(alignment);
        let a = alignment_of(&value).map_err(declaring)?;
        self.alignment = Some(a);
        match self.kvs.iter_mut().find(|(k, _)| k == "general.alignment") {
            Some((_, v)) => *v = value,
            None => {
                self.keys.insert("general.alignment".to_owned());
                self.kvs.push(("general.alignment".to_owned(), value));
            }
        }
        Ok(())
    }

    /// Appends a metadata entry. Keys must be unique; `general.alignment` must be a `U32` power
    /// of two (what llama.cpp and gguf-py accept); arrays may nest at most 8 deep.
    pub fn add_kv(
        &mut self,
        key: impl Into<String>,
        value: impl Into<Value>,
    ) -> Result<(), GgufError> {
        let key = key.into();
        let value = value.into();
        if self.keys.contains(&key) {
            return Err(declaring(FormatError::DuplicateKey(key)));
        }
        let in_key = |e| {
            declaring(FormatError::InKey {
                key: key.clone(),
                source: Box::new(e),
            })
        };
        if let Value::Array(a) = &value
            && array_depth(a) > MAX_ARRAY_DEPTH
        {
            return Err(in_key(FormatError::TooDeep {
                max: MAX_ARRAY_DEPTH,
                offset: 0,
            }));
        }
        if key == "general.alignment" {
            if value.value_type() != ValueType::U32 {
                return Err(declaring(FormatError::AlignmentType(value.value_type())));
            }
            self.alignment = Some(alignment_of(&value).map_err(declaring)?);
        }
        self.keys.insert(key.clone());
        self.kvs.push((key, value));
        Ok(())
    }

    /// Appends a tensor of shape `shape` (ggml `ne` order, row length first) and type `ty`.
    /// Names must be unique and at most 63 bytes; rows must be whole blocks of `ty`.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        shape: &[u64],
        ty: GgmlType,
    ) -> Result<(), GgufError> {
        let name = name.into();
        if name.len() > MAX_NAME_BYTES {
            let len = name.len();
            return Err(declaring(FormatError::InTensor {
                name,
                source: Box::new(FormatError::NameTooLong { len }),
            }));
        }
        if self.names.contains(&name) {
            return Err(declaring(FormatError::DuplicateTensor(name)));
        }
        let info = TensorInfo::new(name.clone(), shape, ty, 0).map_err(declaring)?;
        self.names.insert(name);
        self.tensors.push(info);
        Ok(())
    }

    fn alignment(&self) -> u64 {
        self.alignment.unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// The declared tensors with the data offsets they will get.
    pub fn tensor_infos(&self) -> Result<Vec<TensorInfo>, GgufError> {
        let alignment = self.alignment();
        let mut offset = 0u64;
        let mut out = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            out.push(t.clone().with_offset(offset));
            offset = align_up(t.n_bytes(), alignment)
                .and_then(|n| offset.checked_add(n))
                .filter(|&n| n <= i64::MAX as u64)
                .ok_or_else(|| {
                    declaring(FormatError::InTensor {
                        name: t.name().to_owned(),
                        source: Box::new(FormatError::ElementOverflow {
                            ne: t.shape().to_vec(),
                        }),
                    })
                })?;
        }
        Ok(out)
    }

    /// The header: magic, counts, metadata and tensor infos, without the padding up to the data
    /// section (streamed, since a large alignment makes it large).
    fn encode_header(&self, infos: &[TensorInfo]) -> Vec<u8> {
        let mut b = Vec::with_capacity(4096);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&(infos.len() as u64).to_le_bytes());
        b.extend_from_slice(&(self.kvs.len() as u64).to_le_bytes());
        for (k, v) in &self.kvs {
            put_str(&mut b, k);
            b.extend_from_slice(&v.value_type().id().to_le_bytes());
            put_value(&mut b, v);
        }
        for t in infos {
            put_str(&mut b, t.name());
            b.extend_from_slice(&(t.n_dims() as u32).to_le_bytes());
            for d in t.shape() {
                b.extend_from_slice(&d.to_le_bytes());
            }
            b.extend_from_slice(&t.ty().id().to_le_bytes());
            b.extend_from_slice(&t.offset().to_le_bytes());
        }
        b
    }

    /// Writes the header to `out` and returns the writer for the tensor data.
    pub fn write_to<W: Write>(self, out: W) -> Result<TensorWriter<W>, GgufError> {
        self.start(out, STREAM.to_owned())
    }

    fn start<W: Write>(self, mut out: W, path: String) -> Result<TensorWriter<W>, GgufError> {
        let tensors = self.tensor_infos()?;
        let header = self.encode_header(&tensors);
        let alignment = self.alignment();
        let len = header.len() as u64;
        let pad = align_up(len, alignment).expect("header is far below u64::MAX") - len;
        let io = |e| GgufError::io(&path, e);
        out.write_all(&header).map_err(io)?;
        write_zeros(&mut out, pad).map_err(io)?;
        Ok(TensorWriter {
            out,
            path,
            alignment,
            tensors,
            next: 0,
            poisoned: false,
        })
    }

    /// Creates a temporary file next to `path`, writes the header into it, and returns the
    /// writer for the tensor data. The file appears at `path` only when
    /// [`GgufFileWriter::finish`] succeeds.
    pub fn create(self, path: impl AsRef<Path>) -> Result<GgufFileWriter, GgufError> {
        let target = path.as_ref().to_path_buf();
        let name = target.display().to_string();
        let (tmp, file) = create_temp(&target).map_err(|e| GgufError::io(&name, e))?;
        // From here the guard removes the temporary file on any early return.
        let mut guard = GgufFileWriter {
            inner: None,
            tmp,
            target,
            renamed: false,
        };
        guard.inner = Some(self.start(BufWriter::with_capacity(BUF_CAPACITY, file), name)?);
        Ok(guard)
    }
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

fn put_value(b: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => b.push(*x),
        Value::I8(x) => b.push(*x as u8),
        Value::U16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => b.push(u8::from(*x)),
        Value::String(s) => put_str(b, s),
        Value::Array(a) => put_array(b, a),
        Value::U64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => b.extend_from_slice(&x.to_le_bytes()),
    }
}

fn put_array(b: &mut Vec<u8>, a: &Array) {
    b.extend_from_slice(&a.elem_type().id().to_le_bytes());
    b.extend_from_slice(&(a.len() as u64).to_le_bytes());
    fn each<T: Copy, const N: usize>(b: &mut Vec<u8>, v: &[T], f: fn(T) -> [u8; N]) {
        for &x in v {
            b.extend_from_slice(&f(x));
        }
    }
    match a {
        Array::U8(v) => b.extend_from_slice(v),
        Array::I8(v) => each(b, v, i8::to_le_bytes),
        Array::U16(v) => each(b, v, u16::to_le_bytes),
        Array::I16(v) => each(b, v, i16::to_le_bytes),
        Array::U32(v) => each(b, v, u32::to_le_bytes),
        Array::I32(v) => each(b, v, i32::to_le_bytes),
        Array::F32(v) => each(b, v, f32::to_le_bytes),
        Array::Bool(v) => each(b, v, |x| [u8::from(x)]),
        Array::String(v) => v.iter().for_each(|s| put_str(b, s)),
        Array::Array(v) => v.iter().for_each(|a| put_array(b, a)),
        Array::U64(v) => each(b, v, u64::to_le_bytes),
        Array::I64(v) => each(b, v, i64::to_le_bytes),
        Array::F64(v) => each(b, v, f64::to_le_bytes),
    }
}

/// Opens a new, uniquely named file in the directory of `target`, so the final rename is
/// atomic (same file system) and concurrent writers never share a temporary file.
fn create_temp(target: &Path) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let file_name = target.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "output path has no file name")
    })?;
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut name = file_name.to_os_string();
        name.push(format!(".{}-{n}.tmp", std::process::id()));
        let tmp = target.with_file_name(name);
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Receives the tensor data of a declared GGUF, one tensor at a time in declared order, and
/// pads each to the alignment.
#[derive(Debug)]
pub struct TensorWriter<W: Write> {
    out: W,
    path: String,
    alignment: u64,
    tensors: Vec<TensorInfo>,
    next: usize,
    poisoned: bool,
}

/// Counts what a producer writes and refuses bytes past the declared size, so a producer that
/// writes too much fails at once instead of filling the disk.
struct Limited<'a, W: Write> {
    inner: &'a mut W,
    written: u64,
    limit: u64,
    refused: u64,
}

impl<W: Write> Write for Limited<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            self.refused += buf.len() as u64;
            return Err(io::Error::other("more bytes than the tensor declared"));
        }
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn write_zeros(out: &mut impl Write, mut n: u64) -> io::Result<()> {
    const ZEROS: [u8; 256] = [0; 256];
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        out.write_all(&ZEROS[..k])?;
        n -= k as u64;
    }
    Ok(())
}

impl<W: Write> TensorWriter<W> {
    /// The tensors, with their data offsets, in the order their data must be written.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor whose data is expected next, or `None` when all were written.
    pub fn next_tensor(&self) -> Option<&TensorInfo> {
        self.tensors.get(self.next)
    }

    /// Writes the whole data of the next tensor.
    pub fn write_tensor_data(&mut self, bytes: &[u8]) -> Result<(), GgufError> {
        self.write_tensor_with(|w| w.write_all(bytes))
    }

    /// Writes the data of the next tensor through `produce`, which may write it in pieces;
    /// it must write exactly the declared number of bytes.
    pub fn write_tensor_with(
        &mut self,
        produce: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(), GgufError> {
        if self.poisoned {
            return Err(GgufError::Poisoned {
                path: self.path.clone(),
            });
        }
        let Some(t) = self.tensors.get(self.next) else {
            return Err(GgufError::TooManyTensors {
                path: self.path.clone(),
                declared: self.tensors.len(),
            });
        };
        // Stays set unless this tensor completes, since the output is then out of step.
        self.poisoned = true;
        let expected = t.n_bytes();
        let mut lim = Limited {
            inner: &mut self.out,
            written: 0,
            limit: expected,
            refused: 0,
        };
        let result = produce(&mut lim);
        let (written, refused) = (lim.written, lim.refused);
        let size_error = |got| GgufError::TensorSize {
            path: self.path.clone(),
            name: t.name().to_owned(),
            expected,
            got,
        };
        if refused > 0 {
            return Err(size_error(written + refused));
        }
        result.map_err(|e| GgufError::io(&self.path, e))?;
        if written != expected {
            return Err(size_error(written));
        }
        let pad = align_up(expected, self.alignment).expect("checked when declared") - expected;
        write_zeros(&mut self.out, pad).map_err(|e| GgufError::io(&self.path, e))?;
        self.next += 1;
        self.poisoned = false;
        Ok(())
    }

    /// Writes the data of every remaining tensor, asking `produce` for each with its index and
    /// info.
    pub fn write_tensors(
        &mut self,
        mut produce: impl FnMut(usize, &TensorInfo, &mut dyn Write) -> io::Result<()>,
    ) -> Result<(), GgufError> {
        while let Some(t) = self.next_tensor() {
            let (i, t) = (self.next, t.clone());
            self.write_tensor_with(|w| produce(i, &t, w))?;
        }
        Ok(())
    }

    /// Checks that every tensor was written, flushes, and returns the output.
    pub fn finish(mut self) -> Result<W, GgufError> {
        if self.poisoned {
            return Err(GgufError::Poisoned {
                path: self.path.clone(),
            });
        }
        if self.next < self.tensors.len() {
            return Err(GgufError::MissingTensors {
                path: self.path.clone(),
                written: self.next,
                declared: self.tensors.len(),
            });
        }
        self.out.flush().map_err(|e| GgufError::io(&self.path, e))?;
        Ok(self.out)
    }
}

/// A [`TensorWriter`] into a temporary file that becomes the target file on
/// [`finish`](GgufFileWriter::finish); dropped unfinished (or failing), it removes the temporary
/// file and leaves any existing target untouched.
#[derive(Debug)]
pub struct GgufFileWriter {
    inner: Option<TensorWriter<BufWriter<File>>>,
    tmp: PathBuf,
    target: PathBuf,
    renamed: bool,
}

impl GgufFileWriter {
    fn inner(&mut self) -> &mut TensorWriter<BufWriter<File>> {
        self.inner.as_mut().expect("present until finish or drop")
    }

    /// The temporary file being written.
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// See [`TensorWriter::tensors`].
    pub fn tensors(&self) -> &[TensorInfo] {
        self.inner
            .as_ref()
            .expect("present until finish or drop")
            .tensors()
    }

    /// See [`TensorWriter::next_tensor`].
    pub fn next_tensor(&self) -> Option<&TensorInfo> {
        self.inner
            .as_ref()
            .expect("present until finish or drop")
            .next_tensor()
    }

    /// See [`TensorWriter::write_tensor_data`].
    pub fn write_tensor_data(&mut self, bytes: &[u8]) -> Result<(), GgufError> {
        self.inner().write_tensor_data(bytes)
    }

    /// See [`TensorWriter::write_tensor_with`].
    pub fn write_tensor_with(
        &mut self,
        produce: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(), GgufError> {
        self.inner().write_tensor_with(produce)
    }

    /// See [`TensorWriter::write_tensors`].
    pub fn write_tensors(
        &mut self,
        produce: impl FnMut(usize, &TensorInfo, &mut dyn Write) -> io::Result<()>,
    ) -> Result<(), GgufError> {
        self.inner().write_tensors(produce)
    }

    /// Checks that every tensor was written, flushes, and renames the temporary file onto the
    /// target. On error the temporary file is removed (when `self` drops).
    pub fn finish(mut self) -> Result<(), GgufError> {
        let inner = self.inner.take().expect("present until finish or drop");
        let path = inner.path.clone();
        let result = inner.finish().and_then(|buf| {
            let file = buf
                .into_inner()
                .map_err(|e| GgufError::io(&path, e.into_error()))?;
            drop(file);
            fs::rename(&self.tmp, &self.target).map_err(|e| GgufError::io(&path, e))
        });
        self.renamed = result.is_ok();
        result
    }
}

impl Drop for GgufFileWriter {
    fn drop(&mut self) {
        if !self.renamed {
            // Close the file first, then remove it; best effort, since nothing useful can be
            // done about a failure while dropping.
            drop(self.inner.take());
            let _ = fs::remove_file(&self.tmp);
        }
    }
}
