//! The CPU decoder's self-attention cache: keys and values of every decoded position, and
//! the beam-search reorder that moves only the sequences that change.

/// Self-attention keys and values of every decoded position, per decoder layer, for up to
/// `capacity` sequences of `n_text_ctx` rows each. Grows only when a pass needs more sequences
/// than any before it; `spare` is the target of `reorder` (swapped in, so nothing is allocated).
pub struct KvCache {
    pub(super) k: Vec<Vec<f32>>,
    pub(super) v: Vec<Vec<f32>>,
    spare_k: Vec<Vec<f32>>,
    spare_v: Vec<Vec<f32>>,
    capacity: usize,
}

impl KvCache {
    pub(super) fn new(n_layer: usize) -> Self {
        KvCache {
            k: vec![Vec::new(); n_layer],
            v: vec![Vec::new(); n_layer],
            spare_k: vec![Vec::new(); n_layer],
            spare_v: vec![Vec::new(); n_layer],
            capacity: 0,
        }
    }

    /// Sequence `i` takes the rows of old sequence `src[i]` (the first `used` floats of each
    /// `seq_len`): only the sequences that change are written, and the old rows of those that
    /// another sequence copies from are staged in the spare buffers first. A beam search step
    /// mostly keeps its beams where they are, so it copies a few sequences' rows, not all.
    pub(super) fn reorder(&mut self, src: &[usize], seq_len: usize, used: usize) {
        let n = src.len();
        // Written by this reorder: a sequence that takes another's rows.
        let written = |s: usize| s < n && src[s] != s;
        let rows = |s: usize| s * seq_len..s * seq_len + used;
        let caches = (self.k.iter_mut().zip(&mut self.spare_k))
            .chain(self.v.iter_mut().zip(&mut self.spare_v));
        for (cache, spare) in caches {
            for (dst, &from) in src.iter().enumerate() {
                if from != dst && written(from) && !src[..dst].contains(&from) {
                    spare[rows(from)].copy_from_slice(&cache[rows(from)]);
                }
            }
            for (dst, &from) in src.iter().enumerate() {
                if from == dst {
                    continue;
                }
                if written(from) {
                    cache[rows(dst)].copy_from_slice(&spare[rows(from)]);
                } else {
                    cache.copy_within(rows(from), dst * seq_len);
                }
            }
        }
    }

    /// Make room for `n_seq` sequences of `seq_len` floats, keeping what the buffers hold.
    pub(super) fn ensure(&mut self, n_seq: usize, seq_len: usize) {
        if n_seq > self.capacity {
            for buf in self
                .k
                .iter_mut()
                .chain(&mut self.v)
                .chain(&mut self.spare_k)
                .chain(&mut self.spare_v)
            {
                buf.resize(n_seq * seq_len, 0.0);
            }
            self.capacity = n_seq;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::KvCache;

    /// [`KvCache::reorder`] against copying every sequence from a snapshot, on the orders beam
    /// search makes: in place, one beam forking over others (chains of sequences that are read
    /// and overwritten), shrinking, and growing from one sequence to five.
    #[test]
    fn reorder_moves_only_what_changes_and_gives_the_full_copy() {
        let (seq_len, used, layers) = (7, 5, 2);
        let orders: &[(usize, &[usize])] = &[
            (5, &[0, 1, 2, 3, 4]),
            (5, &[0, 0, 1, 2, 3]),
            (5, &[1, 2, 3, 4, 0]),
            (5, &[4, 4, 4, 1, 1]),
            (5, &[2, 2, 0]),
            (1, &[0, 0, 0, 0, 0]),
            (3, &[2, 0, 1, 1, 0]),
        ];
        for &(n_before, src) in orders {
            let mut cache = KvCache::new(layers);
            cache.ensure(n_before.max(src.len()), seq_len);
            for (l, buf) in cache.k.iter_mut().chain(&mut cache.v).enumerate() {
                for (i, x) in buf.iter_mut().enumerate() {
                    *x = (l * 1000 + i) as f32;
                }
            }
            let before = (cache.k.clone(), cache.v.clone());
            cache.reorder(src, seq_len, used);
            for (got, old) in cache
                .k
                .iter()
                .zip(&before.0)
                .chain(cache.v.iter().zip(&before.1))
            {
                for (dst, &from) in src.iter().enumerate() {
                    let (a, b) = (from * seq_len, dst * seq_len);
                    assert_eq!(
                        got[b..b + used],
                        old[a..a + used],
                        "{src:?}: sequence {dst}"
                    );
                }
            }
        }
    }
}
