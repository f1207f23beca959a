// The KDA delta rule token by token. A workgroup owns CB value columns of one head's state
// S [key r][value j]; each column's key rows are split over RG adjacent threads (thread
// (column jj, group rg) holds rows rg, rg + RG, …), so every thread keeps D / RG state values
// in registers across all tokens of the call and the state is read and written once per call
// (decode: once per token). Heads × column blocks workgroups keep the GPU busy even for one
// token.
// Per token: q, k L2-normalised; S ← Diag(exp g) S; δ = β (v − Sᵀk); S ← S + k δᵀ; o = Sᵀq.
// g and β arrive raw: the scan applies their gates as it stages them, g ← a[h] · softplus(g +
// dt_bias) and β ← sigmoid(β) (kda_gates.wgsl), so that they need no dispatch of their own.
// The column sums over r are `group_sum`s over a column's RG threads (kernels.rs prepends
// kda_sum_subgroup.wgsl, shuffles within a subgroup, or kda_sum_workgroup.wgsl).
// The inputs arrive in chunks of TC tokens staged in workgroup memory, with the chunk's q and k
// norms computed there at once: the token loop itself then has no workgroup barrier where
// subgroups serve the sums (a token-serial scan is bound by its per-token synchronisation, not
// by its arithmetic). A prompt runs the same scan (equal to the recurrence by construction).

