//! The packer: documents' tokens into fixed-length examples.
//!
//! The token stream is the concatenation of the accepted documents in input order,
//! separated by `[SEP]`: `d₀ [SEP] d₁ [SEP] d₂ …`. Each example is `[CLS]`, the next
//! `seq_len − 2` tokens of the stream, and `[SEP]`; the last example of a set may be
//! shorter. Examples therefore cross document boundaries, and concatenating their
//! spans gives back the stream exactly (`tests` check this as a property).
//!
//! A document's *contribution* to the stream is its leading separator (absent for the
//! first document) followed by its tokens. Positions inside a contribution are what a
//! resumed job skips ([`Packer::push_document`]'s `skip`).

/// Builds examples from documents; see the module docs.
#[derive(Debug, Clone)]
pub struct Packer {
    seq_len: usize,
    cls: u32,
    sep: u32,
    current: Vec<u32>,
    current_first_doc: u64,
}

/// One finished example, borrowed from the packer until the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Example<'a> {
    /// `[CLS] span… [SEP]`.
    pub ids: &'a [u32],
    /// Global ordinal of the document holding the first token of the span.
    pub first_document: u64,
    /// How much of the current document's contribution is in this and earlier examples
    /// (0 for the final example emitted by [`Packer::finish`], after which nothing is left).
    pub consumed: u64,
}

impl Packer {
    /// A packer of examples of `seq_len` tokens (at least 3).
    pub fn new(seq_len: usize, cls: u32, sep: u32) -> Self {
        assert!(
            seq_len >= 3,
            "seq_len must leave room for [CLS], a token and [SEP]"
        );
        let mut current = Vec::with_capacity(seq_len);
        current.push(cls);
        Packer {
            seq_len,
            cls,
            sep,
            current,
            current_first_doc: 0,
        }
    }

    /// Append document `doc` (its global ordinal) with `tokens`, preceded by `[SEP]`
    /// unless it is the first document of the stream. The first `skip` positions of its
    /// contribution are already packed (a resumed job). `emit` receives every example
    /// this completes and may fail, which stops packing.
    pub fn push_document<E>(
        &mut self,
        doc: u64,
        tokens: &[u32],
        first: bool,
        skip: u64,
        mut emit: impl FnMut(Example<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let lead = usize::from(!first);
        let total = lead + tokens.len();
        let mut pos = (skip as usize).min(total);
        let last = self.seq_len - 1;
        while pos < total {
            if self.current.len() == 1 {
                self.current_first_doc = doc;
            }
            if pos < lead {
                self.current.push(self.sep);
                pos += 1;
            } else {
                let take = (last - self.current.len()).min(total - pos);
                let from = pos - lead;
                self.current.extend_from_slice(&tokens[from..from + take]);
                pos += take;
            }
            if self.current.len() == last {
                self.current.push(self.sep);
                emit(Example {
                    ids: &self.current,
                    first_document: self.current_first_doc,
                    consumed: pos as u64,
                })?;
                self.current.truncate(1);
            }
        }
        Ok(())
    }

    /// Emit the last, shorter example if any tokens are pending.
    pub fn finish<E>(&mut self, emit: impl FnOnce(Example<'_>) -> Result<(), E>) -> Result<(), E> {
        if self.current.len() > 1 {
            self.current.push(self.sep);
            emit(Example {
                ids: &self.current,
                first_document: self.current_first_doc,
                consumed: 0,
            })?;
            self.current.clear();
            self.current.push(self.cls);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CLS: u32 = 1;
    const SEP: u32 = 2;

    fn pack(seq_len: usize, docs: &[Vec<u32>]) -> Vec<(Vec<u32>, u64)> {
        let mut p = Packer::new(seq_len, CLS, SEP);
        let mut out = Vec::new();
        for (i, d) in docs.iter().enumerate() {
            p.push_document::<()>(i as u64, d, i == 0, 0, |e| {
                out.push((e.ids.to_vec(), e.first_document));
                Ok(())
            })
            .unwrap();
        }
        p.finish::<()>(|e| {
            out.push((e.ids.to_vec(), e.first_document));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn small_example() {
        let out = pack(5, &[vec![10, 11], vec![12, 13, 14]]);
        let ids: Vec<_> = out.iter().map(|(e, _)| e.clone()).collect();
        assert_eq!(ids, [vec![1, 10, 11, 2, 2], vec![1, 12, 13, 14, 2]]);
        assert_eq!(out[1].1, 1);
    }

    proptest! {
        /// Spans concatenate to the stream; every example but the last is full and
        /// framed by [CLS] … [SEP].
        #[test]
        fn spans_rebuild_the_stream(
            seq_len in 3usize..12,
            docs in prop::collection::vec(prop::collection::vec(10u32..100, 1..30), 1..12),
        ) {
            let out = pack(seq_len, &docs);
            let mut stream = Vec::new();
            for (i, d) in docs.iter().enumerate() {
                if i > 0 { stream.push(SEP); }
                stream.extend_from_slice(d);
            }
            let mut spans = Vec::new();
            for (k, (e, _)) in out.iter().enumerate() {
                prop_assert_eq!(e[0], CLS);
                prop_assert_eq!(*e.last().unwrap(), SEP);
                if k + 1 < out.len() { prop_assert_eq!(e.len(), seq_len); }
                spans.extend_from_slice(&e[1..e.len() - 1]);
            }
            prop_assert_eq!(spans, stream);
        }

        /// Stopping after any example and resuming from the reported position gives
        /// the same examples as one uninterrupted run.
        #[test]
        fn resume_from_any_example(
            seq_len in 3usize..10,
            docs in prop::collection::vec(prop::collection::vec(10u32..100, 1..20), 1..8),
            stop_at in 0usize..20,
        ) {
            let full = pack(seq_len, &docs);
            // First run: stop after example `stop_at`, remembering (doc, consumed).
            let mut p = Packer::new(seq_len, CLS, SEP);
            let mut first = Vec::new();
            let mut resume = None;
            'outer: for (i, d) in docs.iter().enumerate() {
                let r = p.push_document(i as u64, d, i == 0, 0, |e| {
                    first.push(e.ids.to_vec());
                    if first.len() == stop_at + 1 { return Err((i, e.consumed)); }
                    Ok(())
                });
                if let Err(at) = r { resume = Some(at); break 'outer; }
            }
            let Some((doc, consumed)) = resume else { return Ok(()); };
            // Second run: a fresh packer continues from (doc, consumed).
            let mut p = Packer::new(seq_len, CLS, SEP);
            let mut rest = Vec::new();
            for (i, d) in docs.iter().enumerate().skip(doc) {
                let skip = if i == doc { consumed } else { 0 };
                p.push_document::<()>(i as u64, d, i == 0, skip, |e| { rest.push(e.ids.to_vec()); Ok(()) }).unwrap();
            }
            p.finish::<()>(|e| { rest.push(e.ids.to_vec()); Ok(()) }).unwrap();
            first.extend(rest);
            let full_ids: Vec<_> = full.into_iter().map(|(e, _)| e).collect();
            prop_assert_eq!(first, full_ids);
        }
    }
}
