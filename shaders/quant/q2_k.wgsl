// Q2_K (84 B): scales[16] (low nibble scale, high nibble min), qs[64], d, dmin (f16).
// Value v: 2 bits of qs[32 * (v / 128) + v % 32] at shift 2 * ((v % 128) / 32); scale v / 16.
// A part is 32 values: part p reads shift 2 * (p % 4) of qs[32 * (p / 4)..][..32].
const QK: u32 = 256u;
const BLOCK_BYTES: u32 = 84u;
const PV: u32 = 32u;
const PV4: u32 = 8u;

fn part_values(wb: u32, p: u32) -> array<vec4<f32>, PV4> {
    let d = f16at(wb + 80u);
    let dmin = f16at(wb + 82u);
    let shift = vec4<u32>(2u * (p % 4u));
    let q0 = wb + 16u + 32u * (p / 4u);
    var o: array<vec4<f32>, PV4>;
    for (var h = 0u; h < 2u; h++) {
        let sc = byte_at(wb + 2u * p + h);
        let dl = d * f32(sc & 15u);
        let ml = dmin * f32(sc >> 4u);
        for (var i = 0u; i < 4u; i++) {
            let q = (b4(q0 + 16u * h + 4u * i) >> shift) & vec4<u32>(3u);
            o[4u * h + i] = dl * vec4<f32>(q) - ml;
        }
    }
    return o;
}
