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

/// The size a scratch buffer of `bytes` is made with: sizes that differ a little (a prompt's
/// attention partials grow with its position) share a class, at most 1/8 larger.
pub fn size_class(bytes: u64) -> u64 {
    let floor_pow2 = 1u64 << (63 - bytes.max(1).leading_zeros());
    let step = (floor_pow2 / 8).max(256);
    bytes.next_multiple_of(step)
}

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
    /// A free buffer of exactly `size` bytes, if one is pooled: the first of them in wgpu's
    /// order of buffers, whatever order they came back in. So a decode step takes the same
    /// buffers every token and the recorder's bind groups serve again. Taking the last one
    /// returned permuted them from token to token (each token returns them in another order than
    /// it took them): on the tiny test model 24 of a token's 41 dispatches made a bind group,
    /// host work every token.
    pub fn take(&self, size: u64) -> Option<wgpu::Buffer> {
        let mut free = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let list = free.by_size.get_mut(&size)?;
        let (first, _) = list.iter().enumerate().min_by(|a, b| a.1.cmp(b.1))?;
        let buf = list.swap_remove(first);
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

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_are_at_most_an_eighth_larger() {
        for bytes in [
            4,
            255,
            256,
            1000,
            4096,
            65_537,
            1 << 20,
            (1 << 20) + 1,
            300 << 20,
        ] {
            let c = size_class(bytes);
            assert!(c >= bytes && c - bytes <= bytes / 8 + 256, "{bytes} -> {c}");
        }
        assert_eq!(size_class(1000), size_class(1001));
    }
}
