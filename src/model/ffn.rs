//! The feed-forward half of a layer: the dense SwiGLU of the leading layers, or the MoE.

use crate::backend::Backend;

use super::ModelError;
use super::weights::FeedForward;

pub fn forward<B: Backend>(
    b: &B,
    w: &FeedForward<B::Weight<'_>>,
    ff: usize,
    x: &B::Buf,
    t: usize,
    out: &mut B::Buf,
) -> Result<(), ModelError> {
    match w {
        FeedForward::Dense(w) => {
            let (mut gate, mut up) = (b.scratch(t * ff)?, b.scratch(t * ff)?);
            b.matmuls(x, t, &mut [(&w.gate, &mut gate), (&w.up, &mut up)])?;
            b.swiglu(&mut gate, &up, t, ff)?;
            b.matmul(&w.down, &gate, t, out)?;
        }
        FeedForward::Moe(w) => b.moe(x, w, t, out)?,
    }
    Ok(())
}
