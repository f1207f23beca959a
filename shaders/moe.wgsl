// MoE routing and combination on the GPU, so that the chosen experts never visit the host.
// moe_route: per token, sigmoid scores, the n_used experts with the largest score + bias (the
// lower index first on ties, as a stable sort), weights = score / Σ scores × scale.
// moe_combine: out[tok] += Σ weight · expert output, summed in ascending expert order (as the
// CPU backend does) so that both backends round alike.

struct Params {
    n_expert: u32,
    n_used: u32,
    t: u32,
    hidden: u32,
    scale: f32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> wts: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<storage, read> ys: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

const MAX_EXPERT_WORDS: u32 = 32u;

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

@compute @workgroup_size(64)
fn moe_route(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let tok = gid.x + gid.y * nwg.x * 64u;
    if tok >= p.t {
        return;
    }
    let lb = tok * p.n_expert;
    var taken: array<u32, MAX_EXPERT_WORDS>;
    var sum = 0.0;
    for (var k = 0u; k < p.n_used; k++) {
        var best = 0u;
        var bv = -3.4028235e38;
        var found = false;
        for (var e = 0u; e < p.n_expert; e++) {
            if (taken[e / 32u] & (1u << (e % 32u))) != 0u {
                continue;
            }
            let v = sigmoid(logits[lb + e]) + bias[e];
            if !found || v > bv {
                bv = v;
                best = e;
                found = true;
            }
        }
        taken[best / 32u] |= 1u << (best % 32u);
        ids[tok * p.n_used + k] = best;
        let s = sigmoid(logits[lb + best]);
        wts[tok * p.n_used + k] = s;
        sum += s;
    }
    sum += 1e-20;
    for (var k = 0u; k < p.n_used; k++) {
        wts[tok * p.n_used + k] = wts[tok * p.n_used + k] / sum * p.scale;
    }
}

// ys = expert outputs [t * n_used, hidden], pairs in routing order.
@compute @workgroup_size(256)
fn moe_combine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.t * p.hidden {
        return;
    }
    let tok = i / p.hidden;
    let c = i % p.hidden;
    let pb = tok * p.n_used;
    var acc = out[i];
    var last = -1;
    for (var k = 0u; k < p.n_used; k++) {
        // The slot holding the next expert id above `last`.
        var slot = 0u;
        var se = 0x7fffffff;
        for (var s = 0u; s < p.n_used; s++) {
            let e = i32(ids[pb + s]);
            if e > last && e < se {
                se = e;
                slot = s;
            }
        }
        last = se;
        acc += wts[pb + slot] * ys[(pb + slot) * p.hidden + c];
    }
    out[i] = acc;
}
