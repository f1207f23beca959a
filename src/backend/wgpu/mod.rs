//! The wgpu backend (Vulkan): GGUF weights live on the GPU as their raw block bytes, split
//! across buffers where a tensor exceeds the storage-binding limit; activations and state are
//! f32 storage buffers. Ops are recorded into one pending command encoder and submitted only
//! when the host reads a result, so a decoded token is a single submission with no host round
//! trip inside it (the MoE routing runs on the GPU as well).
//!
//! Layout: [`device`] opens the adapter, [`kernels`] maps kernel keys to cached pipelines,
//! [`recorder`] records and submits, [`profile`] times kernels; the op files hold each op's
//! shape checks and dispatch math, the kernels themselves are in `shaders/`.

mod device;
mod kda;
mod kernels;
mod matmul;
mod mla;
mod moe;
mod pool;
mod profile;
mod recorder;

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use wgpu::util::DeviceExt;

use super::{
    AddNorm, Alter, Backend, BackendError, KdaDims, KdaInputs, KdaTail, MlaDims, MlaWeights,
    MoeWeights, Result, TensorBytes,
};
use crate::quant::GgmlType;
use device::Context;
pub use device::{AdapterSummary, list_adapters};
use kernels::{Kernel, KernelKey, Pipelines, SUPPORTED};
use pool::Pool;
pub use profile::{KernelTime, format_report};
pub use recorder::Readback;
use recorder::Recorder;

/// Bytes of new buffers after which the pending work is submitted (see `new_buffer_of`).
const FLUSH_AFTER_BYTES: u64 = 1 << 30;

/// Values one `argmax_part` workgroup reads (WG · VPT in elementwise.wgsl): rows of more than
/// two such chunks take two dispatches.
const ARGMAX_CHUNK: usize = 4096;

/// Bytes of weight uploads staged between waits, so that loading a large file does not hold
/// all of it in staging memory at once.
const UPLOAD_WINDOW: u64 = 256 << 20;

/// Runs the model on a Vulkan adapter through wgpu.
pub struct WgpuBackend {
    ctx: Context,
    pipelines: Pipelines,
    rec: Mutex<Recorder>,
    /// Bound where a kernel declares a buffer that a variant does not read.
    dummy: wgpu::Buffer,
    /// The same for a read_write binding beside `dummy` (one buffer may not be bound both
    /// ways in a dispatch).
    dummy_rw: wgpu::Buffer,
    /// `moe_router_route`'s count of finished workgroups: 0 between dispatches (wgpu clears a
    /// new buffer; the last workgroup sets it back).
    route_count: wgpu::Buffer,
    staged: Mutex<u64>,
    /// Largest bytes one storage binding (hence one weight part) may span.
    binding_cap: u64,
    scratch: Arc<Pool>,
    /// Every product in f32 (no 8-bit activations in decode, no f16 cooperative matrices in
    /// prompts), as the CPU backend's exact mode: for tests against it and comparisons.
    exact: bool,
    /// Activation rows that a norm also wrote in 8 bits (x_q8_global.wgsl), by the row's
    /// buffer. The decode products read the copy instead of staging the row in each
    /// workgroup; any later write to the buffer (a kernel's read_write binding, a copy, a
    /// clear) drops its entry first, as does handing the buffer out again from the scratch
    /// pool, so a copy never outlives its values.
    q8_rows: Mutex<Vec<Q8Row>>,
}

/// An activation row and its 8-bit copy ([`WgpuBackend::q8_rows`]).
struct Q8Row {
    of: wgpu::Buffer,
    values: usize,
    q8: WgpuBuf,
    /// Where the row's producer left out its norm's scale (see [`NormTail`]).
    unscaled: Option<Unscaled>,
}

impl Q8Row {
    /// Whether this is the copy of the row of `values` that `x` holds.
    fn holds(&self, x: &wgpu::Buffer, values: usize) -> bool {
        &self.of == x && self.values == values
    }
}

/// A row's norm scale, left out by its producer ([`NormTail`]): the sums of the squares of
/// each 16-value half of the residual, and the norm's eps. A kernel that binds the sums applies
/// the scale itself (the MoE router's, which also applies it to the 8-bit copy: `q8` is then
/// false); before any other kernel reads the row or its unscaled copy, `norm_settle` applies it
/// in place.
struct Unscaled {
    sums: WgpuBuf,
    eps: f32,
    /// The 8-bit copy lacks the scale too.
    q8: bool,
}

/// A decoded token's residual add and next RMS norm, done by the kernel that produces the
/// added output, all but the norm's scale (shaders/add_norm_rows.wgsl): `res` ← `res` +
/// output, `normed` = `res` ⊙ `weight`, `q8` its 8-bit copy, `sums` the sums of the squares of
/// `res` over each 16-value half. The scale needs every workgroup's rows, so it is left to the
/// row's readers; that saves the norm its own dispatch.
pub(super) struct NormTail<'a> {
    res: &'a wgpu::Buffer,
    weight: wgpu::Buffer,
    normed: &'a WgpuBuf,
    q8: &'a WgpuBuf,
    sums: &'a WgpuBuf,
}

