//! Helpers shared by the tokenizer tests: the project's shared data (skipped with a printed
//! reason when absent), a built-in corpus, and tokenizers trained or loaded once per process.

use std::path::PathBuf;
use std::sync::OnceLock;

use super::probe::probe_texts;
use super::{ModelKind, TokenizerJson, TrainOptions, train};

/// `shared/data` beside the repository, or `None` after printing why a test is skipped.
pub(super) fn shared_data() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: {} is absent", dir.display());
        None
    }
}

/// The State of the Union addresses, one document per file, in file-name order.
pub(super) fn sotu() -> Option<Vec<String>> {
    let dir = shared_data()?.join("corpus/sotu");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read the sotu directory")
        .map(|entry| entry.expect("list the sotu directory").path())
        .filter(|path| path.extension().is_some_and(|e| e == "txt"))
        .collect();
    paths.sort();
    Some(
        paths
            .iter()
            .map(|path| std::fs::read_to_string(path).expect("read a sotu file"))
            .collect(),
    )
}

/// The texts of the Wikipedia summaries (many names and scripts beyond ASCII).
pub(super) fn wikipedia() -> Option<Vec<String>> {
    let path = shared_data()?.join("corpus/wikipedia-summaries.jsonl.zst");
    let raw = std::fs::read(&path).expect("read the wikipedia summaries");
    let text = zstd::stream::decode_all(raw.as_slice()).expect("decompress them");
    let text = String::from_utf8(text).expect("they are UTF-8");
    Some(
        text.lines()
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
                value["text"].as_str().expect("a text field").to_string()
            })
            .collect(),
    )
}

/// A deterministic xorshift generator: each call returns a number below its argument.
fn pseudo_random(mut state: u64) -> impl FnMut(usize) -> usize {
    move |below| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % below as u64) as usize
    }
}

/// A deterministic corpus that needs no files: pseudo-words from a fixed syllable set, plus the
/// probe texts.
pub(super) fn builtin_corpus() -> Vec<String> {
    const SYLLABLES: [&str; 24] = [
        "ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "zi", "pa", "qu", "ex", "an", "or", "ul",
        "be", "di", "fo", "gu", "hy", "ja", "ço", "ñu", "ßi",
    ];
    let mut next = pseudo_random(0x2545_F491_4F6C_DD1D);
    let mut documents = probe_texts();
    for _ in 0..400 {
        let words: Vec<String> = (0..60)
            .map(|_| {
                let syllables = 1 + next(4);
                let word: String = (0..syllables).map(|_| SYLLABLES[next(24)]).collect();
                match next(10) {
                    0 => format!("{word}, "),
                    1 => format!("{word}.\n"),
                    2 => format!("{} ", next(10_000)),
                    _ => format!("{word} "),
                }
            })
            .collect();
        documents.push(words.concat());
    }
    documents
}

/// Documents of 100 distinct random letter strings, each written twice so that a BPE merging
/// pairs seen twice can make a whole word of it: enough material for 140,000 ids.
pub(super) fn distinct_words_corpus(documents: usize) -> Vec<String> {
    let letters: Vec<char> = "abcdefghijklmnopqrstuvwxyzé".chars().collect();
    let mut next = pseudo_random(0x9E37_79B9_7F4A_7C15);
    (0..documents)
        .map(|_| {
            let words: Vec<String> = (0..100)
                .map(|_| {
                    let word: String = (0..4 + next(6))
                        .map(|_| letters[next(letters.len())])
                        .collect();
                    format!("{word} {word} ")
                })
                .collect();
            words.concat()
        })
        .collect()
}

/// The training corpus of the tests: the built-in corpus and, when present, every fourth
/// State of the Union address.
fn training_corpus() -> Vec<String> {
    let mut documents = builtin_corpus();
    if let Some(sotu) = sotu() {
        documents.extend(sotu.into_iter().step_by(4));
    }
    documents
}

/// A tokenizer of `kind` with 2000 ids, trained once per process.
pub(super) fn trained(kind: ModelKind) -> &'static TokenizerJson {
    static BPE: OnceLock<TokenizerJson> = OnceLock::new();
    static WORDPIECE: OnceLock<TokenizerJson> = OnceLock::new();
    static UNIGRAM: OnceLock<TokenizerJson> = OnceLock::new();
    let cell = match kind {
        ModelKind::Bpe => &BPE,
        ModelKind::WordPiece => &WORDPIECE,
        ModelKind::Unigram => &UNIGRAM,
    };
    cell.get_or_init(|| {
        train(training_corpus(), &TrainOptions::new(kind, 2000)).expect("train a tokenizer")
    })
}

/// The llama-3 tokenizer (128,256 ids) from the shared data, loaded once per process.
pub(super) fn llama3() -> Option<&'static TokenizerJson> {
    static LLAMA3: OnceLock<TokenizerJson> = OnceLock::new();
    let path = shared_data()?.join("tokenizers/llama3-128k.tokenizer.json.zst");
    Some(LLAMA3.get_or_init(|| TokenizerJson::load(&path).expect("load llama3")))
}
