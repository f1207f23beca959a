// mla_flash with each step's scores, Q · Cᵀ over the cached width, on cooperative matrices
// (tensor cores): the FQ query rows and FK cached rows are staged TKC values of the width at a
// time as f16, and each of the 8 subgroups multiplies one 16×16 block of the FQ × FK scores
// (f32 sums). The softmax and P · V are mla_flash's. The scores were most of mla_flash's
// multiplies (its products with the 576-wide cached rows) and ran on the shader cores at one
// workgroup per SM deep in the context. Only on adapters with f16 16×16 cooperative matrices
// and subgroups of 32 (the host checks); appended to mla.wgsl after the `enable` directives and f16_operands.wgsl.
// Every workgroup variable of the module, mla.wgsl's too, is a whole number of 16 bytes, as in
// matmul_coop.wgsl (a 4-byte one broke this kernel on the H100).

// Width values staged per pass (a multiple of 16), and the staged rows' stride: 16 bytes of
// padding spread the threads' stores over the banks (as matmul_coop.wgsl's).
const TKC: u32 = 64u;
const TKCP: u32 = TKC + 8u;
const TKCP4: u32 = TKCP / 4u;

// The staged query rows (FQ rows of TKCP values), then the cached rows (FK rows from row FQ),
// as f16 vec4s (one store each; the cooperative loads count in vec4s, as matmul_coop.wgsl's).
var<workgroup> stg: array<vec4<f16>, (FQ + FK) * TKCP4>;
// Each subgroup's 16×16 block of scores, column-major.
var<workgroup> sblk: array<f32, FQ * FK>;

// The step's scores into P (fk), as flash_scores leaves them: scaled, NEG where masked.
fn flash_step_scores(q0: u32, rows: u32, k0: u32, n: u32, j: u32, sg: u32) {
    let cw4 = (p.lora + p.rope) / 4u;
    // Subgroup sg's block: query rows 16 (sg % 2).., cached rows 16 (sg / 2)...
    let a_at = (sg % 2u) * 16u * TKCP4;
    let b_at = (FQ + (sg / 2u) * 16u) * TKCP4;
    // Per pass each thread stages FQ · TKC / 4 / FWG query vec4s, then FK · TKC / 4 / FWG
    // cached ones.
    const QV: u32 = FQ * TKC / 4u / FWG;
    const KV: u32 = FK * TKC / 4u / FWG;
    var acc = coop_mat16x16<f32, C>();
    for (var c0 = 0u; c0 < 4u * cw4; c0 += TKC) {
        // Every load issued before the first store.
        var sv: array<vec4<f32>, QV + KV>;
        for (var u = 0u; u < QV; u++) {
            let idx = j + u * FWG;
            sv[u] = query4(q0 + idx / (TKC / 4u), rows, c0 + 4u * (idx % (TKC / 4u)));
        }
        for (var u = 0u; u < KV; u++) {
            let idx = j + u * FWG;
            let k = idx / (TKC / 4u);
            let c = c0 / 4u + idx % (TKC / 4u);
            sv[QV + u] = vec4<f32>(0.0);
            if k < n && c < cw4 {
                sv[QV + u] = cache4[(k0 + k) * cw4 + c];
            }
        }
        // The query vec4s are items 0..FQ · TKC / 4 of the staged rows, the cached ones the
        // next FK · TKC / 4: item j + u · FWG either way.
        for (var u = 0u; u < QV + KV; u++) {
            let idx = j + u * FWG;
            stg[(idx / (TKC / 4u)) * TKCP4 + idx % (TKC / 4u)] = to_f16(sv[u]);
        }
        workgroupBarrier();
        // A: query rows × width, row-major; B: width × cached rows, stored a cached row at a
        // time (column-major).
        for (var ks = 0u; ks < TKC / 4u; ks += 4u) {
            let a = coopLoadT<coop_mat16x16<f16, A>>(&stg[a_at + ks], TKCP4);
            let b = coopLoad<coop_mat16x16<f16, B>>(&stg[b_at + ks], TKCP4);
            acc = coopMultiplyAdd(a, b, acc);
        }
        // The next pass's stores overwrite what these read.
        workgroupBarrier();
    }
    coopStore(acc, &sblk[sg * 256u], 16u);
    workgroupBarrier();
    // Element e of the blocks: subgroup e / 256's block, query row e % 16, cached row
    // (e / 16) % 16 of it.
    for (var e = j; e < FQ * FK; e += FWG) {
        let s = e / 256u;
        let r = (s % 2u) * 16u + e % 16u;
        let k = (s / 2u) * 16u + (e / 16u) % 16u;
        put_score(k, r, q0, rows, k0, n, sblk[e]);
    }
}

@compute @workgroup_size(256)
fn mla_flash_coop(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) j: u32, @builtin(subgroup_id) sg: u32) {
    flash_tile(lin_id(wid, nwg), j, sg);
}
