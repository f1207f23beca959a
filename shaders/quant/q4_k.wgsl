// Q4_K (144 B): d, dmin (f16), scales[12] (eight 6-bit scales and mins), qs[128].
// Sub-block s (32 values) reads the low (s even) or high nibbles of qs[32 * (s / 2)..][..32].
const QK: u32 = 256u;
const BLOCK_BYTES: u32 = 144u;
const PV: u32 = 32u;
const PV4: u32 = 8u;

// (scale, min) of sub-block s, as ggml's get_scale_min_k4.
fn k4_scale_min(sb: u32, s: u32) -> vec2<f32> {
    if s < 4u {
        return vec2<f32>(f32(byte_at(sb + s) & 63u), f32(byte_at(sb + s + 4u) & 63u));
    }
    let a = byte_at(sb + s + 4u);
    let sc = (a & 15u) | ((byte_at(sb + s - 4u) >> 6u) << 4u);
    let m = (a >> 4u) | ((byte_at(sb + s) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

fn part_values(wb: u32, p: u32) -> array<vec4<f32>, PV4> {
    let dm = unpack2x16float(w[wb >> 2u]);
    let sm = k4_scale_min(wb + 4u, p);
    let dl = dm.x * sm.x;
    let ml = dm.y * sm.y;
    let shift = vec4<u32>(0u, 8u, 16u, 24u) + 4u * (p & 1u);
    // Blocks of 144 bytes are 4-byte aligned: plain word loads, all independent.
    let q0 = (wb + 16u + 32u * (p / 2u)) >> 2u;
    var o: array<vec4<f32>, PV4>;
    for (var i = 0u; i < 8u; i++) {
        let q = (vec4<u32>(w[q0 + i]) >> shift) & vec4<u32>(15u);
        o[i] = dl * vec4<f32>(q) - ml;
    }
    return o;
}
