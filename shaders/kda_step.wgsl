// A decoded token's KDA layer between its projections and its output projection, one
// workgroup per head: the decay's and the output gate's up-projections of their low-rank
// inputs (w0 · x0, w1 · x1, kda_up.wgsl), the delta rule on the head's state, and the gated
// RMSNorm of its output, written as f32 to `o` and, where p.q8 is 1, in 8 bits to `q8_row`
// (q8_half.wgsl) for the output projection to read without staging. Split over several
// workgroups per head as kda_scan.wgsl is, the norm's sum would need a dispatch of its own.
// The delta rule is kda_scan.wgsl's for one token: q, k L2-normalised; S ← Diag(exp g) S;
// δ = β (v − Sᵀk); S ← S + k δᵀ; o = Sᵀq; then o ← norm ⊙ o / sqrt(mean(o²) + eps) ⊙
// sigmoid(gate) over the head.
// A thread per value column and group of RG key rows: (column j, group rg) holds rows rg,
// rg + RG, … in registers. A warp holds 32 adjacent columns of one group, so that each of its
// state loads and stores is one row's 128 contiguous bytes (adjacent lanes holding one
// column's groups, as kda_scan's do, made the state's loads and stores a third of the step);
// a column's sums over its groups meet in workgroup memory. The whole head takes MAX_D · RG
// threads; the host runs the step only where the device has subgroups (the up-projections'
// quarters and the norms' sums) and allows that workgroup size.

