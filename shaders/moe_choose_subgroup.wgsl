// The routing choice over subgroups (see `moe_route`): `choose_sorted` where every expert has
// a thread (the 48B model's 256), else `choose_drawn`.

// Experts one thread holds.
const EPT: u32 = MAX_EXPERTS / ROUTE_WG;

// choose_drawn's candidates; choose_sorted's exchanges across subgroups.
var<workgroup> cand_key: array<u32, MAX_EXPERTS>;
var<workgroup> cand_e: array<u32, MAX_EXPERTS>;
var<workgroup> cand_s: array<f32, MAX_EXPERTS>;

fn choose(tok: u32, th: Thread) {
    // The sort's positions need full subgroups.
    if p.n_expert <= ROUTE_WG && th.nsg * th.sgs == ROUTE_WG {
        choose_sorted(tok, th);
    } else {
        choose_drawn(tok, th);
    }
}

// Where every expert has a thread (n_expert ≤ ROUTE_WG): the workgroup sorts the experts in
// rank order (a bitonic sort: shuffles within subgroups, workgroup memory across them, 36
// compare-exchange steps for 256), and the first n_used are the choice. Its chain of
// dependent steps is shorter than choose_drawn's two rounds of n_used draws (two subgroup
// reductions each), which cost 4.6 µs of moe_router_route's last workgroup per layer on an
// H100: tg128 418.6 / 417.9 / 418.7 against 412.6 / 409.4 / 412.7 tok/s alternated (418.4 /
// 418.2 / 414.6 against 410.7 / 410.5 / 410.1 in the quiet rounds of two later runs).
fn choose_sorted(tok: u32, th: Thread) {
    // Positions follow the subgroups, so that a partner within a subgroup is a lane away.
    let t = th.sg * th.sgs + th.lane;
    var k = 0u;
    var e = t;
    var s = 0.0;
    // Past n_expert: key 0 and an index above every expert's, beaten by all of them.
    if t < p.n_expert {
        s = sigmoid(logits[tok * p.n_expert + t]);
        k = order_key(s + bias[t]);
    }
    for (var size = 2u; size <= ROUTE_WG; size <<= 1u) {
        for (var j = size >> 1u; j > 0u; j >>= 1u) {
            var pk: u32;
            var pe: u32;
            var ps: f32;
            if j < th.sgs {
                pk = subgroupShuffleXor(k, j);
                pe = subgroupShuffleXor(e, j);
                ps = subgroupShuffleXor(s, j);
            } else {
                cand_key[t] = k;
                cand_e[t] = e;
                cand_s[t] = s;
                workgroupBarrier();
                pk = cand_key[t ^ j];
                pe = cand_e[t ^ j];
                ps = cand_s[t ^ j];
                workgroupBarrier();
            }
            // The lower position of a pair keeps the better of the two in blocks sorted best
            // first, the worse in the others (bitonic merge).
            let best_first = (t & size) == 0u;
            let lower = (t & j) == 0u;
            if beats(pk, pe, k, e) == (lower == best_first) {
                k = pk;
                e = pe;
                s = ps;
            }
        }
    }
    if t < p.n_used {
        chosen_e[t] = e;
        chosen_s[t] = s;
    }
    workgroupBarrier();
}

// Where experts outnumber threads, in two barriers: each thread holds the keys of experts li,
// li + 256, ... in registers. Each subgroup first draws its own best experts, one subgroup
// max per draw, into the candidate list (only an expert among its own subgroup's n_used best
// can be among the token's n_used best); then every draw of the token's choice is a subgroup
// max over the candidates, which subgroup 0 alone makes.
fn choose_drawn(tok: u32, th: Thread) {
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
