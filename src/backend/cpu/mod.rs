//! The CPU backend: weights are the mapped file's own bytes (no copy), activations and state are
//! `Vec<f32>`, and every kernel is parallel over rows or heads with rayon.

mod elementwise;
pub mod kda;
pub mod matmul;
mod mla;
mod moe;

use std::borrow::Cow;

use super::{
    Backend, BackendError, KdaDims, KdaInputs, MlaDims, MlaWeights, MoeWeights, Result, TensorBytes,
};
use crate::quant::{GgmlType, codec};
use matmul::MatView;

/// Runs the model on the host CPU.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend {
    /// Take every dot product in f32 against the dequantized weight row (the reference path)
    /// instead of quantizing the activations to the weight's dot type.
    pub exact: bool,
}

impl CpuBackend {
    pub fn new(exact: bool) -> Self {
        CpuBackend { exact }
    }
}

/// A weight borrowed from the mapped GGUF file.
#[derive(Clone, Copy, Debug)]
pub struct CpuWeight<'w> {
    pub name: &'w str,
    pub ty: GgmlType,
    pub ne: [usize; 4],
    pub bytes: &'w [u8],
}

impl<'w> CpuWeight<'w> {
    /// The whole tensor as a matrix of rows of `ne[0]` values.
    fn mat(&self) -> Result<MatView<'w>> {
        let rows = self.ne[1] * self.ne[2] * self.ne[3];
        MatView::new(self.ty, self.ne[0], rows, self.bytes)
    }

    /// All values as f32; borrowed when the file already holds aligned f32 (norms, biases,
    /// conv taps are stored that way), dequantized otherwise.
    fn values(&self) -> Result<Cow<'w, [f32]>> {
        if self.ty == GgmlType::F32
            && let Ok(v) = bytemuck::try_cast_slice::<u8, f32>(self.bytes)
        {
            return Ok(Cow::Borrowed(v));
        }
        let n = self.ne.iter().product();
        Ok(Cow::Owned(crate::quant::dequantize(
            self.ty, self.bytes, n,
        )?))
    }
}

fn check_len(buf: &[f32], needed: usize) -> Result<()> {
    if buf.len() < needed {
        return Err(BackendError::BufferTooSmall {
            len: buf.len(),
            needed,
        });
    }
    Ok(())
}

impl Backend for CpuBackend {
    type Weight<'w> = CpuWeight<'w>;
    type Buf = Vec<f32>;
    /// The values themselves: the CPU has nothing to wait for.
    type Pending = Vec<f32>;

