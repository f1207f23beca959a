// MoE routing and combination on the GPU, so that the chosen experts never visit the host.
// moe_route: per token, sigmoid scores, the n_used experts with the largest score + bias (the
// lower index first on ties, as a stable sort), weights = score / Σ scores × scale, written
// in ascending expert order; moe_router_route: a decoded token's router product, then the
// same choice. moe_combine: out[tok] += Σ weight · expert output, summed in ascending expert
// order (as the CPU backend does) so that both backends round alike.

struct Params {
    n_expert: u32,
    n_used: u32,
    t: u32,
    hidden: u32,
    scale: f32,
    // moe_router_route's input where its producer left out its norm's scale
    // (add_norm_rows.wgsl): the sums of squares' count in norm_ss, and the norm's eps; else 0.
    norm_halves: u32,
    norm_eps: f32,
}

// Written by moe_router_route only.
@group(0) @binding(0) var<storage, read_write> logits: array<f32>;
@group(0) @binding(1) var<storage, read> bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> wts: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<storage, read> ys: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read_write> groups: array<u32>;
// moe_router_route's input row, router weight ([n_expert, hidden] f32) and finish counter.
@group(0) @binding(8) var<storage, read> xr: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read> wr: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read_write> finished: array<atomic<u32>>;
// Where p.norm_halves > 0: the sums of squares of the router's input, and its 8-bit copy,
// whose scales the last workgroup multiplies by the norm's scale for the expert products.
@group(0) @binding(11) var<storage, read> norm_ss: array<f32>;
@group(0) @binding(12) var<storage, read_write> x_q8: array<vec4<u32>>;

// Experts one routing workgroup handles, and experts it chooses per token.
const MAX_EXPERTS: u32 = 1024u;
const MAX_USED: u32 = 64u;
const ROUTE_WG: u32 = 256u;
// No expert: beaten by every expert.
const NONE: u32 = 0xffffffffu;

// The chosen experts of the token in rank order, with their scores (written by `choose`).
var<workgroup> chosen_e: array<u32, MAX_USED>;
var<workgroup> chosen_s: array<f32, MAX_USED>;

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// An f32 as a u32 of the same order, Rust's `total_cmp` order (the CPU backend sorts by it):
// -0 below +0, NaN of either sign beyond the infinities.
fn order_key(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    if (b & 0x80000000u) != 0u {
        return ~b;
    }
    return b | 0x80000000u;
}

// Whether expert e of key k ranks before expert e2 of key k2: a larger key, or the same key and
// a lower index (a stable sort's order).
fn beats(k: u32, e: u32, k2: u32, e2: u32) -> bool {
    return k > k2 || (k == k2 && e < e2);
}

// One workgroup per token: `choose` (moe_choose_subgroup.wgsl or moe_choose_workgroup.wgsl)
// puts the n_used experts of largest sigmoid(logit) + bias in rank order in chosen_e, their
// scores in chosen_s; then `write_choice`.
@compute @workgroup_size(256)
fn moe_route(th: Thread) {
    let tok = th.wid.x + th.wid.y * th.nwg.x;
    if tok >= p.t {
        return;
    }
    choose(tok, th);
    write_choice(tok, th);
}

// Thread r writes the rank-r expert of `choose` at its place in ascending expert order (the
// order moe_combine sums in), weighted by score / Σ scores (summed in rank order, as the CPU
// backend does) × scale.
fn write_choice(tok: u32, th: Thread) {
    if th.li < p.n_used {
        var sum = 0.0;
        var at = 0u;
        let e = chosen_e[th.li];
        for (var k = 0u; k < p.n_used; k++) {
            sum += chosen_s[k];
            if chosen_e[k] < e {
                at++;
            }
        }
        sum += 1e-20;
        ids[tok * p.n_used + at] = e;
        wts[tok * p.n_used + at] = chosen_s[th.li] / sum * p.scale;
    }
}

// Whether this workgroup finished last (moe_router_route).
var<workgroup> last: u32;

