// Workgroup reductions over subgroups (kernels.rs prepends this file, or reduce_workgroup.wgsl
// where the device has no subgroup operations; both define `Thread`, `Best`, `sum_all` and
// `argmax_all`). A kernel takes its builtins as one `Thread`, so that only this variant asks
// for the subgroup ones.

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
var<workgroup> partial_i: array<u32, 256>;

// The sum of every thread's `v`, returned to every thread: a subgroup sum, one barrier, then
// each thread adds up the subgroups' partial sums itself, in the same order (8 on 32-wide
// subgroups; no second barrier to hand the total out). Called once per dispatch: a second
// call would need a barrier before it.
fn sum_all(v: f32, th: Thread) -> f32 {
    let s = subgroupAdd(v);
    if th.lane == 0u {
        partial[th.sg] = s;
    }
    workgroupBarrier();
    var x = 0.0;
    for (var j = 0u; j < th.nsg; j++) {
        x += partial[j];
    }
    return x;
}

// A value and its index.
struct Best {
    v: f32,
    i: u32,
}

// The largest of every thread's value `v` at index `i` and its index (the lowest among equal
// values), returned to every thread. `v` must not be NaN. Called once per dispatch.
fn argmax_all(v: f32, i: u32, th: Thread) -> Best {
    let m = subgroupMax(v);
    let mi = subgroupMin(select(0xffffffffu, i, v == m));
    if th.lane == 0u {
        partial[th.sg] = m;
        partial_i[th.sg] = mi;
    }
    workgroupBarrier();
    var b = Best(-3.4028235e38, 0xffffffffu);
    for (var j = 0u; j < th.nsg; j++) {
        let pv = partial[j];
        let pi = partial_i[j];
        if pv > b.v || (pv == b.v && pi < b.i) {
            b = Best(pv, pi);
        }
    }
    return b;
}
