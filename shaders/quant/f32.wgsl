// F32: a "block" is 4 values so that rows only need a length divisible by 4.
const QK: u32 = 4u;
const BLOCK_BYTES: u32 = 16u;
const PV: u32 = 4u;
const PV4: u32 = 1u;

fn part_values(wb: u32, p: u32) -> array<vec4<f32>, PV4> {
    let i = wb >> 2u;
    return array<vec4<f32>, PV4>(vec4<f32>(bitcast<f32>(wd(i)), bitcast<f32>(wd(i + 1u)), bitcast<f32>(wd(i + 2u)), bitcast<f32>(wd(i + 3u))));
}
