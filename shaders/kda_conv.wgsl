// Causal depthwise convolution + SiLU with a carried state of the q, k and v streams in one
// dispatch: one thread per channel of the 3 × width channels, walking the tokens in order (the
// window lives in registers). WGSL cannot index bindings, so the accessors switch on the stream.

struct Params {
    width: u32,
    t: u32,
    // The taps per channel, as KW.
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

// Taps per channel, set by the host (1..=8): constant loop bounds keep the window in
// registers, and every load of a batch is issued before the first store.
override KW: u32 = 4u;
const MAX_KW: u32 = 8u;
// Tokens whose inputs are loaded together.
const TB: u32 = 8u;

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
    // The last KW inputs, oldest first: the state's KW - 1, then the current token's.
    var win: array<f32, MAX_KW>;
    var w: array<f32, MAX_KW>;
    for (var j = 0u; j < KW; j++) {
        w[j] = tap(s, c * KW + j);
    }
    for (var j = 0u; j + 1u < KW; j++) {
        win[j] = state_at(s, j * p.width + c);
    }
    for (var i0 = 0u; i0 < p.t; i0 += TB) {
        var xs: array<f32, TB>;
        for (var u = 0u; u < TB; u++) {
            if i0 + u < p.t {
                xs[u] = x_at(s, (i0 + u) * p.width + c);
            }
        }
        for (var u = 0u; u < TB; u++) {
            if i0 + u < p.t {
                win[KW - 1u] = xs[u];
                var acc = 0.0;
                for (var j = 0u; j < KW; j++) {
                    acc += w[j] * win[j];
                }
                set_y(s, (i0 + u) * p.width + c, acc / (1.0 + exp(-acc)));
                for (var j = 0u; j + 1u < KW; j++) {
                    win[j] = win[j + 1u];
                }
            }
        }
    }
    for (var j = 0u; j + 1u < KW; j++) {
        set_state(s, j * p.width + c, win[j]);
    }
}
