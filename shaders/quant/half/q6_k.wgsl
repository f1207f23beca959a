// Q6_K's 32 values of part p as f16 for the cooperative-matrix products (the layout is
// quant/q6_k.wgsl's): each value's 6 bits as 1024 + q (bytes.wgsl), less 1024 + 32, times the
// 16 values' f16 scale, clamped so that 32 × scale stays within f16's range.

fn part_values_f16(wb: u32, p: u32) -> array<vec4<f16>, PV4> {
    let d = f16at(wb + 208u);
    let n = p / 4u;
    let k = p % 4u;
    let ql0 = wb + 64u * n + 32u * (k % 2u);
    let qh0 = wb + 128u + 32u * n;
    let lshift = 4u * (k / 2u);
    let hshift = 2u * k;
    var o: array<vec4<f16>, PV4>;
    for (var h = 0u; h < 2u; h++) {
        let sc = f32((i32(byte_at(wb + 192u + 2u * p + h)) << 24u) >> 24u);
        let dl = vec4<f16>(f16(clamp(d * sc, -F16_MAX / 32.0, F16_MAX / 32.0)));
        for (var i = 0u; i < 4u; i++) {
            let l = 16u * h + 4u * i;
            let lo = (u32at(ql0 + l) >> lshift) & 0x0f0f0f0fu;
            let hi = ((u32at(qh0 + l) >> hshift) & 0x03030303u) << 4u;
            o[4u * h + i] = dl * (bytes_at_1024(lo | hi) - vec4<f16>(1056.0h));
        }
    }
    return o;
}
