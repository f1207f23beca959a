//! Dispatch math of the absorbed MLA (`shaders/mla.wgsl`): append the normalised latents,
//! q_abs = W_UK(h)ᵀ q_nope per head, attention split over the cache length and merged (a
//! prompt's, and a decoded token's deep in the context, in tiles of queries, flash-attention
//! style, split only where the GPU would idle),
//! and o = W_UV(h) o_lat per head. At most five dispatches, independent of the context length.

use super::super::Backend;
use super::kernels::{Kernel, KernelKey};
use super::matmul::{GROUP_STARTS, SelProduct, Select};
use super::{
    BackendError, MlaDims, MlaWeights, Result, WgpuBackend, WgpuBuf, WgpuWeight, check_len, f,
};

/// Cached positions per attention workgroup (CH in the shader).
const CH: usize = 16;
/// Latent columns per `mla_combine` workgroup (WG in the shader).
const COMBINE_COLUMNS: usize = 128;
/// Widest cached row the attention kernel stages (4 · MAX_CW4 in the shader).
const MAX_CACHE_WIDTH: usize = 640;
/// Most heads one attention workgroup serves (MAXH in the shader).
const MAX_HEAD_GROUP: usize = 8;
/// Attention workgroups worth keeping a large GPU busy with: below this, a decoded token's
/// serve one head each, and a prompt's split the cache length further.
const BUSY_ATTENTION_WORKGROUPS: usize = 256;

/// Heads per attention workgroup (HG in the shader) for `t` tokens of `heads` heads over
/// `nsplit` splits: as many as divide the heads while the workgroups still fill the GPU, since
/// a workgroup reads its cached rows once for all its heads.
fn head_group(heads: usize, t: usize, nsplit: usize) -> usize {
    let mut hg = MAX_HEAD_GROUP;
    while hg > 1
        && (!heads.is_multiple_of(hg) || t * heads / hg * nsplit < BUSY_ATTENTION_WORKGROUPS)
    {
        hg /= 2;
    }
    hg
}
/// Largest buffer of attention partials one dispatch writes.
const MAX_PARTIALS_BYTES: usize = 256 << 20;
/// Query rows per `mla_flash` workgroup (FQ in the shader).
const FLASH_ROWS: usize = 32;
/// Cached positions per `mla_flash` step (FK in the shader).
const FLASH_STEP: usize = 64;
/// Widest latent `mla_flash` covers: a thread per vec4 column, 128 of them.
const FLASH_MAX_LORA: usize = 512;
/// The fewest splits of the cache length (FLASH_STEP positions each, for one tile of heads)
/// at which a decoded token's attention runs on `mla_flash`: all of a tile's heads in one
/// workgroup read each cached row once, from coalesced loads, where `mla_attend` reads it
/// once per MAX_HEAD_GROUP heads, a row per thread; with fewer splits too few workgroups run.
/// H100, 48B (32 heads, one tile), tg64 against `mla_attend`: 219.8 / 208.6 tok/s at depth
/// 2048, 217.3 / 202.9 at 4096, 202–210 / 198 at 8192; mixed at 512 (8 splits); 219.5 /
/// 227.6 (tg128) at depth 0. Against the `mla_attend` of 16 positions per workgroup (2c35a4d),
/// tg128 at depth 1024: 364.3 on `mla_flash`, 356.1 on `mla_attend` (one run each).
const DECODE_FLASH_SPLITS: usize = 16;

/// How one call's attention runs.
#[derive(Clone, Copy)]
struct AttendPlan {
    /// On `mla_flash` (a prompt, or a decoded token deep in the context) rather than
    /// `mla_attend` (a decoded token over a short cache).
    flash: bool,
    /// Splits of the cache length, whose partials `mla_combine` merges (none for one split
    /// of `mla_flash`, which writes its output itself).
    nsplit: usize,
    /// Cached positions per split.
    span: usize,
}

/// The plan for `t` tokens at positions `pos..`: on `mla_flash`, which reads each cached row
/// once per tile of query rows, split over the cache length only as far as needed to fill the
/// GPU (a short prompt deep in the context); but a decoded token over a cache too short for
/// DECODE_FLASH_SPLITS splits on `mla_attend` over splits of CH positions.
fn attend_plan(dims: MlaDims, pos: usize, t: usize) -> AttendPlan {
    let ctx = pos + t;
    let attend = AttendPlan {
        flash: false,
        nsplit: ctx.div_ceil(CH),
        span: CH,
    };
    if dims.kv_lora > FLASH_MAX_LORA {
        return attend;
    }
    let tiles = (t * dims.heads).div_ceil(FLASH_ROWS);
    let steps = ctx.div_ceil(FLASH_STEP);
    let want = BUSY_ATTENTION_WORKGROUPS.div_ceil(tiles).clamp(1, steps);
    let span = steps.div_ceil(want) * FLASH_STEP;
    let flash = AttendPlan {
        flash: true,
        nsplit: ctx.div_ceil(span),
        span,
    };
    if t < 2 && flash.nsplit < DECODE_FLASH_SPLITS {
        return attend;
    }
    flash
}

