// `moe_down` for Q4_K on integer dot products (the host takes this entry instead of
// moe_down.wgsl's there): the same sum, but each lane issues the loads of its unit of the row in
// all pairs + 1 matrices (AHEAD at a time) before its first multiply, so that one memory round
// trip serves them all, where job_dot's load-then-multiply makes one per matrix in turn (9 for
// the 48B model). On an H100 this and matmul_sel_pair_units.wgsl measured no faster than the
// generic entries beyond the noise (tg128 +0.4% together with the KDA gate fold): the
// kernel's time goes elsewhere (issue 7's notes). Uses dot/q4_k_q8.wgsl's unit_load and
// unit_mul through their copies for the experts' weight (_0) and the shared expert's (_1), and
// unit_x of the staging (x_q8.wgsl) or of the 8-bit row read from memory (x_q8_global.wgsl).

// A row's matrices are split over SPLIT parts of the workgroup's row groups (MV_WG / TPR of
// them, a multiple of SPLIT): the workgroup serves RPW / SPLIT rows, part i sums matrices
// i · (pairs + 1) / SPLIT up to (i + 1) · (pairs + 1) / SPLIT of each (none where SPLIT >
// pairs + 1 leaves it empty), and part 0 adds the others' sums to its own. With one part the
// 48B model's 2304 rows made 144 workgroups whose lanes multiplied 18 units each in turn, with
// too few warps per SM to hide the multiplies' latency (leaving the multiplies out saved 7 µs
// of the kernel's 20); two parts double the warps and halve each one's chain: H100 tg128
// 325.2 / 325.5 against 307.9 / 308.4 tok/s alternated. The host sets it (MOE_DOWN_SPLIT in
// matmul.rs says what each count measured).
override SPLIT: u32 = 1u;

// Matrices whose loads are in flight at once: all 2 or 3 of each of the 48B model's four
// parts. With two parts (4 or 5 matrices each), all five at once held registers that left
// fewer warps on each SM, and three were faster: H100 tg128 351.5 / 351.3 against 347.2 tok/s
// (with the pair's AHEAD at 2 and one unit ahead in the other products); two were no better
// (350.9 / 350.2), nor one (347.8 / 350.1).
const AHEAD: u32 = 3u;

// Parts 1.. of a row group's sums, for part 0 to add.
var<workgroup> part_sums: array<vec4<f32>, MV_WG / 4u>;

@compute @workgroup_size(256)
fn moe_down(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let lin = wid.x + wid.y * nwg.x;
    let groups = MV_WG / TPR / SPLIT;
    let part = li / TPR / groups;
    let rg = (li / TPR) % groups;
    let r = lin * (RPW / SPLIT) + rg * RT;
    let lane = li % TPR;
    let n = min(RT, max(p.rows, r) - r);
    stage_rows(li, 0u, (p.pairs + 1u) * p.cols);
    let m_lo = part * (p.pairs + 1u) / SPLIT;
    let m_hi = (part + 1u) * (p.pairs + 1u) / SPLIT;
    let units = (p.cols / QK) * 8u;
    // In quads: rows and blocks are multiples of 16 bytes.
    let stride = row_bytes_0() >> 4u;
    var acc = vec4<f32>(0.0);
    for (var kr = 0u; kr < n; kr++) {
        // Matrix m is the shared expert's for m = 0, else the expert of slot m - 1.
        for (var m0 = m_lo; m0 < m_hi; m0 += AHEAD) {
            for (var u = lane; u < units; u += TPR) {
                var l: array<array<vec4<u32>, 2>, AHEAD>;
                var wt: array<f32, AHEAD>;
                for (var i = 0u; i < AHEAD; i++) {
                    let m = m0 + i;
                    if m == 0u {
                        l[i] = unit_load_1((r + kr) * stride, u);
                        wt[i] = 1.0;
                    } else if m < m_hi {
                        l[i] = unit_load_0((ids[m - 1u] * p.rows + r + kr) * stride, u);
                        wt[i] = wts[m - 1u];
                    }
                }
                for (var i = 0u; i < AHEAD; i++) {
                    let m = m0 + i;
                    if m < m_hi {
                        let x = unit_x(u, m * p.cols / 32u);
                        acc[kr] += wt[i] * unit_mul_0(l[i][0], l[i][1], u, x);
                    }
                }
            }
        }
    }
    var s = reduce_rows(li, acc);
    if SPLIT > 1u {
        if lane == 0u && part > 0u {
            part_sums[(part - 1u) * groups + rg] = s;
        }
        workgroupBarrier();
        if part == 0u {
            for (var i = 1u; i < SPLIT; i++) {
                s += part_sums[(i - 1u) * groups + rg];
            }
        }
    }
    if lane == 0u && part == 0u {
        for (var k = 0u; k < n; k++) {
            y0[r + k] = s[k];
        }
    }
}