// A decoded token's router product and `moe_route` in one dispatch: workgroup e writes expert
// e's logit (its threads share out the row's values, as the F32 decode product does for a
// router of at most 512 rows), and the workgroup that finishes last, by the count in
// finished[0], chooses from all of them (and sets the count back to 0 for the next layer).
// This saves the routing's own dispatch: H100 tg128 386.7 / 387.4 tok/s against 380.1 / 380.9,
// 249 dispatches per token instead of 275. A storage barrier orders each workgroup's logit
// before its count, and the last one's reads after it. WGSL's memory model promises that only
// within a workgroup, but naga emits a device-scope barrier on every backend (Vulkan:
// acquire-release on device memory; Metal: mem_device; D3D12: DeviceMemoryBarrier).
@compute @workgroup_size(256)
fn moe_router_route(th: Thread) {
    let e = th.wid.x + th.wid.y * th.nwg.x;
    if e >= p.n_expert {
        return;
    }
    let n4 = p.hidden / 4u;
    // What the last workgroup's apply_norm_scale reads first, loaded before it knows it is last.
    var ahead_ss = 0.0;
    var ahead_q8 = vec4<f32>(0.0);
    if th.li < p.norm_halves {
        ahead_ss = norm_ss[th.li];
    }
    if p.norm_halves > 0u && th.li < p.hidden / 32u {
        ahead_q8 = bitcast<vec4<f32>>(x_q8[3u * th.li + 2u]);
    }
    var s = 0.0;
    for (var i = th.li; i < n4; i += ROUTE_WG) {
        s += dot(xr[i], wr[e * n4 + i]);
    }
    let logit = sum_all(s, th);
    if th.li == 0u {
        logits[e] = logit;
    }
    storageBarrier();
    if th.li == 0u {
        let before = atomicAdd(&finished[0], 1u);
        last = select(0u, 1u, before == p.n_expert - 1u);
    }
    if workgroupUniformLoad(&last) == 0u {
        return;
    }
    storageBarrier();
    if th.li == 0u {
        atomicStore(&finished[0], 0u);
    }
    if p.norm_halves > 0u {
        apply_norm_scale(th, ahead_ss, ahead_q8);
    }
    choose(0u, th);
    write_choice(0u, th);
}

// The norm's scale that the router's input lacks (add_norm_rows.wgsl), applied by the last
// workgroup: to the logits (the product is linear in its input) and to the scales of the
// input's 8-bit copy, which the expert products then read as a finished row.
// `ss0` and `q80`: this thread's first sum and first group's scales, loaded ahead.
fn apply_norm_scale(th: Thread, ss0: f32, q80: vec4<f32>) {
    var ss = ss0;
    for (var i = th.li + ROUTE_WG; i < p.norm_halves; i += ROUTE_WG) {
        ss += norm_ss[i];
    }
    let inv = 1.0 / sqrt(sum_all(ss, th) / f32(p.hidden) + p.norm_eps);
    for (var e = th.li; e < p.n_expert; e += ROUTE_WG) {
        logits[e] *= inv;
    }
    if th.li < p.hidden / 32u {
        x_q8[3u * th.li + 2u] = bitcast<vec4<u32>>(q80 * inv);
    }
    for (var g = th.li + ROUTE_WG; g < p.hidden / 32u; g += ROUTE_WG) {
        let s = bitcast<vec4<f32>>(x_q8[3u * g + 2u]) * inv;
        x_q8[3u * g + 2u] = bitcast<vec4<u32>>(s);
    }
    // choose() reads other threads' logits.
    storageBarrier();
}

// Experts' outputs summed per value in a batch of this many: their loads are all issued
// before the first is used.
const COMBINE_BATCH: u32 = 8u;

// out[tok] += Σ weight · expert output. ys = expert outputs [t * n_used, hidden], pairs in
// the order of ids, which moe_route writes in ascending expert order: summed in that order.
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
    for (var k0 = 0u; k0 < p.n_used; k0 += COMBINE_BATCH) {
        var w: array<f32, COMBINE_BATCH>;
        var y: array<f32, COMBINE_BATCH>;
        for (var j = 0u; j < COMBINE_BATCH; j++) {
            let k = k0 + j;
            if k < p.n_used {
                w[j] = wts[pb + k];
                y[j] = ys[(pb + k) * p.hidden + c];
            }
        }
        for (var j = 0u; j < COMBINE_BATCH; j++) {
            if k0 + j < p.n_used {
                acc += w[j] * y[j];
            }
        }
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
