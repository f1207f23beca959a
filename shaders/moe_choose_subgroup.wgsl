// The routing choice over subgroups (see `moe_route`), two barriers in all. Each thread holds
// the keys of experts li, li + 256, ... in registers. Each subgroup first draws its own best
// experts, one subgroup max per draw, into the candidate list (only an expert among its own
// subgroup's n_used best can be among the token's n_used best); then every draw of the token's
// choice is a subgroup max over the candidates, which subgroup 0 alone makes.

// Experts one thread holds.
const EPT: u32 = MAX_EXPERTS / ROUTE_WG;

var<workgroup> cand_key: array<u32, MAX_EXPERTS>;
var<workgroup> cand_e: array<u32, MAX_EXPERTS>;
var<workgroup> cand_s: array<f32, MAX_EXPERTS>;

fn choose(tok: u32, th: Thread) {
    let lb = tok * p.n_expert;
    var key: array<u32, EPT>;
    var score: array<f32, EPT>;
    for (var j = 0u; j < EPT; j++) {
        let e = th.li + j * ROUTE_WG;
        if e < p.n_expert {
            let s = sigmoid(logits[lb + e]);
            score[j] = s;
            key[j] = order_key(s + bias[e]);
        }
    }
    // Draws per subgroup: n_used, or all its experts where it holds fewer (so that the list
    // never outgrows MAX_EXPERTS).
    let draws = min(p.n_used, th.sgs * ((p.n_expert + ROUTE_WG - 1u) / ROUTE_WG));
    var taken = 0u;
    for (var r = 0u; r < draws; r++) {
        // This thread's best expert not yet drawn.
        var bk = 0u;
        var be = NONE;
        var bs = 0.0;
        var bj = 0u;
        for (var j = 0u; j < EPT; j++) {
            let e = th.li + j * ROUTE_WG;
            if e < p.n_expert && (taken & (1u << j)) == 0u && beats(key[j], e, bk, be) {
                bk = key[j];
                be = e;
                bs = score[j];
                bj = j;
            }
        }
        let mk = subgroupMax(bk);
        let me = subgroupMin(select(NONE, be, bk == mk));
        let slot = th.sg * draws + r;
        if me == NONE {
            // The subgroup has no expert left: an empty candidate.
            if th.lane == 0u {
                cand_e[slot] = NONE;
            }
        } else if be == me {
            taken |= 1u << bj;
            cand_key[slot] = bk;
            cand_e[slot] = be;
            cand_s[slot] = bs;
        }
    }
    workgroupBarrier();
    if th.sg == 0u {
        let n = th.nsg * draws;
        for (var r = 0u; r < p.n_used; r++) {
            var bk = 0u;
            var be = NONE;
            var bs = 0.0;
            var bq = 0u;
            for (var q = th.lane; q < n; q += th.sgs) {
                let k = cand_key[q];
                let e = cand_e[q];
                if e != NONE && beats(k, e, bk, be) {
                    bk = k;
                    be = e;
                    bs = cand_s[q];
                    bq = q;
                }
            }
            let mk = subgroupMax(bk);
            let me = subgroupMin(select(NONE, be, bk == mk));
            // Only this thread reads candidate bq: dropping it needs no barrier.
            if be == me && me != NONE {
                cand_e[bq] = NONE;
                chosen_e[r] = be;
                chosen_s[r] = bs;
            }
        }
    }
    workgroupBarrier();
}
