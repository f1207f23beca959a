const QK: u32 = 4u;
const BLOCK_BYTES: u32 = 8u;
const PV: u32 = 4u;
const PV4: u32 = 1u;

// bf16 is the top half of an f32.
fn part_values(wb: u32, p: u32) -> array<vec4<f32>, PV4> {
    let a = wd(wb >> 2u);
    let b = wd((wb >> 2u) + 1u);
    return array<vec4<f32>, PV4>(vec4<f32>(bitcast<f32>(a << 16u), bitcast<f32>(a & 0xffff0000u), bitcast<f32>(b << 16u), bitcast<f32>(b & 0xffff0000u)));
}
