// Q4_K's 32 values of sub-block p as f16 for the cooperative-matrix products, made in f16 from
// the nibbles without a conversion per value: the generic path (f32 values, then f16) spent
// two conversion instructions per weight, which run at a quarter of the SMs' rate on NVIDIA.
// A nibble q in the low mantissa bits of 1024.0 (f16 0x6400) is the f16 1024 + q, exactly;
// less 1024, it is q. A value is then one f16 fma of the sub-block's f16 scale and min: its
// error is a few f16 roundings of scale × 15 at most, far below Q4_K's step (the scale). They
// are clamped so that scale × 15 − min stays within f16's range, as the generic path clamps
// each value (f16_operands.wgsl).

const NIBBLES_AT_1024: u32 = 0x64006400u;

fn part_values_f16(wb: u32, p: u32) -> array<vec4<f16>, PV4> {
    let b = wb >> 4u;
    let h = wq(b);
    let qa = wq(b + 1u + 2u * (p / 2u));
    let qb = wq(b + 2u + 2u * (p / 2u));
    let dm = unpack2x16float(h.x);
    let sm = k4_scale_min(h, p);
    let dl = vec4<f16>(f16(clamp(dm.x * sm.x, -F16_MAX / 32.0, F16_MAX / 32.0)));
    let ml = vec4<f16>(f16(clamp(dm.y * sm.y, -F16_MAX / 2.0, F16_MAX / 2.0)));
    let shift = 4u * (p & 1u);
    var o: array<vec4<f16>, PV4>;
    for (var i = 0u; i < 8u; i++) {
        let v = select(qa[i % 4u], qb[i % 4u], i >= 4u) >> shift;
        // Bytes 0 and 2 of v, then 1 and 3: each pair's nibbles in the two f16 halves.
        let even = (v & 0x000f000fu) | NIBBLES_AT_1024;
        let odd = ((v >> 8u) & 0x000f000fu) | NIBBLES_AT_1024;
        let e = vec2<f16>(unpack2x16float(even));
        let d = vec2<f16>(unpack2x16float(odd));
        o[i] = fma(dl, vec4<f16>(e.x, d.x, e.y, d.y) - vec4<f16>(1024.0h), -ml);
    }
    return o;
}
