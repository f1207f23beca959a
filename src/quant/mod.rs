//! Block formats of ggml, bit-exact with ggml's reference code: layout, quantize, dequantize and
//! the CPU dot products the matvec kernels are built on.
//!
//! One file per family (`float`, `legacy`, `k_quants`), one `#[repr(C)]` struct per block type
//! with its size asserted at compile time, and one trait, [`Block`], that every type implements.
//! Callers that hold raw GGUF bytes go through [`codec`], which erases the block type.

mod float;
mod k_quants;
mod legacy;
mod simd;
pub mod types;

pub use float::{BF16, F16};
pub use k_quants::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, QK_K};
pub use types::GgmlType;

use rayon::prelude::*;

#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    #[error("type {0} has no kernels in kiln")]
    Unsupported(GgmlType),
    #[error("{ty}: a row of {n} elements is not a whole number of {block}-element blocks")]
    RowNotBlockAligned {
        ty: GgmlType,
        n: usize,
        block: usize,
    },
    #[error("{ty}: expected {expected} bytes, got {got}")]
    ByteLength {
        ty: GgmlType,
        expected: usize,
        got: usize,
    },
    #[error("importance weights: expected {expected} values, got {got}")]
    ImatrixLength { expected: usize, got: usize },
}

/// One ggml block type: `SIZE` elements stored in `size_of::<Self>()` bytes.
pub trait Block: bytemuck::Pod + Send + Sync {
    const TYPE: GgmlType;
    /// Elements per block.
    const SIZE: usize;
    /// The block type of the activations this type's dot product takes (ggml's `vec_dot_type`).
    type Dot: Block;

    /// Quantizes `x` (a whole number of blocks) into `out`, the way `ggml_quantize_chunk` does
    /// for one row; `imatrix` holds one importance weight per element of the row.
    fn quantize(x: &[f32], out: &mut [Self], imatrix: Option<&[f32]>);
    /// Dequantizes `blocks` into `out` (`blocks.len() * SIZE` values), bit-exact with ggml's `to_float`.
    fn dequantize(blocks: &[Self], out: &mut [f32]);
    /// Dot product of a weight row with an activation row quantized to `Self::Dot`.
    fn dot(w: &[Self], x: &[Self::Dot]) -> f32;
}

/// A block type with its type erased: operates on raw little-endian GGUF bytes.
pub trait RowCodec: Sync {
    fn ty(&self) -> GgmlType;
    fn dot_type(&self) -> GgmlType;
    /// Quantizes one row of `x.len()` values into `out` (exactly the row's byte size).
    fn quantize_row(
        &self,
        x: &[f32],
        out: &mut [u8],
        imatrix: Option<&[f32]>,
    ) -> Result<(), QuantError>;
    /// Dequantizes one row held in `bytes` into `out`.
    fn dequantize_row(&self, bytes: &[u8], out: &mut [f32]) -> Result<(), QuantError>;
    /// Dot product of one weight row with one activation row of `dot_type()`.
    fn vec_dot(&self, w: &[u8], x: &[u8]) -> Result<f32, QuantError>;
}

struct Codec<B: Block>(std::marker::PhantomData<B>);

impl<B: Block> Codec<B> {
    const INSTANCE: Codec<B> = Codec(std::marker::PhantomData);
}

/// The codec of block type `B`, as a `'static` trait object.
pub(crate) fn codec_of<B: Block>() -> &'static dyn RowCodec {
    &Codec::<B>::INSTANCE
}

/// Views `bytes` as blocks, copying only when the slice is not aligned for `B` (mmap views of
/// GGUF data are aligned, so the copy is the exception).
fn blocks_of<B: Block>(bytes: &[u8]) -> std::borrow::Cow<'_, [B]> {
    match bytemuck::try_cast_slice::<u8, B>(bytes) {
        Ok(b) => std::borrow::Cow::Borrowed(b),
        Err(_) => std::borrow::Cow::Owned(bytemuck::pod_collect_to_vec(bytes)),
    }
}

