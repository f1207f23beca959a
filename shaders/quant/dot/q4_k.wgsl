// Q4_K dot over 64 values: the 32 bytes qs[32 p..] hold sub-block 2p in their low nibbles and
// 2p + 1 in their high nibbles, so each byte is loaded once. The scales and mins apply once
// per sub-block: Σ (d·sc·q − dmin·m)·x = d·sc·Σ q·x − dmin·m·Σ x.
const PD: u32 = 64u;

fn part_dot(wb: u32, p: u32, xb: u32) -> f32 {
    let dm = unpack2x16float(w[wb >> 2u]);
    let s0 = k4_scale_min(wb + 4u, 2u * p);
    let s1 = k4_scale_min(wb + 4u, 2u * p + 1u);
    let q0 = (wb + 16u + 32u * p) >> 2u;
    var lo = 0.0;
    var hi = 0.0;
    var xlo = 0.0;
    var xhi = 0.0;
    for (var i = 0u; i < 8u; i++) {
        let q = vec4<u32>(w[q0 + i]) >> vec4<u32>(0u, 8u, 16u, 24u);
        let a = x[xb + i];
        let b = x[xb + 8u + i];
        lo += dot(vec4<f32>(q & vec4<u32>(15u)), a);
        hi += dot(vec4<f32>((q >> vec4<u32>(4u)) & vec4<u32>(15u)), b);
        xlo += a.x + a.y + a.z + a.w;
        xhi += b.x + b.y + b.z + b.w;
    }
    return dm.x * (s0.x * lo + s1.x * hi) - dm.y * (s0.y * xlo + s1.y * xhi);
}
