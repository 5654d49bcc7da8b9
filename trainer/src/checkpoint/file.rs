//! Checkpoints as directories `step-XXXXXXXX/` under a root, written atomically.

use super::integrity::{self, FileDigest};
use super::{Checkpoint, Checkpointer, FORMAT_VERSION, Retention};
use crate::collective::{Collective, all_ok};
use crate::optim::{OptimizerState, ShardInfo};
use crate::params::NamedTensor;
use crate::precision::LossScale;
use crate::{Error, Result, tensor_file};
use burn::tensor::backend::Backend;
use cocolm_shared::RunConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

const MODEL_FILE: &str = "model.safetensors";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const STATE_FILE: &str = "state.json";
const PREFIX: &str = "step-";
const TMP_SUFFIX: &str = ".tmp";
const DAMAGED_SUFFIX: &str = ".damaged";

/// How the optimiser state of a checkpoint is split into files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Shards {
    /// Ranks (one file each).
    world: usize,
    /// Elements per bucket of the layout.
    bucket: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    format_version: u32,
    step: u64,
    optimizer_step: u64,
    /// `None`: one file with the whole state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    optimizer_shards: Option<Shards>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    loss_scale: Option<LossScale>,
    config: RunConfig,
    caller: serde_json::Value,
    /// Size and SHA-256 of every other file of the directory (format 3 on).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    files: BTreeMap<String, FileDigest>,
}

/// What [`FileCheckpointer::verify`] found in an intact checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// Optimiser steps completed at the checkpoint.
    pub step: u64,
    /// The caller's value stored in it.
    pub caller: serde_json::Value,
    /// Files checked, `state.json` aside.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// The file of an optimiser state in a checkpoint directory.
fn optimizer_file(shard: Option<ShardInfo>) -> String {
    match shard {
        None => OPTIMIZER_FILE.to_string(),
        Some(s) => format!("optimizer-rank-{:05}-of-{:05}.safetensors", s.rank, s.world),
    }
}

/// Checkpoint directories under `root`, the newest kept by a [`Retention`] policy.
#[derive(Debug, Clone)]
pub struct FileCheckpointer {
    root: PathBuf,
    retention: Retention,
}

impl FileCheckpointer {
    /// Checkpoints under `root` (created on first save).
    pub fn new(root: impl Into<PathBuf>, retention: Retention) -> Self {
        Self {
            root: root.into(),
            retention,
        }
    }

    /// The directory holding the checkpoints.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of the checkpoint at `step`.
    pub fn dir_of(&self, step: u64) -> PathBuf {
        self.root.join(format!("{PREFIX}{step:08}"))
    }

    /// Steps of the complete checkpoints on disk (in order).
    pub fn steps(&self) -> Result<Vec<u64>> {
        Ok(self
            .entries(str::is_empty)?
            .into_iter()
            .map(|(step, _)| step)
            .collect())
    }
}

fn fsync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(dir, e))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// The parsed `state.json` of `dir`, of a readable format version.
fn read_state(dir: &Path) -> Result<StateFile> {
    let state_path = dir.join(STATE_FILE);
    let text = std::fs::read(&state_path).map_err(|e| Error::io(&state_path, e))?;
    let state: StateFile = serde_json::from_slice(&text).map_err(|e| Error::Json {
        path: state_path.clone(),
        message: e.to_string(),
    })?;
    if state.format_version != FORMAT_VERSION {
        return Err(Error::CheckpointFormat {
            path: dir.to_path_buf(),
            version: state.format_version,
        });
    }
    Ok(state)
}

/// The optimiser files a state describes: one whole state, or one shard per rank.
fn shard_infos(state: &StateFile) -> Vec<Option<ShardInfo>> {
    match state.optimizer_shards {
        None => vec![None],
        Some(s) => (0..s.world)
            .map(|rank| {
                Some(ShardInfo {
                    rank,
                    world: s.world,
                    bucket: s.bucket,
                })
            })
            .collect(),
    }
}

impl FileCheckpointer {
    /// The step, configuration and parameters of the checkpoint in `dir`, without its
    /// optimiser state.
    pub fn load_model(&self, dir: &Path) -> Result<(u64, RunConfig, Vec<NamedTensor>)> {
        let state = read_state(dir)?;
        let model = tensor_file::read(&dir.join(MODEL_FILE))?;
        Ok((state.step, state.config, model))
    }