/// Most values of a row that the norm kernels hold in registers (elementwise.wgsl's WG · VPT),
/// hence write in 8 bits too.
const NORM_HELD: usize = 256 * 16;

/// An f32 activation or state buffer on the GPU.
pub struct WgpuBuf {
    buf: wgpu::Buffer,
    len: usize,
    /// Where a scratch buffer returns when dropped.
    pool: Option<Arc<Pool>>,
}

impl Drop for WgpuBuf {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.put(self.buf.clone());
        }
    }
}

impl WgpuBuf {
    /// Values the buffer holds.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One buffer of a weight: rows `row0..row0 + rows` of the flattened `[rows, ne[0]]` matrix.
struct Part {
    buf: wgpu::Buffer,
    row0: usize,
    rows: usize,
}

/// A weight as its raw GGUF blocks on the GPU.
pub struct WgpuWeight<'w> {
    name: &'w str,
    ty: GgmlType,
    ne: [usize; 4],
    parts: Vec<Part>,
    /// The file's bytes, for the f32 copy of small vectors (norms, biases, conv taps) that the
    /// element-wise kernels read when the file stores them in a 16-bit or block type.
    bytes: &'w [u8],
    values: OnceLock<wgpu::Buffer>,
}

impl WgpuWeight<'_> {
    fn rows(&self) -> usize {
        self.ne[1] * self.ne[2] * self.ne[3]
    }

    fn n_elements(&self) -> usize {
        self.ne.iter().product()
    }

    /// Whether one fused decode kernel can read this weight beside `other`: one buffer each,
    /// of one block type and row length, so that the kernel's per-weight helpers and one
    /// row_bytes serve both.
    fn fuses_with(&self, other: &WgpuWeight<'_>) -> bool {
        self.ty == other.ty
            && self.ne[0] == other.ne[0]
            && self.parts.len() == 1
            && other.parts.len() == 1
    }

    fn shape_error(&self, expected: String) -> BackendError {
        BackendError::Shape {
            name: self.name.to_string(),
            expected,
            ne: self.ne,
        }
    }
}

fn check_len(len: usize, needed: usize) -> Result<()> {
    if len < needed {
        return Err(BackendError::BufferTooSmall { len, needed });
    }
    Ok(())
}

/// Bytes of the buffer behind `len` f32 values (never 0, which wgpu cannot bind).
fn buffer_size(len: usize) -> u64 {
    (len as u64 * 4).max(4)
}

fn f(x: f32) -> u32 {
    x.to_bits()
}

impl WgpuBackend {
    /// Opens Vulkan adapter `gpu` (as [`list_adapters`] numbers them), or the best one.
    pub fn new(gpu: Option<usize>) -> Result<Self> {
        let ctx = Context::open(gpu)?;
        let dummy_buffer = || {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("kiln dummy"),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        let (dummy, dummy_rw) = (dummy_buffer(), dummy_buffer());
        let route_count = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kiln routing count"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let l = &ctx.limits;
        let binding_cap = l.max_storage_buffer_binding_size.min(l.max_buffer_size) & !3;
        Ok(WgpuBackend {
            binding_cap,
            pipelines: Pipelines::new(ctx.subgroups.then_some(ctx.adapter.min_subgroup_size)),
            ctx,
            rec: Mutex::new(Recorder::default()),
            dummy,
            dummy_rw,
            route_count,
            staged: Mutex::new(0),
            scratch: Arc::default(),
            exact: std::env::var_os("KILN_EXACT").is_some(),
            q8_rows: Mutex::default(),
        })
    }

    /// The adapter this backend runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.ctx.adapter
    }

    /// Whether prompt products run on cooperative matrices (f16 operands, f32 sums).
    pub fn coop_matrix(&self) -> bool {
        self.ctx.coop_matrix && !self.exact
    }

    /// Computes every product in f32 (`exact`), or lets decode products of the types that have
    /// them use integer dot products against 8-bit activations and prompt products f16
    /// cooperative matrices (the default; `KILN_EXACT=1` sets exact from the start).
    pub fn set_exact(&mut self, exact: bool) {
        self.exact = exact;
    }

    /// Whether every product runs in f32 ([`WgpuBackend::set_exact`]).
    pub fn exact(&self) -> bool {
        self.exact
    }

    /// Whether the row and routing kernels reduce over subgroups.
    pub fn subgroups(&self) -> bool {
        self.pipelines.subgroups()
    }

    /// Makes the row and routing kernels reduce through workgroup memory, as on a device without
    /// subgroup operations (what `KILN_NO_SUBGROUPS` does for a whole process): lets the tests
    /// run both variants on one device.
    pub fn without_subgroups(&mut self) {
        self.pipelines = Pipelines::new(None);
    }

