// g ← a[h] · softplus(g + dt_bias) and beta ← sigmoid(beta), in place.

struct Params {
    width: u32,
    t: u32,
    head_dim: u32,
    heads: u32,
}

@group(0) @binding(0) var<storage, read_write> g: array<f32>;
@group(0) @binding(1) var<storage, read_write> beta: array<f32>;
@group(0) @binding(2) var<storage, read> dt_bias: array<f32>;
@group(0) @binding(3) var<storage, read> a: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

// ln(1 + e) without losing e's bits when e is tiny (WGSL has no log1p): the rounding of 1 + e
// is undone by the ratio e / (u − 1).
fn log1p(e: f32) -> f32 {
    let u = 1.0 + e;
    if u == 1.0 {
        return e;
    }
    return log(u) * (e / (u - 1.0));
}

@compute @workgroup_size(256)
fn kda_gate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    let ng = p.t * p.width;
    if i < ng {
        let c = i % p.width;
        let y = g[i] + dt_bias[c];
        var sp = y;
        // Same cut-over as transformers and fla: softplus(y) = y above 20.
        if y <= 20.0 {
            sp = log1p(exp(y));
        }
        g[i] = a[c / p.head_dim] * sp;
    } else if i < ng + p.t * p.heads {
        let j = i - ng;
        beta[j] = 1.0 / (1.0 + exp(-beta[j]));
    }
}
