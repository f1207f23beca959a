//! Tensor infos: name, shape in ggml's `ne` order, block type, and the size arithmetic, all
//! checked so that no shape from a file can overflow.

use crate::quant::GgmlType;

use super::error::FormatError;

/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: usize = 4;

/// One tensor of a GGUF file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    name: String,
    ne: [u64; MAX_DIMS],
    n_dims: usize,
    ty: GgmlType,
    offset: u64,
    n_elements: u64,
    n_bytes: u64,
}

impl TensorInfo {
    /// A tensor of shape `shape` (ggml `ne` order: `shape[0]` is the row length, the innermost
    /// and contiguous dimension) and type `ty`, at `offset` bytes from the start of the data
    /// section. Fails when the shape has more than 4 dimensions, its element or byte count
    /// overflows `i64` (ggml's size type), or rows are not whole blocks of `ty`.
    pub fn new(
        name: impl Into<String>,
        shape: &[u64],
        ty: GgmlType,
        offset: u64,
    ) -> Result<TensorInfo, FormatError> {
        let name = name.into();
        let in_tensor = |e| FormatError::InTensor {
            name: name.clone(),
            source: Box::new(e),
        };
        if shape.len() > MAX_DIMS {
            return Err(in_tensor(FormatError::TooManyDims(shape.len() as u64)));
        }
        let mut ne = [1u64; MAX_DIMS];
        ne[..shape.len()].copy_from_slice(shape);
        let overflow = || FormatError::ElementOverflow { ne: shape.to_vec() };
        let n_elements = ne
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| in_tensor(overflow()))?;
        let block = ty.block_size() as u64;
        if ne[0] % block != 0 {
            return Err(in_tensor(FormatError::BlockMisaligned {
                ty,
                ne0: ne[0],
                block: ty.block_size(),
            }));
        }
        let n_bytes = (ne[0] / block)
            .checked_mul(ty.type_size() as u64)
            .and_then(|row| ne[1..].iter().try_fold(row, |acc, &d| acc.checked_mul(d)))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| in_tensor(overflow()))?;
        Ok(TensorInfo {
            name,
            ne,
            n_dims: shape.len(),
            ty,
            offset,
            n_elements,
            n_bytes,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The shape in ggml `ne` order (row length first), as many dimensions as the file stores.
    pub fn shape(&self) -> &[u64] {
        &self.ne[..self.n_dims]
    }

    /// The shape padded with 1s to 4 dimensions, as ggml's `ne` array.
    pub fn ne(&self) -> [u64; MAX_DIMS] {
        self.ne
    }

    pub fn n_dims(&self) -> usize {
        self.n_dims
    }

    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Offset of the data from the start of the data section (not of the file).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn n_elements(&self) -> u64 {
        self.n_elements
    }

    /// Bytes of data, without alignment padding.
    pub fn n_bytes(&self) -> u64 {
        self.n_bytes
    }

    pub(crate) fn with_offset(mut self, offset: u64) -> TensorInfo {
        self.offset = offset;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let t = TensorInfo::new("w", &[64, 3], GgmlType::Q8_0, 0).unwrap();
        assert_eq!(t.n_elements(), 192);
        assert_eq!(t.n_bytes(), 2 * 34 * 3);
        assert_eq!(t.shape(), &[64, 3]);
        assert_eq!(t.ne(), [64, 3, 1, 1]);
        let s = TensorInfo::new("s", &[], GgmlType::F32, 0).unwrap();
        assert_eq!((s.n_elements(), s.n_bytes()), (1, 4));
    }

    #[test]
    fn rejects_bad_shapes() {
        let e = TensorInfo::new("w", &[1, 1, 1, 1, 1], GgmlType::F32, 0).unwrap_err();
        assert!(e.to_string().contains("5 dimensions"), "{e}");
        let e = TensorInfo::new("w", &[33], GgmlType::Q4_0, 0).unwrap_err();
        assert!(e.to_string().contains("block size 32"), "{e}");
        let e = TensorInfo::new("w", &[1 << 32, 1 << 32], GgmlType::F32, 0).unwrap_err();
        assert!(e.to_string().contains("overflows"), "{e}");
        // Element count fits, byte count does not.
        let e = TensorInfo::new("w", &[1 << 62], GgmlType::F32, 0).unwrap_err();
        assert!(e.to_string().contains("overflows"), "{e}");
    }
}
