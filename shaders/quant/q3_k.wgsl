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

// The byte of qs where part p's values start (its 2 low bits at shift 2 (p % 4)); its hmask
// bytes start at the block's.
fn q3k_qs(wb: u32, p: u32) -> u32 {
    return wb + 32u + 32u * (p / 4u);
}

// The codes c (0..7: value c − 4) of four adjacent values of part p, from the qs and hmask
// words that hold them, as the bytes of a word: the 2 low bits, then bit p of hmask.
fn q3k_codes(qs: u32, hm: u32, p: u32) -> u32 {
    return ((qs >> (2u * (p % 4u))) & 0x03030303u) | (((hm >> p) & 0x01010101u) << 2u);
}

fn part_values(wb: u32, p: u32) -> array<vec4<f32>, PV4> {
    let d = f16at(wb + 108u);
    let q0 = q3k_qs(wb, p);
    var o: array<vec4<f32>, PV4>;
    for (var h = 0u; h < 2u; h++) {
        let dl = d * q3k_scale(wb, 2u * p + h);
        for (var i = 0u; i < 4u; i++) {
            let l = 16u * h + 4u * i;
            let c = q3k_codes(u32at(q0 + l), u32at(wb + l), p);
            let b = (vec4<u32>(c) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u);
            o[4u * h + i] = dl * (vec4<f32>(b) - 4.0);
        }
    }
    return o;
}