    fn name(&self) -> &'static str {
        if self.exact { "cpu (exact)" } else { "cpu" }
    }

    fn upload<'w>(&self, t: TensorBytes<'w>) -> Result<CpuWeight<'w>> {
        if codec(t.ty).is_err() {
            return Err(BackendError::UnsupportedType {
                name: t.name.to_string(),
                ty: t.ty,
            });
        }
        let expected =
            t.ty.row_bytes(t.ne[0])
                .map(|rb| rb * t.ne[1] * t.ne[2] * t.ne[3]);
        if expected != Some(t.bytes.len()) {
            return Err(BackendError::ByteLength {
                name: t.name.to_string(),
                ty: t.ty,
                ne: t.ne,
                bytes: t.bytes.len(),
            });
        }
        Ok(CpuWeight {
            name: t.name,
            ty: t.ty,
            ne: t.ne,
            bytes: t.bytes,
        })
    }

    fn alloc(&self, len: usize) -> Result<Vec<f32>> {
        Ok(vec![0f32; len])
    }

    fn write(&self, buf: &mut Vec<f32>, data: &[f32]) -> Result<()> {
        check_len(buf, data.len())?;
        buf[..data.len()].copy_from_slice(data);
        Ok(())
    }

    fn zero(&self, buf: &mut Vec<f32>) -> Result<()> {
        buf.fill(0.0);
        Ok(())
    }

    fn copy(
        &self,
        src: &Vec<f32>,
        src_off: usize,
        dst: &mut Vec<f32>,
        dst_off: usize,
        len: usize,
    ) -> Result<()> {
        check_len(src, src_off + len)?;
        check_len(dst, dst_off + len)?;
        dst[dst_off..dst_off + len].copy_from_slice(&src[src_off..src_off + len]);
        Ok(())
    }

    fn read(&self, buf: &Vec<f32>, len: usize) -> Result<Vec<f32>> {
        check_len(buf, len)?;
        Ok(buf[..len].to_vec())
    }

    fn read_later(&self, buf: &Vec<f32>, len: usize) -> Result<Vec<f32>> {
        self.read(buf, len)
    }

    fn fetch(&self, pending: Vec<f32>) -> Result<Vec<f32>> {
        Ok(pending)
    }

    fn argmax(&self, x: &Vec<f32>, t: usize, cols: usize) -> Result<Vec<u32>> {
        check_len(x, t * cols)?;
        Ok(x[..t * cols]
            .chunks_exact(cols)
            .map(elementwise::argmax)
            .collect())
    }

    fn embed(&self, table: &CpuWeight<'_>, ids: &[u32], out: &mut Vec<f32>) -> Result<()> {
        elementwise::embed(table.mat()?, ids, out)
    }

    fn matmul(&self, w: &CpuWeight<'_>, x: &Vec<f32>, t: usize, out: &mut Vec<f32>) -> Result<()> {
        matmul::matmul(w.mat()?, x, t, out, self.exact)
    }

    fn rms_norm(
        &self,
        x: &Vec<f32>,
        w: &CpuWeight<'_>,
        eps: f32,
        t: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let w = w.values()?;
        check_len(x, t * w.len())?;
        check_len(out, t * w.len())?;
        elementwise::rms_norm(&x[..t * w.len()], &w, eps, &mut out[..t * w.len()]);
        Ok(())
    }

    fn swiglu(&self, gate: &mut Vec<f32>, up: &Vec<f32>, t: usize, n: usize) -> Result<()> {
        check_len(gate, t * n)?;
        check_len(up, t * n)?;
        elementwise::swiglu(&mut gate[..t * n], &up[..t * n]);
        Ok(())
    }

    fn add(&self, acc: &mut Vec<f32>, x: &Vec<f32>, len: usize) -> Result<()> {
        check_len(acc, len)?;
        check_len(x, len)?;
        acc[..len]
            .iter_mut()
            .zip(&x[..len])
            .for_each(|(a, b)| *a += b);
        Ok(())
    }

    fn short_conv(
        &self,
        x: [&Vec<f32>; 3],
        w: [&CpuWeight<'_>; 3],
        state: &mut [Vec<f32>; 3],
        t: usize,
        dims: KdaDims,
        out: &mut [Vec<f32>; 3],
    ) -> Result<()> {
        let c = dims.width();
        for s in 0..3 {
            check_len(x[s], t * c)?;
            check_len(&out[s], t * c)?;
            check_len(&state[s], (dims.conv_kernel - 1) * c)?;
            let taps = w[s].values()?;
            check_len(&taps, dims.conv_kernel * c)?;
            kda::short_conv(
                &x[s][..t * c],
                &taps,
                &mut state[s],
                dims,
                &mut out[s][..t * c],
            );
        }
        Ok(())
    }

    fn kda_recurrent(
        &self,
        x: KdaInputs<'_, '_, Self>,
        state: &mut Vec<f32>,
        t: usize,
        dims: KdaDims,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let (g, beta) = gated(&x, t, dims)?;
        let x = kda::Inputs::checked(x.q, x.k, x.v, &g, &beta, t, dims)?;
        check_len(state, dims.heads * dims.head_dim * dims.head_dim)?;
        check_len(out, t * dims.width())?;
        kda::recurrent(&x, state, dims, out);
        Ok(())
    }

    fn kda_chunked(
        &self,
        x: KdaInputs<'_, '_, Self>,
        state: &mut Vec<f32>,
        t: usize,
        dims: KdaDims,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let (g, beta) = gated(&x, t, dims)?;
        let x = kda::Inputs::checked(x.q, x.k, x.v, &g, &beta, t, dims)?;
        check_len(state, dims.heads * dims.head_dim * dims.head_dim)?;
        check_len(out, t * dims.width())?;
        kda::chunked(&x, state, dims, out);
        Ok(())
    }

    fn gated_rms_norm(
        &self,
        o: &mut Vec<f32>,
        gate: &Vec<f32>,
        w: &CpuWeight<'_>,
        eps: f32,
        t: usize,
        dims: KdaDims,
    ) -> Result<()> {
        let n = t * dims.width();
        check_len(o, n)?;
        check_len(gate, n)?;
        let w = w.values()?;
        check_len(&w, dims.head_dim)?;
        kda::gated_rms_norm(&mut o[..n], &gate[..n], &w[..dims.head_dim], eps);
        Ok(())
    }

    fn mla_attention(
        &self,
        q: &Vec<f32>,
        kv: &Vec<f32>,
        w: &MlaWeights<CpuWeight<'_>>,
        cache: &mut Vec<f32>,
        pos: usize,
        t: usize,
        dims: MlaDims,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        check_len(q, t * dims.heads * (dims.nope + dims.rope))?;
        check_len(kv, t * dims.cache_width())?;
        check_len(out, t * dims.heads * dims.v_dim)?;
        let capacity = cache.len() / dims.cache_width();
        if pos + t > capacity {
            return Err(BackendError::CacheFull {
                capacity,
                needed: pos + t,
            });
        }
        let norm = w.kv_norm.values()?;
        check_len(&norm, dims.kv_lora)?;
        let k_b = w.k_b.mat()?;
        let v_b = w.v_b.mat()?;
        if k_b.cols != dims.nope || k_b.rows != dims.kv_lora * dims.heads {
            return Err(shape(
                &w.k_b,
                format!("[{}, {}, {}]", dims.nope, dims.kv_lora, dims.heads),
            ));
        }
        if v_b.cols != dims.kv_lora || v_b.rows != dims.v_dim * dims.heads {
            return Err(shape(
                &w.v_b,
                format!("[{}, {}, {}]", dims.kv_lora, dims.v_dim, dims.heads),
            ));
        }
        mla::append_latents(
            &kv[..t * dims.cache_width()],
            &norm[..dims.kv_lora],
            cache,
            pos,
            dims,
        );
        let m = mla::Mla {
            k_b,
            v_b,
            dims,
            exact: self.exact,
        };
        m.attend(
            &q[..t * dims.heads * (dims.nope + dims.rope)],
            cache,
            pos,
            t,
            out,
        )
    }

    fn moe(
        &self,
        x: &Vec<f32>,
        w: &MoeWeights<CpuWeight<'_>>,
        t: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        moe::moe(x, w, t, out, self.exact)
    }
}

fn shape(w: &CpuWeight<'_>, expected: String) -> BackendError {
    BackendError::Shape {
        name: w.name.to_string(),
        expected: format!("ne {expected}"),
        ne: w.ne,
    }
}

/// The delta rule's decay and beta with their gates applied (what the inputs hold raw).
fn gated(
    x: &KdaInputs<'_, '_, CpuBackend>,
    t: usize,
    dims: KdaDims,
) -> Result<(Vec<f32>, Vec<f32>)> {
    check_len(x.g, t * dims.width())?;
    check_len(x.beta, t * dims.heads)?;
    let (dt_bias, a) = (x.dt_bias.values()?, x.a.values()?);
    check_len(&dt_bias, dims.width())?;
    check_len(&a, dims.heads)?;
    let mut g = x.g[..t * dims.width()].to_vec();
    let mut beta = x.beta[..t * dims.heads].to_vec();
    kda::gate(&mut g, &mut beta, &dt_bias, &a, dims);
    Ok((g, beta))
}
