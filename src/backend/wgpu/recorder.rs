//! Command recording. Every op appends to one pending command encoder; nothing is submitted
//! until the host needs a result (`read`, `argmax`) or queues a read for later (`read_later`),
//! so a decoded token is one submission.
//! Writes, clears and copies are recorded in the same encoder, in order with the dispatches.
//!
//! Per-dispatch parameters go to a host-side arena of 256-byte uniform slots; the arena is
//! written to its GPU buffers just before the submit (queue writes run before the submitted
//! commands, and after earlier submissions, so a slot can be reused by the next token).
//!
//! Bind groups are cached: a decode step binds the same weights, the same recycled scratch
//! buffers and the same parameter slots as the step before, so after the first token no bind
//! group is created. Entries unused for a few submissions are dropped.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex};

use super::super::{Alter, BackendError, Result};
use super::device::Context;
use super::kernels::Compiled;
use super::profile::Profiler;

/// Bytes per parameter slot: the largest uniform offset alignment Vulkan drivers ask for.
const SLOT: usize = 256;
const SLOTS_PER_CHUNK: usize = 256;
/// Submissions a cached bind group survives without being used.
const BIND_GROUP_TTL: u64 = 4;

/// Kernels whose outputs later kernels use as indices (chosen experts, token ids).
const INDEX_WRITERS: [&str; 3] = ["moe_route", "moe_router_route", "argmax"];

/// What a bind group binds: the kernel's layout, its storage buffers in order, its parameter slot.
#[derive(PartialEq, Eq, Hash)]
struct BindKey {
    layout: wgpu::BindGroupLayout,
    bufs: Vec<wgpu::Buffer>,
    chunk: usize,
    offset: u64,
}

struct ParamChunk {
    buf: wgpu::Buffer,
    data: Vec<u8>,
}

#[derive(Default)]
pub struct Recorder {
    encoder: Option<wgpu::CommandEncoder>,
    /// The open compute pass: consecutive dispatches share one (wgpu still orders each
    /// dispatch after the writes before it); copies and clears close it.
    pass: Option<wgpu::ComputePass<'static>>,
    chunks: Vec<ParamChunk>,
    /// Slots used by the pending encoder.
    used: usize,
    pub profiler: Option<Profiler>,
    /// Cached bind groups and the submission that last used each.
    binds: HashMap<BindKey, (wgpu::BindGroup, u64)>,
    submissions: u64,
    /// The latest submission, which a read queued with it waits for.
    last_submit: Option<wgpu::SubmissionIndex>,
    /// Bytes of buffers created since the last submission.
    pub fresh_bytes: u64,
    /// Dispatches recorded so far.
    pub dispatches: u64,
    /// Bind groups made so far (a decode step in its steady state makes none).
    pub binds_made: u64,
    /// Kernels whose dispatches are left out or repeated (`kiln bench --ablate`, `--repeat`):
    /// labels starting with any of these.
    pub altered: (Vec<String>, Alter),
}

