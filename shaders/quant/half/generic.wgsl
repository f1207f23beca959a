// The cooperative-matrix products' weight values as f16 (`part_values_f16`, see q4_k.wgsl here):
// for block types without their own, the type's f32 `part_values` clamped to f16's range
// (f16_operands.wgsl).

fn part_values_f16(wb: u32, p: u32) -> array<vec4<f16>, PV4> {
    let v = part_values(wb, p);
    var o: array<vec4<f16>, PV4>;
    for (var i = 0u; i < PV4; i++) {
        o[i] = to_f16(v[i]);
    }
    return o;
}
