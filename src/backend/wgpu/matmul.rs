//! Dispatch math of the quantized products (`shaders/matmul.wgsl`), one dispatch per weight
//! part: a decoded token's products run 256 / TPR row groups per workgroup (`matvec`,
//! `matmul_sel`; `matvecs` for several weights that read one input), a prompt's tiles of 64
//! weight rows × 64 tokens per workgroup (on tensor cores through cooperative matrices where
//! the adapter has them, `shaders/matmul_coop.wgsl`), an F32 matrix with too few tiles to fill
//! the GPU split over slices of its row's values (`matmul_split`, then `sum_slices`).

use super::super::Backend;
use super::kernels::{self, Kernel, KernelKey};
use super::{
    BackendError, KdaDims, NormTail, Part, Result, WgpuBackend, WgpuBuf, WgpuWeight, check_len,
};
use crate::quant::GgmlType;

/// Weight rows and tokens of a `matmul` or `matmul_grouped` workgroup's tile (TM, TN in the
/// shader).
const TILE: (usize, usize) = (64, 64);
/// The tile (weight rows, tokens) of `shaders/matmul_coop.wgsl`, its TM and TN. Its 8
/// subgroups of 32 hold 16 × 16 blocks: TM / 16 must divide 8.
pub const COOP_TILE: (usize, usize) = (64, 64);
/// Values of the grouped products' uniform `starts` (257 vec4s in matmul_io.wgsl): each
/// group's first pair, and the end, for up to 1024 groups.
pub const GROUP_STARTS: usize = 1028;
/// Values per step of the tiled products (TK in `shaders/matmul.wgsl`): a split product's
/// slices are whole steps.
const TK: usize = 32;
/// The fewest values of a split product's slice: 4 steps, so that a workgroup reads at least
/// 64 KiB of weights and activations for the 16 KiB of partial sums it writes.
const MIN_SLICE: usize = 4 * TK;
/// Threads of a `matvec` or `matmul_sel` workgroup (MV_WG in the shader).
const MV_WG: usize = 256;
/// Workgroups a product needs to fill a large GPU (an H100's 132 SMs) about four times over:
/// a prompt product of an F32 weight with fewer tiles splits its values until it has about as
/// many; an F32 decode product of at most this many rows spreads a row over the workgroup.
const BUSY_WORKGROUPS: usize = 512;

/// Rows per lane of the unit-load entries (a decoded token's expert products,
/// `matmul_sel_pair_units.wgsl` and `moe_down_units.wgsl`), one after the other: two halve the
/// workgroups that stage the activations (9216 of them, through the SwiGLU, in each of
/// `moe_down`'s). H100, 48B, tg128 in four alternated pairs on one machine (its runs scattered
/// by ± 7): 248.6, 253.3, 249.7, 248.6 tok/s against 238.4, 237.9, 239.6, 241.6 with one row;
/// four rows in either kernel were no better than two. The sums are the same per row. Once
/// the activations were no longer staged there (a83d552), one row was still slower (257.0 /
/// 259.2 against 268.1 / 270.3; it also leaves the pair's workgroups 8 rows, too few for its
/// SwiGLU in 8 bits), and one row in `moe_down` alone was within the noise.
const UNIT_ENTRY_ROWS: usize = 2;

/// Units of a row each lane of a decode product (`matvec`, `matvecs`, `matmul_sel`) loads
/// before its first multiply (UN in the shaders), for the types that load ahead (Q4_K). Up to
/// 4 (enough for one pass over a 4096-value row) kept each lane's loads in one memory round
/// trip, but the registers they held left fewer warps on each SM: on the H100, one unit at a
/// time made tg128 6% faster (347.2 in a quiet run, against 326.4–327.3 tok/s; two: 334.0 /
/// 334.9), the same greedy tokens. On integer dot products (dot/q4_k_q8.wgsl) a lane now
/// takes a sub-block pair (two units, one header) at a time instead, and UN does not apply.
const UNITS_AHEAD: usize = 1;

/// Lanes per row of the decode products other than the experts' (`matvec`, `matvecs`,
/// `matmul_sel`) for the types that load ahead (Q4_K): 16, so that a workgroup serves 16 rows
/// (8 with 32 lanes): with one unit per lane at a time (UNITS_AHEAD) and moe_down in four
/// parts, H100 tg128 362.3 / 361.1 tok/s against 354.5 / 356.3 with 32 lanes (64: 335).
const ROW_LANES: usize = 16;

/// Parts of `moe_down`'s unit-entry workgroups that each multiply some of a row's matrices
/// (moe_down_units.wgsl). Four measured the same as two on the H100 while each lane loaded
/// all its matrices at once (tg128 320.4 / 315.1 against 319.9 / 314.8 tok/s), eight slower
/// (305.9 / 310.7; one part: 308.8 / 309.8); with three at a time (AHEAD) four are faster:
/// 354.5 / 356.3 against 348.4 / 350.0, and with 16 lanes per row in the other products
/// (ROW_LANES) 362.3 / 361.1 against 354.4 / 356.2 with two parts.
const MOE_DOWN_SPLIT: usize = 4;

