// Q3_K's 32 values of part p as f16 for the cooperative-matrix products (the layout is
// quant/q3_k.wgsl's): each value's code c (q3k_codes) as 1024 + c (bytes.wgsl), less 1024 + 4,
// times the 16 values' f16 scale, clamped so that 4 × scale stays within f16's range.

fn part_values_f16(wb: u32, p: u32) -> array<vec4<f16>, PV4> {
    let d = f16at(wb + 108u);
    let q0 = q3k_qs(wb, p);
    var o: array<vec4<f16>, PV4>;
    for (var h = 0u; h < 2u; h++) {
        let sc = d * q3k_scale(wb, 2u * p + h);
        let dl = vec4<f16>(f16(clamp(sc, -F16_MAX / 4.0, F16_MAX / 4.0)));
        for (var i = 0u; i < 4u; i++) {
            let l = 16u * h + 4u * i;
            let c = q3k_codes(u32at(q0 + l), u32at(wb + l), p);
            o[4u * h + i] = dl * (bytes_at_1024(c) - vec4<f16>(1028.0h));
        }
    }
    return o;
}
