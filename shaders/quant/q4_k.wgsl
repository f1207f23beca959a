// Q4_K (144 B = 9 quads of 16 bytes): d, dmin (f16) and scales[12] (eight 6-bit scales and
// mins) fill the first quad, qs[128] the other eight. Sub-block s (32 values) reads the low (s
// even) or high nibbles of qs[32 * (s / 2)..][..32].
const QK: u32 = 256u;
const BLOCK_BYTES: u32 = 144u;
const PV: u32 = 32u;
const PV4: u32 = 8u;

// (scale, min) of sub-block s from the block's first quad h, as ggml's get_scale_min_k4:
// scales[0..4] are h.y's bytes, [4..8] h.z's, [8..12] h.w's.
fn k4_scale_min(h: vec4<u32>, s: u32) -> vec2<f32> {
    if s < 4u {
        let sh = 8u * s;
        return vec2<f32>(f32((h.y >> sh) & 63u), f32((h.z >> sh) & 63u));
    }
    let sh = 8u * (s - 4u);
    let a = h.w >> sh;
    let sc = (a & 15u) | ((((h.y >> sh) >> 6u) & 3u) << 4u);
    let m = ((a >> 4u) & 15u) | ((((h.z >> sh) >> 6u) & 3u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

// Sub-block p's three quads: the block's first (d, dmin, scales), then the two of its 32 bytes of
// nibbles. Blocks of 144 bytes start on a quad: three 16-byte loads, all independent.
fn k4_quads(wb: u32, p: u32) -> array<vec4<u32>, 3> {
    let b = wb >> 4u;
    return array<vec4<u32>, 3>(wq(b), wq(b + 1u + 2u * (p / 2u)), wq(b + 2u + 2u * (p / 2u)));
}

// Sub-block s's scale and min from the block's first quad h: d · scale, dmin · min.
fn k4_scale_min_values(h: vec4<u32>, s: u32) -> vec2<f32> {
    return unpack2x16float(h.x) * k4_scale_min(h, s);
}

fn part_values(wb: u32, p: u32) -> array<vec4<f32>, PV4> {
    let q = k4_quads(wb, p);
    let sm = k4_scale_min_values(q[0], p);
    let shift = vec4<u32>(0u, 8u, 16u, 24u) + 4u * (p & 1u);
    var o: array<vec4<f32>, PV4>;
    for (var i = 0u; i < 4u; i++) {
        o[i] = sm.x * vec4<f32>((vec4<u32>(q[1][i]) >> shift) & vec4<u32>(15u)) - sm.y;
        o[i + 4u] = sm.x * vec4<f32>((vec4<u32>(q[2][i]) >> shift) & vec4<u32>(15u)) - sm.y;
    }
    return o;
}
