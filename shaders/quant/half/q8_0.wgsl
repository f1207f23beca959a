// Q8_0's 32 values as f16 for the cooperative-matrix products: each signed byte, offset by 128
// (its top bit flipped), as 1024 + 128 + q (bytes.wgsl), less 1152, times the block's scale,
// clamped so that 128 × scale stays within f16's range.

fn part_values_f16(wb: u32, p: u32) -> array<vec4<f16>, PV4> {
    let d = vec4<f16>(f16(clamp(f16at(wb), -F16_MAX / 128.0, F16_MAX / 128.0)));
    var o: array<vec4<f16>, PV4>;
    for (var i = 0u; i < 8u; i++) {
        o[i] = d * (bytes_at_1024(u32at(wb + 2u + 4u * i) ^ 0x80808080u) - vec4<f16>(1152.0h));
    }
    return o;
}
