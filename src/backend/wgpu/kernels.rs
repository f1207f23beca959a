//! The kernel table: for every kernel its WGSL file, entry point and bindings, and a cache of
//! compiled pipelines keyed by kernel, weight block type and specialisation (ratchet's kernel
//! key → pipeline). Kernels that read a weight get `common.wgsl` and the block type's decoder
//! (`shaders/quant/<type>.wgsl`) prepended; layouts come from the shader itself.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::super::{BackendError, Result};
use super::matmul::COOP_TILE;
use crate::quant::GgmlType;

const COMMON: &str = include_str!("../../../shaders/common.wgsl");
const WORDS_U32: &str = include_str!("../../../shaders/words_u32.wgsl");
const WORDS_VEC4: &str = include_str!("../../../shaders/words_vec4.wgsl");
const X_F32: &str = include_str!("../../../shaders/x_f32.wgsl");
const X_Q8: &str = include_str!("../../../shaders/x_q8.wgsl");
const X_Q8_GLOBAL: &str = include_str!("../../../shaders/x_q8_global.wgsl");
const Q8_HALF: &str = include_str!("../../../shaders/q8_half.wgsl");
const UNIT_X: &str = include_str!("../../../shaders/unit_x.wgsl");
const X_IN: &str = include_str!("../../../shaders/x_in.wgsl");
const X_IN_SWIGLU: &str = include_str!("../../../shaders/x_in_swiglu.wgsl");
const X_IN_GATED_NORM: &str = include_str!("../../../shaders/x_in_gated_norm.wgsl");
const MATMUL: &str = include_str!("../../../shaders/matmul.wgsl");
const MATVEC: &str = include_str!("../../../shaders/matvec.wgsl");
const MATVEC_STORE: &str = include_str!("../../../shaders/matvec_store.wgsl");
const ADD_NORM_ROWS: &str = include_str!("../../../shaders/add_norm_rows.wgsl");
const MATMUL_COOP: &str = include_str!("../../../shaders/matmul_coop.wgsl");
const MATMUL_IO: &str = include_str!("../../../shaders/matmul_io.wgsl");
const MATMUL_TILES: &str = include_str!("../../../shaders/matmul_tiles.wgsl");
const ROWS_DOT: &str = include_str!("../../../shaders/rows_dot.wgsl");
const DECODE_REDUCE: &str = include_str!("../../../shaders/decode_reduce.wgsl");
const MATVECS: &str = include_str!("../../../shaders/matvecs.wgsl");
const MATVECS_CONV: &str = include_str!("../../../shaders/matvecs_conv.wgsl");
const MATMUL_SEL_PAIR_IO: &str = include_str!("../../../shaders/matmul_sel_pair_io.wgsl");
const MATMUL_SEL_PAIR: &str = include_str!("../../../shaders/matmul_sel_pair.wgsl");
const MATMUL_SEL_PAIR_UNITS: &str = include_str!("../../../shaders/matmul_sel_pair_units.wgsl");
const MATMUL_SEL_PAIR_PLAIN: &str = include_str!("../../../shaders/matmul_sel_pair_plain.wgsl");
const MATMUL_SEL_PAIR_SWIGLU_Q8: &str =
    include_str!("../../../shaders/matmul_sel_pair_swiglu_q8.wgsl");
const MOE_DOWN_IO: &str = include_str!("../../../shaders/moe_down_io.wgsl");
const MOE_DOWN: &str = include_str!("../../../shaders/moe_down.wgsl");
const MOE_DOWN_UNITS: &str = include_str!("../../../shaders/moe_down_units.wgsl");
const EMBED: &str = include_str!("../../../shaders/embed.wgsl");
const ELEMENTWISE: &str = include_str!("../../../shaders/elementwise.wgsl");
const KDA_CONV: &str = include_str!("../../../shaders/kda_conv.wgsl");
const KDA_SCAN: &str = include_str!("../../../shaders/kda_scan.wgsl");
const KDA_GATES: &str = include_str!("../../../shaders/kda_gates.wgsl");
const KDA_STEP: &str = include_str!("../../../shaders/kda_step.wgsl");
const KDA_UP: &str = include_str!("../../../shaders/kda_up.wgsl");
const MLA: &str = include_str!("../../../shaders/mla.wgsl");
const MLA_SCORES_PLAIN: &str = include_str!("../../../shaders/mla_scores_plain.wgsl");
const MLA_FLASH_COOP: &str = include_str!("../../../shaders/mla_flash_coop.wgsl");
const F16_OPERANDS: &str = include_str!("../../../shaders/f16_operands.wgsl");
const MOE: &str = include_str!("../../../shaders/moe.wgsl");
const BANDWIDTH: &str = include_str!("../../../shaders/bandwidth.wgsl");
const REDUCE_SUBGROUP: &str = include_str!("../../../shaders/reduce_subgroup.wgsl");
const REDUCE_WORKGROUP: &str = include_str!("../../../shaders/reduce_workgroup.wgsl");
const MOE_CHOOSE_SUBGROUP: &str = include_str!("../../../shaders/moe_choose_subgroup.wgsl");
const MOE_CHOOSE_WORKGROUP: &str = include_str!("../../../shaders/moe_choose_workgroup.wgsl");
const KDA_SUM_SUBGROUP: &str = include_str!("../../../shaders/kda_sum_subgroup.wgsl");
const KDA_SUM_WORKGROUP: &str = include_str!("../../../shaders/kda_sum_workgroup.wgsl");

/// The block types with WGSL decoders.
pub const SUPPORTED: [GgmlType; 12] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

fn decoder(ty: GgmlType) -> Option<&'static str> {
    Some(match ty {
        GgmlType::F32 => include_str!("../../../shaders/quant/f32.wgsl"),
        GgmlType::F16 => include_str!("../../../shaders/quant/f16.wgsl"),
        GgmlType::BF16 => include_str!("../../../shaders/quant/bf16.wgsl"),
        GgmlType::Q8_0 => include_str!("../../../shaders/quant/q8_0.wgsl"),
        GgmlType::Q4_0 => include_str!("../../../shaders/quant/q4_0.wgsl"),
        GgmlType::Q5_0 => include_str!("../../../shaders/quant/q5_0.wgsl"),
        GgmlType::Q5_1 => include_str!("../../../shaders/quant/q5_1.wgsl"),
        GgmlType::Q2_K => include_str!("../../../shaders/quant/q2_k.wgsl"),
        GgmlType::Q3_K => include_str!("../../../shaders/quant/q3_k.wgsl"),
        GgmlType::Q4_K => include_str!("../../../shaders/quant/q4_k.wgsl"),
        GgmlType::Q5_K => include_str!("../../../shaders/quant/q5_k.wgsl"),
        GgmlType::Q6_K => include_str!("../../../shaders/quant/q6_k.wgsl"),
        _ => return None,
    })
}

/// The decode products' `rows_dot` for `ty` (its dot file): a type's own where it has one, else
/// the generic one over `part_values`; on integer dot products against 8-bit activations
/// (`q8`, see [`q8_dots`]) where the type has them (Q6_K's and Q3_K's through the walk over
/// part pairs they share, dot/part_pairs_q8.wgsl).
fn dot_source(ty: GgmlType, q8: bool) -> String {
    let pairs = |own: &str| {
        format!(
            "{own}\n{}",
            include_str!("../../../shaders/quant/dot/part_pairs_q8.wgsl")
        )
    };
    match (ty, q8) {
        (GgmlType::Q4_K, true) => include_str!("../../../shaders/quant/dot/q4_k_q8.wgsl").into(),
        (GgmlType::Q4_K, false) => include_str!("../../../shaders/quant/dot/q4_k.wgsl").into(),
        (GgmlType::Q6_K, true) => pairs(include_str!("../../../shaders/quant/dot/q6_k_q8.wgsl")),
        (GgmlType::Q3_K, true) => pairs(include_str!("../../../shaders/quant/dot/q3_k_q8.wgsl")),
        _ => include_str!("../../../shaders/quant/dot/generic.wgsl").into(),
    }
}