struct Params {
    heads: u32,
    q8: u32,
    l2_eps: f32,
    q_scale: f32,
    eps: f32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> state: array<f32>;
@group(0) @binding(5) var<storage, read_write> o: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;
@group(0) @binding(7) var<storage, read> dt_bias: array<f32>;
@group(0) @binding(8) var<storage, read> a: array<f32>;
@group(0) @binding(9) var<storage, read> norm: array<f32>;
@group(0) @binding(10) var<storage, read> x0: array<vec4<f32>>;
@group(0) @binding(11) var<storage, read> x1: array<vec4<f32>>;
@group(0) @binding(14) var<storage, read_write> q8_row: array<vec4<u32>>;

// The head dim and the up-projections' rank, fixed per pipeline so that the loops over them
// have constant trip counts.
override D: u32 = 128u;
override RANK: u32 = 128u;
// Widest head (the host checks).
const MAX_D: u32 = 128u;
const WG: u32 = 1024u;
// Key-row groups, and state rows per thread.
const RG: u32 = WG / MAX_D;
const RPG: u32 = MAX_D / RG;

// q, then k.
var<workgroup> sqk: array<f32, 2 * MAX_D>;
// exp of the gated decay per key channel; sigmoid of the gate per value channel.
var<workgroup> sa: array<f32, MAX_D>;
var<workgroup> sgate: array<f32, MAX_D>;
// Per subgroup (at least 8 lanes): its share of a sum.
var<workgroup> parts: array<f32, WG / 8u>;
// Each thread's share of its column's sums (δ's, then the output's).
var<workgroup> csum_mem: array<f32, WG>;
var<workgroup> csum_acc: array<f32, WG>;
// The normed output, for store_q8_half.
var<workgroup> q8_vals: array<f32, MAX_D>;

// Each subgroup's sum of x into parts[sg], for every thread to read after the barrier.
fn share_subgroup_sums(x: f32, sg: u32, lane: u32) {
    let s = subgroupAdd(x);
    if lane == 0u {
        parts[sg] = s;
    }
    workgroupBarrier();
}

@compute @workgroup_size(1024)
fn kda_step(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) nsg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sgs: u32,
) {
    let h = wid.x;
    let base = h * D;
    let sb = h * D * D;
    let rg = li / MAX_D;
    let j = li % MAX_D;
    let live = j < D;
    var vj = 0.0;
    if live {
        vj = v[base + j];
    }
    let b = sigmoid(beta[h]);
    // Four adjacent threads per up-projection row: row e < MAX_D is key channel e's decay,
    // row MAX_D + c value channel c's gate.
    let e = li / 4u;
    let quarter = li % 4u;
    var u = 0.0;
    if e < D {
        u = up_dot_0(base + e, quarter);
    } else if e >= MAX_D && e - MAX_D < D {
        u = up_dot_1(base + e - MAX_D, quarter);
    }
    // The state's loads after the up-projections' (which the first barrier waits for), though
    // they depend on nothing: H100 tg128 404.1 / 403.4 / 404.9 against 402.5 / 402.7 / 403.0
    // with the state's first, alternated.
    var s: array<f32, RPG>;
    for (var m = 0u; m < RPG; m++) {
        let r = rg + m * RG;
        s[m] = 0.0;
        if live && r < D {
            s[m] = state[sb + r * D + j];
        }
    }
    u += subgroupShuffleXor(u, 1u);
    u += subgroupShuffleXor(u, 2u);
    if quarter == 0u && e < D {
        sa[e] = decay(u, dt_bias[base + e], a[h]);
    } else if quarter == 0u && e >= MAX_D && e - MAX_D < D {
        sgate[e - MAX_D] = sigmoid(u);
    }
    // Threads below MAX_D hold q, the next MAX_D k; their squares summed per subgroup.
    var sq = 0.0;
    if li < D || (li >= MAX_D && li - MAX_D < D) {
        var x = 0.0;
        if li < MAX_D {
            x = q[base + li];
        } else {
            x = k[base + li - MAX_D];
        }
        sqk[li] = x;
        sq = x * x;
    }
    share_subgroup_sums(sq, sg, lane);
    var nq = 0.0;
    var nk = 0.0;
    for (var i = 0u; i < 2u * MAX_D / sgs; i++) {
        if i * sgs < MAX_D {
            nq += parts[i];
        } else {
            nk += parts[i];
        }
    }
    let inv_q = 1.0 / sqrt(nq + p.l2_eps) * p.q_scale;
    let inv_k = 1.0 / sqrt(nk + p.l2_eps);
    var mem = 0.0;
    for (var m = 0u; m < RPG; m++) {
        let r = rg + m * RG;
        if r < D {
            s[m] *= sa[r];
            mem += s[m] * sqk[MAX_D + r];
        }
    }
    // δ = β (v − Sᵀk̂), with k̂ = k / |k|: the norm is applied to the sums.
    csum_mem[li] = mem;
    workgroupBarrier();
    var cm = 0.0;
    for (var g = 0u; g < RG; g++) {
        cm += csum_mem[g * MAX_D + j];
    }
    let delta = (vj - cm * inv_k) * b;
    let dk = delta * inv_k;
    var acc = 0.0;
    for (var m = 0u; m < RPG; m++) {
        let r = rg + m * RG;
        if r < D {
            s[m] += sqk[MAX_D + r] * dk;
            acc += s[m] * sqk[r];
        }
    }
    csum_acc[li] = acc;
    workgroupBarrier();
    var ca = 0.0;
    for (var g = 0u; g < RG; g++) {
        ca += csum_acc[g * MAX_D + j];
    }
    let oj = ca * inv_q;
    for (var m = 0u; m < RPG; m++) {
        let r = rg + m * RG;
        if live && r < D {
            state[sb + r * D + j] = s[m];
        }
    }
    // The output's squares, one lane per column.
    var oo = 0.0;
    if rg == 0u && live {
        oo = oj * oj;
    }
    // Every thread read the q and k sums in `parts` before the column sums' barriers.
    share_subgroup_sums(oo, sg, lane);
    var total = 0.0;
    for (var i = 0u; i < nsg; i++) {
        total += parts[i];
    }
    let inv = 1.0 / sqrt(total / f32(D) + p.eps);
    if rg == 0u && live {
        let y = norm[j] * (oj * inv) * sgate[j];
        o[base + j] = y;
        q8_vals[j] = y;
    }
    if p.q8 == 0u {
        return;
    }
    workgroupBarrier();
    if li < D / 16u {
        store_q8_half(base + 16u * li, 16u * li);
    }
}
