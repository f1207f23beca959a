// What the prompt products' tiles (TM weight rows × TN tokens, set by the including module)
// share: matmul.wgsl's and matmul_coop.wgsl's, after matmul_io.wgsl.

// Per tile token: the activation row it reads and the output row it writes.
var<workgroup> xrow: array<u32, TN>;
var<workgroup> yrow: array<u32, TN>;

// The first weight row and first token of dense tile `lin`, with the tile's tokens staged in
// xrow/yrow; the token is p.t or more (nothing staged) when the tile lies past the last one.
fn dense_tile(lin: u32, li: u32) -> vec2<u32> {
    let row_tiles = (p.rows + TM - 1u) / TM;
    let origin = vec2<u32>((lin % row_tiles) * TM, (lin / row_tiles) * TN);
    if origin.y < p.t {
        if li < TN {
            xrow[li] = origin.y + li;
            yrow[li] = origin.y + li;
        }
        workgroupBarrier();
    }
    return origin;
}

// Grouped tile `lin` (a prompt's MoE, or per-head products): its group (expert) e and first
// weight row r0 within the expert's matrix, and 1 where that matrix lies in this dispatch's
// weight part (the host keeps them whole), else 0 (nothing to do).
fn expert_tile(lin: u32) -> vec3<u32> {
    let row_tiles = (p.per + TM - 1u) / TM;
    let e = lin / row_tiles;
    let grow = e * p.per;
    let inside = e < p.heads && grow >= p.row0 && grow + p.per <= p.row0 + p.rows;
    return vec3<u32>(e, (lin % row_tiles) * TM, select(0u, 1u, inside));
}

// Stages pairs c0.. (ntok of them) of the grouped list as the tile's tokens: pair q reads
// activation row q / x_div and writes output row q.
fn stage_pairs(li: u32, c0: u32, ntok: u32) {
    if li < ntok {
        let pair = ids[c0 + li];
        xrow[li] = pair / p.x_div;
        yrow[li] = pair;
    }
    workgroupBarrier();
}