    /// Check the checkpoint in `dir` without loading it: its `state.json` reads, and
    /// every file it records is there with its size and SHA-256. An error says what is
    /// damaged or missing.
    pub fn verify(&self, dir: &Path) -> Result<Verified> {
        let state = read_state(dir)?;
        let damaged = |message: String| Error::Checkpoint {
            path: dir.to_path_buf(),
            message,
        };
        if state.files.is_empty() {
            return Err(damaged("state.json records no checksums".into()));
        }
        if let Some(what) = integrity::damage(dir, &state.files) {
            return Err(damaged(what));
        }
        Ok(Verified {
            step: state.step,
            caller: state.caller,
            files: state.files.len(),
            bytes: state.files.values().map(|d| d.bytes).sum(),
        })
    }

    /// Directories of checkpoints that were being written when their job ended
    /// (`step-XXXXXXXX.tmp`), with their steps.
    pub fn incomplete(&self) -> Result<Vec<(u64, PathBuf)>> {
        self.entries(|rest| rest == TMP_SUFFIX)
    }

    /// Checkpoints set aside as damaged ([`FileCheckpointer::set_aside`]), with their
    /// steps.
    pub fn set_aside_dirs(&self) -> Result<Vec<(u64, PathBuf)>> {
        self.entries(|rest| rest.starts_with(DAMAGED_SUFFIX))
    }

    /// Move a damaged checkpoint out of the way (`step-XXXXXXXX.damaged`, numbered when
    /// taken), keeping it for inspection: the run can write that step again. Returns the
    /// new location.
    pub fn set_aside(&self, dir: &Path) -> Result<PathBuf> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut target = self.root.join(format!("{name}{DAMAGED_SUFFIX}"));
        let mut n = 1;
        while target.exists() {
            n += 1;
            target = self.root.join(format!("{name}{DAMAGED_SUFFIX}{n}"));
        }
        std::fs::rename(dir, &target).map_err(|e| Error::io(dir, e))?;
        fsync_dir(&self.root)?;
        Ok(target)
    }

    /// Entries `step-XXXXXXXX<rest>` of the root whose `rest` is `wanted`, with their
    /// steps, by step.
    fn entries(&self, wanted: impl Fn(&str) -> bool) -> Result<Vec<(u64, PathBuf)>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.root, e)),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.root, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let step = name
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.get(..8).zip(rest.get(8..)))
                .filter(|(digits, rest)| wanted(rest) && digits.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|(digits, _)| digits.parse().ok());
            if let Some(step) = step {
                found.push((step, entry.path()));
            }
        }
        found.sort();
        Ok(found)
    }

    fn tmp_of(&self, step: u64) -> PathBuf {
        self.root.join(format!("{PREFIX}{step:08}{TMP_SUFFIX}"))
    }

    /// An empty temporary directory for the checkpoint of `step` (a leftover of a crash
    /// is removed); refuses to overwrite a complete checkpoint.
    fn prepare(&self, step: u64) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.root).map_err(|e| Error::io(&self.root, e))?;
        let dir = self.dir_of(step);
        if dir.exists() {
            return Err(Error::Checkpoint {
                path: dir,
                message: "already exists".into(),
            });
        }
        let tmp = self.tmp_of(step);
        remove_dir(&tmp)?;
        std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(tmp)
    }

    /// Model and state into `tmp`, then the rename and the retention policy.
    fn commit(&self, tmp: &Path, c: &Checkpoint, shards: Option<Shards>) -> Result<PathBuf> {
        tensor_file::write(&tmp.join(MODEL_FILE), &c.model)?;
        let files = integrity::digest_dir(tmp, STATE_FILE)?;
        let state = StateFile {
            format_version: FORMAT_VERSION,
            step: c.step,
            optimizer_step: c.optimizer.first().map_or(0, |o| o.step),
            optimizer_shards: shards,
            loss_scale: c.loss_scale,
            config: c.config.clone(),
            caller: c.caller.clone(),
            files,
        };
        let state_path = tmp.join(STATE_FILE);
        let text = serde_json::to_vec_pretty(&state).map_err(|e| Error::Json {
            path: state_path.clone(),
            message: e.to_string(),
        })?;
        write_synced(&state_path, &text)?;
        fsync_dir(tmp)?;
        let dir = self.dir_of(c.step);
        std::fs::rename(tmp, &dir).map_err(|e| Error::io(&dir, e))?;
        fsync_dir(&self.root)?;
        for step in self.retention.to_delete(self.steps()?) {
            remove_dir(&self.dir_of(step))?;
        }
        Ok(dir)
    }

    /// Save as one rank of a data-parallel run: `c.optimizer` holds this rank's shard,
    /// `c.model` the model (only rank 0's is written). Every rank of `collective` calls
    /// it; it fails on every rank when it fails on one. Returns the checkpoint directory.
    pub fn save_ranked<B: Backend>(
        &self,
        c: &Checkpoint,
        collective: &dyn Collective<B>,
        device: &B::Device,
    ) -> Result<PathBuf> {
        let rank = collective.rank();
        let failed_elsewhere = |phase: &str| Error::Checkpoint {
            path: self.dir_of(c.step),
            message: format!("another rank failed while {phase}"),
        };
        let [own] = c.optimizer.as_slice() else {
            return Err(Error::Checkpoint {
                path: self.dir_of(c.step),
                message: format!("rank {rank} saves one optimiser state"),
            });
        };
        let shards = own.shard.map(|s| Shards {
            world: s.world,
            bucket: s.bucket,
        });
        let prepared = if rank == 0 {
            self.prepare(c.step)
        } else {
            Ok(self.tmp_of(c.step))
        };
        if !all_ok(collective, prepared.is_ok(), device)? {
            return Err(prepared
                .err()
                .unwrap_or_else(|| failed_elsewhere("preparing")));
        }
        let tmp = prepared?;
        let written = if own.shard.is_some() || rank == 0 {
            tensor_file::write(&tmp.join(optimizer_file(own.shard)), &own.tensors)
        } else {
            Ok(())
        };
        // On failure rank 0 removes the partial directory (best effort, as in `save`).
        let abandon = || {
            if rank == 0 {
                let _ = remove_dir(&tmp);
            }
        };
        if !all_ok(collective, written.is_ok(), device)? {
            abandon();
            return Err(written.err().unwrap_or_else(|| failed_elsewhere("writing")));
        }
        let committed = if rank == 0 {
            self.commit(&tmp, c, shards).map(Some)
        } else {
            Ok(None)
        };
        if !all_ok(collective, committed.is_ok(), device)? {
            abandon();
            return Err(committed
                .err()
                .unwrap_or_else(|| failed_elsewhere("committing")));
        }
        Ok(self.dir_of(c.step))
    }
}

