// What both `matmul_sel_pair` entries bind (matmul_sel_pair.wgsl, matmul_sel_pair_units.wgsl).
struct Params {
    cols: u32,
    pairs: u32,
    per: u32,
    x_div: u32,
    x_stride: u32,
    y_stride: u32,
    y_off: u32,
    // 1 where the shared expert's gate and up ride along as slot 0 (one token), else 0.
    lead: u32,
}

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(31) var<storage, read> ids: array<u32>;