fn check_len<B: Block>(n: usize, bytes: usize) -> Result<usize, QuantError> {
    if !n.is_multiple_of(B::SIZE) {
        return Err(QuantError::RowNotBlockAligned {
            ty: B::TYPE,
            n,
            block: B::SIZE,
        });
    }
    let expected = n / B::SIZE * std::mem::size_of::<B>();
    if bytes != expected {
        return Err(QuantError::ByteLength {
            ty: B::TYPE,
            expected,
            got: bytes,
        });
    }
    Ok(n / B::SIZE)
}

impl<B: Block> RowCodec for Codec<B> {
    fn ty(&self) -> GgmlType {
        B::TYPE
    }

    fn dot_type(&self) -> GgmlType {
        <B::Dot as Block>::TYPE
    }

    fn quantize_row(
        &self,
        x: &[f32],
        out: &mut [u8],
        imatrix: Option<&[f32]>,
    ) -> Result<(), QuantError> {
        let nb = check_len::<B>(x.len(), out.len())?;
        if let Some(w) = imatrix
            && w.len() != x.len()
        {
            return Err(QuantError::ImatrixLength {
                expected: x.len(),
                got: w.len(),
            });
        }
        match bytemuck::try_cast_slice_mut::<u8, B>(out) {
            Ok(blocks) => B::quantize(x, blocks, imatrix),
            Err(_) => {
                let mut blocks = vec![B::zeroed(); nb];
                B::quantize(x, &mut blocks, imatrix);
                out.copy_from_slice(bytemuck::cast_slice(&blocks));
            }
        }
        Ok(())
    }

    fn dequantize_row(&self, bytes: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
        check_len::<B>(out.len(), bytes.len())?;
        B::dequantize(&blocks_of::<B>(bytes), out);
        Ok(())
    }

    fn vec_dot(&self, w: &[u8], x: &[u8]) -> Result<f32, QuantError> {
        let wb = blocks_of::<B>(w);
        let n = wb.len() * B::SIZE;
        check_len::<B::Dot>(n, x.len())?;
        Ok(B::dot(&wb, &blocks_of::<B::Dot>(x)))
    }
}

/// The codec of `ty`, or `QuantError::Unsupported` for types kiln has no kernels for.
pub fn codec(ty: GgmlType) -> Result<&'static dyn RowCodec, QuantError> {
    float::codec(ty)
        .or_else(|| legacy::codec(ty))
        .or_else(|| k_quants::codec(ty))
        .ok_or(QuantError::Unsupported(ty))
}

/// Quantizes `src` (rows of `n_per_row` values) to `ty`, rows in parallel, like
/// `ggml_quantize_chunk` over the whole matrix.
pub fn quantize_rows(
    ty: GgmlType,
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
) -> Result<Vec<u8>, QuantError> {
    let c = codec(ty)?;
    let row_bytes = ty
        .row_bytes(n_per_row)
        .ok_or(QuantError::RowNotBlockAligned {
            ty,
            n: n_per_row,
            block: ty.block_size(),
        })?;
    if n_per_row == 0 || !src.len().is_multiple_of(n_per_row) {
        return Err(QuantError::RowNotBlockAligned {
            ty,
            n: src.len(),
            block: n_per_row.max(1),
        });
    }
    let mut out = vec![0u8; src.len() / n_per_row * row_bytes];
    out.par_chunks_mut(row_bytes)
        .zip(src.par_chunks(n_per_row))
        .try_for_each(|(o, x)| c.quantize_row(x, o, imatrix))?;
    Ok(out)
}

/// Dequantizes `bytes` of type `ty` holding `n` values.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Result<Vec<f32>, QuantError> {
    let mut out = vec![0f32; n];
    codec(ty)?.dequantize_row(bytes, &mut out)?;
    Ok(out)
}