struct Params {
    t: u32,
    heads: u32,
    d: u32,
    l2_eps: f32,
    q_scale: f32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> state: array<f32>;
@group(0) @binding(6) var<storage, read_write> o: array<f32>;
@group(0) @binding(7) var<uniform> p: Params;
@group(0) @binding(8) var<storage, read> dt_bias: array<f32>;
@group(0) @binding(9) var<storage, read> a: array<f32>;

// The head dim, fixed per pipeline so that the loops over it have a constant trip count.
override D: u32 = 128u;
const WG: u32 = 256u;
// Value columns per workgroup, key-row groups per column (RG is also in the group_sum files).
const CB: u32 = 32u;
// Key rows per thread (head dims up to MAX_D).
const MAX_D: u32 = 256u;
const MAX_RPG: u32 = MAX_D / RG;
// A chunk holds CHUNK values of each of q, k and exp(g): TC = CHUNK / D tokens, at most MAX_TC.
const CHUNK: u32 = 1024u;
const MAX_TC: u32 = 64u;
// What each thread carries of the next chunk in registers.
const PER_QKG: u32 = CHUNK / WG;
const PER_V: u32 = MAX_TC * CB / WG;

var<workgroup> cq: array<f32, CHUNK>;
var<workgroup> ck: array<f32, CHUNK>;
var<workgroup> ca: array<f32, CHUNK>;
var<workgroup> cv: array<f32, MAX_TC * CB>;
var<workgroup> cbeta: array<f32, MAX_TC>;
// Per chunk token: 1 / |q| (times the query scale) and 1 / |k|.
var<workgroup> cinv: array<vec2<f32>, MAX_TC>;
// The head's decay gate bias per key channel.
var<workgroup> cdt: array<f32, MAX_D>;

// One chunk's inputs as a thread loads them: its share of q, k, g (flat over the chunk's
// tokens × D), of its workgroup's value columns, and one β.
struct Chunk {
    q: array<f32, PER_QKG>,
    k: array<f32, PER_QKG>,
    g: array<f32, PER_QKG>,
    v: array<f32, PER_V>,
    beta: f32,
}

// Tokens c0.. (n of them) of head h, value columns from col0.
fn load_chunk(c0: u32, n: u32, h: u32, col0: u32, li: u32) -> Chunk {
    let width = p.heads * D;
    var x: Chunk;
    for (var m = 0u; m < PER_QKG; m++) {
        let e = li + m * WG;
        if e < n * D {
            let at = (c0 + e / D) * width + h * D + e % D;
            x.q[m] = q[at];
            x.k[m] = k[at];
            x.g[m] = g[at];
        }
    }
    for (var m = 0u; m < PER_V; m++) {
        let e = li + m * WG;
        let j = col0 + e % CB;
        if e < n * CB && j < D {
            x.v[m] = v[(c0 + e / CB) * width + h * D + j];
        }
    }
    if li < n {
        x.beta = beta[(c0 + li) * p.heads + h];
    }
    return x;
}

// Stages a loaded chunk (n tokens) in workgroup memory, gating its g and β (a_h is head h's
// a), and computes its tokens' inverse norms. Called by every thread.
fn stage_chunk(x: Chunk, n: u32, li: u32, rg: u32, a_h: f32) {
    for (var m = 0u; m < PER_QKG; m++) {
        let e = li + m * WG;
        if e < n * D {
            cq[e] = x.q[m];
            ck[e] = x.k[m];
            ca[e] = decay(x.g[m], cdt[e % D], a_h);
        }
    }
    for (var m = 0u; m < PER_V; m++) {
        cv[li + m * WG] = x.v[m];
    }
    if li < n {
        cbeta[li] = sigmoid(x.beta);
    }
    workgroupBarrier();
    // Vector u = 2c + (0 for q, 1 for k) of the chunk's 2n, summed by the RG threads of a group.
    for (var u0 = 0u; u0 < 2u * n; u0 += WG / RG) {
        let u = u0 + li / RG;
        var ss = 0.0;
        if u < 2u * n {
            let at = (u / 2u) * D;
            for (var r = rg; r < D; r += RG) {
                let val = select(cq[at + r], ck[at + r], u % 2u == 1u);
                ss += val * val;
            }
        }
        ss = group_sum(ss, li);
        if rg == 0u && u < 2u * n {
            let inv = 1.0 / sqrt(ss + p.l2_eps);
            if u % 2u == 0u {
                cinv[u / 2u].x = inv * p.q_scale;
            } else {
                cinv[u / 2u].y = inv;
            }
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(256)
fn kda_scan(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let blocks = (D + CB - 1u) / CB;
    let h = wid.x / blocks;
    let rg = li % RG;
    let jj = li / RG;
    let col0 = (wid.x % blocks) * CB;
    let j = col0 + jj;
    let rpg = (D + RG - 1u) / RG;
    let sb = h * D * D;
    var s: array<f32, MAX_RPG>;
    for (var m = 0u; m < rpg; m++) {
        let r = rg + m * RG;
        if j < D && r < D {
            s[m] = state[sb + r * D + j];
        } else {
            s[m] = 0.0;
        }
    }
    if li < D {
        cdt[li] = dt_bias[h * D + li];
    }
    let a_h = a[h];
    // The biases are staged before the first chunk's gates read them.
    workgroupBarrier();
    let width = p.heads * D;
    let tc = min(MAX_TC, CHUNK / D);
    // The next chunk is loaded into registers while the current one is processed, so that the
    // scan waits on memory once per call rather than once per chunk.
    var next = load_chunk(0u, min(tc, p.t), h, col0, li);
    for (var c0 = 0u; c0 < p.t; c0 += tc) {
        let n = min(tc, p.t - c0);
        stage_chunk(next, n, li, rg, a_h);
        if c0 + tc < p.t {
            next = load_chunk(c0 + tc, min(tc, p.t - c0 - tc), h, col0, li);
        }
        for (var c = 0u; c < n; c++) {
            let at = c * D;
            let inv = cinv[c];
            var mem = 0.0;
            for (var m = 0u; m < rpg; m++) {
                let r = rg + m * RG;
                if r < D {
                    s[m] *= ca[at + r];
                    mem += s[m] * ck[at + r];
                }
            }
            // δ = β (v − Sᵀk̂), with k̂ = k / |k|: the norm is applied to the sums.
            let delta = (cv[c * CB + jj] - group_sum(mem, li) * inv.y) * cbeta[c];
            let dk = delta * inv.y;
            var acc = 0.0;
            for (var m = 0u; m < rpg; m++) {
                let r = rg + m * RG;
                if r < D {
                    s[m] += ck[at + r] * dk;
                    acc += s[m] * cq[at + r];
                }
            }
            acc = group_sum(acc, li) * inv.x;
            if rg == 0u && j < D {
                o[(c0 + c) * width + h * D + j] = acc;
            }
        }
        // Every thread is done with this chunk before the next is staged over it.
        workgroupBarrier();
    }
    for (var m = 0u; m < rpg; m++) {
        let r = rg + m * RG;
        if j < D && r < D {
            state[sb + r * D + j] = s[m];
        }
    }
}
