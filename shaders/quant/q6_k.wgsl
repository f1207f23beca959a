// Q6_K (210 B): ql[128] (low nibbles), qh[64] (2 high bits), scales[16] (i8), d (f16).
// Value v = 128 n + 32 k + l: nibble k / 2 of ql[64 n + 32 (k % 2) + l], bits 2 k of
// qh[32 n + l], minus 32; scale v / 16.
const QK: u32 = 256u;
const BLOCK_BYTES: u32 = 210u;
const PV: u32 = 32u;
const PV4: u32 = 8u;

// Part p (values 32 p..) of the block at wb: its first ql byte, its first qh byte, and the
// shifts of its nibble in ql and of its 2 bits in qh.
fn q6k_part(wb: u32, p: u32) -> vec4<u32> {
    let n = p / 4u;
    let k = p % 4u;
    return vec4<u32>(wb + 64u * n + 32u * (k % 2u), wb + 128u + 32u * n, 4u * (k / 2u), 2u * k);
}

// The 6-bit values of the part at `at` (q6k_part) whose ql and qh bytes are the words `ql`
// and `qh`, four, as the bytes of a word.
fn q6k_word(ql: u32, qh: u32, at: vec4<u32>) -> u32 {
    return ((ql >> at.z) & 0x0f0f0f0fu) | (((qh >> at.w) & 0x03030303u) << 4u);
}

// The 6-bit values l.. of the part at `at` (q6k_part), four, as the bytes of a word.
fn q6k_values(at: vec4<u32>, l: u32) -> u32 {
    return q6k_word(u32at(at.x + l), u32at(at.y + l), at);
}

// Sub-part h's (16 values') scale of part p: a signed byte.
fn q6k_scale(wb: u32, p: u32, h: u32) -> f32 {
    return f32((i32(byte_at(wb + 192u + 2u * p + h)) << 24u) >> 24u);
}

fn part_values(wb: u32, p: u32) -> array<vec4<f32>, PV4> {
    let d = f16at(wb + 208u);
    let at = q6k_part(wb, p);
    var o: array<vec4<f32>, PV4>;
    for (var h = 0u; h < 2u; h++) {
        let dl = d * q6k_scale(wb, p, h);
        for (var i = 0u; i < 4u; i++) {
            let q = q6k_values(at, 16u * h + 4u * i);
            let b = (vec4<u32>(q) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u);
            o[4u * h + i] = dl * (vec4<f32>(b) - 32.0);
        }
    }
    return o;
}
