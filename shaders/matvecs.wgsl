// Several decode products of one activation row in one dispatch (the projections that read the
// same normed hidden state): y_j = W_j · x for up to 8 weights of one block type and row length.
// The host prepends, per weight j, a copy of the weight helpers (common, decoder, dot file,
// rows_dot.wgsl) with `w` renamed `w<j>` and every function `f` renamed `f_<j>`, the bindings
// w0.., y0.., and `job_dot` / `job_store`, which switch on the job to reach them (WGSL cannot
// pass a storage buffer to a function). Each workgroup serves RPW rows of one job, as `matvec`;
// the weights share a row length, so any copy's row_bytes serves all.

struct Params {
    cols: u32,
    jobs: u32,
    // Per job (4 to a vec4): its rows, and the end of its workgroups counted over all jobs.
    rows: array<vec4<u32>, 2>,
    ends: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<uniform> p: Params;

fn job_at(a: array<vec4<u32>, 2>, j: u32) -> u32 {
    return a[j / 4u][j % 4u];
}

@compute @workgroup_size(256)
fn matvecs(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let lin = wid.x + wid.y * nwg.x;
    if lin >= job_at(p.ends, p.jobs - 1u) {
        return;
    }
    var j = 0u;
    while lin >= job_at(p.ends, j) {
        j++;
    }
    var first = 0u;
    if j > 0u {
        first = job_at(p.ends, j - 1u);
    }
    let rows = job_at(p.rows, j);
    let row = (lin - first) * RPW + (li / TPR) * RT;
    let lane = li % TPR;
    let n = min(RT, max(rows, row) - row);
    stage_x(li, 0u);
    var acc = vec4<f32>(0.0);
    if n > 0u {
        acc = job_dot(j, row * row_bytes_0(), 0u, n, 0u, lane);
    }
    let s = reduce_rows(li, acc);
    if lane == 0u {
        for (var k = 0u; k < n; k++) {
            job_store(j, row + k, s[k]);
        }
    }
}
