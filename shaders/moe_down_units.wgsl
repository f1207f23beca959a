// `moe_down` for Q4_K on integer dot products (the host takes this entry instead of
// moe_down.wgsl's there): the same sum, but each lane issues the loads of its unit of the row in
// all pairs + 1 matrices (AHEAD at a time) before its first multiply, so that one memory round
// trip serves them all, where job_dot's load-then-multiply makes one per matrix in turn (9 for
// the 48B model). On an H100 this and matmul_sel_pair_units.wgsl measured no faster than the
// generic entries beyond the noise (tg128 +0.4% together with the KDA gate fold): the
// kernel's time goes elsewhere (issue 7's notes). Uses dot/q4_k_q8.wgsl's unit_load and
// unit_mul through their copies for the experts' weight (_0) and the shared expert's (_1), and
// unit_x of the staging (x_q8.wgsl) or of the 8-bit row read from memory (x_q8_global.wgsl).

// Matrices whose loads are in flight at once: the shared expert's and 8 experts'.
const AHEAD: u32 = 9u;

@compute @workgroup_size(256)
fn moe_down(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let lin = wid.x + wid.y * nwg.x;
    let r = lin * RPW + (li / TPR) * RT;
    let lane = li % TPR;
    let n = min(RT, max(p.rows, r) - r);
    stage_rows(li, 0u, (p.pairs + 1u) * p.cols);
    let units = (p.cols / QK) * 8u;
    // In quads: rows and blocks are multiples of 16 bytes.
    let stride = row_bytes_0() >> 4u;
    var acc = vec4<f32>(0.0);
    for (var kr = 0u; kr < n; kr++) {
        // Matrix m is the shared expert's for m = 0, else the expert of slot m - 1.
        for (var m0 = 0u; m0 <= p.pairs; m0 += AHEAD) {
            for (var u = lane; u < units; u += TPR) {
                var l: array<array<vec4<u32>, 2>, AHEAD>;
                var wt: array<f32, AHEAD>;
                for (var i = 0u; i < AHEAD; i++) {
                    let m = m0 + i;
                    if m == 0u {
                        l[i] = unit_load_1((r + kr) * stride, u);
                        wt[i] = 1.0;
                    } else if m <= p.pairs {
                        l[i] = unit_load_0((ids[m - 1u] * p.rows + r + kr) * stride, u);
                        wt[i] = wts[m - 1u];
                    }
                }
                for (var i = 0u; i < AHEAD; i++) {
                    let m = m0 + i;
                    if m <= p.pairs {
                        let x = unit_x(u, m * p.cols / 32u);
                        acc[kr] += wt[i] * unit_mul_0(l[i][0], l[i][1], u, x);
                    }
                }
            }
        }
    }
    let s = reduce_rows(li, acc);
    if lane == 0u {
        for (var k = 0u; k < n; k++) {
            y0[r + k] = s[k];
        }
    }
}
