//! `cocolm tokenizer train`.
use crate::cli::TokenizerTrainArgs;
use anyhow::Result;
use std::path::Path;

/// Train a tokenizer.
pub fn train(_args: &TokenizerTrainArgs) -> Result<()> {
    anyhow::bail!("tokenizer: waiting for the tokenizer module")
}

/// A decoder for the tokenizer copy beside shards.
pub struct Decoder;
impl Decoder {
    /// Decode one id.
    pub fn decode_id(&self, id: u32) -> String {
        format!("<{id}>")
    }
}

/// Load the tokenizer copy beside the shards.
pub fn load_beside_shards(_dir: &Path) -> Result<Decoder> {
    Ok(Decoder)
}
