// Q6_K (210 B): ql[128] (low nibbles), qh[64] (2 high bits), scales[16] (i8), d (f16).
// Value v = 128 n + 32 k + l: nibble k / 2 of ql[64 n + 32 (k % 2) + l], bits 2 k of
// qh[32 n + l], minus 32; scale v / 16.
const QK: u32 = 256u;
const BLOCK_BYTES: u32 = 210u;
const PV: u32 = 32u;
const PV4: u32 = 8u;

fn part_values(wb: u32, p: u32) -> array<vec4<f32>, PV4> {
    let d = f16at(wb + 208u);
    let n = p / 4u;
    let k = p % 4u;
    let ql0 = wb + 64u * n + 32u * (k % 2u);
    let qh0 = wb + 128u + 32u * n;
    let lshift = vec4<u32>(4u * (k / 2u));
    let hshift = vec4<u32>(2u * k);
    var o: array<vec4<f32>, PV4>;
    for (var h = 0u; h < 2u; h++) {
        let sc = f32((i32(byte_at(wb + 192u + 2u * p + h)) << 24u) >> 24u);
        let dl = d * sc;
        for (var i = 0u; i < 4u; i++) {
            let l = 16u * h + 4u * i;
            let lo = (b4(ql0 + l) >> lshift) & vec4<u32>(15u);
            let hi = (b4(qh0 + l) >> hshift) & vec4<u32>(3u);
            o[4u * h + i] = dl * (vec4<f32>(lo | (hi << vec4<u32>(4u))) - 32.0);
        }
    }
    return o;
}