    fn rec(&self) -> MutexGuard<'_, Recorder> {
        self.rec.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Times every kernel with timestamp queries from now on (or stops): inside the shared
    /// compute pass where the device can (see `profile.rs`). Errors when the adapter has no
    /// timestamp queries.
    pub fn set_profiling(&self, on: bool) -> Result<()> {
        let inside = self
            .ctx
            .features
            .contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES);
        self.start_profiling(on, inside)
    }

    /// As [`Self::set_profiling`], every dispatch in a compute pass of its own, timed by the
    /// pass's timestamps (what devices without timestamps inside passes get): for comparing the
    /// two ways of timing.
    pub fn set_profiling_per_pass(&self) -> Result<()> {
        self.start_profiling(true, false)
    }

    fn start_profiling(&self, on: bool, inside: bool) -> Result<()> {
        if on && !self.ctx.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            return Err(BackendError::Gpu(format!(
                "{} offers no timestamp queries: cannot profile",
                self.ctx.adapter.name
            )));
        }
        let mut rec = self.rec();
        rec.flush(&self.ctx)?;
        rec.profiler = on.then(|| profile::Profiler::new(&self.ctx.device, inside));
        Ok(())
    }

    /// Whether profiling writes its timestamps inside the shared compute pass.
    pub fn profiles_inside_passes(&self) -> bool {
        self.rec().profiler.as_ref().is_some_and(|p| p.inside())
    }

    /// GPU time per kernel since profiling was switched on or reset, the largest first.
    pub fn profile(&self) -> Result<Vec<KernelTime>> {
        let mut rec = self.rec();
        rec.flush(&self.ctx)?;
        Ok(rec
            .profiler
            .as_ref()
            .map(|p| p.report())
            .unwrap_or_default())
    }

    pub fn reset_profile(&self) {
        if let Some(p) = self.rec().profiler.as_mut() {
            p.reset();
        }
    }

    /// Command submissions so far (a decoded token should be one).
    pub fn submissions(&self) -> u64 {
        self.rec().submissions()
    }

    /// Submits all recorded work and waits for the GPU to finish it (for timing).
    pub fn sync(&self) -> Result<()> {
        self.rec().flush(&self.ctx)?;
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| BackendError::Gpu(format!("waiting for the GPU: {e}")))?;
        self.ctx.check()
    }

    /// Records one dispatch of `kernel` over `groups` workgroups.
    fn run(
        &self,
        key: KernelKey,
        bufs: &[&wgpu::Buffer],
        params: &[u32],
        groups: usize,
    ) -> Result<()> {
        self.run_shaped(key, None, bufs, params, groups)
    }

    /// [`WgpuBackend::run`] for a product: the profiler reports it per weight shape `ne`.
    fn run_shaped(
        &self,
        key: KernelKey,
        ne: Option<[usize; 4]>,
        bufs: &[&wgpu::Buffer],
        params: &[u32],
        groups: usize,
    ) -> Result<()> {
        let compiled = self.pipelines.get(&self.ctx.device, key)?;
        self.settle_for(bufs)?;
        for &i in &compiled.writes {
            if let Some(buf) = bufs.get(i) {
                self.forget_q8_row(buf);
            }
        }
        let groups = u32::try_from(groups)
            .map_err(|_| BackendError::Gpu(format!("{}: {groups} workgroups", key.label())))?;
        let label = || match ne {
            Some(ne) => format!("{} {}x{}x{}", key.label(), ne[0], ne[1], ne[2]),
            None => key.label(),
        };
        self.rec()
            .dispatch(&self.ctx, &compiled, label, bufs, params, groups)
    }

    fn q8_rows(&self) -> MutexGuard<'_, Vec<Q8Row>> {
        self.q8_rows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The 8-bit copy of the row of `values` activations that `x` holds, where a norm wrote
    /// one and nothing has written `x` since.
    fn q8_row(&self, x: &wgpu::Buffer, values: usize) -> Option<wgpu::Buffer> {
        self.q8_rows()
            .iter()
            .find(|r| r.holds(x, values))
            .map(|r| r.q8.buf.clone())
    }

    /// Where `x` holds a row of `values` whose producer left out its norm's scale, in its
    /// 8-bit copy too: the sums of squares (a kernel that binds them applies the scale), the
    /// 8-bit copy, the sums' count and the norm's eps.
    fn unscaled(
        &self,
        x: &wgpu::Buffer,
        values: usize,
    ) -> Option<(wgpu::Buffer, wgpu::Buffer, usize, f32)> {
        let rows = self.q8_rows();
        let row = rows.iter().find(|r| r.holds(x, values))?;
        let u = row.unscaled.as_ref().filter(|u| u.q8)?;
        Some((u.sums.buf.clone(), row.q8.buf.clone(), values / 16, u.eps))
    }

    /// Records that the 8-bit copy of the row `x` holds has its norm's scale now (the MoE
    /// router applied it).
    fn q8_scaled(&self, x: &wgpu::Buffer) {
        if let Some(u) = (self.q8_rows().iter_mut())
            .find(|r| &r.of == x)
            .and_then(|r| r.unscaled.as_mut())
        {
            u.q8 = false;
        }
    }

    /// `produce` (into `out`) with `next` done by its kernel where it can: `produce` gets the
    /// [`NormTail`] for a decoded token's row and says whether it took it; else `next` runs as
    /// its own op after.
    fn with_add_norm(
        &self,
        t: usize,
        out: &mut WgpuBuf,
        next: AddNorm<'_, '_, Self>,
        produce: impl FnOnce(&mut WgpuBuf, Option<&NormTail<'_>>) -> Result<bool>,
    ) -> Result<()> {
        let n = next.w.n_elements();
        let q8 = self.q8_row_for(n, t)?;
        let Some(q8) = q8.filter(|_| n == next.width && n.is_multiple_of(16)) else {
            produce(out, None)?;
            return next.apply(self, out, t);
        };
        check_len(next.acc.len, n)?;
        check_len(next.out.len, n)?;
        let sums = self.scratch(n / 16)?;
        let tail = NormTail {
            res: &next.acc.buf,
            weight: self.values(next.w)?,
            normed: next.out,
            q8: &q8,
            sums: &sums,
        };
        // Every value of the normed row is new: nothing need settle what it held.
        self.forget_q8_row(&next.out.buf);
        if !produce(out, Some(&tail))? {
            return next.apply(self, out, t);
        }
        self.q8_rows().push(Q8Row {
            of: next.out.buf.clone(),
            values: n,
            q8,
            unscaled: Some(Unscaled {
                sums,
                eps: next.eps,
                q8: true,
            }),
        });
        Ok(())
    }

    /// Applies the norm's scale to every row among `bufs` (or whose 8-bit copy is) whose
    /// producer left it out, unless `bufs` also holds the row's sums of squares (the kernel
    /// applies it itself).
    fn settle_for(&self, bufs: &[&wgpu::Buffer]) -> Result<()> {
        let unsettled: Vec<wgpu::Buffer> = self
            .q8_rows()
            .iter()
            .filter(|r| {
                r.unscaled.as_ref().is_some_and(|u| {
                    !bufs.contains(&&u.sums.buf)
                        && bufs.iter().any(|&b| b == &r.of || (u.q8 && b == &r.q8.buf))
                })
            })
            .map(|r| r.of.clone())
            .collect();
        unsettled.iter().try_for_each(|b| self.settle(b))
    }

    /// Applies the norm's scale to `x` and its 8-bit copy in place where its producer left it
    /// out (`norm_settle`).
    fn settle(&self, x: &wgpu::Buffer) -> Result<()> {
        let row = {
            let mut rows = self.q8_rows();
            let at = rows.iter().position(|r| &r.of == x && r.unscaled.is_some());
            at.map(|i| rows.remove(i))
        };
        let Some(mut row) = row else {
            return Ok(());
        };
        if let Some(u) = row.unscaled.take() {
            self.run(
                KernelKey::plain(Kernel::NormSettle),
                &[&u.sums.buf, &row.of, &row.q8.buf],
                &[
                    row.values as u32,
                    (row.values / 16) as u32,
                    f(u.eps),
                    u32::from(u.q8),
                ],
                1,
            )?;
        }
        self.q8_rows().push(row);
        Ok(())
    }

    /// A buffer for the 8-bit copy of a norm's output of `t` rows of `n` values, where the
    /// decode products can read one: one row (a decoded token), whole 32-value groups, held
    /// by the norm's threads (elementwise.wgsl's WG · VPT), not exact.
    fn q8_row_for(&self, n: usize, t: usize) -> Result<Option<WgpuBuf>> {
        if self.exact || t != 1 || !n.is_multiple_of(32) || n > NORM_HELD {
            return Ok(None);
        }
        self.scratch(matmul::q8_row_words(n)).map(Some)
    }

    /// Records `q8` (where given) as the 8-bit copy of the `n` values a norm wrote to `out`.
    fn remember_q8_row(&self, out: &wgpu::Buffer, n: usize, q8: Option<WgpuBuf>) {
        if let Some(q8) = q8 {
            self.q8_rows().push(Q8Row {
                of: out.clone(),
                values: n,
                q8,
                unscaled: None,
            });
        }
    }

    /// Drops the 8-bit copy of what `written` held (it is about to change).
    fn forget_q8_row(&self, written: &wgpu::Buffer) {
        let mut rows = self.q8_rows();
        if !rows.is_empty() {
            rows.retain(|r| &r.of != written);
        }
    }

    /// A fresh uniform buffer holding `bytes` (as [`Self::buffer_with`]).
    fn uniform_with(&self, bytes: &[u8]) -> wgpu::Buffer {
        self.ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytes,
                usage: wgpu::BufferUsages::UNIFORM,
            })
    }

    /// A fresh storage buffer holding `bytes` (its contents exist before any recorded command
    /// can read it, so no ordering with the encoder is needed).
    fn buffer_with(&self, bytes: &[u8]) -> wgpu::Buffer {
        self.ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: if bytes.is_empty() { &[0; 4] } else { bytes },
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            })
    }

    /// The weight's values as an f32 buffer: the weight itself when it is one F32 buffer.
    fn values(&self, w: &WgpuWeight<'_>) -> Result<wgpu::Buffer> {
        if w.ty == GgmlType::F32 && w.parts.len() == 1 {
            return Ok(w.parts[0].buf.clone());
        }
        if let Some(b) = w.values.get() {
            return Ok(b.clone());
        }
        let v = crate::quant::dequantize(w.ty, w.bytes, w.n_elements())?;
        let b = self.buffer_with(bytemuck::cast_slice(&v));
        Ok(w.values.get_or_init(|| b).clone())
    }

    /// A zeroed storage buffer for `len` f32 values.
    fn new_buffer(&self, len: usize) -> Result<wgpu::Buffer> {
        self.new_buffer_of(len, buffer_size(len))
    }

    /// A zeroed storage buffer of `size` bytes for at least `len` f32 values. Submits the
    /// pending work first when it has created much memory: buffers dropped while recording
    /// stay allocated until the submission that used them ends (a long prompt is many
    /// micro-batches in one encoder otherwise).
    fn new_buffer_of(&self, len: usize, size: u64) -> Result<wgpu::Buffer> {
        {
            let mut rec = self.rec();
            rec.fresh_bytes += size;
            if rec.fresh_bytes > FLUSH_AFTER_BYTES {
                rec.flush(&self.ctx)?;
                drop(rec);
                let _ = self.ctx.device.poll(wgpu::PollType::Poll);
            }
        }
        let l = &self.ctx.limits;
        let cap = l.max_storage_buffer_binding_size.min(l.max_buffer_size);
        if size > cap {
            return Err(BackendError::Gpu(format!(
                "a buffer of {len} f32 values exceeds the {cap}-byte storage binding limit"
            )));
        }
        Ok(self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// Rows of `table` for the `t` ids in `ids` (u32 values, or f32 ones where `float_ids`)
    /// into `out`, one dispatch per buffer of the table.
    fn embed_rows(
        &self,
        table: &WgpuWeight<'_>,
        ids: &wgpu::Buffer,
        t: usize,
        float_ids: bool,
        out: &mut WgpuBuf,
    ) -> Result<()> {
        let cols = table.ne[0];
        check_len(out.len, t * cols)?;
        if !cols.is_multiple_of(kernels::row_quantum(table.ty)) {
            return Err(table.shape_error(format!(
                "a row length divisible by {}",
                kernels::row_quantum(table.ty)
            )));
        }
        for part in &table.parts {
            self.run(
                KernelKey::typed(Kernel::Embed, table.ty),
                &[&part.buf, ids, &out.buf],
                &[
                    cols as u32,
                    t as u32,
                    part.row0 as u32,
                    part.rows as u32,
                    float_ids as u32,
                ],
                t,
            )?;
        }
        Ok(())
    }

    fn binding_cap(&self) -> u64 {
        self.binding_cap
    }

    /// Splits weights as if one storage binding could span only `bytes` (rounded down to 4):
    /// lets the tests exercise multi-buffer weights with small tensors.
    pub fn limit_binding_bytes(&mut self, bytes: u64) {
        self.binding_cap = self.binding_cap.min(bytes & !3).max(4);
    }

    fn upload_part(&self, bytes: &[u8]) -> Result<wgpu::Buffer> {
        let size = (bytes.len() as u64).next_multiple_of(4).max(4);
        let buf = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let whole = bytes.len() & !3;
        if whole > 0 {
            self.ctx.queue.write_buffer(&buf, 0, &bytes[..whole]);
        }
        if whole < bytes.len() {
            let mut tail = [0u8; 4];
            tail[..bytes.len() - whole].copy_from_slice(&bytes[whole..]);
            self.ctx.queue.write_buffer(&buf, whole as u64, &tail);
        }
        let mut staged = self.staged.lock().unwrap_or_else(|p| p.into_inner());
        *staged += size;
        if *staged >= UPLOAD_WINDOW {
            *staged = 0;
            self.ctx.queue.submit([]);
            self.ctx
                .device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| BackendError::Gpu(format!("uploading weights: {e}")))?;
        }
        Ok(buf)
    }
}

