// The activations x_q8.wgsl stages for a decoded token's `moe_down`: the SwiGLU of the gate
// products in x and the up products in x_up, silu(g) ⊙ u, as the `swiglu` kernel computes it.
@group(0) @binding(29) var<storage, read> x_up: array<vec4<f32>>;

fn x_at(i: u32) -> vec4<f32> {
    let g = x[i];
    return g / (1.0 + exp(-g)) * x_up[i];
}

// Nothing to compute before the values.
fn x_prepare(li: u32, xb0: u32, n: u32) {}
