//! `cocolm tokenizer train`, and loading the tokenizer copy beside a shard set.

use crate::cli::{ReadArgs, TokenizerModel, TokenizerTrainArgs};
use anyhow::{Context, Result};
use cocolm_pipeline::corpus::{self, Documents, ReadOptions, Retry, Stores};
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

/// The object stores for URL inputs, with the command line's retry policy.
pub fn stores(args: &ReadArgs) -> Stores {
    Stores::new(Retry {
        max_retries: args.retries,
        timeout: std::time::Duration::from_secs(args.retry_timeout),
        ..Retry::default()
    })
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
        &stores(&args.read),
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
    stores: &Stores,
    model: ModelKind,
    vocab_size: usize,
) -> Result<TokenizerJson> {
    let (files, skipped) = corpus::discover(inputs, stores)?;
    for name in &skipped {
        eprintln!("note: skipping {name} (unknown format)");
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
