// The decode products' workgroup shape and the reduction of each row group's partial sums
// (`matvec`, `matmul_sel`, `matvecs`).

// Threads per row group: a power of two up to 64 (up to MV_WG for an F32 weight of few rows),
// chosen by the host per weight shape. Each
// thread serves RT consecutive rows, so that the activations it loads serve RT rows (4 bytes
// per value against half a byte of Q4_K), where the matrix has rows enough to keep the GPU
// busy with RT > 1.
override TPR: u32 = 16u;
const MV_WG: u32 = 256u;
// 1 to 4.
override RT: u32 = 4u;
// Units (parts) per lane that a type's rows_dot loads before its first multiply, where it
// does so (Q4_K); RT · UN ≤ 8.
override UN: u32 = 1u;
override RPW: u32 = MV_WG / TPR * RT;

var<workgroup> mred: array<vec4<f32>, MV_WG>;

// Sums the TPR partial sums of each row group; the group's lane 0 gets the totals (lanes
// below SG_ROWS get their part). Steps of SG_ROWS lanes or more go through workgroup memory,
// a barrier each; the rest are `shuffle_rows` within a subgroup (kernels.rs prepends SG_ROWS
// and shuffle_rows: the device's fewest subgroup lanes (at least 8) and subgroup shuffles where
// kernels use subgroups, else 1 and nothing). Lane 0 adds the same pairs in the same order
// either way.
fn reduce_rows(li: u32, v: vec4<f32>) -> vec4<f32> {
    var s = v;
    if TPR > SG_ROWS {
        mred[li] = v;
        for (var step = TPR / 2u; step >= SG_ROWS; step >>= 1u) {
            workgroupBarrier();
            if li % TPR < step {
                mred[li] += mred[li + step];
            }
        }
        s = mred[li];
    }
    return shuffle_rows(s);
}
