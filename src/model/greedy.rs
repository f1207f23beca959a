//! Greedy decoding with the device a step ahead of the host. Each pass's argmax stays on the
//! device, where the next pass's embedding reads it, and its read-back is queued behind the
//! pass; so the host records token N+1 while the device still runs token N, and learns each
//! token one step later. A decoded token is still one submission.
//!
//! The host cannot stop before the pass of the token it is told about has been recorded: a
//! caller that stops on a token (end of text) has run one pass more than the eager loop, which
//! only matters when the sequence goes on afterwards (a chat), not where it ends.

use std::time::{Duration, Instant};

use crate::backend::Backend;

use super::{HybridCache, Logits, Model, ModelError};

/// The latest chosen token, as far as the host knows it.
enum Latest<P> {
    /// Given by the caller.
    Known(u32),
    /// Chosen on the device; its read-back is queued.
    Queued(P),
}

/// A greedy decode in flight over one sequence: [`Greedy::step`] runs the latest token and
/// returns it, [`Greedy::latest`] returns it without running it.
pub struct Greedy<B: Backend> {
    /// The latest token's id as an f32 value on the device.
    id: B::Buf,
    latest: Latest<B::Pending>,
    recording: Duration,
    waiting: Duration,
}

impl<B: Backend> Greedy<B> {
    /// Starts with the argmax of `logits` (one row of `vocab`), which stays on the device.
    pub fn from_logits(b: &B, logits: &B::Buf, vocab: usize) -> Result<Self, ModelError> {
        let mut id = b.alloc(1)?;
        b.argmax_to(logits, 1, vocab, &mut id)?;
        let pending = b.read_later(&id, 1)?;
        Ok(Greedy {
            id,
            latest: Latest::Queued(pending),
            recording: Duration::ZERO,
            waiting: Duration::ZERO,
        })
    }

    /// Starts with a token the host chose.
    pub fn from_id(b: &B, first: u32) -> Result<Self, ModelError> {
        let mut id = b.alloc(1)?;
        b.write(&mut id, &[first as f32])?;
        Ok(Greedy {
            id,
            latest: Latest::Known(first),
            recording: Duration::ZERO,
            waiting: Duration::ZERO,
        })
    }

    /// Records and submits the pass of the latest token, which chooses the next one on the
    /// device, then returns the latest token (waiting for the pass that chose it, not for this
    /// one).
    pub fn step(
        &mut self,
        model: &Model<'_, B>,
        b: &B,
        cache: &mut HybridCache<B>,
    ) -> Result<u32, ModelError> {
        let t0 = Instant::now();
        let logits = model.forward_device_id(b, &self.id, cache, Logits::Last)?;
        self.recording += t0.elapsed();
        b.argmax_to(&logits, 1, model.config.vocab, &mut self.id)?;
        let next = Latest::Queued(b.read_later(&self.id, 1)?);
        self.resolve(b, next)
    }

    /// The latest token, without running its pass.
    pub fn latest(&mut self, b: &B) -> Result<u32, ModelError> {
        let id = self.resolve(b, Latest::Known(0))?;
        self.latest = Latest::Known(id);
        Ok(id)
    }

    /// Host time spent in [`Model::forward_device_id`] so far: recording the passes, on a GPU
    /// backend.
    pub fn recording(&self) -> Duration {
        self.recording
    }

    /// Host time spent waiting for the device's tokens so far: the rest of a decode's time
    /// the host was busy (recording, submitting), so a decode whose waits are short is bound
    /// by the host, not the device.
    pub fn waiting(&self) -> Duration {
        self.waiting
    }

    /// Makes `next` the latest token and returns the one it replaces, waiting for it.
    fn resolve(&mut self, b: &B, next: Latest<B::Pending>) -> Result<u32, ModelError> {
        let t0 = Instant::now();
        let id = match std::mem::replace(&mut self.latest, next) {
            Latest::Known(id) => id,
            Latest::Queued(p) => b.fetch(p)?[0] as u32,
        };
        self.waiting += t0.elapsed();
        Ok(id)
    }
}
