// The KDA delta rule token by token, one workgroup per head. Thread j owns value column j of
// the head's state S [key r][value j], kept in registers across all tokens of the call, so the
// state is read and written once per call (decode: once per token, 64 KiB per head).
// Per token: q, k L2-normalised in the workgroup; S ← Diag(exp g) S; δ = β (v − Sᵀk);
// S ← S + k δᵀ; o = Sᵀq. A prompt runs the same scan (equal to the recurrence by construction).

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
const WG: u32 = 128u;

var<workgroup> sq: array<f32, WG>;
var<workgroup> sk: array<f32, WG>;
var<workgroup> sa: array<f32, WG>;
var<workgroup> red: array<f32, WG>;

fn sum_all(x: f32, j: u32) -> f32 {
    red[j] = x;
    for (var step = WG / 2u; step > 0u; step >>= 1u) {
        workgroupBarrier();
        if j < step {
            red[j] += red[j + step];
        }
    }
    workgroupBarrier();
    let s = red[0];
    workgroupBarrier();
    return s;
}

@compute @workgroup_size(128)
fn kda_scan(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) j: u32) {
    let h = wid.x;
    let live = j < D;
    let sb = h * D * D;
    var s: array<f32, WG>;
    if live {
        for (var r = 0u; r < D; r++) {
            s[r] = state[sb + r * D + j];
        }
    }
    let width = p.heads * D;
    for (var i = 0u; i < p.t; i++) {
        let base = i * width + h * D;
        var qv = 0.0;
        var kv = 0.0;
        if live {
            qv = q[base + j];
            kv = k[base + j];
        }
        let inv_q = 1.0 / sqrt(sum_all(qv * qv, j) + p.l2_eps);
        let inv_k = 1.0 / sqrt(sum_all(kv * kv, j) + p.l2_eps);
        if live {
            sq[j] = (qv * inv_q) * p.q_scale;
            sk[j] = kv * inv_k;
            sa[j] = exp(g[base + j]);
        }
        workgroupBarrier();
        if live {
            var mem = 0.0;
            for (var r = 0u; r < D; r++) {
                s[r] *= sa[r];
                mem += s[r] * sk[r];
            }
            let delta = (v[base + j] - mem) * beta[i * p.heads + h];
            var acc = 0.0;
            for (var r = 0u; r < D; r++) {
                s[r] += sk[r] * delta;
                acc += s[r] * sq[r];
            }
            o[base + j] = acc;
        }
        workgroupBarrier();
    }
    if live {
        for (var r = 0u; r < D; r++) {
            state[sb + r * D + j] = s[r];
        }
    }
}
