// Workgroup reductions over subgroups (kernels.rs prepends this file, or reduce_workgroup.wgsl
// where the device has no subgroup operations; both define `Thread` and `sum_all`). A kernel
// takes its builtins as one `Thread`, so that only this variant asks for the subgroup ones.

struct Thread {
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) nsg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sgs: u32,
}

// One partial result per subgroup (a workgroup of 256 has at most 256 subgroups).
var<workgroup> partial: array<f32, 256>;

// The sum of every thread's `v`, returned to every thread: a subgroup sum, one barrier, then
// each subgroup sums the subgroups' partial sums itself (no second barrier to hand the total
// out). Called once per dispatch: a second call would need a barrier before it.
fn sum_all(v: f32, th: Thread) -> f32 {
    let s = subgroupAdd(v);
    if th.lane == 0u {
        partial[th.sg] = s;
    }
    workgroupBarrier();
    var x = 0.0;
    for (var j = th.lane; j < th.nsg; j += th.sgs) {
        x += partial[j];
    }
    return subgroupAdd(x);
}
