// What both Q4_K decode-product walks (dot/q4_k.wgsl, dot/q4_k_q8.wgsl) load before their
// first multiply: for the lane's UN units of a pass (from u0, TPR apart; unit u is quad
// 1 + u % 8 of block u / 8) and each of rows klo..khi of RT (`stride` quads apart from quad
// r0 on), the unit's 16 bytes of qs and its block's first quad (d, dmin, scales), at
// [row · UN + unit].
fn load_units(r0: u32, stride: u32, u0: u32, units: u32, klo: u32, khi: u32, hd: ptr<function, array<vec4<u32>, 8>>, qs: ptr<function, array<vec4<u32>, 8>>) {
    for (var i = 0u; i < UN; i++) {
        let u = u0 + i * TPR;
        for (var k = 0u; k < RT; k++) {
            if u < units && k >= klo && k < khi {
                let b = r0 + (k - klo) * stride + (u / 8u) * 9u;
                (*hd)[k * UN + i] = wq(b);
                (*qs)[k * UN + i] = wq(b + 1u + u % 8u);
            }
        }
    }
}
