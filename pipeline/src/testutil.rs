//! Helpers shared by the unit tests of this crate.

use crate::prepare::{Encode, TokenizerArtifact};
use crate::tokenizer::{Engine, TokenizerError};
use crate::{Error, Result};
use cocolm_shared::{SpecialTokens, TokenizerRecord};
use std::path::{Path, PathBuf};
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
            return Err(Error::Tokenizer(TokenizerError::Library {
                engine: Engine::Reference,
                op: "encode",
                message: "simulated crash".into(),
            }));
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
    toy_shards_of(dir, docs, 16)
}

/// [`toy_shards`] with examples of `seq_len` tokens.
pub fn toy_shards_of(dir: &std::path::Path, docs: usize, seq_len: usize) -> std::path::PathBuf {
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
        seq_len,
        threads: 2,
        shard_bytes: 40 * (seq_len as u64 * 4 + 16),
        rows_per_batch: 8,
        ..crate::prepare::PrepareOptions::new(vec![input], out.clone())
    };
    crate::prepare::prepare(&options, &artifact(), toy(None), &mut |_| {}).unwrap();
    out
}

/// Check `value` against the subset of JSON Schema used in `schemas/` (`type`, `const`,
/// `properties`, `required`, `additionalProperties`, `items`, `minimum`, local `$ref`,
/// `if`/`then`/`else`, `not`).
/// Returns the first violation as `path: message`.
pub fn check_json_schema(
    root: &serde_json::Value,
    schema: &serde_json::Value,
    value: &serde_json::Value,
    path: &str,
) -> std::result::Result<(), String> {
    use serde_json::Value;
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let pointer = r
            .strip_prefix('#')
            .ok_or(format!("{path}: non-local $ref {r}"))?;
        let target = root
            .pointer(pointer)
            .ok_or(format!("{path}: dangling $ref {r}"))?;
        return check_json_schema(root, target, value, path);
    }
    if let Some(condition) = schema.get("if") {
        let branch = if check_json_schema(root, condition, value, path).is_ok() {
            schema.get("then")
        } else {
            schema.get("else")
        };
        if let Some(branch) = branch {
            check_json_schema(root, branch, value, path)?;
        }
    }
    if let Some(forbidden) = schema.get("not")
        && check_json_schema(root, forbidden, value, path).is_ok()
    {
        return Err(format!("{path}: matches {forbidden}, which is not allowed"));
    }
    if let Some(c) = schema.get("const")
        && c != value
    {
        return Err(format!("{path}: {value} is not {c}"));
    }
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_u64() || value.is_i64(),
            "number" => value.is_number(),
            other => return Err(format!("{path}: unsupported type {other}")),
        };
        if !ok {
            return Err(format!("{path}: {value} is not of type {t}"));
        }
    }
    if let (Some(min), Some(v)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) && v < min
    {
        return Err(format!("{path}: {v} < minimum {min}"));
    }
    if let Some(obj) = value.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = required.as_str().unwrap_or_default();
            if !obj.contains_key(key) {
                return Err(format!("{path}: missing required {key}"));
            }
        }
        for (key, v) in obj {
            let sub = format!("{path}.{key}");
            match (
                props.and_then(|p| p.get(key)),
                schema.get("additionalProperties"),
            ) {
                (Some(s), _) => check_json_schema(root, s, v, &sub)?,
                (None, Some(Value::Bool(false))) => {
                    return Err(format!("{sub}: not allowed by the schema"));
                }
                (None, Some(s)) if s.is_object() => check_json_schema(root, s, v, &sub)?,
                (None, _) => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            check_json_schema(root, items, v, &format!("{path}[{i}]"))?;
        }
    }
    Ok(())
}

/// Read a file of the repository's `schemas/` directory as JSON.
pub fn repo_schema(name: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas")
        .join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// A small corpus with good and bad documents in every format but Parquet.
pub fn corpus(dir: &Path) -> PathBuf {
    let input = dir.join("in");
    std::fs::create_dir_all(input.join("sub")).unwrap();
    for i in 0..40 {
        let text: String = (0..(i * 7 % 53 + 1))
            .map(|k| char::from(b'a' + ((i + k) % 26) as u8))
            .collect();
        std::fs::write(input.join(format!("doc{i:02}.txt")), text).unwrap();
    }
    std::fs::write(input.join("empty.txt"), "").unwrap();
    std::fs::write(input.join("binary.txt"), b"\x89PNG\0\0\x01").unwrap();
    let mut jsonl = String::new();
    for i in 0..30 {
        jsonl.push_str(&format!(
            "{{\"text\": \"line {i} of the json file with words\"}}\n"
        ));
        if i % 10 == 3 {
            jsonl.push_str("{broken\n");
        }
    }
    std::fs::write(input.join("sub/a.jsonl"), &jsonl).unwrap();
    let compressed = zstd::encode_all(jsonl.as_bytes(), 3).unwrap();
    std::fs::write(input.join("sub/b.jsonl.zst"), &compressed).unwrap();
    std::fs::write(
        input.join("sub/c.jsonl.zst"),
        &compressed[..compressed.len() / 2],
    )
    .unwrap();
    input
}

/// 1,200 documents over three JSON-lines files (several work chunks), drawn from 400
/// texts, each written with random whitespace and, for accented texts, either Unicode
/// normal form.
pub fn with_duplicates(dir: &Path) -> PathBuf {
    use rand::{Rng, SeedableRng};
    let input = dir.join("dup");
    std::fs::create_dir_all(&input).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for file in 0..3 {
        let mut lines = String::new();
        for _ in 0..400 {
            let k = rng.random_range(0..400u32);
            let mut text = String::new();
            for w in 0..(k % 9 + 1) {
                let gap = [" ", "  ", "\t", " \u{2003} "][rng.random_range(0..4)];
                text.push_str(if w == 0 { "" } else { gap });
                text.push_str(&format!("word{}", (k * 7 + w) % 101));
            }
            if k % 5 == 0 {
                let e = if rng.random_bool(0.5) {
                    "\u{e9}"
                } else {
                    "e\u{301}"
                };
                text.push_str(&format!(" caf{e}"));
            }
            if rng.random_bool(0.2) {
                text = format!("  {text} ");
            }
            lines.push_str(&serde_json::json!({ "text": text }).to_string());
            lines.push('\n');
        }
        std::fs::write(input.join(format!("part{file}.jsonl")), lines).unwrap();
    }
    input
}