impl Recorder {
    /// The pending encoder, for copies and clears: ends the open compute pass first.
    pub fn encoder(&mut self, ctx: &Context) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        self.encoder.get_or_insert_with(|| {
            ctx.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("kiln"),
                })
        })
    }

    fn param_slot(&mut self, ctx: &Context, params: &[u32]) -> (usize, u64) {
        let (chunk, slot) = (self.used / SLOTS_PER_CHUNK, self.used % SLOTS_PER_CHUNK);
        if chunk == self.chunks.len() {
            self.chunks.push(ParamChunk {
                buf: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("kiln params"),
                    size: (SLOT * SLOTS_PER_CHUNK) as u64,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
                data: vec![0u8; SLOT * SLOTS_PER_CHUNK],
            });
        }
        let bytes: &[u8] = bytemuck::cast_slice(params);
        let at = slot * SLOT;
        self.chunks[chunk].data[at..at + bytes.len()].copy_from_slice(bytes);
        self.chunks[chunk].data[at + bytes.len()..at + SLOT].fill(0);
        self.used += 1;
        (chunk, at as u64)
    }

    /// Records one dispatch of `groups` workgroups (spread over x and y when more than one
    /// dimension allows).
    pub fn dispatch(
        &mut self,
        ctx: &Context,
        kernel: &Compiled,
        label: impl FnOnce() -> String,
        bufs: &[&wgpu::Buffer],
        params: &[u32],
        groups: u32,
    ) -> Result<()> {
        if bufs.len() != kernel.storage.len() {
            return Err(BackendError::Gpu(format!(
                "{}: {} buffers bound, the kernel declares {}",
                label(),
                bufs.len(),
                kernel.storage.len()
            )));
        }
        if groups == 0 {
            return Ok(());
        }
        // The name, for altering the kernel's dispatches and for the profiler, made only where
        // needed.
        let (altered, how) = &self.altered;
        let name = (!altered.is_empty() || self.profiler.is_some()).then(label);
        let hit = name
            .as_ref()
            .is_some_and(|l| altered.iter().any(|k| l.starts_with(k.as_str())));
        if let Some(l) = &name
            && hit
            && *how == Alter::LeaveOut
        {
            // The shaders index memory unchecked: garbage indices would read out of bounds.
            if INDEX_WRITERS.iter().any(|k| l.starts_with(k)) {
                return Err(BackendError::Gpu(format!(
                    "{l} writes indices that later kernels follow: it cannot be left out"
                )));
            }
            return Ok(());
        }
        // Repeated, the dispatch runs again on what it left (wgpu orders the two: each writes
        // what the other reads or writes).
        let times = if hit { 2 } else { 1 };
        self.dispatches += times;
        if self
            .profiler
            .as_ref()
            .is_some_and(|p| p.full() && !p.paused)
        {
            self.flush(ctx)?;
        }
        let (chunk, offset) = self.param_slot(ctx, params);
        let key = BindKey {
            layout: kernel.layout.clone(),
            bufs: bufs.iter().map(|&b| b.clone()).collect(),
            chunk,
            offset,
        };
        let now = self.submissions;
        let bind = match self.binds.get_mut(&key) {
            Some((bind, used)) => {
                *used = now;
                bind.clone()
            }
            None => {
                self.binds_made += 1;
                let bind = self.bind_group(ctx, kernel, bufs, chunk, offset);
                self.binds.insert(key, (bind.clone(), now));
                bind
            }
        };
        let max = ctx.limits.max_compute_workgroups_per_dimension.max(1);
        let (x, y) = if groups <= max {
            (groups, 1)
        } else {
            (max, groups.div_ceil(max))
        };
        // The profiler times each dispatch with timestamps around it in the shared pass, or
        // with its own pass's (profile.rs says when).
        let ts = (self.profiler.as_mut())
            .filter(|p| !p.paused)
            .map(|p| (p.begin(name.unwrap_or_default()), p.inside()));
        let (own_pass, around) = match &ts {
            Some((t, false)) => (Some(t), None),
            Some((t, true)) => (None, Some(t)),
            None => (None, None),
        };
        if own_pass.is_some() || self.pass.is_none() {
            let enc = self.encoder(ctx);
            let pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: own_pass.map(|(qs, i)| wgpu::ComputePassTimestampWrites {
                    query_set: qs,
                    beginning_of_pass_write_index: Some(*i),
                    end_of_pass_write_index: Some(*i + 1),
                }),
            });
            self.pass = Some(pass.forget_lifetime());
        }
        let pass = self.pass.as_mut().expect("a compute pass was just opened");
        if let Some((qs, i)) = around {
            pass.write_timestamp(qs, *i);
        }
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, &bind, &[]);
        for _ in 0..times {
            pass.dispatch_workgroups(x, y, 1);
        }
        if let Some((qs, i)) = around {
            pass.write_timestamp(qs, *i + 1);
        }
        Ok(())
    }

    fn bind_group(
        &self,
        ctx: &Context,
        kernel: &Compiled,
        bufs: &[&wgpu::Buffer],
        chunk: usize,
        offset: u64,
    ) -> wgpu::BindGroup {
        let mut entries: Vec<wgpu::BindGroupEntry> = kernel
            .storage
            .iter()
            .zip(bufs)
            .map(|(&binding, b)| wgpu::BindGroupEntry {
                binding,
                resource: b.as_entire_binding(),
            })
            .collect();
        entries.push(wgpu::BindGroupEntry {
            binding: kernel.uniform,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.chunks[chunk].buf,
                offset,
                size: NonZeroU64::new(SLOT as u64),
            }),
        });
        ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &kernel.layout,
            entries: &entries,
        })
    }

    pub fn submissions(&self) -> u64 {
        self.submissions
    }

    /// Submits everything recorded so far (a no-op when nothing is pending).
    pub fn flush(&mut self, ctx: &Context) -> Result<()> {
        self.pass = None;
        let Some(mut enc) = self.encoder.take() else {
            return ctx.check();
        };
        for (i, c) in self.chunks.iter().enumerate() {
            let used = self
                .used
                .saturating_sub(i * SLOTS_PER_CHUNK)
                .min(SLOTS_PER_CHUNK);
            if used > 0 {
                ctx.queue.write_buffer(&c.buf, 0, &c.data[..used * SLOT]);
            }
        }
        self.used = 0;
        let pending_profile = self.profiler.as_mut().and_then(|p| p.resolve(&mut enc));
        self.last_submit = Some(ctx.queue.submit([enc.finish()]));
        self.fresh_bytes = 0;
        self.submissions += 1;
        let now = self.submissions;
        self.binds
            .retain(|_, (_, used)| *used + BIND_GROUP_TTL >= now);
        if let (Some(p), Some(read)) = (self.profiler.as_mut(), pending_profile) {
            let bytes = map_read(ctx, &read)?;
            p.collect(&bytes, ctx.queue.get_timestamp_period());
        }
        ctx.check()
    }

    /// Copies `size` bytes of `buf` from `offset` back to the host, after all recorded work.
    pub fn read_back(
        &mut self,
        ctx: &Context,
        buf: &wgpu::Buffer,
        offset: u64,
        size: u64,
    ) -> Result<Vec<u8>> {
        self.read_later(ctx, buf, offset, size)?.wait(ctx)
    }

    /// Submits all recorded work with a copy of `size` bytes of `buf` from `offset` at its
    /// end, and returns without waiting for the device.
    pub fn read_later(
        &mut self,
        ctx: &Context,
        buf: &wgpu::Buffer,
        offset: u64,
        size: u64,
    ) -> Result<Readback> {
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kiln readback"),
            size: size.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if size > 0 {
            self.encoder(ctx)
                .copy_buffer_to_buffer(buf, offset, &staging, 0, size);
        }
        self.flush(ctx)?;
        // Mapped only now: a buffer with a mapping requested cannot be used by a submission.
        Ok(Readback::start(staging, size, self.last_submit.clone()))
    }
}

