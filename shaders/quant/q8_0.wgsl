// Q8_0: d (f16), 32 × i8. 34 bytes.
const QK: u32 = 32u;
const BLOCK_BYTES: u32 = 34u;
const PV: u32 = 32u;
const PV4: u32 = 8u;

fn part_values(wb: u32, p: u32) -> array<vec4<f32>, PV4> {
    let d = f16at(wb);
    var o: array<vec4<f32>, PV4>;
    for (var i = 0u; i < 8u; i++) {
        o[i] = vec4<f32>(b4i(wb + 2u + 4u * i)) * d;
    }
    return o;
}
