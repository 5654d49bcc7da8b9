//! TEMPORARY: replaced by the tokenizer module from the `tokenizer` branch.
/// Tokenizer errors.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// Anything.
    #[error("{0}")]
    Other(String),
}
