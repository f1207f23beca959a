// The parameters and bindings of the quantized products (matmul.wgsl, matmul_coop.wgsl): the
// weight part's raw blocks, activations as vec4s, outputs, and the chosen matrices (or a
// prompt's pairs grouped by expert) where a product selects them; and what their prompt tiles
// (TM weight rows × TN tokens, set by the including module) share.

struct Params {
    rows: u32,
    cols: u32,
    t: u32,
    row0: u32,
    x_stride: u32,
    x_off: u32,
    y_stride: u32,
    y_off: u32,
    // Rows of each selected matrix (matmul_sel, matmul_grouped); values per slice
    // (matmul_split).
    per: u32,
    x_div: u32,
    mode: u32,
    heads: u32,
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read> ids: array<u32>;
// A prompt's MoE: each expert's first pair in the grouped list (ids), and the end, 4 to a
// vec4 (at most 1024 experts). A uniform copy of what moe_group wrote, made on the GPU, so that
// the loop over an expert's pairs is uniform by construction: the workgroupUniformLoad of the
// same values from storage gave wrong sums in the cooperative-matrix kernel on an NVIDIA H100
// (Vulkan, driver 580).
@group(0) @binding(5) var<uniform> starts: array<vec4<u32>, 257>;

// The span of expert e's pairs in ids.
fn expert_span(e: u32) -> vec2<u32> {
    return vec2<u32>(starts[e / 4u][e % 4u], starts[(e + 1u) / 4u][(e + 1u) % 4u]);
}

// Per tile token: the activation row it reads and the output row it writes.
var<workgroup> xrow: array<u32, TN>;
var<workgroup> yrow: array<u32, TN>;

// The first weight row and first token of dense tile `lin`, with the tile's tokens staged in
// xrow/yrow; the token is p.t or more (nothing staged) when the tile lies past the last one.
fn dense_tile(lin: u32, li: u32) -> vec2<u32> {
    let row_tiles = (p.rows + TM - 1u) / TM;
    let origin = vec2<u32>((lin % row_tiles) * TM, (lin / row_tiles) * TN);
    if origin.y < p.t {
        if li < TN {
            xrow[li] = origin.y + li;
            yrow[li] = origin.y + li;
        }
        workgroupBarrier();
    }
    return origin;
}

// Grouped tile `lin` (a prompt's MoE, or per-head products): its group (expert) e and first
// weight row r0 within the expert's matrix, and 1 where that matrix lies in this dispatch's
// weight part (the host keeps them whole), else 0 (nothing to do).
fn expert_tile(lin: u32) -> vec3<u32> {
    let row_tiles = (p.per + TM - 1u) / TM;
    let e = lin / row_tiles;
    let grow = e * p.per;
    let inside = e < p.heads && grow >= p.row0 && grow + p.per <= p.row0 + p.rows;
    return vec3<u32>(e, (lin % row_tiles) * TM, select(0u, 1u, inside));
}

// Stages pairs c0.. (ntok of them) of the grouped list as the tile's tokens: pair q reads
// activation row q / x_div and writes output row q.
fn stage_pairs(li: u32, c0: u32, ntok: u32) {
    if li < ntok {
        let pair = ids[c0 + li];
        xrow[li] = pair / p.x_div;
        yrow[li] = pair;
    }
    workgroupBarrier();
}
