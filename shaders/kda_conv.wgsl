// Causal depthwise convolution + SiLU with a carried state, one thread per channel walking the
// tokens in order (the window lives in registers).

struct Params {
    width: u32,
    t: u32,
    kw: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> taps: array<f32>;
@group(0) @binding(2) var<storage, read_write> state: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

const MAX_PAST: u32 = 7u;

@compute @workgroup_size(64)
fn short_conv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = gid.x + gid.y * nwg.x * 64u;
    if c >= p.width {
        return;
    }
    let past = p.kw - 1u;
    var hist: array<f32, MAX_PAST>;
    for (var j = 0u; j < past; j++) {
        hist[j] = state[j * p.width + c];
    }
    for (var i = 0u; i < p.t; i++) {
        let xi = x[i * p.width + c];
        var acc = 0.0;
        for (var j = 0u; j < past; j++) {
            acc += taps[c * p.kw + j] * hist[j];
        }
        acc += taps[c * p.kw + past] * xi;
        y[i * p.width + c] = acc / (1.0 + exp(-acc));
        for (var j = 0u; j + 1u < past; j++) {
            hist[j] = hist[j + 1u];
        }
        if past > 0u {
            hist[past - 1u] = xi;
        }
    }
    for (var j = 0u; j < past; j++) {
        state[j * p.width + c] = hist[j];
    }
}