/// The cooperative-matrix products' weight values in f16 (`part_values_f16`): a type's own,
/// made from its integers without conversions (bytes.wgsl), where it has one, else the generic
/// one over `part_values`.
fn half_parts_source(ty: GgmlType) -> String {
    let own = match ty {
        GgmlType::Q4_K => include_str!("../../../shaders/quant/half/q4_k.wgsl"),
        GgmlType::Q6_K => include_str!("../../../shaders/quant/half/q6_k.wgsl"),
        GgmlType::Q3_K => include_str!("../../../shaders/quant/half/q3_k.wgsl"),
        GgmlType::Q8_0 => include_str!("../../../shaders/quant/half/q8_0.wgsl"),
        _ => return include_str!("../../../shaders/quant/half/generic.wgsl").to_string(),
    };
    format!(
        "{}\n{own}",
        include_str!("../../../shaders/quant/half/bytes.wgsl")
    )
}

/// What a cooperative-matrix product includes for weights of `ty` (decoder `dec`): the word
/// and byte helpers, the decoder, and its f16 values (`part_values_f16`).
fn half_weight_source(ty: GgmlType, dec: &str) -> String {
    format!("{}\n{dec}\n{}", weight_helpers(ty), half_parts_source(ty))
}

/// Longest rows whose activations the integer dot products stage in workgroup memory (XQ_MAX
/// in x_q8.wgsl).
pub const Q8_MAX_COLS: usize = 9216;

/// The XQ_MAX a kernel staging `values` activations per workgroup is built with: that many
/// rounded up to 256, so that the few row lengths of a model share pipelines. Workgroup memory
/// sized for the longest row (13.5 KiB) where a 2304-value row needs 3.4 KiB made the 48B's
/// H100 decode 2.4% slower (tg128 223.9-224.5 against 229.4-229.6 tok/s sized per row).
pub fn staging_for(values: usize) -> u32 {
    values.next_multiple_of(256).min(Q8_MAX_COLS) as u32
}

/// Whether decode products of `ty` rows of `cols` values can run on integer dot products
/// against 8-bit activations (x_q8.wgsl), as ggml's quantized dot products do.
pub fn q8_dots(ty: GgmlType, cols: usize) -> bool {
    matches!(ty, GgmlType::Q4_K | GgmlType::Q6_K | GgmlType::Q3_K) && cols <= Q8_MAX_COLS
}

/// What the decode products' 8-bit staging reads as the activations (`x_at` in x_q8.wgsl).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum XIn {
    /// x itself (x_in.wgsl).
    #[default]
    Plain,
    /// silu(x) ⊙ x_up (x_in_swiglu.wgsl, a decoded token's `moe_down`).
    Swiglu,
    /// The gated RMSNorm of x per head (x_in_gated_norm.wgsl, a decoded token's KDA output
    /// projection).
    GatedNorm,
    /// Nothing staged: x holds the row in 8 bits already (x_q8_global.wgsl; see
    /// [`KernelKey::q8_row`]).
    Global,
}

/// How the decode products' workgroups stage their activation row: `staging` of them in
/// 8-bit integers for integer dot products (of what `x_in` says; see
/// [`KernelKey::staging`]), or not at all.
fn x_stage(staging: Option<u32>, x_in: XIn) -> String {
    let Some(xq) = staging else {
        return X_F32.to_string();
    };
    let x_at = match x_in {
        XIn::Plain => X_IN,
        XIn::Swiglu => X_IN_SWIGLU,
        XIn::GatedNorm => X_IN_GATED_NORM,
        XIn::Global => return format!("{UNIT_X}\n{X_Q8_GLOBAL}"),
    };
    let default = format!("const XQ_MAX: u32 = {Q8_MAX_COLS}u;");
    debug_assert!(X_Q8.contains(&default), "x_q8.wgsl has no XQ_MAX to size");
    let x_q8 = X_Q8.replace(&default, &format!("const XQ_MAX: u32 = {xq}u;"));
    format!("{UNIT_X}\n{x_q8}\n{x_at}")
}

/// Most heads whose norms a `MatvecGatedNorm` workgroup holds (GN_MAX_HEADS in
/// x_in_gated_norm.wgsl).
pub const GATED_NORM_MAX_HEADS: usize = 256;

/// Whether `ty`'s blocks are whole quads (16 bytes), so that kernels bind its weights as
/// `array<vec4<u32>>` and read 16 bytes in one load (words_vec4.wgsl). A weight part's buffer
/// holds whole rows, so its size is then a multiple of 16 too.
fn quad_blocks(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_K | GgmlType::Q5_K)
}

/// The word access helpers for `ty`'s blocks, then the byte helpers every decoder uses.
fn weight_helpers(ty: GgmlType) -> String {
    let words = if quad_blocks(ty) {
        WORDS_VEC4
    } else {
        WORDS_U32
    };
    format!("{words}\n{COMMON}")
}

/// `src` with its weight binding `w` declared for `ty`'s blocks (see [`quad_blocks`]).
fn bind_weight(src: String, ty: GgmlType) -> String {
    if quad_blocks(ty) {
        src.replace(
            "var<storage, read> w: array<u32>;",
            "var<storage, read> w: array<vec4<u32>>;",
        )
    } else {
        src
    }
}

/// Whether the several-weight decode kernels take their entries that issue every weight's
/// loads before the first multiply (`moe_down_units.wgsl`, `matmul_sel_pair_units.wgsl`):
/// for the types whose dot file has `unit_load`, `unit_x` and `unit_mul` (Q4_K's integer dot
/// products).
pub fn unit_loads(ty: GgmlType, q8: bool) -> bool {
    ty == GgmlType::Q4_K && q8
}

/// Whether `ty`'s `rows_dot` loads UN units per lane before its first multiply (the host
/// then picks UN).
pub fn loads_ahead(ty: GgmlType) -> bool {
    ty == GgmlType::Q4_K
}

/// Values one `part_dot` call of `ty` covers (PD in its dot file).
pub fn dot_values(ty: GgmlType) -> usize {
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 4,
        _ => 32,
    }
}

/// Values per decoded unit of a row: rows must be a multiple of it. Float rows are decoded 4
/// values at a time, so their length need only be a multiple of 4.
pub fn row_quantum(ty: GgmlType) -> usize {
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 4,
        _ => ty.block_size(),
    }
}

/// Most products one `matvecs` dispatch computes (its Params hold 8 jobs).
pub const MAX_JOBS: usize = 8;

/// `matvecs` bindings in the order the host passes buffers: x, w0.., y0.. (the uniform is 1),
/// then, for `MatvecsConv`, the three streams' taps and states (see [`fused_source`]): a kernel
/// of n jobs takes the first 1 + 2n entries, or 1 + 2n + 6.
static MATVECS_STORAGE: [u32; 1 + 2 * MAX_JOBS + 6] = [
    0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
];

