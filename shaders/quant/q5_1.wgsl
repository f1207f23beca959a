// Q5_1: d, m (f16), qh (32 fifth bits), 16 bytes of nibbles; value = q * d + m.
const QK: u32 = 32u;
const BLOCK_BYTES: u32 = 24u;
const PV: u32 = 32u;
const PV4: u32 = 8u;

fn part_values(wb: u32, p: u32) -> array<vec4<f32>, PV4> {
    let d = f16at(wb);
    let m = f16at(wb + 2u);
    let qh = u32at(wb + 4u);
    var o: array<vec4<f32>, PV4>;
    for (var i = 0u; i < 4u; i++) {
        let b = b4(wb + 8u + 4u * i);
        let j = vec4<u32>(4u * i) + vec4<u32>(0u, 1u, 2u, 3u);
        let h0 = ((vec4<u32>(qh) >> j) & vec4<u32>(1u)) << vec4<u32>(4u);
        let h1 = ((vec4<u32>(qh) >> (j + 16u)) & vec4<u32>(1u)) << vec4<u32>(4u);
        o[i] = vec4<f32>((b & vec4<u32>(15u)) | h0) * d + m;
        o[i + 4u] = vec4<f32>((b >> vec4<u32>(4u)) | h1) * d + m;
    }
    return o;
}
