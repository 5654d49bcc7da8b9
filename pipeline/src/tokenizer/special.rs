//! The five special tokens cocolm needs: `[PAD] [CLS] [SEP] [MASK] [UNK]`.
//!
//! They are found by their exact strings, nothing else: a tokenizer that spells its padding
//! token `<pad>` still gets a `[PAD]`. A tokenizer trained here has them at the fixed ids
//! [`TRAINED_SPECIAL_TOKENS`] (0–4, the trainers put their special tokens first). A loaded
//! tokenizer that lacks any of them gets the missing ones appended as *special added tokens*,
//! each with the next id after the largest one in use, and the caller is told which.
//!
//! # Special-token strings inside documents
//!
//! Raw text is data: a document that contains the characters `[MASK]` or `<|begin_of_text|>`
//! is encoded as that text, never as the special id. Both engines are told so
//! (`encode_special_tokens`: special added tokens are not split out of the input; non-special
//! added tokens still are), and the Python check does the same. Only the packer and the
//! corruption stage place special ids.

use cocolm_shared::SpecialTokens;
use tokenizers::{AddedToken, Tokenizer};

use super::engine::Engine;
use super::error::{Result, TokenizerError};

/// The ids of the special tokens in every tokenizer trained by [`train`](fn@super::train).
pub const TRAINED_SPECIAL_TOKENS: SpecialTokens = SpecialTokens {
    pad: 0,
    cls: 1,
    sep: 2,
    mask: 3,
    unk: 4,
};

/// The special tokens as `tokenizers` added tokens, in the order of [`SpecialTokens::NAMES`].
pub(super) fn special_added_tokens() -> Vec<AddedToken> {
    SpecialTokens::NAMES
        .iter()
        .map(|name| AddedToken::from(*name, true))
        .collect()
}

/// Find the five special tokens in `tokenizer`, adding those it lacks.
///
/// Returns their ids and the names that were added, in [`SpecialTokens::NAMES`] order.
pub(super) fn ensure_special_tokens(
    tokenizer: &mut Tokenizer,
) -> Result<(SpecialTokens, Vec<String>)> {
    let missing: Vec<String> = SpecialTokens::NAMES
        .iter()
        .filter(|name| tokenizer.token_to_id(name).is_none())
        .map(|name| name.to_string())
        .collect();
    if !missing.is_empty() {
        let tokens = missing
            .iter()
            .map(|name| AddedToken::from(name.as_str(), true));
        tokenizer
            .add_special_tokens(tokens)
            .map_err(TokenizerError::library(
                Engine::Reference,
                "add special tokens",
            ))?;
    }
    let [pad, cls, sep, mask, unk] = SpecialTokens::NAMES.map(|name| {
        tokenizer
            .token_to_id(name)
            .ok_or_else(|| TokenizerError::Library {
                engine: Engine::Reference,
                op: "add special tokens",
                message: format!("{name} has no id after it was added"),
            })
    });
    let ids = SpecialTokens {
        pad: pad?,
        cls: cls?,
        sep: sep?,
        mask: mask?,
        unk: unk?,
    };
    Ok((ids, missing))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::models::bpe::BPE;

    #[test]
    fn missing_special_tokens_are_appended_in_canonical_order() {
        let mut tokenizer = Tokenizer::new(BPE::default());
        tokenizer
            .add_special_tokens([AddedToken::from("[CLS]", true)])
            .unwrap();
        let (ids, added) = ensure_special_tokens(&mut tokenizer).unwrap();
        assert_eq!(added, ["[PAD]", "[SEP]", "[MASK]", "[UNK]"]);
        let expected = SpecialTokens {
            pad: 1,
            cls: 0,
            sep: 2,
            mask: 3,
            unk: 4,
        };
        assert_eq!(ids, expected);
    }

    #[test]
    fn present_special_tokens_are_left_alone() {
        let mut tokenizer = Tokenizer::new(BPE::default());
        tokenizer
            .add_special_tokens(special_added_tokens())
            .unwrap();
        let (ids, added) = ensure_special_tokens(&mut tokenizer).unwrap();
        assert!(added.is_empty());
        assert_eq!(ids, TRAINED_SPECIAL_TOKENS);
    }
}
