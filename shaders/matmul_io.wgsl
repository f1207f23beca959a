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