/// Threads per weight row of the decode products (TPR in the shader) when they compute `rows`
/// rows: about two `part_dot_rows` calls each, so that short rows (the experts' down products)
/// do not leave threads idle and long ones spread over more threads, up to 64. An F32 weight
/// of at most BUSY_WORKGROUPS rows (the MoE router: 256 rows of 2304 values, 2.36 MB) may
/// spread a row over the whole workgroup: 64 lanes a row made it 64 workgroups, half of an H100's
/// SMs idle and each lane 9 loads deep; at 256 lanes it is 256 workgroups with at most 3 loads a
/// lane. Reading so few bytes is latency-bound (3 TB/s × ~1 µs of memory latency is more than the
/// whole matrix), so loads in flight at once are what count, not the 8 reduction steps where 6
/// were. Quantized weights keep their shapes.
fn threads_per_row(ty: GgmlType, cols: usize, rows: usize) -> usize {
    let units = cols / kernels::dot_values(ty);
    let most = if ty == GgmlType::F32 && rows <= BUSY_WORKGROUPS {
        MV_WG
    } else {
        64
    };
    (units / 2).next_power_of_two().clamp(4, most)
}

/// How a prompt product of `tiles` tiles over rows of `cols` values splits the values so that
/// it runs about BUSY_WORKGROUPS workgroups: the values of each slice (whole TK steps, at
/// least MIN_SLICE) and the slices; `None` when it has tiles enough, or values too few, for two.
fn split_values(tiles: usize, cols: usize) -> Option<(usize, usize)> {
    let want = BUSY_WORKGROUPS.div_ceil(tiles);
    let slice = cols.div_ceil(want).next_multiple_of(TK).max(MIN_SLICE);
    let slices = cols.div_ceil(slice);
    (want >= 2 && slices >= 2).then_some((slice, slices))
}

/// The decode product kernel `kernel` for `w` when it computes `rows` rows in all (on integer
/// dot products against 8-bit activations where `q8` allows and the type has them; a
/// workgroup then stages `staged` activations), and the weight rows one workgroup serves.
fn decode_kernel(
    kernel: Kernel,
    w: &WgpuWeight<'_>,
    rows: usize,
    staged: usize,
    q8: bool,
) -> (KernelKey, usize) {
    let units = w.ne[0] / kernels::dot_values(w.ty);
    let ahead = kernels::loads_ahead(w.ty);
    let several = matches!(
        kernel,
        Kernel::MatmulSelPair
            | Kernel::MatmulSelPairSwigluQ8
            | Kernel::MoeDown
            | Kernel::MoeDownSwiglu
    );
    let q8 = q8 && kernels::q8_dots(w.ty, w.ne[0]);
    // A type whose lanes load units ahead, or that runs on integer dot products (a lane then
    // takes 64 values a step), gets up to one subgroup's worth of lanes per row in the
    // several-weight kernels, up to ROW_LANES elsewhere.
    let tpr = if ahead || q8 {
        units
            .next_power_of_two()
            .clamp(4, if several { 32 } else { ROW_LANES })
    } else {
        threads_per_row(w.ty, w.ne[0], rows)
    };
    let groups = MV_WG / tpr;
    // The unit-load entries of the several-weight kernels hold one row's loads per lane at a
    // time (UNIT_ENTRY_ROWS rows in turn).
    let unit_entry = several && kernels::unit_loads(w.ty, q8);
    // One row per lane elsewhere. Several rows per lane (two where a product kept 256
    // workgroups, four beyond 1024) made each staging of the activations serve more rows, and
    // made H100 tg128 5% faster while every workgroup staged them; since the norms write their
    // rows in 8 bits (f66b2d7) few products stage, and a row per lane is 1% faster: 270.9 /
    // 273.3 against 268.1 / 270.3 tok/s alternated, the same greedy tokens.
    let rt = if unit_entry { UNIT_ENTRY_ROWS } else { 1 };
    let un = if ahead {
        units.div_ceil(tpr).clamp(1, UNITS_AHEAD)
    } else {
        1
    };
    // moe_down's unit entry splits each row's matrices over parts of its workgroup.
    let split = match kernel {
        Kernel::MoeDown | Kernel::MoeDownSwiglu if unit_entry => MOE_DOWN_SPLIT.min(groups),
        _ => 1,
    };
    let mut key = KernelKey {
        spec: (tpr | rt << 16 | un << 32) as u64,
        q8,
        xq: if q8 { kernels::staging_for(staged) } else { 0 },
        ..KernelKey::typed(kernel, w.ty)
    };
    // Left 0 (the shader's default of 1) elsewhere: matvecs_conv's KW takes these bits.
    if split > 1 {
        key.spec |= (split as u64) << 48;
    }
    (key, groups * rt / split)
}

/// The 4-byte words of a row of `values` activations in 8 bits as x_q8_global.wgsl lays them
/// out: 12 (three quads) per group of 32.
pub(super) fn q8_row_words(values: usize) -> usize {
    values.div_ceil(32) * 12
}

/// Where the products of one `matvecs` dispatch read their activation row.
pub(super) enum Inputs<'a> {
    /// One row for all (a layer's projections of its normed input).
    Shared(&'a WgpuBuf),
    /// A row per product, in job order.
    PerJob(&'a [&'a WgpuBuf]),
}

/// The short convolutions that `matvecs` stores its first three products through: the three
/// streams' taps (f32 values, [channel][kw]) and states.
pub(super) struct ConvStores<'a> {
    pub taps: [wgpu::Buffer; 3],
    pub state: [&'a WgpuBuf; 3],
    pub kw: usize,
}

/// Which matrix of a stacked weight each (token, slot) pair multiplies.
#[derive(Clone, Copy)]
pub enum Select<'a> {
    /// `ids[pair]`: the routed expert (MoE).
    Ids(&'a wgpu::Buffer),
    /// `pair % heads`: the head (MLA's per-head products).
    Heads(usize),
}

