//! The bookkeeping of a decoding pass that every backend keeps the same way: how many windows
//! are encoded, which sequences the pass runs and on which window each, how many positions
//! their self-attention caches hold, and how `reorder` permutes them. Backends hold one
//! [`DecodePass`] and keep only their buffers (and the copying of cache rows) themselves.

use crate::error::{Error, Result};
use crate::model::config::ModelDims;

/// A decoding pass over the windows of the last `encode_batch`.
#[derive(Debug, Default)]
pub struct DecodePass {
    /// Windows encoded by the last `encode_batch`; 0 before the first.
    n_windows: usize,
    /// Sequences of the pass; 0 until `begin_decode`.
    n_seq: usize,
    /// Positions already in each sequence's self-attention cache.
    len: usize,
    /// The window each sequence attends to.
    seq_window: Vec<usize>,
    /// The target of `reorder` and `begin_decode` (swapped in, so nothing is allocated).
    spare: Vec<usize>,
    /// Runs of equal windows in `seq_window` ([`window_runs`]).
    runs: Vec<(usize, usize, usize)>,
}

impl DecodePass {
    /// A new batch of `n_windows` windows is being encoded: the next pass must begin again.
    /// Called with 0 before encoding starts, so that a failed encode leaves no stale pass.
    pub fn set_encoded(&mut self, n_windows: usize) {
        self.n_windows = n_windows;
        self.n_seq = 0;
        self.len = 0;
    }

    pub fn n_windows(&self) -> usize {
        self.n_windows
    }

    pub fn n_seq(&self) -> usize {
        self.n_seq
    }

    /// Positions in each sequence's cache (`Backend::cached_len`).
    pub fn cached_len(&self) -> usize {
        self.len
    }

    /// `n` more positions are now in the caches.
    pub fn advance(&mut self, n: usize) {
        self.len += n;
    }

    /// `(window, first sequence, sequences)` runs of the pass.
    pub fn runs(&self) -> &[(usize, usize, usize)] {
        &self.runs
    }

    /// Starts a pass of one sequence per entry of `windows` (`begin_decode_windows`), after
    /// checking that each names an encoded window; the backend then makes room for
    /// `windows.len()` sequences.
    pub fn begin(&mut self, windows: &[usize]) -> Result<()> {
        if self.n_windows == 0 {
            return Err(Error::Internal("begin_decode called before encode".into()));
        }
        if windows.is_empty() {
            return Err(Error::Internal(
                "a decoding pass needs at least one sequence".into(),
            ));
        }
        if let Some(&w) = windows.iter().find(|&&w| w >= self.n_windows) {
            return Err(Error::Internal(format!(
                "sequence on window {w} of {} encoded",
                self.n_windows
            )));
        }
        self.n_seq = windows.len();
        self.len = 0;
        self.seq_window.clear();
        self.seq_window.extend_from_slice(windows);
        window_runs(&self.seq_window, &mut self.runs);
        Ok(())
    }

    /// `n_seq` zeros for `begin_decode(n_seq)` (every sequence on window 0), in the spare
    /// list so that nothing is allocated; hand it back with [`DecodePass::recycle`].
    pub fn on_window_0(&mut self, n_seq: usize) -> Vec<usize> {
        let mut windows = std::mem::take(&mut self.spare);
        windows.clear();
        windows.resize(n_seq, 0);
        windows
    }

    pub fn recycle(&mut self, windows: Vec<usize>) {
        self.spare = windows;
    }

    /// Checks `src` for `reorder`: every entry names a sequence of the pass.
    pub fn check_reorder(&self, src: &[usize]) -> Result<()> {
        if src.is_empty() || src.iter().any(|&i| i >= self.n_seq) {
            return Err(Error::Internal(format!(
                "reorder {src:?} of {} sequences",
                self.n_seq
            )));
        }
        Ok(())
    }

    /// After the backend has moved the cache rows: sequence `i` is now old sequence `src[i]`.
    pub fn reorder(&mut self, src: &[usize]) {
        self.n_seq = src.len();
        self.spare.clear();
        self.spare.extend(src.iter().map(|&i| self.seq_window[i]));
        std::mem::swap(&mut self.seq_window, &mut self.spare);
        window_runs(&self.seq_window, &mut self.runs);
    }

    /// Checks a decoder step's `tokens` (the same count for every sequence, within the text
    /// context, inside the vocabulary); returns the tokens per sequence.
    pub fn check_step(&self, tokens: &[u32], dims: &ModelDims) -> Result<usize> {
        let (n_seq, pos0) = (self.n_seq, self.len);
        if n_seq == 0 {
            return Err(Error::Internal("decode called before begin_decode".into()));
        }
        let n = tokens.len() / n_seq;
        if n == 0 || n * n_seq != tokens.len() || pos0 + n > dims.n_text_ctx {
            return Err(Error::Internal(format!(
                "decoder given {} tokens for {n_seq} sequences at position {pos0}, context is {}",
                tokens.len(),
                dims.n_text_ctx
            )));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= dims.n_vocab) {
            return Err(Error::Internal(format!(
                "token id {bad} outside the vocabulary of {}",
                dims.n_vocab
            )));
        }
        Ok(n)
    }
}

/// Runs of equal windows in a sequence -> window map: `(window, first sequence, sequences)`,
/// in order, into `runs` (cleared first). Backends run cross-attention once per run.
pub fn window_runs(seq_window: &[usize], runs: &mut Vec<(usize, usize, usize)>) {
    runs.clear();
    for (i, &w) in seq_window.iter().enumerate() {
        match runs.last_mut() {
            Some((last, _, n)) if *last == w => *n += 1,
            _ => runs.push((w, i, 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn begin_reorder_and_runs() {
        let mut p = DecodePass::default();
        assert!(p.begin(&[0]).is_err(), "nothing encoded");
        p.set_encoded(3);
        assert!(p.begin(&[0, 3]).is_err(), "window 3 of 3");
        p.begin(&[0, 0, 2]).unwrap();
        assert_eq!(p.runs(), &[(0, 0, 2), (2, 2, 1)]);
        p.advance(4);
        assert!(p.check_reorder(&[3]).is_err());
        p.reorder(&[2, 2, 0, 1]);
        assert_eq!((p.n_seq(), p.cached_len()), (4, 4));
        assert_eq!(p.runs(), &[(2, 0, 2), (0, 2, 2)]);
        p.set_encoded(1);
        assert_eq!((p.n_seq(), p.cached_len()), (0, 0));
    }
}
