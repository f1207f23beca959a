// Absorbed MLA over the latent cache (one shared "KV head" of width kv_lora + rope).
// mla_append normalises the new latents into the cache; mla_attend scores one (token, head)
// pair against one split of CH cached positions and keeps an unnormalised partial (max, sum,
// Σ p·c); mla_combine merges the splits. Splitting over the cache length keeps every SM busy
// in a long-context decode, where there is only one token and a few heads.

struct Params {
    heads: u32,
    lora: u32,
    rope: u32,
    nope: u32,
    pos: u32,
    t: u32,
    nsplit: u32,
    scale: f32,
    eps: f32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> cache: array<f32>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
// The cache again, as vec4s, for mla_attend (which only reads it).
@group(0) @binding(5) var<storage, read> cache4: array<vec4<f32>>;

const WG: u32 = 128u;
const CH: u32 = 128u;

// Heads per mla_attend workgroup: 1, 2, 4 or 8 (MAXH), dividing the head count (the host's
// choice: 8 for prompts, whose attention reads the cache once per token and head group).
override HG: u32 = 1u;
const MAXH: u32 = 8u;

var<workgroup> red: array<f32, WG>;
var<workgroup> red_h: array<f32, MAXH * WG>;
var<workgroup> sp: array<f32, MAXH * CH>;
// Each head's query against the cached width: q_abs then the rope part (MAX_CW4 vec4s).
const MAX_CW4: u32 = 160u;
var<workgroup> sq: array<vec4<f32>, MAXH * MAX_CW4>;

fn lin_id(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

fn reduce(x: f32, j: u32, is_max: bool) -> f32 {
    red[j] = x;
    for (var step = WG / 2u; step > 0u; step >>= 1u) {
        workgroupBarrier();
        if j < step {
            if is_max {
                red[j] = max(red[j], red[j + step]);
            } else {
                red[j] += red[j + step];
            }
        }
    }
    workgroupBarrier();
    let s = red[0];
    workgroupBarrier();
    return s;
}

// The HG heads' maxima or sums of x over the workgroup, to every thread.
fn reduce_heads(x: array<f32, MAXH>, j: u32, is_max: bool) -> array<f32, MAXH> {
    for (var h = 0u; h < HG; h++) {
        red_h[h * WG + j] = x[h];
    }
    for (var step = WG / 2u; step > 0u; step >>= 1u) {
        workgroupBarrier();
        if j < step {
            for (var h = 0u; h < HG; h++) {
                let a = red_h[h * WG + j];
                let b = red_h[h * WG + j + step];
                red_h[h * WG + j] = select(a + b, max(a, b), is_max);
            }
        }
    }
    workgroupBarrier();
    var out: array<f32, MAXH>;
    for (var h = 0u; h < HG; h++) {
        out[h] = red_h[h * WG];
    }
    workgroupBarrier();
    return out;
}

// src = the raw kv rows [t, lora + rope]; the host binds the kv_norm weight (f32) as `q`.
@compute @workgroup_size(128)
fn mla_append(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) j: u32) {
    let i = lin_id(wid, nwg);
    if i >= p.t {
        return;
    }
    let cw = p.lora + p.rope;
    let b = i * cw;
    var ss = 0.0;
    for (var c = j; c < p.lora; c += WG) {
        ss += src[b + c] * src[b + c];
    }
    let inv = 1.0 / sqrt(reduce(ss, j, false) / f32(p.lora) + p.eps);
    let dst = (p.pos + i) * cw;
    for (var c = j; c < cw; c += WG) {
        if c < p.lora {
            cache[dst + c] = q[c] * (src[b + c] * inv);
        } else {
            cache[dst + c] = src[b + c];
        }
    }
}

// q = the queries [t, heads, nope + rope] (for the rope part), src = q_abs [t * heads, lora];
// the cache is read through cache4. A workgroup serves HG heads of one token against one split
// of CH cached positions: one thread per position scores it against the HG queries staged in
// workgroup memory, so that each cached row is read once for HG heads (every head shares the
// one latent KV row; a prompt's attention is bound by these reads).
// part[(pair * nsplit + split) * (lora + 2)..] = (max, Σ exp, Σ exp · c).
@compute @workgroup_size(128)
fn mla_attend(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) j: u32) {
    let lin = lin_id(wid, nwg);
    let split = lin % p.nsplit;
    let group = lin / p.nsplit;
    let groups = p.heads / HG;
    if group >= p.t * groups {
        return;
    }
    let i = group / groups;
    let pair0 = i * p.heads + (group % groups) * HG;
    let ctx = p.pos + i + 1u;
    let start = split * CH;
    let n = min(CH, max(ctx, start) - start);
    let cw = p.lora + p.rope;
    let qw = p.nope + p.rope;

    // Widths are multiples of 4 (the host checks).
    let cw4 = cw / 4u;
    let l4 = p.lora / 4u;
    for (var h = 0u; h < HG; h++) {
        let pair = pair0 + h;
        for (var c = j; c < cw4; c += WG) {
            if c < l4 {
                let b = pair * p.lora + 4u * c;
                sq[h * MAX_CW4 + c] = vec4<f32>(src[b], src[b + 1u], src[b + 2u], src[b + 3u]);
            } else {
                let qp = pair * qw + p.nope + 4u * (c - l4);
                sq[h * MAX_CW4 + c] = vec4<f32>(q[qp], q[qp + 1u], q[qp + 2u], q[qp + 3u]);
            }
        }
    }
    workgroupBarrier();
    var score: array<f32, MAXH>;
    for (var h = 0u; h < MAXH; h++) {
        score[h] = -3.4028235e38;
    }
    if j < n {
        let cb = (start + j) * cw4;
        var acc: array<f32, MAXH>;
        for (var c = 0u; c < cw4; c++) {
            let cv = cache4[cb + c];
            for (var h = 0u; h < HG; h++) {
                acc[h] += dot(sq[h * MAX_CW4 + c], cv);
            }
        }
        for (var h = 0u; h < HG; h++) {
            score[h] = acc[h] * p.scale;
        }
    }
    let m = reduce_heads(score, j, true);
    var e: array<f32, MAXH>;
    for (var h = 0u; h < HG; h++) {
        if j < n {
            e[h] = exp(score[h] - m[h]);
        }
        sp[h * CH + j] = e[h];
    }
    let l = reduce_heads(e, j, false);
    for (var c = j; c < l4; c += WG) {
        var acc: array<vec4<f32>, MAXH>;
        for (var tau = 0u; tau < n; tau++) {
            let cv = cache4[(start + tau) * cw4 + c];
            for (var h = 0u; h < HG; h++) {
                acc[h] += sp[h * CH + tau] * cv;
            }
        }
        for (var h = 0u; h < HG; h++) {
            let b = ((pair0 + h) * p.nsplit + split) * (p.lora + 2u) + 2u + 4u * c;
            part[b] = acc[h].x;
            part[b + 1u] = acc[h].y;
            part[b + 2u] = acc[h].z;
            part[b + 3u] = acc[h].w;
        }
    }
    if j == 0u {
        for (var h = 0u; h < HG; h++) {
            let ob = ((pair0 + h) * p.nsplit + split) * (p.lora + 2u);
            part[ob] = m[h];
            part[ob + 1u] = l[h];
        }
    }
}

// Merges the splits of each pair into o_lat [t * heads, lora], which the host binds in the
// read-write slot that mla_append uses for the cache.
@compute @workgroup_size(128)
fn mla_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) j: u32) {
    let pair = lin_id(wid, nwg);
    if pair >= p.t * p.heads {
        return;
    }
    let stride = p.lora + 2u;
    var mx = -3.4028235e38;
    for (var s = 0u; s < p.nsplit; s++) {
        let b = (pair * p.nsplit + s) * stride;
        if part[b + 1u] > 0.0 {
            mx = max(mx, part[b]);
        }
    }
    var total = 0.0;
    for (var s = 0u; s < p.nsplit; s++) {
        let b = (pair * p.nsplit + s) * stride;
        if part[b + 1u] > 0.0 {
            total += exp(part[b] - mx) * part[b + 1u];
        }
    }
    for (var c = j; c < p.lora; c += WG) {
        var acc = 0.0;
        for (var s = 0u; s < p.nsplit; s++) {
            let b = (pair * p.nsplit + s) * stride;
            if part[b + 1u] > 0.0 {
                acc += exp(part[b] - mx) * part[b + 2u + c];
            }
        }
        cache[pair * p.lora + c] = acc / total;
    }
}
