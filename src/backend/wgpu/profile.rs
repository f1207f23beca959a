//! GPU time per kernel from timestamp queries. Where the device can write timestamps inside a
//! compute pass, the dispatches keep sharing one pass as they do unprofiled, with a timestamp
//! written before and after each: a kernel's time then includes the launch and the barrier it
//! waits on, and the times add up to the stream's GPU time. Otherwise (or with
//! [`super::WgpuBackend::set_profiling_per_pass`]) every dispatch is its own compute pass, whose
//! begin/end timestamps time exactly one kernel but add a pass's overhead to each, which
//! inflates small kernels. Enabled with [`super::WgpuBackend::set_profiling`]; costs a readback
//! per submission while on.

use std::collections::HashMap;

/// Dispatches timed per submission before the recorder flushes early to read the queries.
const CAPACITY: u32 = 2048;

/// Accumulated GPU time of one kernel (entry point and weight type).
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelTime {
    pub name: String,
    pub calls: u64,
    pub total_ms: f64,
}

pub struct Profiler {
    /// Timestamps are written inside the shared pass, around each dispatch.
    inside: bool,
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    read: wgpu::Buffer,
    labels: Vec<String>,
    totals: HashMap<String, (u64, f64)>,
    /// Dispatches go untimed (`Backend::pause_profile`).
    pub paused: bool,
}

impl Profiler {
    pub fn new(device: &wgpu::Device, inside: bool) -> Profiler {
        let bytes = 2 * CAPACITY as u64 * 8;
        Profiler {
            inside,
            queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("kiln profiler"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * CAPACITY,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("kiln profiler resolve"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            read: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("kiln profiler read"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            labels: Vec::new(),
            totals: HashMap::new(),
            paused: false,
        }
    }

    /// Whether the recorder writes the timestamps inside its shared pass (else each dispatch
    /// gets a pass of its own, with the timestamps at its ends).
    pub fn inside(&self) -> bool {
        self.inside
    }

    pub fn full(&self) -> bool {
        self.labels.len() as u32 >= CAPACITY
    }

    /// The query set and the first of the two query indices for the next dispatch.
    pub fn begin(&mut self, label: String) -> (wgpu::QuerySet, u32) {
        let i = 2 * self.labels.len() as u32;
        self.labels.push(label);
        (self.queries.clone(), i)
    }

    /// Records the resolve of this submission's queries; returns the buffer to map after submit.
    pub fn resolve(&mut self, enc: &mut wgpu::CommandEncoder) -> Option<wgpu::Buffer> {
        if self.labels.is_empty() {
            return None;
        }
        let n = 2 * self.labels.len() as u32;
        enc.resolve_query_set(&self.queries, 0..n, &self.resolve, 0);
        enc.copy_buffer_to_buffer(&self.resolve, 0, &self.read, 0, n as u64 * 8);
        Some(self.read.clone())
    }

    /// Adds the resolved timestamps (ticks of `period` ns) to the per-kernel totals.
    pub fn collect(&mut self, bytes: &[u8], period: f32) {
        let ticks: &[u64] = bytemuck::cast_slice(&bytes[..self.labels.len() * 16]);
        for (label, pair) in self.labels.drain(..).zip(ticks.chunks_exact(2)) {
            let ns = pair[1].saturating_sub(pair[0]) as f64 * period as f64;
            let e = self.totals.entry(label).or_insert((0, 0.0));
            e.0 += 1;
            e.1 += ns;
        }
    }

    /// Totals so far, the most expensive kernel first.
    pub fn report(&self) -> Vec<KernelTime> {
        let mut v: Vec<KernelTime> = self
            .totals
            .iter()
            .map(|(name, &(calls, ns))| KernelTime {
                name: name.clone(),
                calls,
                total_ms: ns / 1e6,
            })
            .collect();
        v.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
        v
    }

    pub fn reset(&mut self) {
        self.totals.clear();
    }
}

/// The `top` most expensive kernels as a table, with their share of the total GPU time.
pub fn format_report(times: &[KernelTime], top: usize) -> String {
    let total: f64 = times.iter().map(|k| k.total_ms).sum();
    let mut s = format!(
        "{:<28} {:>8} {:>11} {:>10} {:>6}\n",
        "kernel", "calls", "total ms", "µs/call", "share"
    );
    for k in times.iter().take(top) {
        s += &format!(
            "{:<28} {:>8} {:>11.3} {:>10.2} {:>5.1}%\n",
            k.name,
            k.calls,
            k.total_ms,
            1e3 * k.total_ms / k.calls.max(1) as f64,
            100.0 * k.total_ms / total.max(f64::MIN_POSITIVE)
        );
    }
    s += &format!("GPU total {total:.3} ms\n");
    s
}
