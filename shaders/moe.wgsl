// MoE routing and combination on the GPU, so that the chosen experts never visit the host.
// moe_route: per token, sigmoid scores, the n_used experts with the largest score + bias (the
// lower index first on ties, as a stable sort), weights = score / Σ scores × scale.
// moe_combine: out[tok] += Σ weight · expert output, summed in ascending expert order (as the
// CPU backend does) so that both backends round alike.

struct Params {
    n_expert: u32,
    n_used: u32,
    t: u32,
    hidden: u32,
    scale: f32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> wts: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<storage, read> ys: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read_write> groups: array<u32>;

// Experts one routing workgroup holds in workgroup memory.
const MAX_EXPERTS: u32 = 1024u;
const ROUTE_WG: u32 = 256u;

var<workgroup> choice: array<f32, MAX_EXPERTS>;
var<workgroup> chosen_score: array<f32, 64>;

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// One workgroup per token. Every expert's rank in the stable descending order of score + bias
// is the number of experts that beat it (larger, or equal with a lower index); the n_used of
// rank below n_used are the chosen ones, written in rank order. One barrier instead of n_used
// serial passes over the experts.
@compute @workgroup_size(256)
fn moe_route(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let tok = wid.x + wid.y * nwg.x;
    if tok >= p.t {
        return;
    }
    let lb = tok * p.n_expert;
    for (var e = li; e < p.n_expert; e += ROUTE_WG) {
        var v = sigmoid(logits[lb + e]) + bias[e];
        // NaN would break the total order; it ranks last.
        if v != v {
            v = -3.4028235e38;
        }
        choice[e] = v;
    }
    workgroupBarrier();
    for (var e = li; e < p.n_expert; e += ROUTE_WG) {
        let v = choice[e];
        var rank = 0u;
        for (var j = 0u; j < p.n_expert; j++) {
            let c = choice[j];
            if c > v || (c == v && j < e) {
                rank++;
            }
        }
        if rank < p.n_used {
            ids[tok * p.n_used + rank] = e;
            chosen_score[rank] = sigmoid(logits[lb + e]);
        }
    }
    workgroupBarrier();
    if li < p.n_used {
        var sum = 0.0;
        for (var k = 0u; k < p.n_used; k++) {
            sum += chosen_score[k];
        }
        sum += 1e-20;
        wts[tok * p.n_used + li] = chosen_score[li] / sum * p.scale;
    }
}

// ys = expert outputs [t * n_used, hidden], pairs in routing order.
@compute @workgroup_size(256)
fn moe_combine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.t * p.hidden {
        return;
    }
    let tok = i / p.hidden;
    let c = i % p.hidden;
    let pb = tok * p.n_used;
    var acc = out[i];
    var last = -1;
    for (var k = 0u; k < p.n_used; k++) {
        // The slot holding the next expert id above `last`.
        var slot = 0u;
        var se = 0x7fffffff;
        for (var s = 0u; s < p.n_used; s++) {
            let e = i32(ids[pb + s]);
            if e > last && e < se {
                se = e;
                slot = s;
            }
        }
        last = se;
        acc += wts[pb + slot] * ys[(pb + slot) * p.hidden + c];
    }
    out[i] = acc;
}

var<workgroup> counts: array<atomic<u32>, MAX_EXPERTS>;
var<workgroup> starts: array<u32, MAX_EXPERTS>;

// The t · n_used (token, slot) pairs grouped by expert, for the prompt's expert products:
// groups = [pair indices, expert by expert | each expert's start, then the total]. One
// workgroup; the order inside an expert's list is arbitrary (each pair's products are
// computed independently).
@compute @workgroup_size(256)
fn moe_group(@builtin(local_invocation_index) li: u32) {
    let pairs = p.t * p.n_used;
    for (var e = li; e < p.n_expert; e += 256u) {
        atomicStore(&counts[e], 0u);
    }
    workgroupBarrier();
    for (var q = li; q < pairs; q += 256u) {
        atomicAdd(&counts[ids[q]], 1u);
    }
    workgroupBarrier();
    if li == 0u {
        var run = 0u;
        for (var e = 0u; e < p.n_expert; e++) {
            starts[e] = run;
            groups[pairs + e] = run;
            run += atomicLoad(&counts[e]);
            atomicStore(&counts[e], 0u);
        }
        groups[pairs + p.n_expert] = run;
    }
    workgroupBarrier();
    for (var q = li; q < pairs; q += 256u) {
        let e = ids[q];
        groups[starts[e] + atomicAdd(&counts[e], 1u)] = q;
    }
}