/// A product of `pairs` rows of `x` with one `per`-row matrix each, chosen by `select`.
#[derive(Clone, Copy)]
pub struct SelProduct<'a> {
    pub select: Select<'a>,
    /// Rows of each stacked matrix.
    pub per: usize,
    pub pairs: usize,
    /// Pair p reads row `p / x_div` of x, rows `x_stride` floats apart.
    pub x_div: usize,
    pub x_stride: usize,
    /// Pair p writes `per` values at `y_off + p * y_stride`.
    pub y_stride: usize,
    pub y_off: usize,
}

/// The `Params` of `shaders/matmul.wgsl`, but for the weight part's rows.
struct Params {
    cols: usize,
    t: usize,
    x_stride: usize,
    y_stride: usize,
    y_off: usize,
    /// Rows of each selected matrix; `matmul_split`'s values per slice.
    per: usize,
    x_div: usize,
    mode: u32,
    heads: u32,
}

impl Params {
    /// A plain product: `t` rows of `cols` values into rows of `rows` outputs, one after another.
    fn dense(cols: usize, rows: usize, t: usize) -> Params {
        Params {
            cols,
            t,
            x_stride: cols,
            y_stride: rows,
            y_off: 0,
            per: 0,
            x_div: 1,
            mode: 0,
            heads: 1,
        }
    }

    fn sel(w: &WgpuWeight<'_>, s: &SelProduct<'_>, mode: u32, heads: u32) -> Params {
        Params {
            cols: w.ne[0],
            t: s.pairs,
            x_stride: s.x_stride,
            y_stride: s.y_stride,
            y_off: s.y_off,
            per: s.per,
            x_div: s.x_div,
            mode,
            heads,
        }
    }

    fn for_part(&self, part: &Part) -> [u32; 12] {
        [
            part.rows as u32,
            self.cols as u32,
            self.t as u32,
            part.row0 as u32,
            self.x_stride as u32,
            0,
            self.y_stride as u32,
            self.y_off as u32,
            self.per as u32,
            self.x_div as u32,
            self.mode,
            self.heads,
        ]
    }
}

