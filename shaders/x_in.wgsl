// The activations x_q8.wgsl stages: x itself.
fn x_at(i: u32) -> vec4<f32> {
    return x[i];
}

// Nothing to compute before the values.
fn x_prepare(li: u32, xb0: u32, n: u32) {}