impl Backend for WgpuBackend {
    type Weight<'w> = WgpuWeight<'w>;
    type Buf = WgpuBuf;
    type Pending = Readback;

    fn name(&self) -> &'static str {
        "wgpu"
    }

    fn start_profile(&self) -> Result<()> {
        self.set_profiling(true)
    }

    fn pause_profile(&self, paused: bool) {
        if let Some(p) = self.rec().profiler.as_mut() {
            p.paused = paused;
        }
    }

    fn profile_report(&self, top: usize) -> Result<String> {
        let timing = if self.profiles_inside_passes() {
            "timestamps around each dispatch in the shared pass (launch and barrier included)"
        } else {
            "a compute pass per dispatch (small kernels read high)"
        };
        Ok(format!(
            "timing: {timing}\n{}",
            profile::format_report(&self.profile()?, top)
        ))
    }

    fn dispatches(&self) -> Option<u64> {
        Some(self.rec().dispatches)
    }

    fn bind_groups_made(&self) -> Option<u64> {
        Some(self.rec().binds_made)
    }

    fn alter(&self, kernels: &[String], how: Alter) -> Result<()> {
        let mut rec = self.rec();
        rec.flush(&self.ctx)?;
        rec.altered = (kernels.to_vec(), how);
        Ok(())
    }

    fn copy_bandwidth(&self) -> Result<Option<f64>> {
        // Two 1 GiB buffers: smaller ones measured 13-24% less on an H100 (the submission is
        // then timed too). Where they do not fit beside the model, `kiln bench` says so.
        let len = (self.binding_cap / 4).min(256 << 20) as usize & !3;
        let (src, dst) = (self.alloc(len)?, self.alloc(len)?);
        let copy = || {
            self.run(
                KernelKey::plain(Kernel::CopyVec4),
                &[&src.buf, &dst.buf],
                &[(len / 4) as u32],
                (len / 4).div_ceil(256),
            )
        };
        copy()?;
        self.sync()?;
        let reps = 10;
        let t0 = std::time::Instant::now();
        for _ in 0..reps {
            copy()?;
        }
        self.sync()?;
        let secs = t0.elapsed().as_secs_f64();
        Ok(Some((2 * reps * len * 4) as f64 / secs))
    }

    fn upload<'w>(&self, t: TensorBytes<'w>) -> Result<WgpuWeight<'w>> {
        if !SUPPORTED.contains(&t.ty) {
            return Err(BackendError::UnsupportedType {
                name: t.name.to_string(),
                ty: t.ty,
            });
        }
        let rows = t.ne[1] * t.ne[2] * t.ne[3];
        let row_bytes = t.ty.row_bytes(t.ne[0]);
        if row_bytes.map(|rb| rb * rows) != Some(t.bytes.len()) {
            return Err(BackendError::ByteLength {
                name: t.name.to_string(),
                ty: t.ty,
                ne: t.ne,
                bytes: t.bytes.len(),
            });
        }
        let rb = row_bytes.unwrap_or(0).max(1);
        let cap = self.binding_cap() as usize;
        if rb > cap {
            return Err(BackendError::Gpu(format!(
                "tensor {}: one row of {rb} bytes exceeds the {cap}-byte storage binding limit",
                t.name
            )));
        }
        let mut per_part = (cap / rb).min(rows.max(1));
        // Keep stacked matrices (experts, heads) whole in a part when they fit.
        if t.ne[2] > 1 && per_part >= t.ne[1] && per_part < rows {
            per_part -= per_part % t.ne[1];
        }
        let mut parts = Vec::new();
        let mut row0 = 0;
        while row0 < rows.max(1) {
            let n = per_part.min(rows.max(1) - row0);
            let bytes =
                &t.bytes[(row0 * rb).min(t.bytes.len())..((row0 + n) * rb).min(t.bytes.len())];
            parts.push(Part {
                buf: self.upload_part(bytes)?,
                row0,
                rows: n,
            });
            row0 += n;
        }
        Ok(WgpuWeight {
            name: t.name,
            ty: t.ty,
            ne: t.ne,
            parts,
            bytes: t.bytes,
            values: OnceLock::new(),
        })
    }

    fn alloc(&self, len: usize) -> Result<WgpuBuf> {
        Ok(WgpuBuf {
            buf: self.new_buffer(len)?,
            len,
            pool: None,
        })
    }

    fn scratch(&self, len: usize) -> Result<WgpuBuf> {
        let size = pool::size_class(buffer_size(len));
        let buf = match self.scratch.take(size) {
            Some(b) => {
                // A reused buffer starts without the 8-bit copy of what it held before.
                self.forget_q8_row(&b);
                b
            }
            None => self.new_buffer_of(len, size)?,
        };
        Ok(WgpuBuf {
            buf,
            len,
            pool: Some(self.scratch.clone()),
        })
    }

    fn write(&self, buf: &mut WgpuBuf, data: &[f32]) -> Result<()> {
        check_len(buf.len, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        // Through a staging copy in the encoder, so the write lands in order with the recorded
        // ops (a queue write would run before all of them).
        let staging = self.buffer_with(bytemuck::cast_slice(data));
        self.forget_q8_row(&buf.buf);
        self.rec().encoder(&self.ctx).copy_buffer_to_buffer(
            &staging,
            0,
            &buf.buf,
            0,
            data.len() as u64 * 4,
        );
        Ok(())
    }

    fn zero(&self, buf: &mut WgpuBuf) -> Result<()> {
        self.forget_q8_row(&buf.buf);
        self.rec()
            .encoder(&self.ctx)
            .clear_buffer(&buf.buf, 0, None);
        Ok(())
    }

    fn copy(
        &self,
        src: &WgpuBuf,
        src_off: usize,
        dst: &mut WgpuBuf,
        dst_off: usize,
        len: usize,
    ) -> Result<()> {
        check_len(src.len, src_off + len)?;
        check_len(dst.len, dst_off + len)?;
        if len > 0 {
            self.settle(&src.buf)?;
            self.forget_q8_row(&dst.buf);
            self.rec().encoder(&self.ctx).copy_buffer_to_buffer(
                &src.buf,
                src_off as u64 * 4,
                &dst.buf,
                dst_off as u64 * 4,
                len as u64 * 4,
            );
        }
        Ok(())
    }

    fn read(&self, buf: &WgpuBuf, len: usize) -> Result<Vec<f32>> {
        check_len(buf.len, len)?;
        self.settle(&buf.buf)?;
        let bytes = self
            .rec()
            .read_back(&self.ctx, &buf.buf, 0, len as u64 * 4)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    fn read_later(&self, buf: &WgpuBuf, len: usize) -> Result<Readback> {
        check_len(buf.len, len)?;
        self.settle(&buf.buf)?;
        self.rec()
            .read_later(&self.ctx, &buf.buf, 0, len as u64 * 4)
    }

    fn fetch(&self, pending: Readback) -> Result<Vec<f32>> {
        Ok(bytemuck::pod_collect_to_vec(&pending.wait(&self.ctx)?))
    }

    fn argmax(&self, x: &WgpuBuf, t: usize, cols: usize) -> Result<Vec<u32>> {
        let mut out = self.scratch(t)?;
        self.argmax_to(x, t, cols, &mut out)?;
        let v = self.read(&out, t)?;
        Ok(v.into_iter().map(|i| i as u32).collect())
    }

    fn argmax_to(&self, x: &WgpuBuf, t: usize, cols: usize, ids: &mut WgpuBuf) -> Result<()> {
        check_len(x.len, t * cols)?;
        check_len(ids.len, t)?;
        let chunks = cols.div_ceil(ARGMAX_CHUNK);
        if chunks > 2 {
            // A vocabulary row: its chunks on many SMs, then one workgroup merges them.
            let best = self.scratch(2 * t * chunks)?;
            self.run(
                KernelKey::plain(Kernel::ArgmaxPart),
                &[&x.buf, &best.buf],
                &[cols as u32, t as u32, 0, chunks as u32],
                t * chunks,
            )?;
            self.run(
                KernelKey::plain(Kernel::ArgmaxMerge),
                &[&best.buf, &ids.buf],
                &[chunks as u32, t as u32, 0, 0],
                t,
            )?;
        } else {
            self.run(
                KernelKey::plain(Kernel::Argmax),
                &[&x.buf, &ids.buf],
                &[cols as u32, t as u32, 0, 0],
                t,
            )?;
        }
        Ok(())
    }

    fn embed(&self, table: &WgpuWeight<'_>, ids: &[u32], out: &mut WgpuBuf) -> Result<()> {
        let rows = table.rows();
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= rows) {
            return Err(BackendError::TokenOutOfRange { id, rows });
        }
        let id_buf = self.buffer_with(bytemuck::cast_slice(ids));
        self.embed_rows(table, &id_buf, ids.len(), false, out)
    }

    fn embed_from(
        &self,
        table: &WgpuWeight<'_>,
        ids: &WgpuBuf,
        t: usize,
        out: &mut WgpuBuf,
    ) -> Result<()> {
        check_len(ids.len, t)?;
        self.embed_rows(table, &ids.buf, t, true, out)
    }

    fn matmul(&self, w: &WgpuWeight<'_>, x: &WgpuBuf, t: usize, out: &mut WgpuBuf) -> Result<()> {
        self.matmul_into(w, x, t, out)
    }

    fn matmuls(
        &self,
        x: &WgpuBuf,
        t: usize,
        jobs: &mut [(&WgpuWeight<'_>, &mut WgpuBuf)],
    ) -> Result<()> {
        let jobs: Vec<_> = jobs.iter().map(|(w, y)| (*w, &**y)).collect();
        self.matmuls_into(x, t, &jobs)
    }

    fn matmuls_of(
        &self,
        t: usize,
        jobs: &mut [(&WgpuWeight<'_>, &WgpuBuf, &mut WgpuBuf)],
    ) -> Result<()> {
        let jobs: Vec<_> = jobs.iter().map(|(w, x, y)| (*w, *x, &**y)).collect();
        self.matmuls_of_into(t, &jobs)
    }

    fn rms_norm(
        &self,
        x: &WgpuBuf,
        w: &WgpuWeight<'_>,
        eps: f32,
        t: usize,
        out: &mut WgpuBuf,
    ) -> Result<()> {
        let n = w.n_elements();
        check_len(x.len, t * n)?;
        check_len(out.len, t * n)?;
        let wv = self.values(w)?;
        let q8 = self.q8_row_for(n, t)?;
        let row = q8.as_ref().map_or(&self.dummy, |q| &q.buf);
        // Every value of `out` is new: nothing need settle what it held.
        self.forget_q8_row(&out.buf);
        self.run(
            KernelKey::plain(Kernel::RmsNorm),
            &[&x.buf, &wv, &out.buf, row],
            &[n as u32, t as u32, f(eps), u32::from(q8.is_some())],
            t,
        )?;
        self.remember_q8_row(&out.buf, n, q8);
        Ok(())
    }

    fn add_rms_norm(
        &self,
        acc: &mut WgpuBuf,
        x: &WgpuBuf,
        w: &WgpuWeight<'_>,
        eps: f32,
        t: usize,
        width: usize,
        out: &mut WgpuBuf,
    ) -> Result<()> {
        let n = w.n_elements();
        if n != width {
            return Err(w.shape_error(format!("[{width}]")));
        }
        for len in [acc.len, x.len, out.len] {
            check_len(len, t * n)?;
        }
        let wv = self.values(w)?;
        let q8 = self.q8_row_for(n, t)?;
        let row = q8.as_ref().map_or(&self.dummy, |q| &q.buf);
        // Every value of `out` is new: nothing need settle what it held.
        self.forget_q8_row(&out.buf);
        self.run(
            KernelKey::plain(Kernel::AddRmsNorm),
            &[&x.buf, &wv, &out.buf, &acc.buf, row],
            &[n as u32, t as u32, f(eps), u32::from(q8.is_some())],
            t,
        )?;
        self.remember_q8_row(&out.buf, n, q8);
        Ok(())
    }

    fn swiglu(&self, gate: &mut WgpuBuf, up: &WgpuBuf, t: usize, n: usize) -> Result<()> {
        check_len(gate.len, t * n)?;
        check_len(up.len, t * n)?;
        self.swiglu_bufs(&gate.buf, &up.buf, t * n)
    }

    fn add(&self, acc: &mut WgpuBuf, x: &WgpuBuf, len: usize) -> Result<()> {
        check_len(acc.len, len)?;
        check_len(x.len, len)?;
        self.run(
            KernelKey::plain(Kernel::Add),
            &[&x.buf, &acc.buf],
            &[len as u32, 0, 0, 0],
            len.div_ceil(256),
        )
    }

    fn short_conv(
        &self,
        x: [&WgpuBuf; 3],
        w: [&WgpuWeight<'_>; 3],
        state: &mut [WgpuBuf; 3],
        t: usize,
        dims: KdaDims,
        out: &mut [WgpuBuf; 3],
    ) -> Result<()> {
        self.short_conv_op(x, w, state, t, dims, out)
    }

    fn kda_projections<'w>(
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
        self.kda_projections_op(x, t, proj, conv, state, dims, out, jobs)
    }

    fn kda_recurrent(
        &self,
        x: KdaInputs<'_, '_, Self>,
        state: &mut WgpuBuf,
        t: usize,
        dims: KdaDims,
        out: &mut WgpuBuf,
    ) -> Result<()> {
        self.kda_scan(x, state, t, dims, out)
    }

    fn kda_chunked(
        &self,
        x: KdaInputs<'_, '_, Self>,
        state: &mut WgpuBuf,
        t: usize,
        dims: KdaDims,
        out: &mut WgpuBuf,
    ) -> Result<()> {
        self.kda_scan(x, state, t, dims, out)
    }

    fn kda_tail(
        &self,
        x: KdaTail<'_, '_, Self>,
        state: &mut WgpuBuf,
        t: usize,
        dims: KdaDims,
        out: &mut WgpuBuf,
    ) -> Result<()> {
        self.kda_tail_op(x, state, t, dims, out, None).map(|_| ())
    }

    /// A decoded token's output projection does the residual add and the norm but its scale
    /// where it can ([`NormTail`]).
    fn kda_tail_add_norm(
        &self,
        x: KdaTail<'_, '_, Self>,
        state: &mut WgpuBuf,
        t: usize,
        dims: KdaDims,
        out: &mut WgpuBuf,
        next: AddNorm<'_, '_, Self>,
    ) -> Result<()> {
        self.with_add_norm(t, out, next, |out, tail| {
            self.kda_tail_op(x, state, t, dims, out, tail)
        })
    }

    /// A decoded token's product does the residual add and the norm but its scale where it can
    /// ([`NormTail`]).
    fn matmul_add_norm(
        &self,
        w: &WgpuWeight<'_>,
        x: &WgpuBuf,
        t: usize,
        out: &mut WgpuBuf,
        next: AddNorm<'_, '_, Self>,
    ) -> Result<()> {
        self.with_add_norm(t, out, next, |out, tail| {
            self.matmul_then(w, x, t, out, tail)
        })
    }

    fn gated_rms_norm(
        &self,
        o: &mut WgpuBuf,
        gate: &WgpuBuf,
        w: &WgpuWeight<'_>,
        eps: f32,
        t: usize,
        dims: KdaDims,
    ) -> Result<()> {
        let n = t * dims.width();
        check_len(o.len, n)?;
        check_len(gate.len, n)?;
        let wv = self.head_norm_values(w, dims)?;
        self.run(
            KernelKey::plain(Kernel::GatedRmsNorm),
            &[&gate.buf, &wv, &o.buf],
            &[dims.head_dim as u32, (t * dims.heads) as u32, f(eps), 0],
            t * dims.heads,
        )
    }

    fn gated_rms_norm_matmul(
        &self,
        o: &mut WgpuBuf,
        gate: &WgpuBuf,
        norm: &WgpuWeight<'_>,
        eps: f32,
        t: usize,
        dims: KdaDims,
        w: &WgpuWeight<'_>,
        out: &mut WgpuBuf,
    ) -> Result<()> {
        if t == 1 && self.gated_norm_fits(w, dims) {
            return self.gated_norm_matvec(o, gate, norm, eps, dims, w, out);
        }
        self.gated_rms_norm(o, gate, norm, eps, t, dims)?;
        self.matmul(w, o, t, out)
    }

    fn mla_attention(
        &self,
        q: &WgpuBuf,
        kv: &WgpuBuf,
        w: &MlaWeights<WgpuWeight<'_>>,
        cache: &mut WgpuBuf,
        pos: usize,
        t: usize,
        dims: MlaDims,
        out: &mut WgpuBuf,
    ) -> Result<()> {
        self.mla_op(q, kv, w, cache, pos, t, dims, out)
    }

    fn moe(
        &self,
        x: &WgpuBuf,
        w: &MoeWeights<WgpuWeight<'_>>,
        t: usize,
        out: &mut WgpuBuf,
    ) -> Result<()> {
        self.moe_op(x, w, t, out)
    }
}