/// `MatvecsOf(n)` bindings: w0.., y0.. as `matvecs` for its n jobs, then each job's input
/// (see [`fused_source`]); the shared x is not read.
static MATVECS_OF_STORAGE: [u32; 3 * MAX_JOBS] = [
    2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Matmul,
    /// `Matmul` in partial products over slices of the row's values, summed by `SumSlices`.
    MatmulSplit,
    MatmulGrouped,
    /// `Matmul` and `MatmulGrouped` on cooperative matrices (`Context::coop_matrix`).
    MatmulCoop,
    MatmulGroupedCoop,
    Matvec,
    /// `Matvec` followed by the residual add and the next norm but its scale
    /// (add_norm_rows.wgsl).
    MatvecNorm,
    /// `Matvec` on integer dot products staging the gated RMSNorm of its input (a decoded
    /// token's KDA output projection, x_in_gated_norm.wgsl).
    MatvecGatedNorm,
    /// Decode products of one input with this many weights (2..=MAX_JOBS).
    Matvecs(u8),
    /// `Matvecs` where each product reads its own input (a KDA layer's f_b and g_b products).
    MatvecsOf(u8),
    /// `Matvecs` whose first three products (a KDA layer's q, k, v) are stored through the
    /// short convolution (`shaders/matvecs_conv.wgsl`).
    MatvecsConv(u8),
    /// `MatmulSel` of two weights (the MoE's expert gate and up).
    MatmulSelPair,
    /// `MatmulSelPair` on integer dot products that also writes the SwiGLU of its products in
    /// 8 bits (matmul_sel_pair_swiglu_q8.wgsl), for `MoeDown` with [`KernelKey::q8_row`].
    MatmulSelPairSwigluQ8,
    MatmulSel,
    Embed,
    RmsNorm,
    AddRmsNorm,
    GatedRmsNorm,
    Swiglu,
    /// Two SwiGLUs in one dispatch (routed and shared expert).
    SwigluPair,
    Add,
    /// The sum of a split product's slices (`MatmulSplit`).
    SumSlices,
    Argmax,
    /// The two dispatches of a long row's argmax.
    ArgmaxPart,
    ArgmaxMerge,
    ShortConv,
    KdaScan,
    /// A decoded token's KDA up-projections, delta rule and gated norm, a workgroup per head
    /// (kda_step.wgsl), typed by the up-projections' weights.
    KdaStep,
    MlaAppend,
    MlaAttend,
    MlaCombine,
    /// A prompt's MLA attention, tiles of queries against tiles of cached rows.
    MlaFlash,
    /// `MlaFlash` with the scores on cooperative matrices (`Context::coop_matrix`).
    MlaFlashCoop,
    MoeRoute,
    /// A decoded token's F32 router product and `MoeRoute` in one dispatch.
    MoeRouterRoute,
    MoeCombine,
    MoeGroup,
    /// A decoded token's expert and shared down products with their weighted sum.
    MoeDown,
    /// `MoeDown` on integer dot products, staging the SwiGLU of the gate and up products.
    MoeDownSwiglu,
    CopyVec4,
    /// A row's norm scale applied where its producer left it out, for a reader that cannot
    /// (elementwise.wgsl).
    NormSettle,
}

/// Where a kernel lives and what it binds.
struct Def {
    source: &'static str,
    entry: &'static str,
    /// Reads a weight through a block decoder.
    typed: bool,
    /// Multiplies a weight with activations (gets the type's `part_dot`).
    product: bool,
    /// The `override` constants that [`KernelKey::spec`] sets, 16 bits each from the low end.
    spec: &'static [&'static str],
    /// Storage bindings in the order the host passes buffers.
    storage: &'static [u32],
    uniform: u32,
}

impl Kernel {
    fn def(self) -> Def {
        let d = |source, entry, typed, storage, uniform| Def {
            source,
            entry,
            typed,
            product: source == MATMUL || source == MATVEC,
            spec: match entry {
                "matvec" | "matmul_sel" | "matvecs" | "matmul_sel_pair" => &["TPR", "RT", "UN"],
                "moe_down" => &["TPR", "RT", "UN", "SPLIT"],
                "kda_scan" => &["D"],
                "kda_step" => &["D", "RANK"],
                "mla_attend" => &["HG"],
                "short_conv" => &["KW"],
                _ => &[],
            },
            storage,
            uniform,
        };
        match self {
            Kernel::Matmul => d(MATMUL, "matmul", true, &[0, 1, 2], 3),
            Kernel::MatmulSplit => d(MATMUL, "matmul_split", true, &[0, 1, 2], 3),
            Kernel::Matvec => d(MATVEC, "matvec", true, &[0, 1, 2], 3),
            // Then the residual, the norm's weight, the 8-bit row and the sums of squares.
            Kernel::MatvecNorm => d(MATVEC, "matvec", true, &[0, 1, 2, 32, 33, 34, 35], 3),
            Kernel::MatvecGatedNorm => d(MATVEC, "matvec", true, &[0, 1, 2, 6, 7], 3),
            Kernel::Matvecs(n) => d(
                MATVECS,
                "matvecs",
                true,
                &MATVECS_STORAGE[..1 + 2 * n as usize],
                1,
            ),
            Kernel::MatvecsOf(n) => d(
                MATVECS,
                "matvecs",
                true,
                &MATVECS_OF_STORAGE[..3 * n as usize],
                1,
            ),
            Kernel::MatvecsConv(n) => Def {
                spec: &["TPR", "RT", "UN", "KW"],
                ..d(
                    MATVECS,
                    "matvecs",
                    true,
                    &MATVECS_STORAGE[..1 + 2 * n as usize + 6],
                    1,
                )
            },
            // x, w0, w1, w2, w3 (the shared expert's gate and up), y0, y1, ids.
            Kernel::MatmulSelPair => d(
                MATMUL_SEL_PAIR,
                "matmul_sel_pair",
                true,
                &[0, 2, 3, 4, 5, 6, 7, 31],
                1,
            ),
            // The same and the 8-bit SwiGLU row.
            Kernel::MatmulSelPairSwigluQ8 => d(
                MATMUL_SEL_PAIR,
                "matmul_sel_pair",
                true,
                &[0, 2, 3, 4, 5, 6, 7, 31, 8],
                1,
            ),
            Kernel::MatmulGrouped => d(MATMUL, "matmul_grouped", true, &[0, 1, 2, 4, 5], 3),
            Kernel::MatmulCoop => d(MATMUL_COOP, "matmul_coop", true, &[0, 1, 2], 3),
            Kernel::MatmulGroupedCoop => d(
                MATMUL_COOP,
                "matmul_grouped_coop",
                true,
                &[0, 1, 2, 4, 5],
                3,
            ),
            Kernel::MatmulSel => d(MATVEC, "matmul_sel", true, &[0, 1, 2, 4], 3),
            Kernel::Embed => d(EMBED, "embed", true, &[0, 1, 2], 3),
            // The 8-bit row (5) is the dummy where p.extra is 0.
            Kernel::RmsNorm => d(ELEMENTWISE, "rms_norm", false, &[0, 1, 2, 5], 3),
            Kernel::AddRmsNorm => d(ELEMENTWISE, "add_rms_norm", false, &[0, 1, 2, 4, 5], 3),
            Kernel::GatedRmsNorm => d(ELEMENTWISE, "gated_rms_norm", false, &[0, 1, 2], 3),
            Kernel::Swiglu => d(ELEMENTWISE, "swiglu", false, &[0, 2], 3),
            Kernel::SwigluPair => d(ELEMENTWISE, "swiglu_pair", false, &[0, 1, 2, 4], 3),
            Kernel::Add => d(ELEMENTWISE, "add", false, &[0, 2], 3),
            Kernel::SumSlices => d(ELEMENTWISE, "sum_slices", false, &[0, 2], 3),
            Kernel::Argmax => d(ELEMENTWISE, "argmax", false, &[0, 2], 3),
            Kernel::ArgmaxPart => d(ELEMENTWISE, "argmax_part", false, &[0, 2], 3),
            Kernel::ArgmaxMerge => d(ELEMENTWISE, "argmax_merge", false, &[0, 2], 3),
            Kernel::ShortConv => d(
                KDA_CONV,
                "short_conv",
                false,
                &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
                12,
            ),
            Kernel::KdaScan => d(KDA_SCAN, "kda_scan", false, &[0, 1, 2, 3, 4, 5, 6, 8, 9], 7),
            // q, k, v, β, state, o, dt_bias, a, norm, f_low, g_low, f_b, g_b, the 8-bit row.
            Kernel::KdaStep => d(
                KDA_STEP,
                "kda_step",
                true,
                &[0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14],
                6,
            ),
            Kernel::MlaAppend => d(MLA, "mla_append", false, &[0, 1, 2], 4),
            Kernel::MlaAttend => d(MLA, "mla_attend", false, &[0, 1, 5, 3], 4),
            Kernel::MlaCombine => d(MLA, "mla_combine", false, &[2, 3], 4),
            Kernel::MlaFlash => d(MLA, "mla_flash", false, &[0, 6, 5, 3], 4),
            Kernel::MlaFlashCoop => d(MLA_FLASH_COOP, "mla_flash_coop", false, &[0, 6, 5, 3], 4),
            Kernel::MoeRoute => d(MOE, "moe_route", false, &[0, 1, 2, 3], 4),
            // The same, then x, the router weight and the count of finished workgroups.
            // Then the sums of squares and the 8-bit row of an input whose norm's scale its
            // producer left out (add_norm_rows.wgsl).
            Kernel::MoeRouterRoute => d(
                MOE,
                "moe_router_route",
                false,
                &[0, 1, 2, 3, 8, 9, 10, 11, 12],
                4,
            ),
            Kernel::MoeCombine => d(MOE, "moe_combine", false, &[3, 5, 6], 4),
            Kernel::MoeGroup => d(MOE, "moe_group", false, &[2, 7], 4),
            // a (the activation rows), experts' down, shared down, out, ids, wts.
            Kernel::MoeDown => d(MOE_DOWN, "moe_down", true, &[0, 2, 3, 4, 31, 30], 1),
            // The same with the up products (x_up) last.
            Kernel::MoeDownSwiglu => d(MOE_DOWN, "moe_down", true, &[0, 2, 3, 4, 31, 30, 29], 1),
            Kernel::CopyVec4 => d(BANDWIDTH, "copy_vec4", false, &[0, 1], 2),
            Kernel::NormSettle => d(ELEMENTWISE, "norm_settle", false, &[0, 2, 5], 3),
        }
    }