/// The uniform parameters the MLA kernels share.
fn mla_params(dims: MlaDims, pos: usize, t: usize, plan: AttendPlan) -> [u32; 10] {
    let qw = dims.nope + dims.rope;
    [
        dims.heads as u32,
        dims.kv_lora as u32,
        dims.rope as u32,
        dims.nope as u32,
        pos as u32,
        t as u32,
        plan.nsplit as u32,
        f(1.0 / (qw as f32).sqrt()),
        f(dims.norm_eps),
        plan.span as u32,
    ]
}

impl WgpuBackend {
    /// A prompt's (token, head) pairs grouped by head, as `moe_group` groups a prompt's MoE
    /// pairs by expert (every token "routed" to every head): the pair list and the uniform
    /// `starts` of [`Self::matmul_grouped`]. `None` for one token, or more heads than
    /// `starts` holds.
    fn head_groups(&self, heads: usize, t: usize) -> Option<(wgpu::Buffer, wgpu::Buffer)> {
        if t < 2 || heads >= GROUP_STARTS {
            return None;
        }
        // Pair i · heads + h in head h's group: the pairs, then each head's start.
        let mut groups: Vec<u32> = (0..heads)
            .flat_map(|h| (0..t).map(move |i| (i * heads + h) as u32))
            .collect();
        groups.extend((0..=heads).map(|h| (h * t) as u32));
        let mut starts = vec![0u32; GROUP_STARTS];
        starts[..=heads].copy_from_slice(&groups[heads * t..]);
        Some((
            self.buffer_with(bytemuck::cast_slice(&groups)),
            self.uniform_with(bytemuck::cast_slice(&starts)),
        ))
    }

