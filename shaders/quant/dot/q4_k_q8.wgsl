// Q4_K decode products on integer dot products, against the activation row that x_q8.wgsl
// staged in workgroup memory. Units, passes and loads as dot/q4_k.wgsl; per unit the 16 weight
// bytes are 32 nibbles: the low ones of a word pair with 4 staged activations of sub-block
// 2 (u % 8 / 2), the high ones with the same 4 of the next sub-block, one dot4I8Packed each.
// Σ (d·sc·q − dmin·m)·x ≈ d·sc·dx·Σ q·xq − dmin·m·dx·Σ xq over the unit's 16 values.
const PD: u32 = 32u;

// This lane's share of rows klo..khi (of RT, row_bytes() apart from byte rb on) · the staged
// activations of the row that x holds from vec4 index xb0 (where stage_x read it, or one of
// the rows stage_rows read).
fn rows_dot(rb: u32, klo: u32, khi: u32, xb0: u32, lane: u32) -> vec4<f32> {
    let units = (p.cols / QK) * 8u;
    // In quads: rows and blocks are multiples of 16 bytes.
    let stride = row_bytes() >> 4u;
    let r0 = rb >> 4u;
    // The row's first staged group (32 values, 8 vec4s).
    let g0 = (xb0 - x_base) / 8u;
    var acc = vec4<f32>(0.0);
    for (var u0 = lane; u0 < units; u0 += TPR * UN) {
        var hd: array<vec4<u32>, 8>;
        var qs: array<vec4<u32>, 8>;
        load_units(r0, stride, u0, units, klo, khi, &hd, &qs);
        for (var i = 0u; i < UN; i++) {
            let u = u0 + i * TPR;
            if u >= units {
                break;
            }
            let part = u % 8u;
            let pair = part / 2u;
            // Sub-blocks (groups of 32 activations) 2 pair and 2 pair + 1 of block u / 8; the
            // unit's values are half part % 2 of each.
            let g = g0 + (u / 8u) * 8u + 2u * pair;
            let xlo = xq[2u * g + part % 2u];
            let xhi = xq[2u * g + 2u + part % 2u];
            let slo = xs[g];
            let shi = xs[g + 1u];
            let sumlo = select(slo.y, slo.z, part % 2u == 1u);
            let sumhi = select(shi.y, shi.z, part % 2u == 1u);
            for (var k = 0u; k < RT; k++) {
                if k >= klo && k < khi {
                    let h = hd[k * UN + i];
                    let q = qs[k * UN + i];
                    let dm = unpack2x16float(h.x);
                    let s0 = k4_scale_min(h, 2u * pair);
                    let s1 = k4_scale_min(h, 2u * pair + 1u);
                    var lo = 0;
                    var hi = 0;
                    for (var j = 0u; j < 4u; j++) {
                        lo += dot4I8Packed(q[j] & 0x0f0f0f0fu, xlo[j]);
                        hi += dot4I8Packed((q[j] >> 4u) & 0x0f0f0f0fu, xhi[j]);
                    }
                    acc[k] += dm.x * (s0.x * slo.x * f32(lo) + s1.x * shi.x * f32(hi))
                        - dm.y * (s0.y * sumlo + s1.y * sumhi);
                }
            }
        }
    }
    return acc;
}
