// kda_scan's column sums within a subgroup (kernels.rs prepends this file, or
// kda_sum_workgroup.wgsl where the device has no subgroup operations): a column's RG threads
// are adjacent lanes of one subgroup (the device's subgroups have at least 8 lanes), so three
// shuffles sum them without a workgroup barrier.

// Threads per value column of kda_scan.
const RG: u32 = 8u;

// The sum of `x` over thread li's group of RG adjacent threads, to each of them (the same
// value in every lane: each adds the same pairs).
fn group_sum(x: f32, li: u32) -> f32 {
    var s = x + subgroupShuffleXor(x, 1u);
    s += subgroupShuffleXor(s, 2u);
    return s + subgroupShuffleXor(s, 4u);
}