    /// The per-head products of `s` (`Select::Heads`): a prompt's over its `groups`
    /// ([`Self::head_groups`]), so that each head's matrix is read once per tile of tokens and
    /// the tiles run on cooperative matrices where the adapter has them; else (a decoded
    /// token, or a head's matrix split across weight parts) one by one.
    fn head_products(
        &self,
        w: &WgpuWeight<'_>,
        s: SelProduct<'_>,
        groups: Option<&(wgpu::Buffer, wgpu::Buffer)>,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Result<()> {
        if let (Some((groups, starts)), Select::Heads(heads)) = (groups, s.select)
            && self
                .matmul_grouped(w, &s, groups, starts, heads, x, y)?
                .is_some()
        {
            return Ok(());
        }
        self.matmul_sel(w, s, x, y)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn mla_op(
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
        let (h, l, cw) = (dims.heads, dims.kv_lora, dims.cache_width());
        let qw = dims.nope + dims.rope;
        check_len(q.len, t * h * qw)?;
        check_len(kv.len, t * cw)?;
        check_len(out.len, t * h * dims.v_dim)?;
        let capacity = cache.len / cw;
        if pos + t > capacity {
            return Err(BackendError::CacheFull {
                capacity,
                needed: pos + t,
            });
        }
        if w.kv_norm.n_elements() < l {
            return Err(w.kv_norm.shape_error(format!("[{l}]")));
        }
        if w.k_b.ne[..3] != [dims.nope, l, h] {
            return Err(w.k_b.shape_error(format!("ne [{}, {l}, {h}]", dims.nope)));
        }
        if w.v_b.ne[..3] != [l, dims.v_dim, h] {
            return Err(w.v_b.shape_error(format!("ne [{l}, {}, {h}]", dims.v_dim)));
        }
        if !l.is_multiple_of(4) || !dims.rope.is_multiple_of(4) || cw > MAX_CACHE_WIDTH {
            return Err(BackendError::Gpu(format!(
                "MLA latent {l} + rope {}: the attention kernel needs multiples of 4, at most {MAX_CACHE_WIDTH} in all",
                dims.rope
            )));
        }
        if t == 0 {
            return Ok(());
        }
        let plan = attend_plan(dims, pos, t);
        let norm = self.values(&w.kv_norm)?;
        self.run(
            KernelKey::plain(Kernel::MlaAppend),
            &[&norm, &kv.buf, &cache.buf],
            &mla_params(dims, pos, t, plan),
            t,
        )?;

        // The attention partials hold (kv_lora + 2) values per row, head and split of the
        // cache: a long prompt deep in the context attends a slice of rows at a time.
        let per_row = h * plan.nsplit * (l + 2) * 4;
        let cap = MAX_PARTIALS_BYTES.min(self.binding_cap() as usize);
        let rows = (cap / per_row).clamp(1, t);
        if rows == t {
            return self.mla_attend_rows(q, w, cache, pos, t, plan, dims, out);
        }
        let (mut q_rows, out_rows) = (
            self.scratch(rows * h * qw)?,
            self.scratch(rows * h * dims.v_dim)?,
        );
        for i0 in (0..t).step_by(rows) {
            let n = rows.min(t - i0);
            self.copy(q, i0 * h * qw, &mut q_rows, 0, n * h * qw)?;
            self.mla_attend_rows(&q_rows, w, cache, pos + i0, n, plan, dims, &out_rows)?;
            let vw = h * dims.v_dim;
            self.copy(&out_rows, 0, out, i0 * vw, n * vw)?;
        }
        Ok(())
    }

    /// Attention of the `t` query rows of `q` at positions `pos..pos + t` over the cache (whose
    /// latents are already appended) into `out`, as `plan` says (made for these rows or for a
    /// longer call they are a slice of).
    #[allow(clippy::too_many_arguments)]
    fn mla_attend_rows(
        &self,
        q: &WgpuBuf,
        w: &MlaWeights<WgpuWeight<'_>>,
        cache: &WgpuBuf,
        pos: usize,
        t: usize,
        plan: AttendPlan,
        dims: MlaDims,
        out: &WgpuBuf,
    ) -> Result<()> {
        let (h, l) = (dims.heads, dims.kv_lora);
        let qw = dims.nope + dims.rope;
        let params = mla_params(dims, pos, t, plan);
        let q_abs = self.scratch(t * h * l)?;
        // Both per-head products pair the same tokens with the same heads.
        let groups = self.head_groups(h, t);
        self.head_products(
            &w.k_b,
            SelProduct {
                select: Select::Heads(h),
                per: l,
                pairs: t * h,
                x_div: 1,
                x_stride: qw,
                y_stride: l,
                y_off: 0,
            },
            groups.as_ref(),
            &q.buf,
            &q_abs.buf,
        )?;

        let o_lat = self.scratch(t * h * l)?;
        self.attend(q, &q_abs, cache, t, dims, plan, &params, &o_lat)?;

        self.head_products(
            &w.v_b,
            SelProduct {
                select: Select::Heads(h),
                per: dims.v_dim,
                pairs: t * h,
                x_div: 1,
                x_stride: l,
                y_stride: dims.v_dim,
                y_off: 0,
            },
            groups.as_ref(),
            &o_lat.buf,
            &out.buf,
        )
    }

    /// The attention proper: the query rows `q` (their rope part) and `q_abs` of `t` tokens
    /// against the cache, into `o_lat` [t · heads, kv_lora].
    #[allow(clippy::too_many_arguments)]
    fn attend(
        &self,
        q: &WgpuBuf,
        q_abs: &WgpuBuf,
        cache: &WgpuBuf,
        t: usize,
        dims: MlaDims,
        plan: AttendPlan,
        params: &[u32],
        o_lat: &WgpuBuf,
    ) -> Result<()> {
        let (heads, l) = (dims.heads, dims.kv_lora);
        // The scores on tensor cores where the adapter has them (f16 operands, f32 sums).
        let flash = KernelKey::plain(if self.coop_matrix() {
            Kernel::MlaFlashCoop
        } else {
            Kernel::MlaFlash
        });
        let tiles = (t * heads).div_ceil(FLASH_ROWS);
        if plan.flash && plan.nsplit == 1 {
            let bufs = [&q.buf, &q_abs.buf, &cache.buf, &o_lat.buf];
            return self.run(flash, &bufs, params, tiles);
        }
        let part = self.scratch(t * heads * plan.nsplit * (l + 2))?;
        let bufs = [&q.buf, &q_abs.buf, &cache.buf, &part.buf];
        if plan.flash {
            self.run(flash, &bufs, params, tiles * plan.nsplit)?;
        } else {
            let hg = head_group(heads, t, plan.nsplit);
            let key = KernelKey {
                spec: hg as u64,
                ..KernelKey::plain(Kernel::MlaAttend)
            };
            self.run(key, &bufs, params, t * heads / hg * plan.nsplit)?;
        }
        self.run(
            KernelKey::plain(Kernel::MlaCombine),
            &[&o_lat.buf, &part.buf],
            params,
            t * heads * l.div_ceil(COMBINE_COLUMNS),
        )
    }
}
