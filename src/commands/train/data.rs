//! The data side of `cocolm train`: the sources and their blend, and what a checkpoint
//! stores to continue the stream exactly.

use anyhow::{Context, Result, bail};
use cocolm_pipeline::loader::blend::{Blend, Schedule, weight_string};
use cocolm_pipeline::shard::reader::{ShardSet, Verify};
use cocolm_shared::{DataSource, LoaderCursor, RunConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// One source: a shard directory and its weight (an exact decimal).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    /// Shard directory.
    pub path: PathBuf,
    /// Its weight, `"1"` when not given.
    pub weight: String,
}

impl FromStr for SourceSpec {
    type Err = String;

    /// `DIR` or `DIR:WEIGHT` (the part after the last `:` when it is a number).
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        if let Some((path, weight)) = text.rsplit_once(':')
            && let Ok(w) = weight.parse::<f64>()
        {
            if !(w.is_finite() && w >= 0.0) || path.is_empty() {
                return Err(format!(
                    "{text:?}: expected DIR or DIR:WEIGHT with a weight ≥ 0"
                ));
            }
            return Ok(SourceSpec {
                path: path.into(),
                weight: weight_string(w),
            });
        }
        Ok(SourceSpec {
            path: text.into(),
            weight: "1".into(),
        })
    }
}

impl From<&DataSource> for SourceSpec {
    fn from(source: &DataSource) -> Self {
        SourceSpec {
            path: source.path.clone(),
            weight: weight_string(source.weight),
        }
    }
}

/// The sources of a run: those given on the command line, else the configuration's
/// `[[data.sources]]`.
pub fn sources(given: &[SourceSpec], config: &RunConfig) -> Vec<SourceSpec> {
    if given.is_empty() {
        config.data.sources.iter().map(SourceSpec::from).collect()
    } else {
        given.to_vec()
    }
}

/// Open every source's shards.
pub fn open(specs: &[SourceSpec], verify: bool) -> Result<Vec<ShardSet>> {
    if specs.is_empty() {
        bail!(
            "no data: give --data DIR[:WEIGHT] (repeatable) or [[data.sources]] in the configuration"
        );
    }
    let mode = if verify {
        Verify::Full
    } else {
        Verify::Structure
    };
    specs
        .iter()
        .map(|s| Ok(ShardSet::open(&s.path, mode)?))
        .collect()
}

/// A cursor as checkpoints store it: the global stream position, or (checkpoints
/// written before the stream was global) one rank's position in its share of an epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum StoredCursor {
    Global(LoaderCursor),
    PerRank {
        seed: u64,
        epoch: u64,
        position: u64,
    },
}

/// What a checkpoint stores for the data side.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataState {
    /// Where the next global batch starts (the same for every rank).
    cursor: StoredCursor,
    tokenizer_sha256: String,
    /// Examples of each source, in blend order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    source_examples: Vec<u64>,
    /// Checkpoints from before blends: the one source's examples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    examples: Option<u64>,
    /// The blend segment in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    blend: Option<Blend>,
    /// Data-parallel ranks of the run that wrote it.
    #[serde(default = "one")]
    world: u64,
    /// Examples per global micro-batch (`batch_size × ranks`) of that run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    global_batch: Option<u64>,
}

fn one() -> u64 {
    1
}

/// The stream of a run: its blend, where it starts, and what it needs to report.
#[derive(Debug, Clone)]
pub struct Stream {
    /// The blend segment in force.
    pub blend: Blend,
    /// Where the loader starts.
    pub cursor: LoaderCursor,
    /// Examples of each source.
    pub sizes: Vec<u64>,
    tokenizer_sha256: String,
    world: u64,
    global_batch: u64,
    schedule: Schedule,
}

/// What changed on resume, to be said and logged.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The weights differ from the checkpoint's: a new blend segment starts.
    Weights {
        /// The previous weights.
        from: Vec<String>,
        /// The new ones.
        to: Vec<String>,
        /// The global position where the new weights take effect.
        at: u64,
    },
    /// The global micro-batch differs: the stream continues at the same example.
    GlobalBatch {
        /// The previous size.
        from: u64,
        /// The new one.
        to: u64,
    },
    /// A checkpoint from before the global stream with several ranks: its position is
    /// mapped approximately.
    LegacyCursor,
}

