// Causal depthwise convolution + SiLU with a carried state of the q, k and v streams in one
// dispatch: one thread per channel of the 3 × width channels and block of TB tokens (a token's
// output needs only the KW - 1 inputs before it, so a prompt's blocks are independent and its
// tokens need not be walked in order by one thread). WGSL cannot index bindings, so the
// accessors switch on the stream.

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
// Tokens per thread.
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

// The input of token i of stream s, channel c: for i < 0 (as i + KW - 1 < KW - 1) the carried
// state, whose KW - 1 rows are the inputs before the call's first token, oldest first.
fn input_at(s: u32, c: u32, i_plus: u32) -> f32 {
    if i_plus < KW - 1u {
        return state_at(s, i_plus * p.width + c);
    }
    return x_at(s, (i_plus - (KW - 1u)) * p.width + c);
}

@compute @workgroup_size(64)
fn short_conv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = gid.x + gid.y * nwg.x * 64u;
    let blocks = (p.t + TB - 1u) / TB;
    if id >= 3u * p.width * blocks {
        return;
    }
    let sc = id % (3u * p.width);
    let i0 = (id / (3u * p.width)) * TB;
    let s = sc / p.width;
    let c = sc % p.width;
    var w: array<f32, MAX_KW>;
    for (var j = 0u; j < KW; j++) {
        w[j] = tap(s, c * KW + j);
    }
    // The block's inputs with the KW - 1 before them, all loaded before the first product:
    // xs[u] is token i0 + u - (KW - 1).
    var xs: array<f32, TB + MAX_KW - 1u>;
    for (var u = 0u; u < TB + KW - 1u; u++) {
        if i0 + u < p.t + KW - 1u {
            xs[u] = input_at(s, c, i0 + u);
        }
    }
    for (var u = 0u; u < TB; u++) {
        if i0 + u < p.t {
            var acc = 0.0;
            for (var j = 0u; j < KW; j++) {
                acc += w[j] * xs[u + j];
            }
            set_y(s, (i0 + u) * p.width + c, acc / (1.0 + exp(-acc)));
        }
    }
    // The new state is the last KW - 1 inputs. Only the first block's thread reads the old
    // state, so it alone writes the new one (after its reads): from its registers where the
    // call is shorter than the state, else from the call's last inputs.
    if i0 == 0u {
        for (var j = 0u; j + 1u < KW; j++) {
            let i_plus = p.t + j;
            var v = 0.0;
            if i_plus < TB + KW - 1u {
                // A constant index for each u keeps xs in registers (an index only known at
                // run time would move the array to memory).
                for (var u = 0u; u < TB + KW - 1u; u++) {
                    if u == i_plus {
                        v = xs[u];
                    }
                }
            } else {
                v = input_at(s, c, i_plus);
            }
            set_state(s, j * p.width + c, v);
        }
    }
}
