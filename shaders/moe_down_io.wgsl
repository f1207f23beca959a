// What both `moe_down` entries bind (moe_down.wgsl, moe_down_units.wgsl).
struct Params {
    cols: u32,
    pairs: u32,
    rows: u32,
}

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(30) var<storage, read> wts: array<f32>;
@group(0) @binding(31) var<storage, read> ids: array<u32>;
