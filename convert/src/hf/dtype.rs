//! Element types a checkpoint tensor may be stored in, and their conversion to f32.

use half::{bf16, f16};
use rayon::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SrcDtype {
    F32,
    F16,
    BF16,
}

/// Below this many elements the conversion stays on the calling thread: rayon's fork/join costs
/// more than converting a small row range.
const PAR_MIN: usize = 1 << 16;

impl SrcDtype {
    pub fn from_safetensors(d: safetensors::Dtype) -> Option<SrcDtype> {
        match d {
            safetensors::Dtype::F32 => Some(SrcDtype::F32),
            safetensors::Dtype::F16 => Some(SrcDtype::F16),
            safetensors::Dtype::BF16 => Some(SrcDtype::BF16),
            _ => None,
        }
    }

    pub fn size(self) -> usize {
        match self {
            SrcDtype::F32 => 4,
            SrcDtype::F16 | SrcDtype::BF16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SrcDtype::F32 => "f32",
            SrcDtype::F16 => "f16",
            SrcDtype::BF16 => "bf16",
        }
    }

    /// Converts little-endian `bytes` (exactly `out.len()` elements) to f32. Safetensors data is
    /// not guaranteed to be aligned for the element type, so elements are assembled from bytes.
    pub fn to_f32(self, bytes: &[u8], out: &mut [f32]) {
        debug_assert_eq!(bytes.len(), out.len() * self.size());
        if out.len() >= PAR_MIN {
            let per = PAR_MIN;
            out.par_chunks_mut(per)
                .zip(bytes.par_chunks(per * self.size()))
                .for_each(|(o, b)| self.convert_serial(b, o));
        } else {
            self.convert_serial(bytes, out);
        }
    }

    fn convert_serial(self, bytes: &[u8], out: &mut [f32]) {
        match self {
            SrcDtype::F32 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            SrcDtype::F16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
                }
            }
            SrcDtype::BF16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_each_dtype_exactly() {
        let vals = [1.5f32, -2.25, 0.0, 65504.0, 3.0e-5];
        let mut out = [0f32; 5];

        let b: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        SrcDtype::F32.to_f32(&b, &mut out);
        assert_eq!(out, vals);

        let b: Vec<u8> = vals
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_bits().to_le_bytes())
            .collect();
        SrcDtype::F16.to_f32(&b, &mut out);
        for (o, v) in out.iter().zip(vals) {
            assert_eq!(*o, f16::from_f32(v).to_f32());
        }

        let b: Vec<u8> = vals
            .iter()
            .flat_map(|v| bf16::from_f32(*v).to_bits().to_le_bytes())
            .collect();
        SrcDtype::BF16.to_f32(&b, &mut out);
        assert_eq!(out[0], 1.5);
        assert_eq!(out[1], -2.25);
        assert_eq!(out[3], bf16::from_f32(65504.0).to_f32());
    }

    #[test]
    fn parallel_path_matches_serial() {
        let n = PAR_MIN * 3 + 17;
        let b: Vec<u8> = (0..n)
            .flat_map(|i| bf16::from_f32(i as f32 * 0.37).to_bits().to_le_bytes())
            .collect();
        let mut par = vec![0f32; n];
        SrcDtype::BF16.to_f32(&b, &mut par);
        let mut ser = vec![0f32; n];
        SrcDtype::BF16.convert_serial(&b, &mut ser);
        assert_eq!(par, ser);
    }
}
