//! Scratch buffers for the per-token temporaries: a buffer goes back to the pool when its
//! [`WgpuBuf`](super::WgpuBuf) drops and the next request of the same size takes it, so a decode
//! step allocates no GPU memory after the first. Reuse inside one pending command encoder is
//! safe: the recorded commands run in order, with barriers between a buffer's uses.

use std::collections::HashMap;
use std::sync::Mutex;

/// Buffers larger than this are freed rather than kept (a long prefill's scores).
const MAX_POOLED_BUFFER: u64 = 256 << 20;
/// Bytes the pool keeps at most.
const MAX_POOLED_TOTAL: u64 = 2 << 30;

#[derive(Default)]
pub struct Pool {
    inner: Mutex<Free>,
}

#[derive(Default)]
struct Free {
    by_size: HashMap<u64, Vec<wgpu::Buffer>>,
    bytes: u64,
}

impl Pool {
    /// A free buffer of exactly `size` bytes, if one is pooled.
    pub fn take(&self, size: u64) -> Option<wgpu::Buffer> {
        let mut free = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let buf = free.by_size.get_mut(&size)?.pop()?;
        free.bytes -= size;
        Some(buf)
    }

    /// Keeps `buf` for reuse unless it is large or the pool is full.
    pub fn put(&self, buf: wgpu::Buffer) {
        let size = buf.size();
        let mut free = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if size > MAX_POOLED_BUFFER || free.bytes + size > MAX_POOLED_TOTAL {
            return;
        }
        free.bytes += size;
        free.by_size.entry(size).or_default().push(buf);
    }
}