    pub fn entry(self) -> &'static str {
        self.def().entry
    }
}

/// What a compiled pipeline depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KernelKey {
    pub kernel: Kernel,
    /// The weight block type of typed kernels.
    pub ty: Option<GgmlType>,
    /// The values of the kernel's `override` constants, 16 bits each (KDA head dim; threads
    /// per row group and rows per thread of the decode products), 0 for their defaults.
    pub spec: u64,
    /// Decode products on integer dot products against 8-bit activations ([`q8_dots`]).
    pub q8: bool,
    /// Activations the 8-bit staging of a `q8` kernel holds (x_q8.wgsl's XQ_MAX; see
    /// [`staging_for`]); 0 for the Q8_MAX_COLS default.
    pub xq: u32,
    /// A `q8` kernel reads its activation row in 8 bits from x as its producer wrote it
    /// (x_q8_global.wgsl: a norm's output, a decoded token's SwiGLU) instead of staging it.
    pub q8_row: bool,
}

impl KernelKey {
    pub fn plain(kernel: Kernel) -> Self {
        KernelKey {
            kernel,
            ty: None,
            spec: 0,
            q8: false,
            xq: 0,
            q8_row: false,
        }
    }

    pub fn typed(kernel: Kernel, ty: GgmlType) -> Self {
        KernelKey {
            kernel,
            ty: Some(ty),
            spec: 0,
            q8: false,
            xq: 0,
            q8_row: false,
        }
    }

    /// What a `q8` kernel's staging reads: `otherwise`, or nothing where it reads its row in 8
    /// bits from memory.
    fn x_in(&self, otherwise: XIn) -> XIn {
        if self.q8_row { XIn::Global } else { otherwise }
    }

    /// The activations a `q8` kernel's workgroups stage in 8 bits (XQ_MAX), `None` for kernels
    /// that stage none.
    fn staging(&self) -> Option<u32> {
        self.q8.then_some(if self.xq != 0 {
            self.xq
        } else {
            Q8_MAX_COLS as u32
        })
    }

    /// The profiler's name for the kernel: its entry point's, told apart where variants share
    /// one.
    pub fn label(&self) -> String {
        let name = match self.kernel {
            Kernel::MatmulSelPairSwigluQ8 => "matmul_sel_pair_swiglu_q8",
            Kernel::MatvecNorm => "matvec+norm",
            k => k.entry(),
        };
        match (self.ty, self.q8) {
            (Some(ty), true) if self.q8_row => format!("{name} {ty} q8 row"),
            (Some(ty), true) => format!("{name} {ty} q8"),
            (Some(ty), false) => format!("{name} {ty}"),
            (None, _) => name.to_string(),
        }
    }
}

pub struct Compiled {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub storage: &'static [u32],
    pub uniform: u32,
    /// The places in `storage` of the bindings the kernel may write (read_write).
    pub writes: Vec<usize>,
}

pub struct Pipelines {
    cache: Mutex<HashMap<KernelKey, Arc<Compiled>>>,
    /// The fewest lanes of the device's subgroups where kernels reduce over them (at least
    /// 8), `None` where they reduce through workgroup memory.
    sg: Option<u32>,
}

impl Pipelines {
    /// An empty cache of kernels that reduce over subgroups of at least `sg` lanes (the device
    /// must have `Features::SUBGROUP`), or through workgroup memory where `sg` is `None`.
    pub fn new(sg: Option<u32>) -> Self {
        Pipelines {
            cache: Mutex::default(),
            sg,
        }
    }

    pub fn subgroups(&self) -> bool {
        self.sg.is_some()
    }

    pub fn get(&self, device: &wgpu::Device, key: KernelKey) -> Result<Arc<Compiled>> {
        if let Some(c) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(c.clone());
        }
        let c = Arc::new(compile(device, key, self.sg)?);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, c.clone());
        Ok(c)
    }
}

/// The decode products' row sums (decode_reduce.wgsl) with what they take from the device: the
/// steps below the subgroups' `sg` lanes as subgroup shuffles, or every step through workgroup
/// memory where there are none.
fn decode_reduce(sg: Option<u32>) -> String {
    if let Some(lanes) = sg {
        format!(
            "const SG_ROWS: u32 = {lanes}u;\n\
             fn shuffle_rows(v: vec4<f32>) -> vec4<f32> {{\n    var s = v;\n    \
             for (var step = min(TPR, SG_ROWS) / 2u; step > 0u; step >>= 1u) {{\n        \
             s += subgroupShuffleXor(s, step);\n    }}\n    return s;\n}}\n{DECODE_REDUCE}"
        )
    } else {
        format!(
            "const SG_ROWS: u32 = 1u;\n\
             fn shuffle_rows(v: vec4<f32>) -> vec4<f32> {{\n    return v;\n}}\n{DECODE_REDUCE}"
        )
    }
}

/// What the plain kernels of `src` are assembled with: the workgroup reductions (over subgroups
/// where `subgroups`, else through workgroup memory), the MoE's routing choice and the KDA scan's
/// column sums.
fn reductions(src: &str, subgroups: bool) -> String {
    if src == KDA_SCAN {
        let sum = if subgroups {
            KDA_SUM_SUBGROUP
        } else {
            KDA_SUM_WORKGROUP
        };
        return format!("{sum}\n{KDA_GATES}\n");
    }
    let reduce = if subgroups {
        REDUCE_SUBGROUP
    } else {
        REDUCE_WORKGROUP
    };
    if src == ELEMENTWISE {
        format!("{reduce}\n{Q8_HALF}\n")
    } else if src == MOE {
        let choose = if subgroups {
            MOE_CHOOSE_SUBGROUP
        } else {
            MOE_CHOOSE_WORKGROUP
        };
        format!("{reduce}\n{choose}\n")
    } else {
        String::new()
    }
}

