//! `cocolm tokenizer train`, and loading the tokenizer copy beside a shard set.

use crate::cli::{ReadArgs, TokenizerModel, TokenizerTrainArgs};
use anyhow::{Context, Result};
use cocolm_pipeline::corpus::{self, Documents, ReadOptions};
use cocolm_pipeline::prepare::output::TOKENIZER_FILE;
use cocolm_pipeline::tokenizer::{Encoder, EngineChoice, ModelKind, TokenizerJson, TrainOptions};
use std::path::Path;
use std::time::Instant;

/// The reading options of the command line.
pub fn read_options(args: &ReadArgs) -> ReadOptions {
    ReadOptions {
        text_field: args.text_field.clone(),
        split_blank_lines: args.split_blank_lines,
        max_doc_bytes: args.max_doc_bytes,
    }
}

/// `cocolm tokenizer train`.
pub fn train(args: &TokenizerTrainArgs) -> Result<()> {
    let model = match args.model {
        TokenizerModel::Bpe => ModelKind::Bpe,
        TokenizerModel::Wordpiece => ModelKind::WordPiece,
        TokenizerModel::Unigram => ModelKind::Unigram,
    };
    let start = Instant::now();
    let tokenizer = train_on(
        &args.inputs,
        &read_options(&args.read),
        model,
        args.vocab_size,
    )?;
    tokenizer.save(&args.out)?;
    let s = tokenizer.special_tokens();
    println!(
        "wrote {} ({} ids; [PAD]={} [CLS]={} [SEP]={} [MASK]={} [UNK]={}) in {:.1} s",
        args.out.display(),
        tokenizer.vocab_size(),
        s.pad,
        s.cls,
        s.sep,
        s.mask,
        s.unk,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Train a tokenizer on the documents of `inputs`, streaming them.
pub fn train_on(
    inputs: &[std::path::PathBuf],
    read: &ReadOptions,
    model: ModelKind,
    vocab_size: usize,
) -> Result<TokenizerJson> {
    let (files, skipped) = corpus::discover(inputs)?;
    for path in &skipped {
        eprintln!("note: skipping {} (unknown format)", path.display());
    }
    let mut documents = Documents::new(files, read.clone(), Default::default());
    let tokenizer =
        cocolm_pipeline::tokenizer::train(&mut documents, &TrainOptions::new(model, vocab_size))?;
    let (accepted, rejected) = documents.finish()?;
    eprintln!("trained on {accepted} documents ({rejected} rejected)");
    Ok(tokenizer)
}

/// The tokenizer copy that `prepare` writes beside the shards, ready to decode.
pub fn load_beside_shards(dir: &Path) -> Result<Encoder> {
    let path = dir.join(TOKENIZER_FILE);
    let tokenizer =
        TokenizerJson::load(&path).with_context(|| format!("loading {}", path.display()))?;
    Ok(Encoder::new(&tokenizer, EngineChoice::Auto)?)
}
