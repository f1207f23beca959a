// Q4_K's 32 values of sub-block p as f16 for the cooperative-matrix products, from its nibbles
// as 1024 + q (bytes.wgsl), less 1024, in one f16 fma with the sub-block's f16 scale and min:
// an error of a few f16 roundings of scale × 15 at most, far below Q4_K's step (the scale).
// They are clamped so that scale × 15 − min stays within f16's range, as the generic path
// clamps each value (f16_operands.wgsl).

fn part_values_f16(wb: u32, p: u32) -> array<vec4<f16>, PV4> {
    let q = k4_quads(wb, p);
    let sm = k4_scale_min_values(q[0], p);
    let dl = vec4<f16>(f16(clamp(sm.x, -F16_MAX / 32.0, F16_MAX / 32.0)));
    let ml = vec4<f16>(f16(clamp(sm.y, -F16_MAX / 2.0, F16_MAX / 2.0)));
    let shift = 4u * (p & 1u);
    var o: array<vec4<f16>, PV4>;
    for (var i = 0u; i < 8u; i++) {
        let v = (select(q[1][i % 4u], q[2][i % 4u], i >= 4u) >> shift) & 0x0f0f0f0fu;
        o[i] = fma(dl, bytes_at_1024(v) - vec4<f16>(1024.0h), -ml);
    }
    return o;
}