/// The WGSL module of `key`'s kernel, for a device with subgroups of at least `sg` lanes
/// (`None`: reductions through workgroup memory).
fn source(key: KernelKey, def: &Def, sg: Option<u32>) -> Result<String> {
    let mut src = assemble(key, def, sg)?;
    if key.q8_row {
        // x holds 8-bit words and their scales' bits (x_q8_global.wgsl).
        src = src.replace(
            "var<storage, read> x: array<vec4<f32>>;",
            "var<storage, read> x: array<vec4<u32>>;",
        );
    }
    Ok(match key.ty {
        Some(ty) => bind_weight(src, ty),
        None => src,
    })
}

fn assemble(key: KernelKey, def: &Def, sg: Option<u32>) -> Result<String> {
    let typed = |ty| {
        decoder(ty)
            .ok_or_else(|| BackendError::Gpu(format!("{}: no WGSL decoder for {ty}", def.entry)))
    };
    Ok(match (key.kernel, def.typed, key.ty) {
        // The `enable` directives must open the module.
        (Kernel::MlaFlashCoop, false, None) => {
            format!(
                "enable f16;\nenable wgpu_cooperative_matrix;\n{F16_OPERANDS}\n{MLA}\n{MLA_FLASH_COOP}"
            )
        }
        (_, false, None) if def.source == MLA => format!("{MLA}\n{MLA_SCORES_PLAIN}"),
        (Kernel::Matvecs(n), _, Some(ty)) => fused_source(
            ty,
            key.staging(),
            typed(ty)?,
            n.into(),
            MATVECS,
            Fused {
                x_in: key.x_in(XIn::Plain),
                ..Fused::default()
            },
            sg,
        ),
        (Kernel::MatvecsOf(n), _, Some(ty)) => fused_source(
            ty,
            None,
            typed(ty)?,
            n.into(),
            MATVECS,
            Fused {
                own_inputs: true,
                ..Fused::default()
            },
            sg,
        ),
        (Kernel::MatvecsConv(n), _, Some(ty)) => fused_source(
            ty,
            key.staging(),
            typed(ty)?,
            n.into(),
            MATVECS,
            Fused {
                conv: true,
                x_in: key.x_in(XIn::Plain),
                ..Fused::default()
            },
            sg,
        ),
        (Kernel::MatmulSelPair | Kernel::MatmulSelPairSwigluQ8, _, Some(ty)) => {
            let entry = if unit_loads(ty, key.q8) {
                if key.kernel == Kernel::MatmulSelPairSwigluQ8 {
                    format!("{MATMUL_SEL_PAIR_UNITS}\n{MATMUL_SEL_PAIR_SWIGLU_Q8}\n{Q8_HALF}")
                } else {
                    format!("{MATMUL_SEL_PAIR_UNITS}\n{MATMUL_SEL_PAIR_PLAIN}")
                }
            } else if key.kernel == Kernel::MatmulSelPair {
                MATMUL_SEL_PAIR.to_string()
            } else {
                return Err(mismatch(key, def));
            };
            let src = format!("{MATMUL_SEL_PAIR_IO}\n{entry}");
            let fused = Fused {
                x_in: key.x_in(XIn::Plain),
                ..Fused::default()
            };
            fused_source(ty, key.staging(), typed(ty)?, 4, &src, fused, sg)
        }
        (Kernel::MoeDown | Kernel::MoeDownSwiglu, _, Some(ty)) => {
            let entry = if unit_loads(ty, key.q8) {
                MOE_DOWN_UNITS
            } else {
                MOE_DOWN
            };
            let x_in = key.x_in(if key.kernel == Kernel::MoeDownSwiglu {
                XIn::Swiglu
            } else {
                XIn::Plain
            });
            let src = format!("{MOE_DOWN_IO}\n{entry}");
            fused_source(
                ty,
                key.staging(),
                typed(ty)?,
                2,
                &src,
                Fused {
                    x_in,
                    ..Fused::default()
                },
                sg,
            )
        }
        (Kernel::KdaStep, _, Some(ty)) => kda_step_source(ty, typed(ty)?),
        (_, true, Some(ty)) if def.product => format!(
            "{MATMUL_IO}\n{}\n{}\n{}\n{}\n{ROWS_DOT}\n{}\n{}\n{}",
            match (def.source == MATMUL, key.kernel) {
                (true, _) => MATMUL_TILES.to_string(),
                (false, Kernel::MatvecNorm) => format!("{Q8_HALF}\n{ADD_NORM_ROWS}"),
                (false, _) => MATVEC_STORE.to_string(),
            },
            weight_helpers(ty),
            typed(ty)?,
            dot_source(ty, key.q8),
            decode_reduce(sg),
            x_stage(
                key.staging(),
                key.x_in(if key.kernel == Kernel::MatvecGatedNorm {
                    XIn::GatedNorm
                } else {
                    XIn::Plain
                })
            ),
            def.source
        ),
        // The `enable` directives must open the module; the tile shape comes from the host.
        (Kernel::MatmulCoop | Kernel::MatmulGroupedCoop, _, Some(ty)) => format!(
            "enable f16;\nenable wgpu_cooperative_matrix;\nconst TM: u32 = {}u;\nconst TN: u32 = {}u;\n\
             {F16_OPERANDS}\n{MATMUL_IO}\n{MATMUL_TILES}\n{}\n{}",
            COOP_TILE.0,
            COOP_TILE.1,
            half_weight_source(ty, typed(ty)?),
            def.source
        ),
        (_, true, Some(ty)) => format!("{}\n{}\n{}", weight_helpers(ty), typed(ty)?, def.source),
        (_, false, None) => format!("{}{}", reductions(def.source, sg.is_some()), def.source),
        _ => return Err(mismatch(key, def)),
    })
}

/// `kda_step` for up-projection weights of `ty` (decoder `dec`): per weight j a renamed copy of
/// the weight helpers and kda_up.wgsl's `up_dot` (reading `w{j}` and `x{j}`), then the step
/// with its column sums over subgroups (the host runs it only on devices that have them).
fn kda_step_source(ty: GgmlType, dec: &str) -> String {
    let helpers = format!("{}\n{}\n{KDA_UP}", weight_helpers(ty), without_consts(dec));
    let elem = if quad_blocks(ty) { "vec4<u32>" } else { "u32" };
    let mut s = consts(dec);
    for j in 0..2 {
        s += &rename_for_weight(&helpers, j, true);
        s += &format!(
            "@group(0) @binding({}) var<storage, read> w{j}: array<{elem}>;\n",
            12 + j
        );
    }
    format!("{KDA_GATES}\n{Q8_HALF}\n{s}\n{KDA_STEP}")
}

fn mismatch(key: KernelKey, def: &Def) -> BackendError {
    BackendError::Gpu(format!(
        "{}: kernel key {key:?} does not match the kernel",
        def.entry
    ))
}

/// What a several-weight kernel does besides its products ([`fused_source`]).
#[derive(Clone, Copy, Default)]
struct Fused {
    /// What its 8-bit staging reads (see [`x_stage`]).
    x_in: XIn,
    /// Stores jobs 0..3 through the KDA short convolution (matvecs_conv.wgsl).
    conv: bool,
    /// Each job reads its own input, `x{j}` (bound after the outputs), not the shared `x`: for
    /// types whose products read x straight from memory (no staging).
    own_inputs: bool,
}