impl WgpuBackend {
    /// The tiled prompt product `kernel` (`Matmul` or `MatmulGrouped`) for weights of `ty`,
    /// with its tile (weight rows, tokens): on cooperative matrices where the adapter has them,
    /// for block-quantized weights (whose quantization error dwarfs f16 rounding) unless the
    /// product must be `exact`.
    fn prompt_kernel(&self, kernel: Kernel, ty: GgmlType, exact: bool) -> (Kernel, (usize, usize)) {
        let float = matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16);
        match (kernel, self.coop_matrix() && !float && !exact) {
            (Kernel::Matmul, true) => (Kernel::MatmulCoop, COOP_TILE),
            (Kernel::MatmulGrouped, true) => (Kernel::MatmulGroupedCoop, COOP_TILE),
            _ => (kernel, TILE),
        }
    }

    fn check_cols(&self, w: &WgpuWeight<'_>, x_stride: usize) -> Result<()> {
        let q = kernels::row_quantum(w.ty);
        // The shader reads x as vec4s.
        if !w.ne[0].is_multiple_of(q) || !x_stride.is_multiple_of(4) {
            return Err(w.shape_error(format!(
                "a row length divisible by {q} (and activation rows of a multiple of 4), got x rows of {x_stride}"
            )));
        }
        Ok(())
    }

    /// [`Self::matmul_into`], with `tail` done by a decoded token's product where it can
    /// (add_norm_rows.wgsl: a one-part weight whose workgroups serve whole 16-row halves; `out`
    /// is then left as it was): whether it was.
    pub(super) fn matmul_then(
        &self,
        w: &WgpuWeight<'_>,
        x: &WgpuBuf,
        t: usize,
        out: &WgpuBuf,
        tail: Option<&NormTail<'_>>,
    ) -> Result<bool> {
        let (cols, rows) = (w.ne[0], w.rows());
        let fused = tail
            .filter(|_| t == 1 && w.parts.len() == 1)
            .and_then(|tail| {
                let (key, rpw) = decode_kernel(Kernel::Matvec, w, rows, cols, !self.exact);
                (rows.is_multiple_of(16) && rpw.is_multiple_of(16) && rpw <= MV_WG)
                    .then_some((tail, key, rpw))
            });
        let Some((tail, mut key, rpw)) = fused else {
            self.matmul_into(w, x, t, out)?;
            return Ok(false);
        };
        check_len(x.len, cols)?;
        check_len(tail.normed.len, rows)?;
        check_len(tail.sums.len, rows / 16)?;
        self.check_cols(w, cols)?;
        let row = self.q8_row_of(&mut key, &x.buf, cols);
        key.kernel = Kernel::MatvecNorm;
        self.run_shaped(
            key,
            Some(w.ne),
            &[
                &w.parts[0].buf,
                row.as_ref().unwrap_or(&x.buf),
                &tail.normed.buf,
                tail.res,
                &tail.weight,
                &tail.q8.buf,
                &tail.sums.buf,
            ],
            &Params::dense(cols, rows, 1).for_part(&w.parts[0]),
            rows.div_ceil(rpw),
        )?;
        Ok(true)
    }

    /// `out[t, rows] = x[t, cols] · Wᵀ`.
    pub(super) fn matmul_into(
        &self,
        w: &WgpuWeight<'_>,
        x: &WgpuBuf,
        t: usize,
        out: &WgpuBuf,
    ) -> Result<()> {
        self.matmul_into_with(w, x, t, out, false)
    }

    /// [`Self::matmul_into`], with f32 operands throughout where `exact` (a product whose
    /// result feeds a discontinuous choice, like the MoE router's).
    pub(super) fn matmul_into_with(
        &self,
        w: &WgpuWeight<'_>,
        x: &WgpuBuf,
        t: usize,
        out: &WgpuBuf,
        exact: bool,
    ) -> Result<()> {
        let (cols, rows) = (w.ne[0], w.rows());
        check_len(x.len, t * cols)?;
        check_len(out.len, t * rows)?;
        self.check_cols(w, cols)?;
        if t > 1 && w.ty == GgmlType::F32 && w.parts.len() == 1 {
            let tiles = rows.div_ceil(TILE.0) * t.div_ceil(TILE.1);
            if let Some(split) = split_values(tiles, cols) {
                return self.matmul_split(w, x, t, out, tiles, split);
            }
        }
        for part in &w.parts {
            let params = Params::dense(cols, rows, t).for_part(part);
            // A decode product may read x's 8-bit copy instead.
            let mut row = None;
            let (key, groups) = if t == 1 {
                let (mut key, rpw) = decode_kernel(Kernel::Matvec, w, rows, w.ne[0], !self.exact);
                row = self.q8_row_of(&mut key, &x.buf, cols);
                (key, part.rows.div_ceil(rpw))
            } else {
                let (kernel, tile) = self.prompt_kernel(Kernel::Matmul, w.ty, exact);
                (
                    KernelKey::typed(kernel, w.ty),
                    part.rows.div_ceil(tile.0) * t.div_ceil(tile.1),
                )
            };
            self.run_shaped(
                key,
                Some(w.ne),
                &[&part.buf, row.as_ref().unwrap_or(&x.buf), &out.buf],
                &params,
                groups,
            )?;
        }
        Ok(())
    }

    /// Where `key` is an integer-dot decode product of one row of `cols` values that a norm
    /// also wrote in 8 bits ([`WgpuBackend::q8_row`]): that copy, with `key` marked to read it
    /// in place of x's values instead of staging them.
    fn q8_row_of(
        &self,
        key: &mut KernelKey,
        x: &wgpu::Buffer,
        cols: usize,
    ) -> Option<wgpu::Buffer> {
        let row = self.q8_row(x, cols).filter(|_| key.q8)?;
        key.q8_row = true;
        key.xq = 0;
        Some(row)
    }

    /// [`Self::matmul_into`] of a one-part weight whose `tiles` prompt tiles are too few to
    /// fill the GPU (the MoE router: 256 rows make a 512-token prompt 32 tiles, on an H100's
    /// 132 SMs), split over slices of the row's values (`split`: values per slice, slices):
    /// `matmul_split` writes one partial product per slice and tile, tiles × slices workgroups,
    /// into a scratch buffer of slices × t × rows values (under 2 · BUSY_WORKGROUPS tiles'
    /// worth, 16 MiB; 7.5 MiB for the router at 512 tokens), and `sum_slices` adds them into
    /// `out` in slice order, for one more launch. Smaller tiles would not do: a 4 × 4-output
    /// thread over 256 × 512 outputs is 8192 threads whatever the tile, and fewer outputs per
    /// thread make the tile loop bound by workgroup-memory reads.
    fn matmul_split(
        &self,
        w: &WgpuWeight<'_>,
        x: &WgpuBuf,
        t: usize,
        out: &WgpuBuf,
        tiles: usize,
        (slice, slices): (usize, usize),
    ) -> Result<()> {
        let (cols, rows) = (w.ne[0], w.rows());
        let n = t * rows;
        let partial = self.scratch(slices * n)?;
        let params = Params {
            per: slice,
            ..Params::dense(cols, rows, t)
        }
        .for_part(&w.parts[0]);
        self.run_shaped(
            KernelKey::typed(Kernel::MatmulSplit, w.ty),
            Some(w.ne),
            &[&w.parts[0].buf, &x.buf, &partial.buf],
            &params,
            tiles * slices,
        )?;
        self.run(
            KernelKey::plain(Kernel::SumSlices),
            &[&partial.buf, &out.buf],
            &[n as u32, slices as u32, 0, 0],
            n.div_ceil(256),
        )
    }

    /// `matmul_into` of `x` with each job's weight. A decoded token's products of weights
    /// that share a block type and row length (and are one buffer each) run as one `matvecs`
    /// dispatch per [`kernels::MAX_JOBS`]: each dispatch costs a launch and a barrier however
    /// few rows it has.
    pub(super) fn matmuls_into(
        &self,
        x: &WgpuBuf,
        t: usize,
        jobs: &[(&WgpuWeight<'_>, &WgpuBuf)],
    ) -> Result<()> {
        let fusable = |a: &WgpuWeight<'_>, b: &WgpuWeight<'_>| t == 1 && a.fuses_with(b);
        let mut done = vec![false; jobs.len()];
        for i in 0..jobs.len() {
            if done[i] {
                continue;
            }
            let batch: Vec<_> = (i..jobs.len())
                .filter(|&k| !done[k] && fusable(jobs[i].0, jobs[k].0))
                .take(self.max_fused_jobs())
                .collect();
            match batch.as_slice() {
                [] | [_] => {
                    done[i] = true;
                    self.matmul_into(jobs[i].0, x, t, jobs[i].1)?;
                }
                _ => {
                    batch.iter().for_each(|&k| done[k] = true);
                    let fused: Vec<_> = batch.iter().map(|&k| jobs[k]).collect();
                    self.matvecs(Inputs::Shared(x), &fused, None)?;
                }
            }
        }
        Ok(())
    }

    /// Products one `matvecs` dispatch may hold on this adapter: x and a weight and an output
    /// per product must fit its storage bindings.
    fn max_fused_jobs(&self) -> usize {
        let bindings = self.ctx.limits.max_storage_buffers_per_shader_stage as usize;
        (bindings.saturating_sub(1) / 2).min(kernels::MAX_JOBS)
    }

    /// Whether a decoded token's gated RMSNorm of `dims`' heads can be staged by the product
    /// with `w` ([`Self::gated_norm_matvec`]): integer dot products over one buffer of rows as
    /// long as the heads, whole vec4s per head, heads a workgroup holds.
    pub(super) fn gated_norm_fits(&self, w: &WgpuWeight<'_>, dims: KdaDims) -> bool {
        !self.exact
            && kernels::q8_dots(w.ty, w.ne[0])
            && w.parts.len() == 1
            && w.ne[0] == dims.width()
            && dims.head_dim.is_multiple_of(4)
            && dims.heads <= kernels::GATED_NORM_MAX_HEADS
    }

    /// The f32 values of a per-head norm weight (`gated_rms_norm`'s), checked against the head.
    pub(super) fn head_norm_values(
        &self,
        norm: &WgpuWeight<'_>,
        dims: KdaDims,
    ) -> Result<wgpu::Buffer> {
        if norm.n_elements() < dims.head_dim {
            return Err(norm.shape_error(format!("at least {} values", dims.head_dim)));
        }
        self.values(norm)
    }

    /// One token's gated RMSNorm of `o` (per head: `norm ⊙ o / sqrt(mean(o²) + eps) ⊙
    /// sigmoid(gate)`) times `w` into `out`, in one `matvec` whose workgroups stage the normed
    /// values themselves (x_in_gated_norm.wgsl); `o` is left as it was.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gated_norm_matvec(
        &self,
        o: &WgpuBuf,
        gate: &WgpuBuf,
        norm: &WgpuWeight<'_>,
        eps: f32,
        dims: KdaDims,
        w: &WgpuWeight<'_>,
        out: &WgpuBuf,
    ) -> Result<()> {
        let (cols, rows) = (w.ne[0], w.rows());
        check_len(o.len, cols)?;
        check_len(gate.len, cols)?;
        check_len(out.len, rows)?;
        let nv = self.head_norm_values(norm, dims)?;
        let part = &w.parts[0];
        // The head dim and eps ride in fields a plain matvec does not read (see the shader).
        let params = Params {
            per: dims.head_dim,
            mode: eps.to_bits(),
            ..Params::dense(cols, rows, 1)
        }
        .for_part(part);
        let (key, rpw) = decode_kernel(Kernel::MatvecGatedNorm, w, rows, w.ne[0], true);
        self.run_shaped(
            key,
            Some(w.ne),
            &[&part.buf, &o.buf, &out.buf, &gate.buf, &nv],
            &params,
            part.rows.div_ceil(rpw),
        )
    }

    /// One token's products with 2..=MAX_JOBS single-part weights of one type and row length;
    /// where `conv` is given, the first three are stored through its short convolutions.
    pub(super) fn matvecs(
        &self,
        x: Inputs<'_>,
        jobs: &[(&WgpuWeight<'_>, &WgpuBuf)],
        conv: Option<&ConvStores<'_>>,
    ) -> Result<()> {
        let w0 = jobs[0].0;
        let cols = w0.ne[0];
        match x {
            Inputs::Shared(x) => check_len(x.len, cols)?,
            Inputs::PerJob(xs) => {
                if xs.len() != jobs.len() || conv.is_some() {
                    return Err(BackendError::Gpu(format!(
                        "matvecs: {} inputs for {} products",
                        xs.len(),
                        jobs.len()
                    )));
                }
                xs.iter().try_for_each(|x| check_len(x.len, cols))?
            }
        }
        self.check_cols(w0, cols)?;
        let total = jobs.iter().map(|(w, _)| w.rows()).sum();
        let n = jobs.len() as u8;
        let (kernel, q8) = match (&x, conv) {
            // Inputs of their own are read straight from memory, never staged in 8 bits.
            (Inputs::PerJob(_), _) => (Kernel::MatvecsOf(n), false),
            (Inputs::Shared(_), Some(_)) => (Kernel::MatvecsConv(n), !self.exact),
            (Inputs::Shared(_), None) => (Kernel::Matvecs(n), !self.exact),
        };
        let (mut key, rpw) = decode_kernel(kernel, w0, total, cols, q8);
        let row = match x {
            Inputs::Shared(x) => self.q8_row_of(&mut key, &x.buf, cols),
            Inputs::PerJob(_) => None,
        };
        if let Some(c) = conv {
            key.spec |= (c.kw as u64) << 48;
        }
        // cols, jobs, padding, then rows and workgroup ends per job (see `shaders/matvecs.wgsl`).
        let mut params = [0u32; 4 + 2 * kernels::MAX_JOBS];
        params[..2].copy_from_slice(&[cols as u32, jobs.len() as u32]);
        let mut end = 0;
        for (j, (w, y)) in jobs.iter().enumerate() {
            check_len(y.len, w.rows())?;
            end += w.rows().div_ceil(rpw);
            params[4 + j] = w.rows() as u32;
            params[4 + kernels::MAX_JOBS + j] = end as u32;
        }
        let products =
            (jobs.iter().map(|(w, _)| &w.parts[0].buf)).chain(jobs.iter().map(|(_, y)| &y.buf));
        let mut bufs: Vec<&wgpu::Buffer> = match x {
            Inputs::Shared(x) => std::iter::once(row.as_ref().unwrap_or(&x.buf))
                .chain(products)
                .collect(),
            Inputs::PerJob(xs) => products.chain(xs.iter().map(|x| &x.buf)).collect(),
        };
        if let Some(c) = conv {
            bufs.extend(c.taps.iter());
            bufs.extend(c.state.iter().map(|s| &s.buf));
        }
        self.run(key, &bufs, &params, end)
    }

    /// Each job's product of its own input, `out = x · Wᵀ`: a decoded token's products of
    /// weights that share a block type read straight from memory (no 8-bit staging) and a row
    /// length, one buffer each, as one `matvecs` dispatch (a KDA layer's f_b and g_b); any
    /// others one by one.
    pub(super) fn matmuls_of_into(
        &self,
        t: usize,
        jobs: &[(&WgpuWeight<'_>, &WgpuBuf, &WgpuBuf)],
    ) -> Result<()> {
        let w0 = jobs.first().map(|j| j.0);
        let fusable = |w: &WgpuWeight<'_>| {
            w0.is_some_and(|w0| w.fuses_with(w0)) && !kernels::q8_dots(w.ty, w.ne[0])
        };
        let bindings = self.ctx.limits.max_storage_buffers_per_shader_stage as usize;
        if t == 1
            && (2..=kernels::MAX_JOBS.min(bindings / 3)).contains(&jobs.len())
            && jobs.iter().all(|(w, _, _)| fusable(w))
        {
            let xs: Vec<&WgpuBuf> = jobs.iter().map(|j| j.1).collect();
            let products: Vec<_> = jobs.iter().map(|&(w, _, y)| (w, y)).collect();
            return self.matvecs(Inputs::PerJob(&xs), &products, None);
        }
        for &(w, x, y) in jobs {
            self.matmul_into(w, x, t, y)?;
        }
        Ok(())
    }

    /// The products of [`SelProduct`]: `y[p * y_stride + r] = W_{sel(p)}[r] · x[p / x_div]`.
    pub(super) fn matmul_sel(
        &self,
        w: &WgpuWeight<'_>,
        s: SelProduct<'_>,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Result<()> {
        if s.per == 0 || !w.rows().is_multiple_of(s.per) {
            return Err(BackendError::Shape {
                name: w.name.to_string(),
                expected: format!("matrices of {} rows", s.per),
                ne: w.ne,
            });
        }
        self.check_cols(w, s.x_stride)?;
        let (mode, heads, ids) = match s.select {
            Select::Ids(b) => (0, 1, b),
            Select::Heads(h) => (1, h as u32, &self.dummy),
        };
        let (key, rpw) = decode_kernel(Kernel::MatmulSel, w, s.per * s.pairs, w.ne[0], !self.exact);
        for part in &w.parts {
            let params = Params::sel(w, &s, mode, heads).for_part(part);
            self.run_shaped(
                key,
                Some(w.ne),
                &[&part.buf, x, y, ids],
                &params,
                s.per.div_ceil(rpw) * s.pairs,
            )?;
        }
        Ok(())
    }

    /// Whether [`Self::matmul_sel_pair`] runs `w` under `s` in one dispatch, with `shared`
    /// riding along where given: one buffer per weight, all of one type and row length, the
    /// pair of one shape, the shared weights `s.per` rows each and one token's pairs only
    /// (`s.pairs ≤ s.x_div`), storage bindings enough (8).
    pub(super) fn sel_pair_fits(
        &self,
        w: [&WgpuWeight<'_>; 2],
        shared: Option<[&WgpuWeight<'_>; 2]>,
        s: &SelProduct<'_>,
    ) -> bool {
        let shared_fits = shared.is_none_or(|sh| {
            sh.iter().all(|m| m.fuses_with(w[0]) && m.rows() == s.per) && s.pairs <= s.x_div
        });
        matches!(s.select, Select::Ids(_))
            && w[0].ne == w[1].ne
            && w[1].fuses_with(w[0])
            && shared_fits
            && self.ctx.limits.max_storage_buffers_per_shader_stage >= 8
    }

    /// The kernel and rows per workgroup of [`Self::matmul_sel_pair`] of `w` with
    /// `shared`'s slot ahead where given (`swiglu_q8`: the kernel that also writes the SwiGLU in
    /// 8 bits).
    fn sel_pair_kernel(
        &self,
        w: &WgpuWeight<'_>,
        shared: bool,
        s: &SelProduct<'_>,
        swiglu_q8: bool,
    ) -> (KernelKey, usize) {
        let kernel = if swiglu_q8 {
            Kernel::MatmulSelPairSwigluQ8
        } else {
            Kernel::MatmulSelPair
        };
        let slots = usize::from(shared) + s.pairs;
        decode_kernel(kernel, w, 2 * s.per * slots, w.ne[0], !self.exact)
    }

    /// Whether [`Self::matmul_sel_pair`] can also write the SwiGLU of its products in 8 bits
    /// for [`Self::moe_down`] of `down` (x_q8_global.wgsl's layout, slot-major): where it fits,
    /// both run on Q4_K's unit-load entries, its workgroups' rows are whole halves of 16-value
    /// groups and its outputs slot-major, and a binding is left for the 8-bit row (9).
    pub(super) fn swiglu_q8_fits(
        &self,
        w: [&WgpuWeight<'_>; 2],
        shared: Option<[&WgpuWeight<'_>; 2]>,
        s: &SelProduct<'_>,
        down: &WgpuWeight<'_>,
    ) -> bool {
        let (key, rpw) = self.sel_pair_kernel(w[0], shared.is_some(), s, true);
        let down_q8 = !self.exact && kernels::q8_dots(down.ty, down.ne[0]);
        self.sel_pair_fits(w, shared, s)
            && kernels::unit_loads(w[0].ty, key.q8)
            && kernels::unit_loads(down.ty, down_q8)
            && down.ne[0] == s.per
            && rpw.is_multiple_of(16)
            && s.per.is_multiple_of(16)
            && s.y_off == 0
            && s.y_stride == s.per
            && self.ctx.limits.max_storage_buffers_per_shader_stage >= 9
    }

    /// [`Self::matmul_sel`] of `x` with two weights of one type and shape under one
    /// `Select::Ids` selection into `y[0]`, `y[1]`: one dispatch where
    /// [`Self::sel_pair_fits`] (a decoded token's expert gate and up), else one each. With
    /// `shared` (which must fit), the shared expert's gate and up of the one token go to
    /// `y[j][s.y_off..]`, ahead of the pairs, which then start `s.y_stride` later. With
    /// `swiglu_q8` (where [`Self::swiglu_q8_fits`]), silu(y[0]) ⊙ y[1] also goes there in 8 bits
    /// for [`Self::moe_down`].
    pub(super) fn matmul_sel_pair(
        &self,
        w: [&WgpuWeight<'_>; 2],
        shared: Option<[&WgpuWeight<'_>; 2]>,
        s: SelProduct<'_>,
        x: &wgpu::Buffer,
        y: [&wgpu::Buffer; 2],
        swiglu_q8: Option<(&WgpuBuf, &WgpuWeight<'_>)>,
    ) -> Result<()> {
        if let Some((_, down)) = swiglu_q8
            && !self.swiglu_q8_fits(w, shared, &s, down)
        {
            return Err(w[0].shape_error(format!(
                "expert gate and up products whose SwiGLU in 8 bits suits {}'s down products",
                down.name
            )));
        }
        let (Select::Ids(ids), true) = (s.select, self.sel_pair_fits(w, shared, &s)) else {
            if let Some(sh) = shared {
                return Err(sh[0].shape_error(format!(
                    "a shared expert's gate and up of the experts' type and shape [{}, {}]",
                    w[0].ne[0], s.per
                )));
            }
            self.matmul_sel(w[0], s, x, y[0])?;
            return self.matmul_sel(w[1], s, x, y[1]);
        };
        if s.per == 0 || !w[0].rows().is_multiple_of(s.per) {
            return Err(w[0].shape_error(format!("matrices of {} rows", s.per)));
        }
        self.check_cols(w[0], s.x_stride)?;
        let lead = usize::from(shared.is_some());
        let (mut key, rpw) = self.sel_pair_kernel(w[0], shared.is_some(), &s, swiglu_q8.is_some());
        // One token's row (pairs within x_div) may be read as a norm wrote it in 8 bits.
        let row = (s.pairs <= s.x_div)
            .then(|| self.q8_row_of(&mut key, x, w[0].ne[0]))
            .flatten();
        let params = [
            w[0].ne[0], s.pairs, s.per, s.x_div, s.x_stride, s.y_stride, s.y_off, lead,
        ]
        .map(|v| v as u32);
        // Without a shared expert, W_2 and W_3 are W_0 and W_1 again (never read).
        let [w2, w3] = shared.unwrap_or(w);
        // The unit-load entry serves a block of rows of both weights in one workgroup.
        let workgroups_per_block = if kernels::unit_loads(w[0].ty, key.q8) {
            1
        } else {
            2
        };
        let mut bufs = vec![
            row.as_ref().unwrap_or(x),
            &w[0].parts[0].buf,
            &w[1].parts[0].buf,
            &w2.parts[0].buf,
            &w3.parts[0].buf,
            y[0],
            y[1],
            ids,
        ];
        if let Some((yq, _)) = swiglu_q8 {
            check_len(yq.len, q8_row_words((lead + s.pairs) * s.per))?;
            bufs.push(&yq.buf);
        }
        self.run_shaped(
            key,
            Some(w[0].ne),
            &bufs,
            &params,
            workgroups_per_block * s.per.div_ceil(rpw) * (lead + s.pairs),
        )
    }

    /// Whether [`Self::moe_down`] can run the down products of `pairs` chosen experts
    /// (`down` stacking their matrices, [cols, rows, experts]) and the shared expert's: weights
    /// of one type with a WGSL decoder and one row length, one buffer each, at most
    /// Q8_MAX_COLS activations in all (what a workgroup stages), storage bindings enough (7).
    pub(super) fn moe_down_fits(
        &self,
        down: &WgpuWeight<'_>,
        shared: &WgpuWeight<'_>,
        pairs: usize,
    ) -> bool {
        let cols = down.ne[0];
        down.fuses_with(shared)
            && shared.rows() == down.ne[1]
            && kernels::SUPPORTED.contains(&down.ty)
            && (pairs + 1) * cols <= kernels::Q8_MAX_COLS
            && self.ctx.limits.max_storage_buffers_per_shader_stage >= 7
    }

    /// A decoded token's MoE SwiGLUs, down products and their weighted sum (where
    /// [`Self::moe_down_fits`]): `out[r] = shared[r] · a[0] + Σ_k wts[k] · down_{ids[k]}[r] ·
    /// a[k + 1]`, a = silu(gate) ⊙ up over `pairs + 1` rows (the shared expert's, then the
    /// chosen experts' in slot order). Each `moe_down` workgroup serves a few output rows for
    /// all the products: no per-expert outputs, no combine pass. On integer dot products it
    /// stages the SwiGLU itself (one dispatch) or reads it in 8 bits from `a_q8` (as
    /// [`Self::matmul_sel_pair`] wrote it there), else `swiglu` runs first (two).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn moe_down(
        &self,
        down: &WgpuWeight<'_>,
        shared: &WgpuWeight<'_>,
        pairs: usize,
        [gate, up]: [&WgpuBuf; 2],
        a_q8: Option<&WgpuBuf>,
        ids: &wgpu::Buffer,
        wts: &wgpu::Buffer,
        out: &WgpuBuf,
    ) -> Result<()> {
        let (cols, rows) = (down.ne[0], down.ne[1]);
        if !self.moe_down_fits(down, shared, pairs) {
            return Err(down.shape_error(format!(
                "{pairs} experts' and a shared expert's down matrices of one type, one buffer \
                 each, [{cols}, {rows}]"
            )));
        }
        let n = (pairs + 1) * cols;
        check_len(out.len, rows)?;
        check_len(gate.len, n)?;
        check_len(up.len, n)?;
        self.check_cols(down, cols)?;
        let q8 = !self.exact && kernels::q8_dots(down.ty, cols);
        let a = match a_q8 {
            Some(a) if q8 && kernels::unit_loads(down.ty, q8) => {
                check_len(a.len, q8_row_words(n))?;
                a
            }
            Some(_) => {
                return Err(down.shape_error(
                    "Q4_K down products on integer dot products for an 8-bit SwiGLU".into(),
                ));
            }
            None => gate,
        };
        let mut bufs = vec![
            &a.buf,
            &down.parts[0].buf,
            &shared.parts[0].buf,
            &out.buf,
            ids,
            wts,
        ];
        let kernel = if a_q8.is_some() {
            Kernel::MoeDown
        } else if q8 {
            bufs.push(&up.buf);
            Kernel::MoeDownSwiglu
        } else {
            self.swiglu_bufs(&gate.buf, &up.buf, n)?;
            Kernel::MoeDown
        };
        let (mut key, rpw) = decode_kernel(kernel, down, rows, n, q8);
        key.q8_row = a_q8.is_some();
        self.run_shaped(
            key,
            Some(down.ne),
            &bufs,
            &[cols as u32, pairs as u32, rows as u32, 0],
            rows.div_ceil(rpw),
        )
    }

    /// The products of a prompt's MoE: [`SelProduct`] with `Select::Ids`, computed expert by
    /// expert over the pairs routed to it (`groups` as `moe_group` writes it, each expert's
    /// span also in the uniform `starts`), so that each expert's rows are read once per 64
    /// pairs instead of once per pair. `None` when a weight part splits an expert's matrix (the
    /// caller then uses [`Self::matmul_sel`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn matmul_grouped(
        &self,
        w: &WgpuWeight<'_>,
        s: &SelProduct<'_>,
        groups: &wgpu::Buffer,
        starts: &wgpu::Buffer,
        n_expert: usize,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Result<Option<()>> {
        let whole = |p: &Part| p.row0.is_multiple_of(s.per) && p.rows.is_multiple_of(s.per);
        if s.per == 0 || !w.parts.iter().all(whole) {
            return Ok(None);
        }
        self.check_cols(w, s.x_stride)?;
        let (kernel, (tile_rows, _)) = self.prompt_kernel(Kernel::MatmulGrouped, w.ty, false);
        for part in &w.parts {
            let params = Params::sel(w, s, 0, n_expert as u32).for_part(part);
            self.run_shaped(
                KernelKey::typed(kernel, w.ty),
                Some(w.ne),
                &[&part.buf, x, y, groups, starts],
                &params,
                n_expert * s.per.div_ceil(tile_rows),
            )?;
        }
        Ok(Some(()))
    }

    /// `gate ← silu(gate) ⊙ up` over n values.
    pub(super) fn swiglu_bufs(
        &self,
        gate: &wgpu::Buffer,
        up: &wgpu::Buffer,
        n: usize,
    ) -> Result<()> {
        self.run(
            KernelKey::plain(Kernel::Swiglu),
            &[up, gate],
            &[n as u32, 0, 0, 0],
            n.div_ceil(256),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The router (256 rows of 2304 values) at 512 tokens is 32 tiles: 15 slices of 160
    /// values make it 480 workgroups; a few tokens' 4 tiles take the shortest slices; from
    /// 512 tiles on, or with values for one slice only, nothing splits.
    #[test]
    fn few_tiles_split_their_values() {
        assert_eq!(split_values(32, 2304), Some((160, 15)));
        assert_eq!(split_values(4, 2304), Some((128, 18)));
        assert_eq!(split_values(256, 2304), Some((1152, 2)));
        assert_eq!(split_values(512, 2304), None);
        assert_eq!(split_values(1, 68), None);
    }

    /// The router's decode product spreads each row over a whole workgroup (256 workgroups);
    /// a tall F32 matrix and quantized weights keep at most 64 lanes a row.
    #[test]
    fn few_float_rows_get_a_workgroup_each() {
        assert_eq!(threads_per_row(GgmlType::F32, 2304, 256), MV_WG);
        assert_eq!(threads_per_row(GgmlType::F32, 2304, 16_392), 64);
        assert_eq!(threads_per_row(GgmlType::Q8_0, 2304, 256), 64);
        assert_eq!(threads_per_row(GgmlType::F32, 64, 256), 8);
    }
}
