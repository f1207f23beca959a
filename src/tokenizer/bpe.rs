//! Byte-pair encoding of one pre-tokenized word: start from single bytes and repeatedly merge
//! the adjacent pair of lowest rank (leftmost on ties), as llama.cpp and tiktoken both do.

use super::vocab::{MergeRule, Vocab};

#[derive(Clone, Copy)]
struct Piece {
    start: usize,
    end: usize,
    id: u32,
}

/// The `(rank, merged id)` of two adjacent pieces of `word`, if they merge.
fn pair_rank(v: &Vocab, word: &[u8], a: Piece, b: Piece) -> Option<(u32, u32)> {
    match &v.merges {
        MergeRule::Merges(m) => m.get(&(a.id, b.id)).copied(),
        MergeRule::Ranks => v.id_of_bytes.get(&word[a.start..b.end]).map(|&id| (id, id)),
    }
}

/// Appends the token ids of `word` to `out`.
pub(crate) fn encode_word(v: &Vocab, word: &[u8], out: &mut Vec<u32>) {
    let mut pieces: Vec<Piece> = word
        .iter()
        .enumerate()
        .map(|(i, &b)| Piece {
            start: i,
            end: i + 1,
            id: v.byte_ids[b as usize],
        })
        .collect();
    // ranks[i] is the merge of pieces[i] and pieces[i + 1]; kept in step with `pieces` so each
    // merge re-ranks only its two new neighbours.
    let mut ranks: Vec<Option<(u32, u32)>> = pieces
        .windows(2)
        .map(|p| pair_rank(v, word, p[0], p[1]))
        .collect();
    loop {
        let best = ranks
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.map(|(rank, id)| (rank, i, id)))
            .min_by_key(|&(rank, i, _)| (rank, i));
        let Some((_, i, id)) = best else { break };
        pieces[i].end = pieces[i + 1].end;
        pieces[i].id = id;
        pieces.remove(i + 1);
        ranks.remove(i);
        if i > 0 {
            ranks[i - 1] = pair_rank(v, word, pieces[i - 1], pieces[i]);
        }
        if i < ranks.len() {
            ranks[i] = pair_rank(v, word, pieces[i], pieces[i + 1]);
        }
    }
    out.extend(pieces.iter().map(|p| p.id));
}
