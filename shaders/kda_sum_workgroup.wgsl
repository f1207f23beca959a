// kda_scan's column sums through workgroup memory, for devices without subgroup operations
// (the same `RG` and `group_sum` as kda_sum_subgroup.wgsl): two barriers per sum.

// Threads per value column of kda_scan.
const RG: u32 = 8u;

var<workgroup> group_parts: array<f32, 256>;

// The sum of `x` over thread li's group of RG adjacent threads, to each of them (each adds the
// group's values in the same order). Called by every thread of the workgroup.
fn group_sum(x: f32, li: u32) -> f32 {
    group_parts[li] = x;
    workgroupBarrier();
    let g0 = li / RG * RG;
    var s = 0.0;
    for (var i = 0u; i < RG; i++) {
        s += group_parts[g0 + i];
    }
    workgroupBarrier();
    return s;
}
