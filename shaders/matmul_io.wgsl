// The parameters and bindings of the quantized products (matmul.wgsl, matmul_coop.wgsl): the
// weight part's raw blocks, activations as vec4s, outputs, and the chosen matrices (or a
// prompt's pairs grouped by expert) where a product selects them.

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
