//! Dispatch math of the KDA ops: the short convolutions (a thread per channel of the three
//! streams and block of tokens) and the delta rule with its gates (a workgroup per 32 value
//! columns of a head, `shaders/kda_scan.wgsl`).

use super::kernels::{Kernel, KernelKey};
use super::{
    BackendError, KdaDims, KdaInputs, Result, WgpuBackend, WgpuBuf, WgpuWeight, check_len, f,
};

/// Widest head the scan kernel handles (MAX_D in the shader).
const MAX_HEAD_DIM: usize = 256;
/// Value columns of a head's state one scan workgroup owns (CB in the shader).
const SCAN_COLUMNS: usize = 32;
/// Longest convolution the kernel's window array holds (MAX_KW).
const MAX_CONV: usize = 8;
/// Tokens per short-conv thread (TB in the shader).
const CONV_TOKENS: usize = 8;
/// Storage buffers the short conv binds: input, taps, state and output of three streams.
const CONV_BINDINGS: u32 = 12;
/// Storage buffers the scan binds: q, k, v, g, β, state, output and the gates' dt_bias and a.
const SCAN_BINDINGS: u32 = 9;

impl WgpuBackend {
    /// The three streams' convolutions as one dispatch, a thread per channel of each and block
    /// of CONV_TOKENS tokens.
    pub(super) fn short_conv_op(
        &self,
        x: [&WgpuBuf; 3],
        w: [&WgpuWeight<'_>; 3],
        state: &mut [WgpuBuf; 3],
        t: usize,
        dims: KdaDims,
        out: &mut [WgpuBuf; 3],
    ) -> Result<()> {
        let c = dims.width();
        let kw = dims.conv_kernel;
        if kw == 0 || kw > MAX_CONV {
            return Err(BackendError::Gpu(format!(
                "short conv of width {kw}: the kernel handles 1..={MAX_CONV}"
            )));
        }
        let bindings = self.ctx.limits.max_storage_buffers_per_shader_stage;
        if bindings < CONV_BINDINGS {
            return Err(BackendError::Gpu(format!(
                "the short conv binds {CONV_BINDINGS} storage buffers; the adapter allows {bindings}"
            )));
        }
        for s in 0..3 {
            check_len(x[s].len, t * c)?;
            check_len(out[s].len, t * c)?;
            check_len(state[s].len, (kw - 1) * c)?;
            if w[s].n_elements() < kw * c {
                return Err(w[s].shape_error(format!("[{kw}, 1, {c}]")));
            }
        }
        let taps = [self.values(w[0])?, self.values(w[1])?, self.values(w[2])?];
        let bufs: Vec<&wgpu::Buffer> = (x.iter().map(|b| &b.buf))
            .chain(&taps)
            .chain(state.iter().map(|b| &b.buf))
            .chain(out.iter().map(|b| &b.buf))
            .collect();
        let key = KernelKey {
            spec: kw as u64,
            ..KernelKey::plain(Kernel::ShortConv)
        };
        self.run(
            key,
            &bufs,
            &[c as u32, t as u32, kw as u32, 0],
            (3 * c * t.div_ceil(CONV_TOKENS)).div_ceil(64),
        )
    }

    /// The delta rule over `t` tokens in order; serves both decode and prefill.
    pub(super) fn kda_scan(
        &self,
        x: KdaInputs<'_, '_, Self>,
        state: &mut WgpuBuf,
        t: usize,
        dims: KdaDims,
        out: &mut WgpuBuf,
    ) -> Result<()> {
        let (d, n) = (dims.head_dim, t * dims.width());
        if d == 0 || d > MAX_HEAD_DIM {
            return Err(BackendError::Gpu(format!(
                "KDA head dim {d}: the scan kernel handles 1..={MAX_HEAD_DIM}"
            )));
        }
        for b in [x.q, x.k, x.v, x.g] {
            check_len(b.len, n)?;
        }
        check_len(x.beta.len, t * dims.heads)?;
        check_len(state.len, dims.heads * d * d)?;
        check_len(out.len, n)?;
        if x.dt_bias.n_elements() < dims.width() {
            return Err(x.dt_bias.shape_error(format!("[{}]", dims.width())));
        }
        if x.a.n_elements() < dims.heads {
            return Err(x.a.shape_error(format!("[1, {}]", dims.heads)));
        }
        let bindings = self.ctx.limits.max_storage_buffers_per_shader_stage;
        if bindings < SCAN_BINDINGS {
            return Err(BackendError::Gpu(format!(
                "the KDA scan binds {SCAN_BINDINGS} storage buffers; the adapter allows {bindings}"
            )));
        }
        let (dt, a) = (self.values(x.dt_bias)?, self.values(x.a)?);
        let key = KernelKey {
            spec: d as u64,
            ..KernelKey::plain(Kernel::KdaScan)
        };
        self.run(
            key,
            &[
                &x.q.buf,
                &x.k.buf,
                &x.v.buf,
                &x.g.buf,
                &x.beta.buf,
                &state.buf,
                &out.buf,
                &dt,
                &a,
            ],
            &[
                t as u32,
                dims.heads as u32,
                d as u32,
                f(dims.l2_eps),
                f(1.0 / (d as f32).sqrt()),
            ],
            dims.heads * d.div_ceil(SCAN_COLUMNS),
        )
    }
}
