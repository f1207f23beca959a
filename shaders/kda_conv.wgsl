// Causal depthwise convolution + SiLU with a carried state of the q, k and v streams in one
// dispatch: one thread per channel of the 3 × width channels, walking the tokens in order (the
// window lives in registers). WGSL cannot index bindings, so the accessors switch on the stream.

struct Params {
    width: u32,
    t: u32,
    kw: u32,
}

@group(0) @binding(0) var<storage, read> x0: array<f32>;
@group(0) @binding(1) var<storage, read> x1: array<f32>;
@group(0) @binding(2) var<storage, read> x2: array<f32>;
@group(0) @binding(3) var<storage, read> taps0: array<f32>;
@group(0) @binding(4) var<storage, read> taps1: array<f32>;
@group(0) @binding(5) var<storage, read> taps2: array<f32>;
@group(0) @binding(6) var<storage, read_write> state0: array<f32>;
@group(0) @binding(7) var<storage, read_write> state1: array<f32>;
@group(0) @binding(8) var<storage, read_write> state2: array<f32>;
@group(0) @binding(9) var<storage, read_write> y0: array<f32>;
@group(0) @binding(10) var<storage, read_write> y1: array<f32>;
@group(0) @binding(11) var<storage, read_write> y2: array<f32>;
@group(0) @binding(12) var<uniform> p: Params;

const MAX_PAST: u32 = 7u;

fn x_at(s: u32, i: u32) -> f32 {
    switch s {
        case 0u: { return x0[i]; }
        case 1u: { return x1[i]; }
        default: { return x2[i]; }
    }
}

fn tap(s: u32, i: u32) -> f32 {
    switch s {
        case 0u: { return taps0[i]; }
        case 1u: { return taps1[i]; }
        default: { return taps2[i]; }
    }
}

fn state_at(s: u32, i: u32) -> f32 {
    switch s {
        case 0u: { return state0[i]; }
        case 1u: { return state1[i]; }
        default: { return state2[i]; }
    }
}

fn set_state(s: u32, i: u32, v: f32) {
    switch s {
        case 0u: { state0[i] = v; }
        case 1u: { state1[i] = v; }
        default: { state2[i] = v; }
    }
}

fn set_y(s: u32, i: u32, v: f32) {
    switch s {
        case 0u: { y0[i] = v; }
        case 1u: { y1[i] = v; }
        default: { y2[i] = v; }
    }
}

@compute @workgroup_size(64)
fn short_conv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let sc = gid.x + gid.y * nwg.x * 64u;
    if sc >= 3u * p.width {
        return;
    }
    let s = sc / p.width;
    let c = sc % p.width;
    let past = p.kw - 1u;
    var hist: array<f32, MAX_PAST>;
    var w: array<f32, 8>;
    for (var j = 0u; j < p.kw; j++) {
        w[j] = tap(s, c * p.kw + j);
    }
    for (var j = 0u; j < past; j++) {
        hist[j] = state_at(s, j * p.width + c);
    }
    for (var i = 0u; i < p.t; i++) {
        let xi = x_at(s, i * p.width + c);
        var acc = 0.0;
        for (var j = 0u; j < past; j++) {
            acc += w[j] * hist[j];
        }
        acc += w[past] * xi;
        set_y(s, i * p.width + c, acc / (1.0 + exp(-acc)));
        for (var j = 0u; j + 1u < past; j++) {
            hist[j] = hist[j + 1u];
        }
        if past > 0u {
            hist[past - 1u] = xi;
        }
    }
    for (var j = 0u; j < past; j++) {
        set_state(s, j * p.width + c, hist[j]);
    }
}
