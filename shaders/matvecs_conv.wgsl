// `matvecs` storing its first three products through the KDA short convolution (a decoded
// token's q, k and v projections, `kda_projections`): the thread that stores channel c of
// stream s convolves it with the stream's state, stores SiLU of that and advances the state.
// That thread alone touches the channel's state, so no other ordering is needed, and the
// convolution needs no dispatch of its own. Taps per channel and state layout as
// kda_conv.wgsl's: taps [channel][KW], state [KW - 1][channel], oldest input first. The host
// declares the bindings taps0..2 and conv0..2 (the states) after the products' outputs.

// Taps per channel, set by the host (1..=MAX_KW).
override KW: u32 = 4u;
const MAX_KW: u32 = 8u;

fn conv_tap(s: u32, i: u32) -> f32 {
    switch s {
        case 0u: { return taps0[i]; }
        case 1u: { return taps1[i]; }
        default: { return taps2[i]; }
    }
}

fn conv_state(s: u32, i: u32) -> f32 {
    switch s {
        case 0u: { return conv0[i]; }
        case 1u: { return conv1[i]; }
        default: { return conv2[i]; }
    }
}

fn set_conv_state(s: u32, i: u32, v: f32) {
    switch s {
        case 0u: { conv0[i] = v; }
        case 1u: { conv1[i] = v; }
        default: { conv2[i] = v; }
    }
}

// Channel c of stream s (`width` channels) given its new input z: SiLU of the convolution of
// the state's inputs and z, with the state advanced past z.
fn conv_step(s: u32, c: u32, width: u32, z: f32) -> f32 {
    var prev: array<f32, MAX_KW>;
    for (var m = 0u; m + 1u < KW; m++) {
        prev[m] = conv_state(s, m * width + c);
    }
    var acc = conv_tap(s, c * KW + KW - 1u) * z;
    for (var m = 0u; m + 1u < KW; m++) {
        acc += conv_tap(s, c * KW + m) * prev[m];
    }
    for (var m = 0u; m + 2u < KW; m++) {
        set_conv_state(s, m * width + c, prev[m + 1u]);
    }
    if KW > 1u {
        set_conv_state(s, (KW - 2u) * width + c, z);
    }
    return acc / (1.0 + exp(-acc));
}
