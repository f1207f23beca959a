// Workgroup reductions through workgroup memory, for devices without subgroup operations (the
// same `Thread`, `Best`, `sum_all` and `argmax_all` as reduce_subgroup.wgsl): trees of 8
// barrier steps.

struct Thread {
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
}

// One value per thread of a 256-thread workgroup.
var<workgroup> partial: array<f32, 256>;
var<workgroup> partial_i: array<u32, 256>;

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

// A value and its index.
struct Best {
    v: f32,
    i: u32,
}

// The largest of every thread's value `v` at index `i` and its index (the lowest among equal
// values), returned to every thread. `v` must not be NaN.
fn argmax_all(v: f32, i: u32, th: Thread) -> Best {
    partial[th.li] = v;
    partial_i[th.li] = i;
    for (var step = 128u; step > 0u; step >>= 1u) {
        workgroupBarrier();
        if th.li < step {
            let ov = partial[th.li + step];
            let oi = partial_i[th.li + step];
            if ov > partial[th.li] || (ov == partial[th.li] && oi < partial_i[th.li]) {
                partial[th.li] = ov;
                partial_i[th.li] = oi;
            }
        }
    }
    workgroupBarrier();
    let r = Best(partial[0], partial_i[0]);
    workgroupBarrier();
    return r;
}
