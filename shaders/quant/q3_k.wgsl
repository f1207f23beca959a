// Q3_K (110 B): hmask[32], qs[64], scales[12] (sixteen 6-bit scales), d (f16).
// Value v: 2 low bits as Q2_K, the third from bit 4 * (v / 128) + (v % 128) / 32 of
// hmask[v % 32] (clear means minus 4); scale v / 16, stored minus 32.
const QK: u32 = 256u;
const BLOCK_BYTES: u32 = 110u;
const PV: u32 = 32u;
const PV4: u32 = 8u;

fn q3k_scale(wb: u32, s: u32) -> f32 {
    var lo: u32;
    if s < 8u {
        lo = byte_at(wb + 96u + s) & 15u;
    } else {
        lo = byte_at(wb + 96u + s - 8u) >> 4u;
    }
    let hi = (byte_at(wb + 104u + (s % 4u)) >> (2u * (s / 4u))) & 3u;
    return f32(i32(lo | (hi << 4u)) - 32);
}

fn part_values(wb: u32, p: u32) -> array<vec4<f32>, PV4> {
    let d = f16at(wb + 108u);
    let shift = vec4<u32>(2u * (p % 4u));
    let hbit = vec4<u32>(4u * (p / 4u) + p % 4u);
    let q0 = wb + 32u + 32u * (p / 4u);
    var o: array<vec4<f32>, PV4>;
    for (var h = 0u; h < 2u; h++) {
        let dl = d * q3k_scale(wb, 2u * p + h);
        for (var i = 0u; i < 4u; i++) {
            let l = 16u * h + 4u * i;
            let q = vec4<i32>((b4(q0 + l) >> shift) & vec4<u32>(3u));
            let hm = (b4(wb + l) >> hbit) & vec4<u32>(1u);
            o[4u * h + i] = dl * vec4<f32>(q - 4 * vec4<i32>(vec4<u32>(1u) - hm));
        }
    }
    return o;
}
