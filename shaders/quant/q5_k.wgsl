// Q5_K (176 B): d, dmin (f16), scales[12] (as Q4_K), qh[32], qs[128].
// Sub-block s: nibbles as Q4_K, fifth bit = bit s of qh[l].
const QK: u32 = 256u;
const BLOCK_BYTES: u32 = 176u;
const PV: u32 = 32u;
const PV4: u32 = 8u;

fn k5_scale_min(sb: u32, s: u32) -> vec2<f32> {
    if s < 4u {
        return vec2<f32>(f32(byte_at(sb + s) & 63u), f32(byte_at(sb + s + 4u) & 63u));
    }
    let a = byte_at(sb + s + 4u);
    let sc = (a & 15u) | ((byte_at(sb + s - 4u) >> 6u) << 4u);
    let m = (a >> 4u) | ((byte_at(sb + s) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

fn part_values(wb: u32, p: u32) -> array<vec4<f32>, PV4> {
    let dm = unpack2x16float(wd(wb >> 2u));
    let sm = k5_scale_min(wb + 4u, p);
    let dl = dm.x * sm.x;
    let ml = dm.y * sm.y;
    let shift = vec4<u32>(4u * (p & 1u));
    let q0 = wb + 48u + 32u * (p / 2u);
    var o: array<vec4<f32>, PV4>;
    for (var i = 0u; i < 8u; i++) {
        let q = (b4(q0 + 4u * i) >> shift) & vec4<u32>(15u);
        let h = ((b4(wb + 16u + 4u * i) >> vec4<u32>(p)) & vec4<u32>(1u)) << vec4<u32>(4u);
        o[i] = dl * vec4<f32>(q | h) - ml;
    }
    return o;
}
