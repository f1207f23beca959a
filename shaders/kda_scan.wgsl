// The KDA delta rule token by token. A workgroup owns CB value columns of one head's state
// S [key r][value j]; its threads split the key rows into RG groups, so thread (group, column)
// keeps RPG = D / RG state values in registers across all tokens of the call and the state is
// read and written once per call (decode: once per token). Heads × column blocks workgroups
// keep the GPU busy even for one token.
// Per token: q, k L2-normalised in the workgroup; S ← Diag(exp g) S; δ = β (v − Sᵀk);
// S ← S + k δᵀ; o = Sᵀq — the column sums over r reduced across the row groups.
// A prompt runs the same scan (equal to the recurrence by construction).

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

// The head dim, fixed per pipeline so that the loops over it have a constant trip count.
override D: u32 = 128u;
const WG: u32 = 256u;
// Value columns per workgroup, row groups per column.
const CB: u32 = 32u;
const RG: u32 = WG / CB;
// Key rows per thread (head dims up to MAX_D).
const MAX_D: u32 = 256u;
const MAX_RPG: u32 = MAX_D / RG;

var<workgroup> sq: array<f32, MAX_D>;
var<workgroup> sk: array<f32, MAX_D>;
var<workgroup> sa: array<f32, MAX_D>;
var<workgroup> red: array<vec2<f32>, WG>;
var<workgroup> col: array<f32, CB>;

// Σ of x over the workgroup, two values at once.
fn sum2(x: vec2<f32>, li: u32) -> vec2<f32> {
    red[li] = x;
    for (var step = WG / 2u; step > 0u; step >>= 1u) {
        workgroupBarrier();
        if li < step {
            red[li] += red[li + step];
        }
    }
    workgroupBarrier();
    let s = red[0];
    workgroupBarrier();
    return s;
}

// Σ over the row groups of each column's partial sum x; every thread of the column gets it.
fn column_sum(x: f32, jj: u32, rg: u32) -> f32 {
    red[rg * CB + jj].x = x;
    workgroupBarrier();
    if rg == 0u {
        var s = 0.0;
        for (var i = 0u; i < RG; i++) {
            s += red[i * CB + jj].x;
        }
        col[jj] = s;
    }
    workgroupBarrier();
    let s = col[jj];
    workgroupBarrier();
    return s;
}

// What thread li (value column j) reads of token i: its q and k entries and gate (li < D),
// its value column's v, and the head's β.
struct TokenInputs {
    qk: vec2<f32>,
    g: f32,
    v: f32,
    beta: f32,
}

fn token_inputs(i: u32, width: u32, h: u32, li: u32, j: u32) -> TokenInputs {
    let base = i * width + h * D;
    var x = TokenInputs(vec2<f32>(0.0), 0.0, 0.0, beta[i * p.heads + h]);
    if li < D {
        x.qk = vec2<f32>(q[base + li], k[base + li]);
        x.g = g[base + li];
    }
    if j < D {
        x.v = v[base + j];
    }
    return x;
}

@compute @workgroup_size(256)
fn kda_scan(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let blocks = (D + CB - 1u) / CB;
    let h = wid.x / blocks;
    let jj = li % CB;
    let rg = li / CB;
    let j = (wid.x % blocks) * CB + jj;
    let rpg = (D + RG - 1u) / RG;
    let r0 = rg * rpg;
    let sb = h * D * D;
    var s: array<f32, MAX_RPG>;
    for (var m = 0u; m < rpg; m++) {
        let r = r0 + m;
        if j < D && r < D {
            s[m] = state[sb + r * D + j];
        } else {
            s[m] = 0.0;
        }
    }
    let width = p.heads * D;
    // This thread's inputs of the next token are loaded while the current one is processed,
    // so that the token loop waits on barriers only, not on memory.
    var next = token_inputs(0u, width, h, li, j);
    for (var i = 0u; i < p.t; i++) {
        let base = i * width + h * D;
        let cur = next;
        if i + 1u < p.t {
            next = token_inputs(i + 1u, width, h, li, j);
        }
        let qk = cur.qk;
        let norms = sum2(qk * qk, li);
        if li < D {
            sq[li] = qk.x / sqrt(norms.x + p.l2_eps) * p.q_scale;
            sk[li] = qk.y / sqrt(norms.y + p.l2_eps);
            sa[li] = exp(cur.g);
        }
        workgroupBarrier();
        var mem = 0.0;
        for (var m = 0u; m < rpg; m++) {
            let r = r0 + m;
            if r < D {
                s[m] *= sa[r];
                mem += s[m] * sk[r];
            }
        }
        mem = column_sum(mem, jj, rg);
        let delta = (cur.v - mem) * cur.beta;
        var acc = 0.0;
        for (var m = 0u; m < rpg; m++) {
            let r = r0 + m;
            if r < D {
                s[m] += sk[r] * delta;
                acc += s[m] * sq[r];
            }
        }
        acc = column_sum(acc, jj, rg);
        if rg == 0u && j < D {
            o[base + j] = acc;
        }
    }
    for (var m = 0u; m < rpg; m++) {
        let r = r0 + m;
        if j < D && r < D {
            state[sb + r * D + j] = s[m];
        }
    }
}