/// A MAP_READ buffer whose filling is submitted and whose mapping is requested.
pub struct Readback {
    buf: wgpu::Buffer,
    /// Bytes asked for (the buffer may be larger).
    size: u64,
    /// The submission that fills it; `None` waits for all of them.
    submission: Option<wgpu::SubmissionIndex>,
    mapped: Arc<Mutex<Option<std::result::Result<(), wgpu::BufferAsyncError>>>>,
}

impl Readback {
    fn start(buf: wgpu::Buffer, size: u64, submission: Option<wgpu::SubmissionIndex>) -> Self {
        let mapped = Arc::new(Mutex::new(None));
        let sink = mapped.clone();
        buf.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            *sink.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        });
        Readback {
            buf,
            size,
            submission,
            mapped,
        }
    }

    /// Waits for the submission that fills the buffer (not for later ones) and returns the
    /// bytes.
    pub fn wait(self, ctx: &Context) -> Result<Vec<u8>> {
        ctx.device
            .poll(wgpu::PollType::Wait {
                submission_index: self.submission,
                timeout: None,
            })
            .map_err(|e| BackendError::Gpu(format!("waiting for the GPU: {e}")))?;
        let status = self.mapped.lock().unwrap_or_else(|p| p.into_inner()).take();
        match status {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(BackendError::Gpu(format!("mapping a readback: {e}"))),
            None => return Err(BackendError::Gpu("a readback never completed".into())),
        }
        let slice = self.buf.slice(..);
        let mut bytes = slice
            .get_mapped_range()
            .map_err(|e| BackendError::Gpu(format!("mapping a readback: {e:?}")))?
            .to_vec();
        self.buf.unmap();
        bytes.truncate(self.size as usize);
        Ok(bytes)
    }
}

/// Maps a MAP_READ buffer (after its copy was submitted) and returns its bytes.
pub fn map_read(ctx: &Context, buf: &wgpu::Buffer) -> Result<Vec<u8>> {
    Readback::start(buf.clone(), buf.size(), None).wait(ctx)
}