/// A kernel of several weights (`entry`: `matvecs`, `matmul_sel_pair`, `moe_down`) for `jobs`
/// weights of type `ty` with decoder `dec`: the type's constants once, then per weight a
/// renamed copy of the helpers that read it, reached through `job_dot` and `job_store`, with
/// what `fused` adds.
fn fused_source(
    ty: GgmlType,
    staging: Option<u32>,
    dec: &str,
    jobs: usize,
    entry: &str,
    fused: Fused,
    sg: Option<u32>,
) -> String {
    let dot = dot_source(ty, staging.is_some());
    let helpers = format!(
        "{}\n{}\n{}\n{ROWS_DOT}",
        weight_helpers(ty),
        without_consts(dec),
        without_consts(&dot)
    );
    let elem = if quad_blocks(ty) { "vec4<u32>" } else { "u32" };
    let mut s = consts(dec) + &consts(&dot);
    for j in 0..jobs {
        s += &rename_for_weight(&helpers, j, fused.own_inputs);
        s += &format!(
            "@group(0) @binding({}) var<storage, read> w{j}: array<{elem}>;\n\
             @group(0) @binding({}) var<storage, read_write> y{j}: array<f32>;\n",
            2 + j,
            2 + jobs + j
        );
    }
    let cases = |body: &dyn Fn(usize) -> String| -> String {
        (0..jobs)
            .map(|j| format!("        case {j}u: {{ {} }}\n", body(j)))
            .collect()
    };
    s += &format!(
        "fn job_dot(j: u32, rb: u32, klo: u32, khi: u32, xb0: u32, lane: u32) -> vec4<f32> {{\n    \
         var r = vec4<f32>(0.0);\n    switch j {{\n{}        default: {{}}\n    }}\n    \
         return r;\n}}\n",
        cases(&|j| format!("r = rows_dot_{j}(rb, klo, khi, xb0, lane);"))
    );
    s += &format!(
        "fn job_store(j: u32, i: u32, v: f32) {{\n    switch j {{\n{}        \
         default: {{}}\n    }}\n}}\n",
        cases(&|j| if fused.conv && j < 3 {
            format!("y{j}[i] = conv_step({j}u, i, job_at(p.rows, {j}u), v);")
        } else {
            format!("y{j}[i] = v;")
        })
    );
    if fused.own_inputs {
        for j in 0..jobs {
            s += &format!(
                "@group(0) @binding({}) var<storage, read> x{j}: array<vec4<f32>>;\n",
                2 + 2 * jobs + j
            );
        }
    }
    if fused.conv {
        for st in 0..3 {
            s += &format!(
                "@group(0) @binding({}) var<storage, read> taps{st}: array<f32>;\n\
                 @group(0) @binding({}) var<storage, read_write> conv{st}: array<f32>;\n",
                2 + 2 * jobs + st,
                5 + 2 * jobs + st
            );
        }
        s += MATVECS_CONV;
    }
    format!(
        "{s}{}\n{}\n{entry}",
        decode_reduce(sg),
        x_stage(staging, fused.x_in)
    )
}

