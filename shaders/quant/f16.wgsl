const QK: u32 = 4u;
const BLOCK_BYTES: u32 = 8u;
const PV: u32 = 4u;
const PV4: u32 = 1u;

fn part_values(wb: u32, p: u32) -> array<vec4<f32>, PV4> {
    let i = wb >> 2u;
    return array<vec4<f32>, PV4>(vec4<f32>(unpack2x16float(wd(i)), unpack2x16float(wd(i + 1u))));
}