impl Checkpointer for FileCheckpointer {
    fn save(&self, c: &Checkpoint) -> Result<PathBuf> {
        let shards = match c.optimizer.as_slice() {
            [whole] if whole.shard.is_none() => None,
            all => {
                let first = all.first().and_then(|o| o.shard);
                let layout = first.map(|s| Shards {
                    world: s.world,
                    bucket: s.bucket,
                });
                let complete = layout.is_some_and(|l| {
                    all.len() == l.world
                        && all.iter().enumerate().all(|(r, o)| {
                            o.shard
                                == Some(ShardInfo {
                                    rank: r,
                                    world: l.world,
                                    bucket: l.bucket,
                                })
                        })
                });
                if !complete {
                    return Err(Error::Checkpoint {
                        path: self.dir_of(c.step),
                        message: "the optimiser state is neither whole nor every rank's shard in rank order".into(),
                    });
                }
                layout
            }
        };
        let tmp = self.prepare(c.step)?;
        let saved = c
            .optimizer
            .iter()
            .try_for_each(|o| tensor_file::write(&tmp.join(optimizer_file(o.shard)), &o.tensors))
            .and_then(|()| self.commit(&tmp, c, shards));
        if saved.is_err() {
            // Best effort: give the space back (a full disk); the previous checkpoints
            // are untouched either way.
            let _ = remove_dir(&tmp);
        }
        saved
    }

    fn latest(&self) -> Result<Option<PathBuf>> {
        Ok(self.steps()?.into_iter().max().map(|s| self.dir_of(s)))
    }

