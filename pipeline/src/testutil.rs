//! Helpers shared by the unit tests of this crate.

use crate::prepare::{Encode, TokenizerArtifact};
use crate::{Error, Result};
use cocolm_shared::{SpecialTokens, TokenizerRecord};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One id per character, `5 + c mod 200`; fails after `fail_after` documents if set.
pub struct ToyEncoder {
    fail_after: Option<usize>,
    calls: AtomicUsize,
}

impl Encode for ToyEncoder {
    fn encode_into(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail_after.is_some_and(|f| n >= f) {
            return Err(Error::Loader("simulated crash".into()));
        }
        out.extend(
            text.chars()
                .filter(|c| !c.is_whitespace())
                .map(|c| 5 + c as u32 % 200),
        );
        Ok(())
    }
}

pub fn toy(fail_after: Option<usize>) -> Arc<dyn Encode> {
    Arc::new(ToyEncoder {
        fail_after,
        calls: AtomicUsize::new(0),
    })
}

pub fn artifact() -> TokenizerArtifact {
    TokenizerArtifact {
        record: TokenizerRecord {
            file: "toy".into(),
            sha256: "toy".into(),
            vocab_size: 205,
            special_tokens: SpecialTokens {
                pad: 0,
                cls: 1,
                sep: 2,
                mask: 3,
                unk: 4,
            },
            added_special_tokens: vec![],
        },
        json: b"{}".to_vec(),
    }
}

/// A complete shard set of `docs` toy documents (seq_len 16, 8 rows per record batch,
/// 40 rows per shard) in `dir/out`; returns its path.
pub fn toy_shards(dir: &std::path::Path, docs: usize) -> std::path::PathBuf {
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    for i in 0..docs {
        let text: String = (0..(i * 7 % 53 + 1))
            .map(|k| char::from(b'a' + ((i + k) % 26) as u8))
            .collect();
        std::fs::write(input.join(format!("doc{i:04}.txt")), text).unwrap();
    }
    let out = dir.join("out");
    let options = crate::prepare::PrepareOptions {
        seq_len: 16,
        threads: 2,
        shard_bytes: 40 * (16 * 4 + 16),
        rows_per_batch: 8,
        ..crate::prepare::PrepareOptions::new(vec![input], out.clone())
    };
    crate::prepare::prepare(&options, &artifact(), toy(None), &mut |_| {}).unwrap();
    out
}
