// Q3_K's 32 values of part p as f16 for the cooperative-matrix products (the layout is
// quant/q3_k.wgsl's): each value's code c (2 low bits from qs, the third from bit p of hmask)
// as 1024 + c (bytes.wgsl), less 1024 + 4, times the 16 values' f16 scale, clamped so that
// 4 × scale stays within f16's range.

fn part_values_f16(wb: u32, p: u32) -> array<vec4<f16>, PV4> {
    let d = f16at(wb + 108u);
    let q0 = wb + 32u + 32u * (p / 4u);
    let shift = 2u * (p % 4u);
    var o: array<vec4<f16>, PV4>;
    for (var h = 0u; h < 2u; h++) {
        let sc = d * q3k_scale(wb, 2u * p + h);
        let dl = vec4<f16>(f16(clamp(sc, -F16_MAX / 4.0, F16_MAX / 4.0)));
        for (var i = 0u; i < 4u; i++) {
            let l = 16u * h + 4u * i;
            let lo = (u32at(q0 + l) >> shift) & 0x03030303u;
            let c = lo | (((u32at(wb + l) >> p) & 0x01010101u) << 2u);
            o[4u * h + i] = dl * (bytes_at_1024(c) - vec4<f16>(1028.0h));
        }
    }
    return o;
}
