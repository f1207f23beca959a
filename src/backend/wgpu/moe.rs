//! Dispatch math of the MoE: router product (with the shared expert's gate and up where they
//! do not ride along with the experts'), routing on the GPU (`moe_route` writes the chosen
//! expert ids and weights to a buffer; a decoded token's router product routes in the same
//! dispatch, `moe_router_route`), the chosen experts' gate/up/down products over all
//! (token, slot) pairs (only the chosen experts' rows are read; a decoded token's gate and up
//! are one dispatch; a prompt's pairs are first grouped by expert so that each expert's rows
//! are read once per tile of pairs), the shared expert, and the weighted sum (a decoded
//! token's SwiGLUs, down products and sum in `moe_down`).

use super::super::Backend;
use super::kernels::{Kernel, KernelKey};
use super::matmul::{GROUP_STARTS, SelProduct, Select, q8_row_words};
use super::{BackendError, MoeWeights, Result, WgpuBackend, WgpuBuf, WgpuWeight, check_len, f};
use crate::quant::GgmlType;

/// Experts and chosen experts per token the routing kernel holds in workgroup memory (the
/// grouped products' `starts` hold as many, GROUP_STARTS).
const MAX_EXPERTS: usize = 1024;
const MAX_USED: usize = 64;
/// Storage buffers `moe_router_route` binds (see [`Kernel::MoeRouterRoute`]).
const ROUTER_ROUTE_BINDINGS: u32 = 9;

