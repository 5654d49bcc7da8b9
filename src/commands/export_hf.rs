//! `cocolm export-hf`: a run's model in Hugging Face's ELECTRA layout
//! (`cocolm_trainer::hf::export`), with the tokenizer beside each model.

use crate::cli::ExportHfArgs;
use anyhow::{Context, Result};
use cocolm_pipeline::prepare::output::TOKENIZER_FILE;
use cocolm_pipeline::tokenizer::TokenizerJson;
use cocolm_trainer::CpuInner;
use cocolm_trainer::hf::export::{export, files};
use cocolm_trainer::params;
use cocolm_trainer::pretrained::Pretrained;
use std::path::Path;

/// `cocolm export-hf RUN OUT`.
pub fn run(args: &ExportHfArgs) -> Result<()> {
    let device = Default::default();
    let pretrained = Pretrained::<CpuInner>::load(&args.run, &device)?;
    let tokenizer = super::train::run_tokenizer(
        args.tokenizer.as_deref(),
        &pretrained.run,
        pretrained.config.model.vocab_size,
    )?;
    let config = &pretrained.config.model;
    let exported = export(
        params::export(&pretrained.model),
        config,
        tokenizer.special_tokens().pad,
    )?;
    exported.write(&args.out)?;
    for dir in [args.out.clone(), args.out.join(files::GENERATOR)] {
        write_tokenizer(&dir, &tokenizer, config.max_positions)?;
    }
    println!(
        "wrote {} (step {} of {}): the corrector as ElectraModel, {}/ as ElectraForMaskedLM, {} ({} tensors ELECTRA has no place for)",
        args.out.display(),
        pretrained.step,
        pretrained.path.display(),
        files::GENERATOR,
        files::EXTRA,
        exported.extra.len()
    );
    if config.relative_position {
        eprintln!(
            "note: this model adds a relative-position bias to its attention scores, which transformers' ELECTRA does not compute: \
             loaded there as is, its hidden states differ from cocolm's. The tables are in {} (README: \"Hugging Face interchange\")",
            files::EXTRA
        );
    }
    Ok(())
}

/// `tokenizer.json` and a `tokenizer_config.json` naming the special tokens, so
/// `AutoTokenizer.from_pretrained` loads it.
fn write_tokenizer(dir: &Path, tokenizer: &TokenizerJson, max_len: usize) -> Result<()> {
    let path = dir.join(TOKENIZER_FILE);
    tokenizer.save(&path)?;
    let config = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "mask_token": "[MASK]",
        "unk_token": "[UNK]",
        "model_max_length": max_len,
    });
    let path = dir.join("tokenizer_config.json");
    std::fs::write(&path, serde_json::to_string_pretty(&config)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}
