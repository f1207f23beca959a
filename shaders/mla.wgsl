// Absorbed MLA over the latent cache (one shared "KV head" of width kv_lora + rope).
// mla_append normalises the new latents into the cache; mla_attend scores one (token, head)
// pair against one split of CH cached positions and keeps an unnormalised partial (max, sum,
// Σ p·c); mla_combine merges the splits. Splitting over the cache length keeps every SM busy
// in a long-context decode, where there is only one token and a few heads. A prompt's
// attention, and a decoded token's deep in the context (the host's choice), runs in mla_flash
// instead: a tile of query rows against a tile of staged cached rows at a time, with an online
// softmax (flash attention), so that each cached row is read once per tile of queries rather
// than once per token and head group; where the adapter has f16 cooperative matrices its
// scores run on them (mla_flash_coop.wgsl).

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
    // Cached positions per split of mla_flash (a multiple of FK).
    span: u32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> cache: array<f32>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
// The cache again, as vec4s, for mla_attend (which only reads it).
@group(0) @binding(5) var<storage, read> cache4: array<vec4<f32>>;
// q_abs as vec4s, for mla_flash.
@group(0) @binding(6) var<storage, read> src4: array<vec4<f32>>;

const WG: u32 = 128u;
// Cached positions per mla_attend workgroup, LP lanes each for its scores: a decoded token's
// attention is a chain of dependent memory round trips per thread, so the workgroups are many
// and short. With a row (144 vec4s) per thread over 128 positions, the 48B model's seven MLA
// layers cost 0.41 ms of a 2.6 ms token on an H100 at depth 0 (`kiln bench --ablate mla_`);
// 16 positions of 8 lanes each made tg128 398.3 / 399.7 / 402.6 tok/s against 387.3 / 387.3 /
// 385.1 alternated. Deep in the context the host takes mla_flash, whose splits are fewer (64
// positions and up), so that mla_combine has fewer partials to merge.
const CH: u32 = 16u;
const LP: u32 = WG / CH;

// Heads per mla_attend workgroup: 1, 2, 4 or 8 (MAXH), dividing the head count (the host's
// choice: more where there are enough splits to fill the GPU, since the workgroup reads its
// cached rows once for all its heads).
override HG: u32 = 1u;
const MAXH: u32 = 8u;

