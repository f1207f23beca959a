// Workgroup reductions through workgroup memory, for devices without subgroup operations (the
// same `Thread` and `sum_all` as reduce_subgroup.wgsl): a tree of 8 barrier steps.

struct Thread {
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
}

// One value per thread of a 256-thread workgroup.
var<workgroup> partial: array<f32, 256>;

// The sum of every thread's `v`, returned to every thread.
fn sum_all(v: f32, th: Thread) -> f32 {
    partial[th.li] = v;
    for (var step = 128u; step > 0u; step >>= 1u) {
        workgroupBarrier();
        if th.li < step {
            partial[th.li] += partial[th.li + step];
        }
    }
    workgroupBarrier();
    let s = partial[0];
    workgroupBarrier();
    return s;
}
