//! Dispatch math of the KDA ops: the short convolutions (a thread per channel of the three
//! streams and block of tokens), the delta rule with its gates (a workgroup per 32 value
//! columns of a head, `shaders/kda_scan.wgsl`), and a decoded token's step from the low-rank
//! gate inputs to the normed output (a workgroup per head, `shaders/kda_step.wgsl`).

use super::super::{Backend, KdaTail, kda_projections_unfused, kda_tail_unfused};
use super::kernels::{self, Kernel, KernelKey};
use super::matmul::{ConvStores, Inputs};
use super::{
    BackendError, KdaDims, KdaInputs, NormTail, Result, WgpuBackend, WgpuBuf, WgpuWeight,
    check_len, f,
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
/// Widest head the one-token step holds (MAX_D in kda_step.wgsl).
const STEP_MAX_HEAD_DIM: usize = 128;
/// Threads of a step workgroup (WG in kda_step.wgsl): a column and 8 key rows each.
const STEP_THREADS: u32 = 1024;
/// Storage buffers the step binds (see [`Kernel::KdaStep`]).
const STEP_BINDINGS: u32 = 14;

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
        self.check_conv(w, state, dims, CONV_BINDINGS)?;
        for s in 0..3 {
            check_len(x[s].len, t * c)?;
            check_len(out[s].len, t * c)?;
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

    /// Errors where the kernels cannot run a convolution of `w`'s taps over `state` (width,
    /// sizes) or the adapter lacks the `bindings` storage buffers the kernel binds.
    fn check_conv(
        &self,
        w: [&WgpuWeight<'_>; 3],
        state: &[WgpuBuf; 3],
        dims: KdaDims,
        bindings: u32,
    ) -> Result<()> {
        let (c, kw) = (dims.width(), dims.conv_kernel);
        if kw == 0 || kw > MAX_CONV {
            return Err(BackendError::Gpu(format!(
                "short conv of width {kw}: the kernel handles 1..={MAX_CONV}"
            )));
        }
        let allowed = self.ctx.limits.max_storage_buffers_per_shader_stage;
        if allowed < bindings {
            return Err(BackendError::Gpu(format!(
                "the short conv binds {bindings} storage buffers; the adapter allows {allowed}"
            )));
        }
        for s in 0..3 {
            check_len(state[s].len, (kw - 1) * c)?;
            if w[s].n_elements() < kw * c {
                return Err(w[s].shape_error(format!("[{kw}, 1, {c}]")));
            }
        }
        Ok(())
    }

    /// [`Backend::kda_projections`]: a decoded token's q, k and v products stored through
    /// their convolutions, with the other products of their type, in one `matvecs` dispatch
    /// (`shaders/matvecs_conv.wgsl`) where the weights share a type and row length and are one
    /// buffer each; otherwise the products and then `short_conv`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn kda_projections_op<'w>(
        &self,
        x: &WgpuBuf,
        t: usize,
        proj: [&WgpuWeight<'w>; 3],
        conv: [&WgpuWeight<'w>; 3],
        state: &mut [WgpuBuf; 3],
        dims: KdaDims,
        out: &mut [WgpuBuf; 3],
        jobs: &mut [(&WgpuWeight<'w>, &mut WgpuBuf)],
    ) -> Result<()> {
        let fusable = |w: &WgpuWeight<'_>| w.fuses_with(proj[0]);
        // x, a weight and an output per product, taps and state per stream.
        let bindings = |products: usize| (1 + 2 * products + 6) as u32;
        let room =
            (self.ctx.limits.max_storage_buffers_per_shader_stage as usize).saturating_sub(7) / 2;
        let most = room.min(kernels::MAX_JOBS);
        if t != 1
            || most < 3
            || !proj.iter().all(|w| fusable(w))
            || self.check_conv(conv, state, dims, bindings(3)).is_err()
        {
            return kda_projections_unfused(self, x, t, proj, conv, state, dims, out, jobs);
        }
        let c = dims.width();
        for (w, y) in proj.iter().zip(out.iter()) {
            if w.rows() != c {
                return Err(w.shape_error(format!("[{}, {c}]", w.ne[0])));
            }
            check_len(y.len, c)?;
        }
        let (with, rest): (Vec<_>, Vec<_>) = jobs
            .iter()
            .map(|(w, y)| (*w, &**y))
            .enumerate()
            .partition(|(i, (w, _))| i + 3 < most && fusable(w));
        let fused: Vec<(&WgpuWeight<'_>, &WgpuBuf)> = (proj.iter().copied().zip(out.iter()))
            .chain(with.into_iter().map(|(_, j)| j))
            .collect();
        let stores = ConvStores {
            taps: [
                self.values(conv[0])?,
                self.values(conv[1])?,
                self.values(conv[2])?,
            ],
            state: state.each_ref(),
            kw: dims.conv_kernel,
        };
        self.matvecs(Inputs::Shared(x), &fused, Some(&stores))?;
        let rest: Vec<_> = rest.into_iter().map(|(_, j)| j).collect();
        self.matmuls_into(x, t, &rest)
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
        let bindings = self.ctx.limits.max_storage_buffers_per_shader_stage;
        if bindings < SCAN_BINDINGS {
            return Err(BackendError::Gpu(format!(
                "the KDA scan binds {SCAN_BINDINGS} storage buffers; the adapter allows {bindings}"
            )));
        }
        let (dt, a) = self.gate_values(x.dt_bias, x.a, dims)?;
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

    /// The f32 values of the decay gate's weights (`dt_bias` per channel, `a` per head),
    /// checked against the layer's dims.
    fn gate_values(
        &self,
        dt_bias: &WgpuWeight<'_>,
        a: &WgpuWeight<'_>,
        dims: KdaDims,
    ) -> Result<(wgpu::Buffer, wgpu::Buffer)> {
        if dt_bias.n_elements() < dims.width() {
            return Err(dt_bias.shape_error(format!("[{}]", dims.width())));
        }
        if a.n_elements() < dims.heads {
            return Err(a.shape_error(format!("[1, {}]", dims.heads)));
        }
        Ok((self.values(dt_bias)?, self.values(a)?))
    }

    /// [`Backend::kda_tail`]: for one token, where [`Self::kda_step_fits`], the up-projections,
    /// the delta rule and the gated norm as one `kda_step` dispatch, whose normed output (also
    /// in 8 bits, for the decode product to read) the output projection takes, with `tail`
    /// where it can ([`Self::matmul_then`]: whether it did); else the parts.
    pub(super) fn kda_tail_op(
        &self,
        x: KdaTail<'_, '_, Self>,
        state: &mut WgpuBuf,
        t: usize,
        dims: KdaDims,
        out: &mut WgpuBuf,
        tail: Option<&NormTail<'_>>,
    ) -> Result<bool> {
        if t != 1 || !self.kda_step_fits(&x, dims) {
            kda_tail_unfused(self, x, state, t, dims, out)?;
            return Ok(false);
        }
        let mut o = self.scratch(dims.width())?;
        self.kda_step(&x, state, dims, &mut o)?;
        self.matmul_then(x.out, &o, 1, out, tail)
    }

    /// Whether `kda_step` serves `x`: heads of at most STEP_MAX_HEAD_DIM channels, whole
    /// halves of the 8-bit row's groups; up-projections of one decodable type and rank (an
    /// override constant of 16 bits), one buffer each, a row per channel; a device with
    /// subgroups, bindings and workgroups large enough.
    fn kda_step_fits(&self, x: &KdaTail<'_, '_, Self>, dims: KdaDims) -> bool {
        let d = dims.head_dim;
        (1..=STEP_MAX_HEAD_DIM).contains(&d)
            && d.is_multiple_of(16)
            && x.f_b.fuses_with(x.g_b)
            && x.f_b.ne[0] < 1 << 16
            && kernels::SUPPORTED.contains(&x.f_b.ty)
            && x.f_b.rows() == dims.width()
            && x.g_b.rows() == dims.width()
            && self.pipelines.subgroups()
            && self.ctx.limits.max_storage_buffers_per_shader_stage >= STEP_BINDINGS
            && self.ctx.limits.max_compute_invocations_per_workgroup >= STEP_THREADS
            && self.ctx.limits.max_compute_workgroup_size_x >= STEP_THREADS
    }

    /// One token's `kda_step` into `o` (the gated norm of the delta rule's output), with its
    /// 8-bit copy remembered for the output projection where the products read one.
    fn kda_step(
        &self,
        x: &KdaTail<'_, '_, Self>,
        state: &mut WgpuBuf,
        dims: KdaDims,
        o: &mut WgpuBuf,
    ) -> Result<()> {
        let (d, c) = (dims.head_dim, dims.width());
        let rank = x.f_b.ne[0];
        for b in [x.q, x.k, x.v] {
            check_len(b.len, c)?;
        }
        check_len(x.beta.len, dims.heads)?;
        check_len(x.f_low.len, rank)?;
        check_len(x.g_low.len, rank)?;
        check_len(state.len, dims.heads * d * d)?;
        check_len(o.len, c)?;
        let (dt, a) = self.gate_values(x.dt_bias, x.a, dims)?;
        let norm = self.head_norm_values(x.norm, dims)?;
        let q8 = self.q8_row_for(c, 1)?;
        let row = q8.as_ref().map_or(&self.dummy, |q| &q.buf);
        let key = KernelKey {
            spec: (d | rank << 16) as u64,
            ..KernelKey::typed(Kernel::KdaStep, x.f_b.ty)
        };
        self.run(
            key,
            &[
                &x.q.buf,
                &x.k.buf,
                &x.v.buf,
                &x.beta.buf,
                &state.buf,
                &o.buf,
                &dt,
                &a,
                &norm,
                &x.f_low.buf,
                &x.g_low.buf,
                &x.f_b.parts[0].buf,
                &x.g_b.parts[0].buf,
                row,
            ],
            &[
                dims.heads as u32,
                u32::from(q8.is_some()),
                f(dims.l2_eps),
                f(1.0 / (d as f32).sqrt()),
                f(x.eps),
            ],
            dims.heads,
        )?;
        self.remember_q8_row(&o.buf, c, q8);
        Ok(())
    }
}
