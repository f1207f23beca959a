// Q4_K decode products. A unit is one quad (16 bytes) of a block's qs: unit u of a row is quad
// 1 + u % 8 of block u / 8, whose low nibbles are 16 values of sub-block 2 (u % 8 / 2) and high
// nibbles the same 16 of the next sub-block, so each byte is loaded once and neighbouring lanes
// read neighbouring quads. The scales and mins apply once per sub-block:
// Σ (d·sc·q − dmin·m)·x = d·sc·Σ q·x − dmin·m·Σ x.
// A lane loads its UN units of a pass (RT · UN ≤ 8) (TPR apart), each with its block's first quad (d, dmin,
// scales), for all RT rows before the first multiply, so that all its weight bytes are in
// flight at once; the activations are then loaded once for the RT rows.
const PD: u32 = 32u;

// This lane's share of rows klo..khi (of RT, row_bytes() apart from byte rb on) · (x from
// vec4 index xb0).
fn rows_dot(rb: u32, klo: u32, khi: u32, xb0: u32, lane: u32) -> vec4<f32> {
    let units = (p.cols / QK) * 8u;
    // In quads: rows and blocks are multiples of 16 bytes.
    let stride = row_bytes() >> 4u;
    let r0 = rb >> 4u;
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
            // The unit's low nibbles are values 64 pair + 16 (part % 2).. of its block, its
            // high nibbles the next sub-block's, 32 values (8 vec4s) on.
            let xp = xb0 + (u / 8u) * 64u + 16u * pair + 4u * (part % 2u);
            var a: array<vec4<f32>, 4>;
            var b: array<vec4<f32>, 4>;
            var xlo = 0.0;
            var xhi = 0.0;
            for (var j = 0u; j < 4u; j++) {
                a[j] = x[xp + j];
                b[j] = x[xp + 8u + j];
                xlo += a[j].x + a[j].y + a[j].z + a[j].w;
                xhi += b[j].x + b[j].y + b[j].z + b[j].w;
            }
            for (var k = 0u; k < RT; k++) {
                if k >= klo && k < khi {
                    let h = hd[k * UN + i];
                    let q = qs[k * UN + i];
                    let dm = unpack2x16float(h.x);
                    let s0 = k4_scale_min(h, 2u * pair);
                    let s1 = k4_scale_min(h, 2u * pair + 1u);
                    var lo = 0.0;
                    var hi = 0.0;
                    for (var j = 0u; j < 4u; j++) {
                        let v = vec4<u32>(q[j]) >> vec4<u32>(0u, 8u, 16u, 24u);
                        lo += dot(vec4<f32>(v & vec4<u32>(15u)), a[j]);
                        hi += dot(vec4<f32>((v >> vec4<u32>(4u)) & vec4<u32>(15u)), b[j]);
                    }
                    acc[k] += dm.x * (s0.x * lo + s1.x * hi) - dm.y * (s0.y * xlo + s1.y * xhi);
                }
            }
        }
    }
    return acc;
}

// What rows_dot loads before its first multiply: for the lane's UN units of a pass (from u0,
// TPR apart; unit u is quad 1 + u % 8 of block u / 8) and each of rows klo..khi of RT
// (`stride` quads apart from quad r0 on), the unit's 16 bytes of qs and its block's first quad
// (d, dmin, scales), at [row · UN + unit].
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