// mla_flash_coop's module declares these too: each stays a whole number of 16 bytes
// (matmul_coop.wgsl says why).
var<workgroup> red: array<f32, WG>;
var<workgroup> red_h: array<f32, MAXH * WG>;
var<workgroup> sp: array<f32, MAXH * CH>;
// Each head's query against the cached width: q_abs then the rope part (MAX_CW4 vec4s).
const MAX_CW4: u32 = 160u;
// Loads each thread of mla_attend (cached vec4s) and mla_combine (splits) issues before it
// uses the first.
const AB: u32 = 8u;
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
    // Position k's lane r (of LP) multiplies columns r, r + LP, ... of the cached row.
    let k = j / LP;
    let r = j % LP;
    var acc: array<f32, MAXH>;
    if k < n {
        let cb = (start + k) * cw4;
        // AB loads of the row in flight before the first is used: one per iteration left
        // each thread waiting out a memory round trip per vec4 of its row.
        for (var c0 = r; c0 < cw4; c0 += AB * LP) {
            var cv: array<vec4<f32>, AB>;
            for (var a = 0u; a < AB; a++) {
                if c0 + a * LP < cw4 {
                    cv[a] = cache4[cb + c0 + a * LP];
                }
            }
            for (var a = 0u; a < AB; a++) {
                let c = c0 + a * LP;
                if c < cw4 {
                    for (var h = 0u; h < HG; h++) {
                        acc[h] += dot(sq[h * MAX_CW4 + c], cv[a]);
                    }
                }
            }
        }
    }
    for (var h = 0u; h < HG; h++) {
        red_h[h * WG + j] = acc[h];
    }
    workgroupBarrier();
    // Thread j < n now holds position j's scores.
    var score: array<f32, MAXH>;
    for (var h = 0u; h < MAXH; h++) {
        score[h] = -3.4028235e38;
    }
    if j < n {
        for (var h = 0u; h < HG; h++) {
            var sum = 0.0;
            for (var l = 0u; l < LP; l++) {
                sum += red_h[h * WG + j * LP + l];
            }
            score[h] = sum * p.scale;
        }
    }
    // reduce_heads stores into red_h.
    workgroupBarrier();
    let m = reduce_heads(score, j, true);
    var e: array<f32, MAXH>;
    for (var h = 0u; h < HG; h++) {
        if j < n {
            e[h] = exp(score[h] - m[h]);
        }
        if j < CH {
            sp[h * CH + j] = e[h];
        }
    }
    let l = reduce_heads(e, j, false);
    for (var c = j; c < l4; c += WG) {
        var acc: array<vec4<f32>, MAXH>;
        for (var t0 = 0u; t0 < n; t0 += AB) {
            var cv: array<vec4<f32>, AB>;
            for (var a = 0u; a < AB; a++) {
                if t0 + a < n {
                    cv[a] = cache4[(start + t0 + a) * cw4 + c];
                }
            }
            for (var a = 0u; a < AB; a++) {
                if t0 + a < n {
                    for (var h = 0u; h < HG; h++) {
                        acc[h] += sp[h * CH + t0 + a] * cv[a];
                    }
                }
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
// read-write slot that mla_append uses for the cache. A workgroup serves WG columns of one
// pair (the host dispatches t · heads · ceil(lora / WG) of them), each thread one column, so
// that a long context's many splits are summed by many workgroups. The pair's max, and each
// split's weight exp(max_s - max), are found a thread per split (WG splits at a time, into
// workgroup memory) rather than by every thread walking all the splits itself: that walk, a
// memory round trip per split, took about 27 µs per MLA layer of a decoded token at depth
// 8192 (65 splits). The sums run in split order, as before.
var<workgroup> cmb_w: array<f32, WG>;
var<workgroup> cmb_wl: array<f32, WG>;

@compute @workgroup_size(128)
fn mla_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) j: u32) {
    let blocks = (p.lora + WG - 1u) / WG;
    let lin = lin_id(wid, nwg);
    let pair = lin / blocks;
    // The same for the whole workgroup, so it may leave before the barriers below.
    if pair >= p.t * p.heads {
        return;
    }
    let c = (lin % blocks) * WG + j;
    let stride = p.lora + 2u;
    let base = pair * p.nsplit * stride;
    // The max over the splits that saw a position (a split past a row's token saw none).
    var mx = -3.4028235e38;
    for (var s = j; s < p.nsplit; s += WG) {
        let b = base + s * stride;
        if part[b + 1u] > 0.0 {
            mx = max(mx, part[b]);
        }
    }
    mx = reduce(mx, j, true);
    var total = 0.0;
    var acc = 0.0;
    for (var s0 = 0u; s0 < p.nsplit; s0 += WG) {
        // Split s0 + j's weight and weighted sum, -1 for a split that saw nothing.
        var w = -1.0;
        var wl = 0.0;
        if s0 + j < p.nsplit {
            let b = base + (s0 + j) * stride;
            let ml = vec2<f32>(part[b], part[b + 1u]);
            if ml.y > 0.0 {
                w = exp(ml.x - mx);
                wl = w * ml.y;
            }
        }
        cmb_w[j] = w;
        cmb_wl[j] = wl;
        workgroupBarrier();
        let n = min(WG, p.nsplit - s0);
        // AB splits' loads in flight before the first is used.
        for (var a0 = 0u; a0 < n; a0 += AB) {
            var v: array<f32, AB>;
            for (var a = 0u; a < AB; a++) {
                if a0 + a < n && c < p.lora {
                    v[a] = part[base + (s0 + a0 + a) * stride + 2u + c];
                }
            }
            for (var a = 0u; a < AB; a++) {
                if a0 + a < n && cmb_w[a0 + a] >= 0.0 {
                    total += cmb_wl[a0 + a];
                    acc += cmb_w[a0 + a] * v[a];
                }
            }
        }
        // The next chunk's weights overwrite these.
        workgroupBarrier();
    }
    if c < p.lora {
        cache[pair * p.lora + c] = acc / total;
    }
}

// mla_flash: FQ query rows (consecutive (token, head) pairs, pair = token · heads + head)
// against the cached positions of one split, FK at a time. Each step stages the FK cached rows
// and the FQ query rows FD4 vec4s of the width at a time (coalesced loads, read once for the
// whole tile, the next slice loaded while this one is multiplied), scores them from workgroup
// memory, updates each row's running max and sum (online softmax), and adds P · V, V being
// the first lora values of the same cached rows, read from memory in coalesced vec4s.
// Workgroup memory: about 28 KiB.
const FQ: u32 = 32u;
const FK: u32 = 64u;
const FD4: u32 = 16u;
// Row stride of the staged slices in vec4s: one more than FD4 puts the rows a thread group
// reads together in different banks.
const FPAD4: u32 = 17u;
const FWG: u32 = 256u;
// Rows (of FQ) whose output one thread accumulates in the P · V product.
const FROWS: u32 = FQ * 128u / FWG;
// A masked score (no real score is this low).
const NEG: f32 = -3.4028235e38;

// The staged cached rows; after the scores, the step's probabilities P[k][r] (FK · FQ values
// as FK · FQ / 4 vec4s), which the P · V product reads four rows at a time.
var<workgroup> fk: array<vec4<f32>, FK * FPAD4>;
var<workgroup> fq: array<vec4<f32>, FQ * FPAD4>;
// Per-segment maxima and sums of the softmax step, FWG each.
var<workgroup> fred: array<f32, 2u * FWG>;
// Each row's running max and sum, and the step's rescale of its earlier output.
var<workgroup> fm: array<f32, FQ>;
var<workgroup> fl: array<f32, FQ>;
var<workgroup> fa: array<f32, FQ>;

// P[k][r] in fk.
fn p_at(k: u32, r: u32) -> f32 {
    return fk[k * (FQ / 4u) + r / 4u][r % 4u];
}

fn set_p(k: u32, r: u32, v: f32) {
    fk[k * (FQ / 4u) + r / 4u][r % 4u] = v;
}

// A thread's share of one staged slice: FQ · FD4 / FWG query vec4s and FK · FD4 / FWG cached.
const FSQ: u32 = FQ * FD4 / FWG;
const FSK: u32 = FK * FD4 / FWG;
struct Slice {
    q: array<vec4<f32>, FSQ>,
    k: array<vec4<f32>, FSK>,
}

// This thread's share of slice c (vec4s c · FD4..) of the query rows q0.. and of the n cached
// rows from k0, zero past the ends (rows, width), so that padding adds nothing to the dots.
fn flash_load(c: u32, q0: u32, rows: u32, k0: u32, n: u32, j: u32) -> Slice {
    let cw4 = (p.lora + p.rope) / 4u;
    var s: Slice;
    for (var u = 0u; u < FSQ; u++) {
        let idx = j + u * FWG;
        s.q[u] = query4(q0 + idx / FD4, rows, 4u * (c * FD4 + idx % FD4));
    }
    for (var u = 0u; u < FSK; u++) {
        let idx = j + u * FWG;
        let k = idx / FD4;
        let cc = c * FD4 + idx % FD4;
        if k < n && cc < cw4 {
            s.k[u] = cache4[(k0 + k) * cw4 + cc];
        }
    }
    return s;
}

// Width values d..d + 4 of query row `row` (q_abs, then the rope part of q), zero past the
// rows and the width.
fn query4(row: u32, rows: u32, d: u32) -> vec4<f32> {
    if row >= rows || d >= p.lora + p.rope {
        return vec4<f32>(0.0);
    }
    if d < p.lora {
        return src4[row * (p.lora / 4u) + d / 4u];
    }
    // The rope part (offset nope, which need not be a multiple of 4).
    let b = row * (p.nope + p.rope) + p.nope + d - p.lora;
    return vec4<f32>(q[b], q[b + 1u], q[b + 2u], q[b + 3u]);
}

// Query row q0 + r's score `dot` against cached row k of the step from k0 (n rows) into P,
// scaled, or NEG where masked: past the rows, past the step, or past the row's token (row
// q0 + r is token (q0 + r) / heads, at position pos + that).
fn put_score(k: u32, r: u32, q0: u32, rows: u32, k0: u32, n: u32, dot: f32) {
    let row = q0 + r;
    let seen = row < rows && k < n && k0 + k <= p.pos + row / p.heads;
    set_p(k, r, select(NEG, dot * p.scale, seen));
}

fn flash_put(s: Slice, j: u32) {
    for (var u = 0u; u < FSQ; u++) {
        let idx = j + u * FWG;
        fq[(idx / FD4) * FPAD4 + idx % FD4] = s.q[u];
    }
    for (var u = 0u; u < FSK; u++) {
        let idx = j + u * FWG;
        fk[(idx / FD4) * FPAD4 + idx % FD4] = s.k[u];
    }
}

// The step's scores: a warp covers 8 rows × 32 positions, a thread 2 rows × 4 positions
// (positions 8 apart), so a slice's loads are shared by many products. Scores of masked
// pairs (past a row's token, past the step, past the rows) are NEG; they land in P.
fn flash_scores(q0: u32, rows: u32, k0: u32, n: u32, j: u32) {
    let w = j / 32u;
    let lane = j % 32u;
    let ra = (w % 4u) * 8u + (lane % 4u) * 2u;
    let kb = (w / 4u) * 32u + lane / 4u;
    var acc: array<f32, 8>;
    let chunks = ((p.lora + p.rope) / 4u + FD4 - 1u) / FD4;
    // Slice c + 1 is loaded while slice c is multiplied.
    var next = flash_load(0u, q0, rows, k0, n, j);
    for (var c = 0u; c < chunks; c++) {
        flash_put(next, j);
        workgroupBarrier();
        if c + 1u < chunks {
            next = flash_load(c + 1u, q0, rows, k0, n, j);
        }
        for (var d = 0u; d < FD4; d++) {
            let qa = fq[ra * FPAD4 + d];
            let qb = fq[(ra + 1u) * FPAD4 + d];
            for (var i = 0u; i < 4u; i++) {
                let kv = fk[(kb + 8u * i) * FPAD4 + d];
                acc[2u * i] += dot(qa, kv);
                acc[2u * i + 1u] += dot(qb, kv);
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let k = kb + 8u * i;
        for (var a = 0u; a < 2u; a++) {
            put_score(k, ra + a, q0, rows, k0, n, acc[2u * i + a]);
        }
    }
}

// Turns the step's scores in P into probabilities against each row's running max, and
// updates the rows' max and sum (fm, fl) and the rescale of their earlier output (fa). A
// thread takes one row's scores at 8 positions; FWG / FQ = 8 threads share a row.
fn flash_softmax(j: u32) {
    let r = j % FQ;
    let seg = j / FQ;
    let per = FK / (FWG / FQ);
    var mx = NEG;
    for (var u = 0u; u < per; u++) {
        mx = max(mx, p_at(seg * per + u, r));
    }
    fred[j] = mx;
    workgroupBarrier();
    var m = fm[r];
    for (var s = 0u; s < FWG / FQ; s++) {
        m = max(m, fred[s * FQ + r]);
    }
    var sum = 0.0;
    for (var u = 0u; u < per; u++) {
        let k = seg * per + u;
        let s = p_at(k, r);
        // A row with nothing seen yet keeps m = NEG, where exp(s - m) would be 1.
        let e = select(0.0, exp(s - m), s > NEG);
        set_p(k, r, e);
        sum += e;
    }
    fred[FWG + j] = sum;
    workgroupBarrier();
    if seg == 0u {
        var l = 0.0;
        for (var s = 0u; s < FWG / FQ; s++) {
            l += fred[FWG + s * FQ + r];
        }
        let a = exp(fm[r] - m);
        fa[r] = a;
        fl[r] = fl[r] * a + l;
        fm[r] = m;
    }
    workgroupBarrier();
}

// q = the queries [t, heads, nope + rope] (for the rope part), src4 = q_abs [t * heads, lora]
// as vec4s, cache4 = the cache. Workgroup (row tile, split) serves rows FQ · tile.. against
// the split's positions split · span.. (as far as its last row sees). Output: with one split,
// o_lat [t * heads, lora] itself (normalised) in `part`; else the partials of mla_attend.
// In P · V a thread owns a vec4 column group cg of lora and FROWS rows (128 column groups, so
// lora ≤ 512; the host checks).
@compute @workgroup_size(256)
fn mla_flash(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) j: u32) {
    flash_tile(lin_id(wid, nwg), j, 0u);
}

// mla_flash's workgroup `lin`, thread j, in subgroup sg: each step's scores come from
// `flash_step_scores`, which the host appends (mla_scores_plain.wgsl: flash_scores;
// mla_flash_coop.wgsl: on cooperative matrices).
fn flash_tile(lin: u32, j: u32, sg: u32) {
    let split = lin % p.nsplit;
    let q0 = (lin / p.nsplit) * FQ;
    let rows = p.t * p.heads;
    if q0 >= rows {
        return;
    }
    let last = min(q0 + FQ, rows) - 1u;
    let lo = split * p.span;
    let hi = min(lo + p.span, p.pos + last / p.heads + 1u);
    let l4 = p.lora / 4u;
    let cg = j % 128u;
    let r0 = (j / 128u) * FROWS;
    if j < FQ {
        fm[j] = NEG;
        fl[j] = 0.0;
    }
    var o: array<vec4<f32>, FROWS>;
    for (var k0 = lo; k0 < hi; k0 += FK) {
        let n = min(FK, hi - k0);
        flash_step_scores(q0, rows, k0, n, j, sg);
        workgroupBarrier();
        flash_softmax(j);
        if cg < l4 {
            flash_pv(&o, k0, n, cg, r0);
        }
        // The next step's staging overwrites P.
        workgroupBarrier();
    }
    flash_store(o, q0, rows, split, cg, r0, j);
}

// Rescales this thread's output rows (column group cg, rows r0..r0 + FROWS) by the step's fa and
// adds P · V over the step's n cached rows from k0, loading four rows ahead of their products.
// P is 0 past n, so the last group of four may re-read row n - 1 for nothing.
fn flash_pv(o: ptr<function, array<vec4<f32>, FROWS>>, k0: u32, n: u32, cg: u32, r0: u32) {
    let cw4 = (p.lora + p.rope) / 4u;
    for (var i = 0u; i < FROWS; i++) {
        (*o)[i] *= fa[r0 + i];
    }
    for (var k = 0u; k < n; k += 4u) {
        var v: array<vec4<f32>, 4>;
        for (var u = 0u; u < 4u; u++) {
            v[u] = cache4[(k0 + min(k + u, n - 1u)) * cw4 + cg];
        }
        for (var u = 0u; u < 4u; u++) {
            for (var i = 0u; i < FROWS / 4u; i++) {
                let pv = fk[(k + u) * (FQ / 4u) + r0 / 4u + i];
                (*o)[4u * i] += pv.x * v[u];
                (*o)[4u * i + 1u] += pv.y * v[u];
                (*o)[4u * i + 2u] += pv.z * v[u];
                (*o)[4u * i + 3u] += pv.w * v[u];
            }
        }
    }
}

// Writes this thread's output rows: normalised into o_lat (in `part`) where the workgroup saw
// the whole causal range (one split), else as mla_attend's partials for mla_combine.
fn flash_store(o: array<vec4<f32>, FROWS>, q0: u32, rows: u32, split: u32, cg: u32, r0: u32, j: u32) {
    let stride = p.lora + 2u;
    if p.nsplit == 1u {
        for (var i = 0u; i < FROWS; i++) {
            let row = q0 + r0 + i;
            let l = fl[r0 + i];
            if row < rows && 4u * cg < p.lora {
                let v = o[i] * select(0.0, 1.0 / l, l > 0.0);
                let b = row * p.lora + 4u * cg;
                part[b] = v.x;
                part[b + 1u] = v.y;
                part[b + 2u] = v.z;
                part[b + 3u] = v.w;
            }
        }
        return;
    }
    for (var i = 0u; i < FROWS; i++) {
        let row = q0 + r0 + i;
        if row < rows && 4u * cg < p.lora {
            let b = (row * p.nsplit + split) * stride + 2u + 4u * cg;
            part[b] = o[i].x;
            part[b + 1u] = o[i].y;
            part[b + 2u] = o[i].z;
            part[b + 3u] = o[i].w;
        }
    }
    if j < FQ && q0 + j < rows {
        let b = ((q0 + j) * p.nsplit + split) * stride;
        part[b] = fm[j];
        part[b + 1u] = fl[j];
    }
}
