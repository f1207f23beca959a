//! Mixture of experts (spec §5): sigmoid router, biased top-k choice, unbiased renormalised
//! weights × routed_scaling_factor, tokens grouped by expert so that each chosen expert's rows
//! are read once per call, plus the always-on shared expert.

use rayon::prelude::*;

use super::super::{BackendError, FfnWeights, MoeWeights, Result};
use super::elementwise::{sigmoid, swiglu};
use super::matmul::{MatView, matmul};
use super::{CpuWeight, shape};

/// The experts chosen for one token and their weights.
pub struct Routing {
    pub experts: Vec<usize>,
    pub weights: Vec<f32>,
}

/// Chooses `n_used` experts by `sigmoid(logit) + bias`, weighs them by the unbiased score.
pub fn route(logits: &[f32], bias: &[f32], n_used: usize, scale: f32) -> Routing {
    let s: Vec<f32> = logits.iter().map(|&l| sigmoid(l)).collect();
    let mut order: Vec<usize> = (0..s.len()).collect();
    // Stable sort: equal scores keep the lower expert first.
    order.sort_by(|&a, &b| (s[b] + bias[b]).total_cmp(&(s[a] + bias[a])));
    order.truncate(n_used);
    let sum: f32 = order.iter().map(|&e| s[e]).sum::<f32>() + 1e-20;
    let weights = order.iter().map(|&e| s[e] / sum * scale).collect();
    Routing {
        experts: order,
        weights,
    }
}

pub fn moe(
    x: &[f32],
    w: &MoeWeights<CpuWeight<'_>>,
    t: usize,
    out: &mut [f32],
    exact: bool,
) -> Result<()> {
    let router = w.router.mat()?;
    let (hidden, n_expert) = (router.cols, router.rows);
    let need = t * hidden;
    for len in [x.len(), out.len()] {
        if len < need {
            return Err(BackendError::BufferTooSmall { len, needed: need });
        }
    }
    let bias = w.bias.values()?;
    if bias.len() != n_expert {
        return Err(shape(&w.bias, format!("[{n_expert}]")));
    }
    let experts = ExpertMats::new(&w.experts, hidden, n_expert)?;

    let mut logits = vec![0f32; t * n_expert];
    matmul(router, x, t, &mut logits, exact)?;
    // Tokens (and their weights) per expert.
    let mut groups: Vec<Vec<(usize, f32)>> = vec![Vec::new(); n_expert];
    for (i, l) in logits.chunks_exact(n_expert).enumerate() {
        let r = route(l, &bias, w.n_used, w.scale);
        for (&e, &wt) in r.experts.iter().zip(&r.weights) {
            groups[e].push((i, wt));
        }
    }

    let ys: Vec<(usize, Vec<f32>)> = groups
        .par_iter()
        .enumerate()
        .filter(|(_, g)| !g.is_empty())
        .map(|(e, g)| {
            let xe: Vec<f32> = g
                .iter()
                .flat_map(|&(i, _)| x[i * hidden..(i + 1) * hidden].iter().copied())
                .collect();
            Ok((e, experts.expert(e).apply(&xe, g.len(), exact)?))
        })
        .collect::<Result<_>>()?;

    let out = &mut out[..need];
    match &w.shared {
        Some(sh) => {
            let sh = Ffn {
                gate: sh.gate.mat()?,
                up: sh.up.mat()?,
                down: sh.down.mat()?,
            };
            out.copy_from_slice(&sh.apply(&x[..need], t, exact)?);
        }
        None => out.fill(0.0),
    }
    // Sum in expert order so that the result does not depend on scheduling.
    for (e, y) in ys {
        for (&(i, wt), yr) in groups[e].iter().zip(y.chunks_exact(hidden)) {
            out[i * hidden..(i + 1) * hidden]
                .iter_mut()
                .zip(yr)
                .for_each(|(o, &v)| *o += wt * v);
        }
    }
    Ok(())
}

/// The three stacked expert tensors, sliced per expert.
struct ExpertMats<'a> {
    gate: MatView<'a>,
    up: MatView<'a>,
    down: MatView<'a>,
    n: usize,
}

impl<'a> ExpertMats<'a> {
    fn new(w: &FfnWeights<CpuWeight<'a>>, hidden: usize, n: usize) -> Result<Self> {
        let ff = w.gate.ne[1];
        for (t, cols, rows) in [
            (&w.gate, hidden, ff),
            (&w.up, hidden, ff),
            (&w.down, ff, hidden),
        ] {
            if t.ne[..3] != [cols, rows, n] {
                return Err(shape(t, format!("[{cols}, {rows}, {n}]")));
            }
        }
        Ok(ExpertMats {
            gate: w.gate.mat()?,
            up: w.up.mat()?,
            down: w.down.mat()?,
            n,
        })
    }

    fn expert(&self, e: usize) -> Ffn<'a> {
        Ffn {
            gate: self.gate.slice(e, self.n),
            up: self.up.slice(e, self.n),
            down: self.down.slice(e, self.n),
        }
    }
}

/// One SwiGLU feed-forward.
struct Ffn<'a> {
    gate: MatView<'a>,
    up: MatView<'a>,
    down: MatView<'a>,
}

impl Ffn<'_> {
    fn apply(&self, x: &[f32], t: usize, exact: bool) -> Result<Vec<f32>> {
        let ff = self.gate.rows;
        let (mut g, mut u) = (vec![0f32; t * ff], vec![0f32; t * ff]);
        matmul(self.gate, x, t, &mut g, exact)?;
        matmul(self.up, x, t, &mut u, exact)?;
        swiglu(&mut g, &u);
        let mut y = vec![0f32; t * self.down.rows];
        matmul(self.down, &g, t, &mut y, exact)?;
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bias_chooses_but_does_not_weigh() {
        // Expert 2 has the lowest score but a large bias: it is chosen, weighted by its score.
        let logits = [2.0f32, 1.0, -1.0, 0.0];
        let bias = [0.0f32, 0.0, 5.0, 0.0];
        let r = route(&logits, &bias, 2, 2.0);
        assert_eq!(r.experts, vec![2, 0]);
        let (s2, s0) = (sigmoid(-1.0), sigmoid(2.0));
        assert!((r.weights[0] - 2.0 * s2 / (s2 + s0)).abs() < 1e-6);
        assert!((r.weights[1] - 2.0 * s0 / (s2 + s0)).abs() < 1e-6);
    }
}
