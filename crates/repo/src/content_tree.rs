//! Content ids of large objects, hashed in pieces on several threads.
//!
//! A content id is the keyed BLAKE3 hash of the whole plaintext. BLAKE3 hashes a binary
//! tree of 1 KiB chunks, so a piece that is exactly one subtree of that tree can be hashed
//! on its own thread, and the pieces' chaining values joined give the very id one thread
//! would compute. [`piece_len`] cuts pieces of that shape (a power of two of chunks each,
//! the last one shorter); [`PieceTree`] checks any cut (a decoder reads the cut from the
//! object, which may be damaged) and joins the pieces' values. A cut that does not fit the
//! tree is never joined: the caller hashes on one thread instead.

use blake3::CHUNK_LEN;
use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, left_subtree_len, merge_subtrees_non_root, merge_subtrees_root,
};

use crate::keys::{ContentId, KeySet};

/// The length of each piece when `len` bytes are cut into about `pieces` pieces of at least
/// `min` bytes (a power of two): a power of two, so every piece but the last is a subtree.
pub(crate) fn piece_len(len: usize, pieces: usize, min: usize) -> usize {
    len.div_ceil(pieces.max(1))
        .max(min)
        .max(CHUNK_LEN)
        .next_power_of_two()
}

/// The pieces of one plaintext, by their lengths, when they fit BLAKE3's tree.
#[derive(Debug, Clone)]
pub(crate) struct PieceTree {
    /// Piece boundaries: 0, then the end of each piece.
    bounds: Vec<u64>,
}

impl PieceTree {
    /// The tree of pieces of these lengths, in order; `None` when there are fewer than two,
    /// one is empty, or they are not subtrees of the whole.
    pub(crate) fn new(lens: &[u64]) -> Option<PieceTree> {
        if lens.len() < 2 || lens.contains(&0) {
            return None;
        }
        let mut bounds = Vec::with_capacity(lens.len() + 1);
        bounds.push(0u64);
        for len in lens {
            bounds.push(bounds.last()?.checked_add(*len)?);
        }
        let tree = PieceTree { bounds };
        tree.node(0, lens.len(), &|_| (), &|(), ()| ())?;
        Some(tree)
    }

    /// Where piece `i` starts in the plaintext.
    pub(crate) fn offset(&self, i: usize) -> u64 {
        self.bounds[i]
    }

    /// A hasher for piece `i` (finish it with [`HasherExt::finalize_non_root`]).
    pub(crate) fn hasher(&self, keys: &KeySet, i: usize) -> blake3::Hasher {
        let mut h = keys.content_hasher();
        h.set_input_offset(self.bounds[i]);
        h
    }

    /// The content id of the whole, from each piece's chaining value, in order.
    pub(crate) fn join(&self, keys: &KeySet, values: &[ChainingValue]) -> ContentId {
        assert_eq!(values.len() + 1, self.bounds.len(), "one value per piece");
        let mode = Mode::KeyedHash(keys.content_key());
        let merge = |l: ChainingValue, r: ChainingValue| merge_subtrees_non_root(&l, &r, mode);
        let n = values.len();
        let mid = self.split(0, n).expect("checked by new");
        let left = self.node(0, mid, &|i| values[i], &merge).expect("checked");
        let right = self.node(mid, n, &|i| values[i], &merge).expect("checked");
        ContentId(*merge_subtrees_root(&left, &right, mode).as_bytes())
    }

    /// The piece index where BLAKE3 splits the pieces `lo..hi`, if it splits there at all.
    fn split(&self, lo: usize, hi: usize) -> Option<usize> {
        let len = self.bounds[hi] - self.bounds[lo];
        if len <= CHUNK_LEN as u64 {
            return None;
        }
        let mid = self.bounds[lo] + left_subtree_len(len);
        (lo + 1..hi).find(|&m| self.bounds[m] == mid)
    }

    /// The value of the subtree made of pieces `lo..hi`, if they form one.
    fn node<T>(
        &self,
        lo: usize,
        hi: usize,
        leaf: &impl Fn(usize) -> T,
        merge: &impl Fn(T, T) -> T,
    ) -> Option<T> {
        if hi == lo + 1 {
            return Some(leaf(lo));
        }
        let mid = self.split(lo, hi)?;
        let left = self.node(lo, mid, leaf, merge)?;
        let right = self.node(mid, hi, leaf, merge)?;
        Some(merge(left, right))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KdfParams, KeyStorage};
    use proptest::prelude::*;

    fn keys() -> KeySet {
        let fast = KdfParams {
            m_kib: 64,
            t: 1,
            p: 1,
        };
        KeyStorage::create(None, fast).unwrap().1
    }

    fn joined(keys: &KeySet, data: &[u8], lens: &[u64]) -> Option<ContentId> {
        let tree = PieceTree::new(lens)?;
        let values: Vec<ChainingValue> = (0..lens.len())
            .map(|i| {
                let start = tree.offset(i) as usize;
                let mut h = tree.hasher(keys, i);
                h.update(&data[start..start + lens[i] as usize]);
                h.finalize_non_root()
            })
            .collect();
        Some(tree.join(keys, &values))
    }

    #[test]
    fn the_encoders_cut_joins_to_the_one_thread_id() {
        let keys = keys();
        for len in [2049usize, 16 << 20, (16 << 20) + 1, 9 << 20, 24 << 20, 5000] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            for pieces in 2..=5 {
                let p = piece_len(len, pieces, 1024);
                let lens: Vec<u64> = data.chunks(p).map(|c| c.len() as u64).collect();
                if lens.len() < 2 {
                    continue;
                }
                assert_eq!(
                    joined(&keys, &data, &lens),
                    Some(keys.content_id(&data)),
                    "len {len}, piece {p}"
                );
            }
        }
    }

    #[test]
    fn cuts_off_the_tree_are_refused() {
        // 3 equal pieces of 5 KiB: BLAKE3 splits 15 KiB at 8 KiB, inside the second.
        assert!(PieceTree::new(&[5120, 5120, 5120]).is_none());
        assert!(PieceTree::new(&[4096, 0, 4096]).is_none());
        assert!(PieceTree::new(&[4096]).is_none());
        // A short first piece: the tree's first split is further on.
        assert!(PieceTree::new(&[1024, 4096]).is_none());
        assert!(PieceTree::new(&[4096, 4096, 100]).is_some());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any cut the tree accepts joins to the id of the whole; random cuts mostly do not
        /// fit, and are then refused rather than joined wrong.
        #[test]
        fn any_accepted_cut_joins_right(len in 1usize..40_000, cuts in proptest::collection::vec(1usize..40_000, 1..5)) {
            let keys = keys();
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c % len).filter(|&c| c > 0).collect();
            points.sort_unstable();
            points.dedup();
            let mut lens = Vec::new();
            let mut at = 0;
            for p in points.into_iter().chain([len]) {
                lens.push((p - at) as u64);
                at = p;
            }
            if let Some(id) = joined(&keys, &data, &lens) {
                prop_assert_eq!(id, keys.content_id(&data));
            }
            // Chunk-aligned power-of-two cuts always fit.
            let p = piece_len(len, 3, 1024);
            let aligned: Vec<u64> = data.chunks(p).map(|c| c.len() as u64).collect();
            if aligned.len() > 1 {
                prop_assert_eq!(joined(&keys, &data, &aligned), Some(keys.content_id(&data)));
            }
        }
    }
}