/// The `const` lines of `src` (a decoder's or dot file's), for a module that takes them once.
fn consts(src: &str) -> String {
    src.lines()
        .filter(|l| l.starts_with("const "))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn without_consts(src: &str) -> String {
    src.lines()
        .filter(|l| !l.starts_with("const "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// `src` reading weight binding `w{j}` instead of `w` (and input `x{j}` instead of `x` where
/// `input`), with every function it defines (and every call of one) suffixed `_{j}`, so that
/// copies for several weights coexist. Member accesses (`v.w`) and numbers (`4u`) are left
/// alone.
fn rename_for_weight(src: &str, j: usize, input: bool) -> String {
    let fns: Vec<&str> = src
        .lines()
        .filter_map(|l| l.strip_prefix("fn "))
        .filter_map(|l| l.split('(').next())
        .collect();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(src.len() * 2);
    let mut rest = src;
    let mut after_dot = false;
    while let Some(c) = rest.chars().next() {
        if !ident(c) {
            after_dot = c == '.';
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let end = rest.find(|c| !ident(c)).unwrap_or(rest.len());
        let word = &rest[..end];
        if !after_dot && (word == "w" || (input && word == "x")) {
            out += &format!("{word}{j}");
        } else if !after_dot && fns.contains(&word) {
            out += &format!("{word}_{j}");
        } else {
            out += word;
        }
        after_dot = false;
        rest = &rest[end..];
    }
    out
}

/// `key`'s pipeline, for a device with subgroups of at least `sg` lanes (`None`: reductions
/// through workgroup memory).
fn compile(device: &wgpu::Device, key: KernelKey, sg: Option<u32>) -> Result<Compiled> {
    let def = key.kernel.def();
    let source = source(key, &def, sg)?;
    let writes = writable(&source, def.storage);
    let label = key.label();
    let constants: Vec<(&str, f64)> = if key.spec == 0 {
        Vec::new()
    } else {
        def.spec
            .iter()
            .enumerate()
            .map(|(i, &name)| (name, ((key.spec >> (16 * i)) & 0xffff) as f64))
            .filter(|&(_, v)| v != 0.0)
            .collect()
    };
    if let Some(dir) = std::env::var_os("KILN_KERNEL_DUMP") {
        dump(
            Path::new(&dir),
            &label,
            key.spec,
            def.entry,
            &constants,
            &source,
        )?;
    }
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let desc = wgpu::ShaderModuleDescriptor {
        label: Some(&label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    };
    // SAFETY: the checks wgpu would compile in (an index clamp per buffer access, a guard per
    // integer division, a counter per loop) cost the products several times their memory
    // time. Our kernels need none of them: the host checks every buffer against the extent a
    // dispatch touches (`check_len`, the shape checks of each op), never passes a zero divisor
    // (dims and counts are validated non-zero, empty dispatches are skipped), and every loop
    // is bounded by its parameters. Vulkan's robust buffer access stays on underneath.
    let module = unsafe {
        device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
    };
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(&label),
        layout: None,
        module: &module,
        entry_point: Some(def.entry),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants: &constants,
            ..Default::default()
        },
        cache: None,
    });
    if let Some(e) = pollster::block_on(scope.pop()) {
        return Err(BackendError::Gpu(format!("compiling {label}: {e}")));
    }
    let layout = pipeline.get_bind_group_layout(0);
    Ok(Compiled {
        pipeline,
        layout,
        storage: def.storage,
        uniform: def.uniform,
        writes,
    })
}

/// `KILN_KERNEL_DUMP=DIR`: each compiled kernel's WGSL goes to DIR (made if missing), its
/// entry point and `override` constants in leading `// kiln-kernel` lines, for
/// `examples/pipeline_stats.rs`, which asks the driver what the compiled kernels cost in
/// registers (wgpu cannot say).
fn dump(
    dir: &Path,
    label: &str,
    spec: u64,
    entry: &str,
    constants: &[(&str, f64)],
    source: &str,
) -> Result<()> {
    let name: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let mut text = format!("// kiln-kernel label {label}\n// kiln-kernel entry {entry}\n");
    for (k, v) in constants {
        text += &format!("// kiln-kernel constant {k} {v}\n");
    }
    text += source;
    let path = dir.join(format!("{name}_{spec:x}.wgsl"));
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&path, text))
        .map_err(|e| BackendError::Gpu(format!("KILN_KERNEL_DUMP: {}: {e}", path.display())))
}

/// The places in `storage` of the bindings that `source` declares read_write.
fn writable(source: &str, storage: &[u32]) -> Vec<usize> {
    let written: Vec<u32> = source
        .lines()
        .filter(|l| l.contains("var<storage, read_write>"))
        .filter_map(|l| l.split("@binding(").nth(1)?.split(')').next()?.parse().ok())
        .collect();
    (0..storage.len())
        .filter(|&i| written.contains(&storage[i]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dumped kernel names its label, entry point and constants in the lines that
    /// examples/pipeline_stats.rs reads before the source, under a file name of its own per
    /// label and constants.
    #[test]
    fn dump_heads_the_source_with_entry_and_constants() {
        let dir = tempfile::tempdir().unwrap();
        let src = "@compute @workgroup_size(1)\nfn main() {}\n";
        dump(
            dir.path(),
            "matvec Q4_K q8",
            0x10002,
            "matvec",
            &[("TPR", 2.0), ("RT", 1.0)],
            src,
        )
        .unwrap();
        let text = std::fs::read_to_string(dir.path().join("matvec_Q4_K_q8_10002.wgsl")).unwrap();
        let head = "// kiln-kernel label matvec Q4_K q8\n// kiln-kernel entry matvec\n\
                    // kiln-kernel constant TPR 2\n// kiln-kernel constant RT 1\n";
        assert_eq!(text, format!("{head}{src}"));
        // A missing directory is made; one that cannot be (under a file) is a one-line error.
        dump(&dir.path().join("new"), "add", 0, "add", &[], src).unwrap();
        assert!(dir.path().join("new/add_0.wgsl").exists());
        let file = dir.path().join("matvec_Q4_K_q8_10002.wgsl");
        let bad = dump(&file.join("sub"), "add", 0, "add", &[], src).unwrap_err();
        assert!(bad.to_string().contains("KILN_KERNEL_DUMP"), "{bad}");
    }

    #[test]
    fn rename_for_weight_touches_the_binding_and_the_defined_functions_only() {
        let src = "fn f(a: u32) -> u32 {\n    return w[a] + g(4u).w + h(a);\n}\n\
                   fn g(p: u32) -> vec4<u32> { return vec4<u32>(w[p], ww, 0u, 1u); }\n";
        let want = "fn f_3(a: u32) -> u32 {\n    return w3[a] + g_3(4u).w + h(a);\n}\n\
                    fn g_3(p: u32) -> vec4<u32> { return vec4<u32>(w3[p], ww, 0u, 1u); }\n";
        assert_eq!(rename_for_weight(src, 3, false), want);
    }

    #[test]
    fn matvecs_source_has_the_constants_once_and_helpers_per_weight() {
        let ty = GgmlType::Q4_K;
        let s = fused_source(
            ty,
            None,
            decoder(ty).unwrap(),
            3,
            MATVECS,
            Fused::default(),
            Some(32),
        );
        for name in ["const QK:", "const PD:", "fn reduce_rows(", "fn matvecs("] {
            assert_eq!(s.matches(name).count(), 1, "{name}");
        }
        for j in 0..3 {
            for f in ["wq", "k4_scale_min", "u32at", "rows_dot", "row_bytes"] {
                assert!(s.contains(&format!("fn {f}_{j}(")), "{f}_{j}");
            }
            assert!(s.contains(&format!("var<storage, read> w{j}: array<vec4<u32>>;")));
        }
        assert!(!s.contains("fn part_values("));
    }

    /// The subgroup lanes of a test adapter with subgroups (an H100's 32) or without.
    fn lanes(subgroups: bool) -> Option<u32> {
        subgroups.then_some(32)
    }

    /// Compiles `key`'s module to SPIR-V as wgpu would on an adapter with every capability
    /// (reductions over subgroups where `subgroups`), its `override` constants at their defaults.
    fn to_spirv(key: KernelKey, subgroups: bool) -> std::result::Result<Vec<u32>, String> {
        let (module, info) = validated(key, subgroups)?;
        let entry = key.kernel.entry();
        let (module, info) = naga::back::pipeline_constants::process_overrides(
            &module,
            &info,
            Some((naga::ShaderStage::Compute, entry)),
            &Default::default(),
        )
        .map_err(|e| format!("{e:?}"))?;
        let options = naga::back::spv::Options {
            lang_version: (1, 6),
            ..Default::default()
        };
        let pipeline = naga::back::spv::PipelineOptions {
            shader_stage: naga::ShaderStage::Compute,
            entry_point: entry.to_string(),
        };
        naga::back::spv::write_vec(&module, &info, &options, Some(&pipeline))
            .map_err(|e| e.to_string())
    }

    /// `key`'s module as wgpu would parse and validate it on an adapter with every capability.
    fn validated(
        key: KernelKey,
        subgroups: bool,
    ) -> std::result::Result<(naga::Module, naga::valid::ModuleInfo), String> {
        let src = source(key, &key.kernel.def(), lanes(subgroups)).map_err(|e| e.to_string())?;
        let module = naga::front::wgsl::parse_str(&src).map_err(|e| e.emit_to_string(&src))?;
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .map_err(|e| format!("{e:?}"))?;
        Ok((module, info))
    }

    /// Every decode product on integer dot products (Q4_K's, Q6_K's, Q3_K's) compiles (CI's
    /// lavapipe runs them too; this pins the SPIR-V that a GPU with integer dot products gets).
    #[test]
    fn q8_decode_kernels_compile() {
        for kernel in [
            Kernel::Matvec,
            Kernel::MatvecNorm,
            Kernel::MatvecGatedNorm,
            Kernel::MatmulSel,
            Kernel::Matvecs(3),
            Kernel::MatvecsConv(4),
            Kernel::MatmulSelPair,
            Kernel::MatmulSelPairSwigluQ8,
            Kernel::MoeDown,
            Kernel::MoeDownSwiglu,
        ] {
            for ty in [GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q3_K] {
                // The entries that read an 8-bit SwiGLU row are Q4_K's unit-load ones.
                let unit_only = matches!(kernel, Kernel::MatmulSelPairSwigluQ8 | Kernel::MoeDown);
                if unit_only && !unit_loads(ty, true) {
                    continue;
                }
                for q8_row in [false, true] {
                    let key = KernelKey {
                        q8: true,
                        q8_row,
                        ..KernelKey::typed(kernel, ty)
                    };
                    if let Err(e) = to_spirv(key, true) {
                        panic!("{}: {e}", key.label());
                    }
                }
            }
        }
    }

    /// A kernel that stages fewer activations than the longest row is built with workgroup
    /// memory for that many.
    #[test]
    fn q8_staging_is_sized_for_the_row() {
        assert_eq!(staging_for(2304), 2304);
        assert_eq!(staging_for(2305), 2560);
        assert_eq!(staging_for(9 * 1024), Q8_MAX_COLS as u32);
        let key = KernelKey {
            q8: true,
            xq: staging_for(2304),
            ..KernelKey::typed(Kernel::Matvecs(3), GgmlType::Q4_K)
        };
        let src = source(key, &key.kernel.def(), lanes(true)).unwrap();
        assert!(src.contains("const XQ_MAX: u32 = 2304u;"));
        assert!(!src.contains(&format!("{Q8_MAX_COLS}u")));
        to_spirv(key, true).unwrap();
    }

    /// The row sums shuffle across the device's subgroups, and not at all without them.
    #[test]
    fn decode_reduce_shuffles_as_wide_as_the_subgroups() {
        for lanes in [8, 32, 64] {
            let src = decode_reduce(Some(lanes));
            assert!(src.contains(&format!("const SG_ROWS: u32 = {lanes}u;")));
            assert!(src.contains("subgroupShuffleXor"));
        }
        let src = decode_reduce(None);
        assert!(src.contains("const SG_ROWS: u32 = 1u;"));
        assert!(!src.contains("subgroupShuffleXor"));
    }

    /// Both variants of the kernels that reduce compile whatever the test device offers.
    #[test]
    fn plain_kernels_compile_with_and_without_subgroups() {
        let plain = [
            Kernel::RmsNorm,
            Kernel::AddRmsNorm,
            Kernel::GatedRmsNorm,
            Kernel::Swiglu,
            Kernel::SwigluPair,
            Kernel::Add,
            Kernel::SumSlices,
            Kernel::Argmax,
            Kernel::ArgmaxPart,
            Kernel::ArgmaxMerge,
            Kernel::ShortConv,
            Kernel::KdaScan,
            Kernel::MlaAppend,
            Kernel::MlaAttend,
            Kernel::MlaCombine,
            Kernel::MlaFlash,
            Kernel::MoeRoute,
            Kernel::MoeRouterRoute,
            Kernel::MoeCombine,
            Kernel::MoeGroup,
        ];
        for kernel in plain {
            for subgroups in [true, false] {
                if let Err(e) = to_spirv(KernelKey::plain(kernel), subgroups) {
                    panic!("{kernel:?} subgroups {subgroups}: {e}");
                }
            }
        }
        let src = |k, sg| source(KernelKey::plain(k), &k.def(), lanes(sg)).unwrap();
        assert!(src(Kernel::RmsNorm, true).contains("subgroupAdd"));
        assert!(!src(Kernel::RmsNorm, false).contains("subgroupAdd"));
        assert!(src(Kernel::MoeRoute, true).contains("subgroupMax"));
        assert!(!src(Kernel::MoeRoute, false).contains("subgroupM"));
    }

    /// A decoded token's fused MoE down products compile for every block type on f32
    /// activations (the Q4_K integer-dot variant is in `q8_decode_kernels_compile`).
    #[test]
    fn moe_down_compiles_for_every_type() {
        for ty in SUPPORTED {
            let key = KernelKey::typed(Kernel::MoeDown, ty);
            if let Err(e) = to_spirv(key, true) {
                panic!("{}: {e}", key.label());
            }
        }
    }

    /// The tiled prompt products compile for every block type (CI's lavapipe runs them only
    /// for the types its tests use; `matmul_split` serves F32 weights today).
    #[test]
    fn tiled_prompt_kernels_compile_for_every_type() {
        for ty in SUPPORTED {
            for kernel in [Kernel::Matmul, Kernel::MatmulSplit, Kernel::MatmulGrouped] {
                let key = KernelKey::typed(kernel, ty);
                if let Err(e) = to_spirv(key, true) {
                    panic!("{}: {e}", key.label());
                }
            }
        }
    }

    /// The values the cooperative-matrix products stage (`part_values_f16`, quant/half/) are
    /// the block type's values rounded to f16. The products run only on GPUs CI does not have,
    /// so this runs the decoders alone, one part per thread, on whatever adapter there is
    /// (lavapipe in CI). Q4_K's own decoder computes in f16 (a few roundings of its 32-value
    /// part's range at most); a nibble out of place would be off by a whole step.
    #[test]
    fn weight_parts_decode_to_f16_for_every_type() {
        let gpu = super::super::WgpuBackend::new(None).expect("a Vulkan adapter");
        let ctx = &gpu.ctx;
        if !ctx.adapter.shader_f16 {
            eprintln!("skipped: {} has no f16", ctx.adapter.name);
            return;
        }
        let n = 1024;
        // Values in (-1, 1) (a multiplicative hash of the index) times scales over three orders
        // of magnitude, so that the blocks' scales differ.
        let src: Vec<f32> = (0..n as u32)
            .map(|i| {
                let u = i.wrapping_mul(2654435761) >> 8;
                (u as f32 / (1 << 23) as f32 - 1.0) * [0.01, 0.3, 4.0][i as usize / 64 % 3]
            })
            .collect();
        for ty in SUPPORTED {
            let bytes = crate::quant::quantize_rows(ty, &src, n, None).unwrap();
            let want = crate::quant::dequantize(ty, &bytes, n).unwrap();
            let module = bind_weight(
                format!(
                    "enable f16;\n{F16_OPERANDS}\n\
                     @group(0) @binding(0) var<storage, read> w: array<u32>;\n\
                     @group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;\n\
                     {}\n\
                     @compute @workgroup_size(64)\n\
                     fn main(@builtin(global_invocation_id) id: vec3<u32>) {{\n\
                         let kv = id.x * PV;\n\
                         if kv >= {n}u {{ return; }}\n\
                         let v = part_values_f16((kv / QK) * BLOCK_BYTES, (kv % QK) / PV);\n\
                         for (var i = 0u; i < PV4; i++) {{ out[kv / 4u + i] = vec4<f32>(v[i]); }}\n\
                     }}\n",
                    half_weight_source(ty, decoder(ty).unwrap()),
                ),
                ty,
            );
            let got = run_parts(ctx, &module, &bytes, n);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let part = &want[i / 32 * 32..][..32];
                let range = part.iter().fold(0f32, |m, v| m.max(v.abs()));
                assert!(
                    (g - w).abs() <= w.abs() / 1024.0 + range / 512.0,
                    "{ty} value {i}: {g} against {w}"
                );
            }
        }
    }

    /// Runs `module`'s `main` over the `n` values of `weights` (a thread per part: enough
    /// threads for parts of 4 values, the smallest) and reads its `n` outputs back.
    fn run_parts(
        ctx: &super::super::device::Context,
        module: &str,
        weights: &[u8],
        n: usize,
    ) -> Vec<f32> {
        use wgpu::util::DeviceExt;
        let d = &ctx.device;
        let shader = d.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: None,
            source: wgpu::ShaderSource::Wgsl(module.into()),
        });
        let pipeline = d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: None,
            layout: None,
            module: &shader,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let mut padded = weights.to_vec();
        padded.resize(weights.len().next_multiple_of(16), 0);
        let w = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: &padded,
            usage: wgpu::BufferUsages::STORAGE,
        });
        let size = (n * 4) as u64;
        let out = d.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let read = d.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind = d.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: w.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: out.as_entire_binding(),
                },
            ],
        });
        let mut enc = d.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(n.div_ceil(4 * 64) as u32, 1, 1);
        }
        enc.copy_buffer_to_buffer(&out, 0, &read, 0, size);
        ctx.queue.submit([enc.finish()]);
        read.slice(..)
            .map_async(wgpu::MapMode::Read, |r| r.unwrap());
        d.poll(wgpu::PollType::wait_indefinitely()).unwrap();
        let bytes = read.slice(..).get_mapped_range().unwrap().to_vec();
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    /// The cooperative-matrix kernels run only on GPUs CI does not have; this at least proves
    /// they compile: the products for every block type, and the flash attention.
    #[test]
    fn cooperative_matrix_kernel_compiles_for_every_type() {
        for key in cooperative_kernels() {
            if let Err(e) = to_spirv(key, true) {
                panic!("{}: {e}", key.label());
            }
        }
    }

    /// The kernels on cooperative matrices: the products for every block type, and the flash
    /// attention.
    fn cooperative_kernels() -> Vec<KernelKey> {
        let products = [Kernel::MatmulCoop, Kernel::MatmulGroupedCoop];
        SUPPORTED
            .into_iter()
            .flat_map(|ty| products.map(|kernel| KernelKey::typed(kernel, ty)))
            .chain([KernelKey::plain(Kernel::MlaFlashCoop)])
            .collect()
    }

    /// WGSL cannot align a workgroup variable: the driver lays them out. On the H100 (NVIDIA's
    /// Vulkan driver) one 4-byte workgroup variable added to mla_flash_coop's module, never
    /// written, made its outputs wrong (NMSE 4e-2 against the CPU), and NaN where P · V ran on
    /// cooperative matrices too: the f16 arrays that the cooperative loads read no longer
    /// started on 16 bytes. Grown to 16 bytes, the same variable left them right. So every
    /// workgroup variable of these modules is a whole number of 16 bytes.
    #[test]
    fn cooperative_matrix_workgroup_variables_are_whole_16_bytes() {
        for key in cooperative_kernels() {
            let (module, _) = validated(key, true).unwrap();
            let mut layouter = naga::proc::Layouter::default();
            layouter.update(module.to_ctx()).unwrap();
            for (_, var) in module.global_variables.iter() {
                let size = layouter[var.ty].size;
                assert!(
                    var.space != naga::AddressSpace::WorkGroup || size % 16 == 0,
                    "{}: workgroup variable {} is {size} bytes",
                    key.label(),
                    var.name.as_deref().unwrap_or("?")
                );
            }
        }
    }
}