impl Stream {
    /// The stream of a run over `sets` with these weights, from the start or from a
    /// checkpoint's data state (`resumed`: its value and its directory).
    pub fn plan(
        sets: &[ShardSet],
        weights: Vec<String>,
        seed: u64,
        world: u64,
        global_batch: u64,
        resumed: Option<(&serde_json::Value, &Path)>,
    ) -> Result<(Stream, Vec<Change>)> {
        let sizes: Vec<u64> = sets.iter().map(ShardSet::len).collect();
        let tokenizer_sha256 = sets[0].manifest().tokenizer.sha256.clone();
        let mut changes = Vec::new();
        let (blend, cursor) = match resumed {
            None => (Blend::new(weights)?, LoaderCursor::start(seed)),
            Some((value, path)) => {
                let state: DataState =
                    serde_json::from_value(value.clone()).with_context(|| {
                        format!("{}: no loader state in the checkpoint", path.display())
                    })?;
                let stored_sizes = match (&state.examples, state.source_examples.is_empty()) {
                    (Some(n), true) => vec![*n],
                    _ => state.source_examples.clone(),
                };
                if state.tokenizer_sha256 != tokenizer_sha256 || stored_sizes != sizes {
                    bail!(
                        "{}: the checkpoint was trained on other data (tokenizer {}, sources of {:?} examples; now {}, {:?})",
                        path.display(),
                        state.tokenizer_sha256,
                        stored_sizes,
                        tokenizer_sha256,
                        sizes
                    );
                }
                let cursor = match state.cursor {
                    StoredCursor::Global(c) => c,
                    StoredCursor::PerRank {
                        seed,
                        epoch,
                        position,
                    } => {
                        if state.world > 1 {
                            changes.push(Change::LegacyCursor);
                        }
                        LoaderCursor {
                            seed,
                            consumed: epoch * sizes[0] + position * state.world,
                        }
                    }
                };
                let previous = match state.blend {
                    Some(b) => b,
                    None => Blend::new(vec!["1".into()])?,
                };
                let blend = previous.reweighted(cursor.consumed, weights)?;
                if blend != previous {
                    changes.push(Change::Weights {
                        from: previous.weights,
                        to: blend.weights.clone(),
                        at: cursor.consumed,
                    });
                }
                if let Some(from) = state.global_batch
                    && from != global_batch
                {
                    changes.push(Change::GlobalBatch {
                        from,
                        to: global_batch,
                    });
                }
                (blend, cursor)
            }
        };
        let schedule = blend.schedule()?;
        Ok((
            Stream {
                blend,
                cursor,
                sizes,
                tokenizer_sha256,
                world,
                global_batch,
                schedule,
            },
            changes,
        ))
    }

    /// The data state to store in a checkpoint written when the loader stands at `cursor`.
    pub fn state(&self, cursor: LoaderCursor) -> serde_json::Value {
        serde_json::to_value(DataState {
            cursor: StoredCursor::Global(cursor),
            tokenizer_sha256: self.tokenizer_sha256.clone(),
            source_examples: self.sizes.clone(),
            examples: None,
            blend: Some(self.blend.clone()),
            world: self.world,
            global_batch: Some(self.global_batch),
        })
        .expect("the data state serialises")
    }

    /// Per source, the examples read and the epochs gone through when the stream stands
    /// at `cursor`, with the weights in force.
    pub fn report(&self, cursor: LoaderCursor) -> serde_json::Value {
        let counts = self.blend.counts(&self.schedule, cursor.consumed);
        let sources: Vec<serde_json::Value> = counts
            .iter()
            .zip(&self.sizes)
            .map(|(&read, &n)| serde_json::json!({"examples_read": read, "epochs": read as f64 / n as f64}))
            .collect();
        serde_json::json!({
            "examples": cursor.consumed,
            "weights": self.blend.weights,
            "sources": sources,
        })
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Weights { from, to, at } => write!(
                f,
                "blend weights change from [{}] to [{}] at example {at} of the stream; every source continues from its own position",
                from.join(", "),
                to.join(", ")
            ),
            Change::GlobalBatch { from, to } => write!(
                f,
                "the global batch changes from {from} to {to} examples per micro-batch; the stream continues at the same example"
            ),
            Change::LegacyCursor => write!(
                f,
                "the checkpoint's loader position predates the rank-independent stream: it is mapped to the same number of examples read, but not to the same examples"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_arguments_read_a_weight_after_the_last_colon() {
        let s: SourceSpec = "shards/web:0.6".parse().unwrap();
        assert_eq!(
            (s.path, s.weight.as_str()),
            (PathBuf::from("shards/web"), "0.6")
        );
        let s: SourceSpec = "shards/books".parse().unwrap();
        assert_eq!(s.weight, "1");
        let s: SourceSpec = "odd:name".parse().unwrap();
        assert_eq!(s.path, PathBuf::from("odd:name"));
        assert!("web:-1".parse::<SourceSpec>().is_err());
        assert!(":2".parse::<SourceSpec>().is_err());
    }

    #[test]
    fn cursors_of_both_layouts_read_back() {
        let new: StoredCursor = serde_json::from_str(r#"{"seed": 3, "consumed": 96}"#).unwrap();
        assert!(matches!(
            new,
            StoredCursor::Global(LoaderCursor {
                seed: 3,
                consumed: 96
            })
        ));
        let old: StoredCursor =
            serde_json::from_str(r#"{"seed": 3, "epoch": 1, "position": 5}"#).unwrap();
        assert!(matches!(
            old,
            StoredCursor::PerRank {
                seed: 3,
                epoch: 1,
                position: 5
            }
        ));
    }
}