    fn load(&self, dir: &Path) -> Result<Checkpoint> {
        let state = read_state(dir)?;
        let mut optimizer = Vec::new();
        for shard in shard_infos(&state) {
            optimizer.push(OptimizerState {
                step: state.optimizer_step,
                tensors: tensor_file::read(&dir.join(optimizer_file(shard)))?,
                shard,
            });
        }
        Ok(Checkpoint {
            step: state.step,
            config: state.config,
            model: tensor_file::read(&dir.join(MODEL_FILE))?,
            optimizer,
            caller: state.caller,
            loss_scale: state.loss_scale,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::NamedTensor;

    /// Files store tensors sorted by name.
    fn sorted(mut c: Checkpoint) -> Checkpoint {
        c.model.sort_by(|a, b| a.name.cmp(&b.name));
        for o in &mut c.optimizer {
            o.tensors.sort_by(|a, b| a.name.cmp(&b.name));
        }
        c
    }

    fn checkpoint(step: u64) -> Checkpoint {
        let t = |name: &str, v: f32| NamedTensor {
            name: name.into(),
            shape: vec![2],
            data: vec![v, -v],
        };
        Checkpoint {
            step,
            config: RunConfig::default(),
            model: vec![t("w", step as f32)],
            optimizer: vec![OptimizerState {
                step,
                tensors: vec![t("w.exp_avg", 0.5), t("w.exp_avg_sq", 0.25)],
                shard: None,
            }],
            caller: serde_json::json!({"epoch": 1, "position": step}),
            loss_scale: None,
        }
    }

    #[test]
    fn save_load_and_retention() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = FileCheckpointer::new(dir.path().join("ckpt"), Retention::KeepNewest(2));
        assert_eq!(ckpt.latest().unwrap(), None);
        for step in [10, 20, 30] {
            ckpt.save(&checkpoint(step)).unwrap();
        }
        let mut steps = ckpt.steps().unwrap();
        steps.sort();
        assert_eq!(steps, vec![20, 30]);
        let latest = ckpt.latest().unwrap().unwrap();
        assert!(latest.ends_with("step-00000030"));
        assert_eq!(ckpt.load(&latest).unwrap(), sorted(checkpoint(30)));
        assert!(
            ckpt.save(&checkpoint(30)).is_err(),
            "an existing checkpoint is never overwritten"
        );
    }

    #[test]
    fn interrupted_write_leaves_previous_checkpoint_usable() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = FileCheckpointer::new(dir.path(), Retention::KeepNewest(1));
        ckpt.save(&checkpoint(5)).unwrap();
        // A crash half-way through step 6: only a partial temporary directory exists.
        let tmp = dir.path().join("step-00000006.tmp");
        std::fs::create_dir(&tmp).unwrap();
        std::fs::write(tmp.join(MODEL_FILE), b"partial").unwrap();
        let latest = ckpt.latest().unwrap().unwrap();
        assert_eq!(ckpt.load(&latest).unwrap(), sorted(checkpoint(5)));
        // Saving step 6 again replaces the leftover.
        ckpt.save(&checkpoint(6)).unwrap();
        assert_eq!(
            ckpt.load(&ckpt.latest().unwrap().unwrap()).unwrap(),
            sorted(checkpoint(6))
        );
        assert!(!tmp.exists());
    }

    #[test]
    fn damaged_state_is_an_error_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = FileCheckpointer::new(dir.path(), Retention::KeepNewest(1));
        let saved = ckpt.save(&checkpoint(1)).unwrap();
        std::fs::write(saved.join(STATE_FILE), b"{ not json").unwrap();
        let err = ckpt.load(&saved).unwrap_err().to_string();
        assert!(err.contains("state.json"), "{err}");
    }

    #[test]
    fn verify_finds_damage_lists_incomplete_ones_and_sets_damaged_ones_aside() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = FileCheckpointer::new(dir.path(), Retention::KeepNewest(3));
        let saved = ckpt.save(&checkpoint(4)).unwrap();
        let verified = ckpt.verify(&saved).unwrap();
        assert!(verified.files == 2 && verified.step == 4);

        let optimizer = saved.join(OPTIMIZER_FILE);
        let mut bytes = std::fs::read(&optimizer).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x80;
        std::fs::write(&optimizer, &bytes).unwrap();
        let err = ckpt.verify(&saved).unwrap_err().to_string();
        assert!(
            err.contains(OPTIMIZER_FILE) && err.contains("SHA-256"),
            "{err}"
        );

        std::fs::create_dir(dir.path().join("step-00000005.tmp")).unwrap();
        assert_eq!(ckpt.incomplete().unwrap().len(), 1);
        let aside = ckpt.set_aside(&saved).unwrap();
        assert!(aside.ends_with("step-00000004.damaged"));
        assert_eq!(ckpt.steps().unwrap(), Vec::<u64>::new());
        assert_eq!(ckpt.set_aside_dirs().unwrap(), vec![(4, aside)]);
        // The step can be written again; a second damaged copy gets its own name.
        let again = ckpt.save(&checkpoint(4)).unwrap();
        assert!(
            ckpt.set_aside(&again)
                .unwrap()
                .ends_with("step-00000004.damaged2")
        );
    }

    #[test]
    fn an_earlier_format_is_refused_as_such_not_as_damage() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = FileCheckpointer::new(dir.path(), Retention::KeepNewest(1));
        let saved = ckpt.save(&checkpoint(2)).unwrap();
        // Rewrite state.json as format 3 wrote it (same files, a model that differs).
        let state_path = saved.join(STATE_FILE);
        let mut state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
        state["format_version"] = 3.into();
        std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
        for err in [
            ckpt.verify(&saved).unwrap_err(),
            ckpt.load(&saved).unwrap_err(),
        ] {
            assert!(
                matches!(err, Error::CheckpointFormat { version: 3, .. }),
                "{err}"
            );
            assert!(err.to_string().contains("earlier cocolm"), "{err}");
        }
    }
}
