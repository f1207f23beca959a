// The KDA gates of the raw pre-activations (the decay's, β's, the output gate's), shared by
// kda_scan.wgsl and kda_step.wgsl (kernels.rs prepends this file).

// ln(1 + e) without losing e's bits when e is tiny (WGSL has no log1p): the rounding of 1 + e
// is undone by the ratio e / (u − 1).
fn log1p(e: f32) -> f32 {
    let u = 1.0 + e;
    if u == 1.0 {
        return e;
    }
    return log(u) * (e / (u - 1.0));
}

// The per-channel decay factor exp(a_h · softplus(g + bias)), from a raw g.
fn decay(g: f32, bias: f32, a_h: f32) -> f32 {
    let y = g + bias;
    var sp = y;
    // Same cut-over as transformers and fla: softplus(y) = y above 20.
    if y <= 20.0 {
        sp = log1p(exp(y));
    }
    return exp(a_h * sp);
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}
