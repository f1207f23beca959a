// Q6_K's 32 values of part p as f16 for the cooperative-matrix products (the layout is
// quant/q6_k.wgsl's): each value's 6 bits as 1024 + q (bytes.wgsl), less 1024 + 32, times the
// 16 values' f16 scale, clamped so that 32 × scale stays within f16's range.

fn part_values_f16(wb: u32, p: u32) -> array<vec4<f16>, PV4> {
    let d = f16at(wb + 208u);
    let at = q6k_part(wb, p);
    var o: array<vec4<f16>, PV4>;
    for (var h = 0u; h < 2u; h++) {
        let dl = vec4<f16>(f16(clamp(d * q6k_scale(wb, p, h), -F16_MAX / 32.0, F16_MAX / 32.0)));
        for (var i = 0u; i < 4u; i++) {
            let q = q6k_values(at, 16u * h + 4u * i);
            o[4u * h + i] = dl * (bytes_at_1024(q) - vec4<f16>(1056.0h));
        }
    }
    return o;
}
