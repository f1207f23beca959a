// Q4_0: d (f16), 16 bytes of nibbles; byte j holds value j (low) and j + 16 (high), minus 8.
const QK: u32 = 32u;
const BLOCK_BYTES: u32 = 18u;
const PV: u32 = 32u;
const PV4: u32 = 8u;

fn part_values(wb: u32, p: u32) -> array<vec4<f32>, PV4> {
    let d = f16at(wb);
    var o: array<vec4<f32>, PV4>;
    for (var i = 0u; i < 4u; i++) {
        let b = b4(wb + 2u + 4u * i);
        o[i] = (vec4<f32>(b & vec4<u32>(15u)) - 8.0) * d;
        o[i + 4u] = (vec4<f32>(b >> vec4<u32>(4u)) - 8.0) * d;
    }
    return o;
}
