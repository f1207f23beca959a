// The parameters and bindings of the quantized products (matmul.wgsl, matmul_coop.wgsl,
// matvec.wgsl): the weight part's raw blocks, activations as vec4s, outputs, and the chosen
// matrices (or a prompt's pairs grouped by expert) where a product selects them. What the
// prompt tiles share is matmul_tiles.wgsl's.

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