impl WgpuBackend {
    pub(super) fn moe_op(
        &self,
        x: &WgpuBuf,
        w: &MoeWeights<WgpuWeight<'_>>,
        t: usize,
        out: &mut WgpuBuf,
    ) -> Result<()> {
        let (hidden, n_expert) = (w.router.ne[0], w.router.rows());
        let (k, ff) = (w.n_used, w.experts.gate.ne[1]);
        check_len(x.len, t * hidden)?;
        check_len(out.len, t * hidden)?;
        if n_expert > MAX_EXPERTS || k == 0 || k > n_expert || k > MAX_USED {
            return Err(BackendError::Gpu(format!(
                "MoE of {n_expert} experts, {k} used: the routing kernel handles up to {MAX_EXPERTS}, {MAX_USED} used"
            )));
        }
        if w.bias.n_elements() != n_expert {
            return Err(w.bias.shape_error(format!("[{n_expert}]")));
        }
        for (m, cols, rows) in [
            (&w.experts.gate, hidden, ff),
            (&w.experts.up, hidden, ff),
            (&w.experts.down, ff, hidden),
        ] {
            if m.ne[..3] != [cols, rows, n_expert] {
                return Err(m.shape_error(format!("[{cols}, {rows}, {n_expert}]")));
            }
        }
        if t == 0 {
            return Ok(());
        }

        let logits = self.scratch(t * n_expert)?;
        let pairs = t * k;
        // A decoded token's SwiGLUs, down products and weighted sum are `moe_down` where it
        // fits: the shared expert's gate and up products then go to row 0 of the gate and up
        // buffers, the chosen experts' to the rows after.
        let fused_down = match &w.shared {
            Some(sh) => {
                t == 1
                    && sh.gate.rows() == ff
                    && self.moe_down_fits(&w.experts.down, &sh.down, pairs)
            }
            None => false,
        };
        let lead = if fused_down { ff } else { 0 };
        let (gate, up) = (
            self.scratch(lead + pairs * ff)?,
            self.scratch(lead + pairs * ff)?,
        );
        let own = match &w.shared {
            Some(sh) if !fused_down => {
                let sff = sh.gate.rows();
                Some((self.scratch(t * sff)?, self.scratch(t * sff)?))
            }
            _ => None,
        };
        let shared = w.shared.as_ref().map(|sh| match &own {
            Some((g, u)) => (sh, g, u),
            None => (sh, &gate, &up),
        });
        let (ids, wts) = (self.scratch(t * k)?, self.scratch(t * k)?);
        let gate_up = |per: usize, y_off: usize| SelProduct {
            select: Select::Ids(&ids.buf),
            per,
            pairs,
            x_div: k,
            x_stride: hidden,
            y_stride: per,
            y_off,
        };
        // A decoded token's shared gate and up ride along with the experts' (slot 0 of the
        // expert product, rows 0.. of the gate and up buffers) where they fit; else they run
        // beside the router (in its dispatch where they share its type).
        let rides = fused_down
            && w.shared.as_ref().is_some_and(|sh| {
                self.sel_pair_fits(
                    [&w.experts.gate, &w.experts.up],
                    Some([&sh.gate, &sh.up]),
                    &gate_up(ff, 0),
                )
            });
        // Where the expert product also writes the SwiGLU in 8 bits, `moe_down` reads it
        // instead of staging it in each of its workgroups.
        let swiglu_q8 = match &w.shared {
            Some(sh) if rides => {
                let fits = self.swiglu_q8_fits(
                    [&w.experts.gate, &w.experts.up],
                    Some([&sh.gate, &sh.up]),
                    &gate_up(ff, 0),
                    &w.experts.down,
                );
                fits.then(|| self.scratch(q8_row_words(lead + pairs * ff)))
                    .transpose()?
            }
            _ => None,
        };
        let bias = self.values(&w.bias)?;
        let params = [
            n_expert as u32,
            k as u32,
            t as u32,
            hidden as u32,
            f(w.scale),
        ];
        // A decoded token's F32 router product also chooses the experts (moe_router_route)
        // where the shared expert's gate and up do not run beside it, in one dispatch with it
        // (theirs being F32 too). Of another type than the experts' and the router's (Q6_K
        // beside Q3_K experts in the 24 GiB recipe), they run after it, on the row it finished.
        let shared_beside = !rides
            && w.shared
                .as_ref()
                .is_some_and(|sh| [&sh.gate, &sh.up].iter().any(|m| m.fuses_with(&w.router)));
        let router_routes = t == 1
            && !shared_beside
            && w.router.ty == GgmlType::F32
            && w.router.parts.len() == 1
            && hidden % 4 == 0
            && self.ctx.limits.max_storage_buffers_per_shader_stage >= ROUTER_ROUTE_BINDINGS;
        let mut jobs = Vec::new();
        if router_routes {
            // Where x's producer left out its norm's scale, the last workgroup applies it to
            // the logits and to x's 8-bit copy, which the expert products read.
            let unscaled = self.unscaled(&x.buf, hidden);
            let (halves, eps) = unscaled.as_ref().map_or((0, 0.0), |u| (u.2, u.3));
            let mut bufs = vec![
                &logits.buf,
                &bias,
                &ids.buf,
                &wts.buf,
                &x.buf,
                &w.router.parts[0].buf,
                &self.route_count,
                &self.dummy,
                &self.dummy_rw,
            ];
            if let Some((sums, q8, _, _)) = &unscaled {
                bufs[7] = sums;
                bufs[8] = q8;
            }
            self.run(
                KernelKey::plain(Kernel::MoeRouterRoute),
                &bufs,
                &[params.as_slice(), &[halves as u32, f(eps)]].concat(),
                n_expert,
            )?;
            if unscaled.is_some() {
                self.q8_scaled(&x.buf);
            }
        } else if t == 1 {
            jobs.push((&w.router, &logits));
        } else {
            // A prompt's router product keeps f32 operands: f16 rounding would flip near-tied
            // expert choices.
            self.matmul_into_with(&w.router, x, t, &logits, true)?;
        }
        if let Some((sh, g, u)) = &shared
            && !rides
        {
            jobs.extend([(&sh.gate, *g), (&sh.up, *u)]);
        }
        self.matmuls_into(x, t, &jobs)?;
        if !router_routes {
            self.run(
                KernelKey::plain(Kernel::MoeRoute),
                &[&logits.buf, &bias, &ids.buf, &wts.buf],
                &params,
                t,
            )?;
        }

        // A prompt's pairs, grouped by expert for the tiled products.
        let groups = if t > 1 {
            let g = self.scratch(pairs + n_expert + 1)?;
            self.run(
                KernelKey::plain(Kernel::MoeGroup),
                &[&ids.buf, &g.buf],
                &params,
                1,
            )?;
            // Each expert's span again as a uniform, copied on the GPU (see matmul_io.wgsl).
            let starts = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("kiln expert starts"),
                size: GROUP_STARTS as u64 * 4,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            self.rec().encoder(&self.ctx).copy_buffer_to_buffer(
                &g.buf,
                pairs as u64 * 4,
                &starts,
                0,
                (n_expert as u64 + 1) * 4,
            );
            Some((g, starts))
        } else {
            None
        };
        let product =
            |m: &WgpuWeight<'_>, s: SelProduct<'_>, x: &wgpu::Buffer, y: &wgpu::Buffer| {
                if let Some((g, starts)) = &groups
                    && self
                        .matmul_grouped(m, &s, &g.buf, starts, n_expert, x, y)?
                        .is_some()
                {
                    return Ok(());
                }
                self.matmul_sel(m, s, x, y)
            };
        if groups.is_some() {
            product(&w.experts.gate, gate_up(ff, lead), &x.buf, &gate.buf)?;
            product(&w.experts.up, gate_up(ff, lead), &x.buf, &up.buf)?;
        } else {
            let (riding, y_off) = match &w.shared {
                Some(sh) if rides => (Some([&sh.gate, &sh.up]), 0),
                _ => (None, lead),
            };
            self.matmul_sel_pair(
                [&w.experts.gate, &w.experts.up],
                riding,
                gate_up(ff, y_off),
                &x.buf,
                [&gate.buf, &up.buf],
                swiglu_q8.as_ref().map(|a| (a, &w.experts.down)),
            )?;
        }
        if fused_down && let Some((sh, _, _)) = &shared {
            return self.moe_down(
                &w.experts.down,
                &sh.down,
                pairs,
                [&gate, &up],
                swiglu_q8.as_ref(),
                &ids.buf,
                &wts.buf,
                out,
            );
        }
        // The shared expert's SwiGLU rides along with the routed experts'.
        match &shared {
            Some((sh, g, u)) => {
                let (n, n_sh) = (pairs * ff, t * sh.gate.rows());
                self.run(
                    KernelKey::plain(Kernel::SwigluPair),
                    &[&up.buf, &u.buf, &gate.buf, &g.buf],
                    &[n as u32, 0, 0, n_sh as u32],
                    (n + n_sh).div_ceil(256),
                )?;
            }
            None => self.swiglu_bufs(&gate.buf, &up.buf, pairs * ff)?,
        }
        let ys = self.scratch(pairs * hidden)?;
        product(
            &w.experts.down,
            SelProduct {
                select: Select::Ids(&ids.buf),
                per: hidden,
                pairs,
                x_div: 1,
                x_stride: ff,
                y_stride: hidden,
                y_off: 0,
            },
            &gate.buf,
            &ys.buf,
        )?;

        match &shared {
            Some((sh, g, _)) => self.matmul_into(&sh.down, g, t, out)?,
            None => self.zero(out)?,
        }
        self.run(
            KernelKey::plain(Kernel::MoeCombine),
            &[&wts.buf, &ys.buf, &out.buf],
            &params,
            (t * hidden).div_ceil(256),
        )
    }
}
