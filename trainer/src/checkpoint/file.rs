//! Checkpoints as directories `step-XXXXXXXX/` under a root, written atomically.

use super::{Checkpoint, Checkpointer, FORMAT_VERSION, Retention};
use crate::optim::OptimizerState;
use crate::{Error, Result, tensor_file};
use cocolm_shared::RunConfig;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

const MODEL_FILE: &str = "model.safetensors";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const STATE_FILE: &str = "state.json";
const PREFIX: &str = "step-";
const TMP_SUFFIX: &str = ".tmp";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    format_version: u32,
    step: u64,
    optimizer_step: u64,
    config: RunConfig,
    caller: serde_json::Value,
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

    /// Steps of the complete checkpoints on disk (unordered).
    pub fn steps(&self) -> Result<Vec<u64>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.root, e)),
        };
        let mut steps = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.root, e))?;
            let name = entry.file_name();
            let Some(step) = name
                .to_str()
                .and_then(|n| n.strip_prefix(PREFIX))
                .filter(|digits| digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|digits| digits.parse().ok())
            else {
                continue;
            };
            steps.push(step);
        }
        Ok(steps)
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

impl Checkpointer for FileCheckpointer {
    fn save(&self, c: &Checkpoint) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.root).map_err(|e| Error::io(&self.root, e))?;
        let dir = self.dir_of(c.step);
        if dir.exists() {
            return Err(Error::Checkpoint {
                path: dir,
                message: "already exists".into(),
            });
        }
        let tmp = self.root.join(format!("{PREFIX}{:08}{TMP_SUFFIX}", c.step));
        remove_dir(&tmp)?; // left over from a crash
        std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
        tensor_file::write(&tmp.join(MODEL_FILE), &c.model)?;
        tensor_file::write(&tmp.join(OPTIMIZER_FILE), &c.optimizer.tensors)?;
        let state = StateFile {
            format_version: FORMAT_VERSION,
            step: c.step,
            optimizer_step: c.optimizer.step,
            config: c.config.clone(),
            caller: c.caller.clone(),
        };
        let state_path = tmp.join(STATE_FILE);
        let text = serde_json::to_vec_pretty(&state).map_err(|e| Error::Json {
            path: state_path.clone(),
            message: e.to_string(),
        })?;
        write_synced(&state_path, &text)?;
        fsync_dir(&tmp)?;
        std::fs::rename(&tmp, &dir).map_err(|e| Error::io(&dir, e))?;
        fsync_dir(&self.root)?;
        for step in self.retention.to_delete(self.steps()?) {
            remove_dir(&self.dir_of(step))?;
        }
        Ok(dir)
    }

    fn latest(&self) -> Result<Option<PathBuf>> {
        Ok(self.steps()?.into_iter().max().map(|s| self.dir_of(s)))
    }

    fn load(&self, dir: &Path) -> Result<Checkpoint> {
        let state_path = dir.join(STATE_FILE);
        let text = std::fs::read(&state_path).map_err(|e| Error::io(&state_path, e))?;
        let state: StateFile = serde_json::from_slice(&text).map_err(|e| Error::Json {
            path: state_path.clone(),
            message: e.to_string(),
        })?;
        if state.format_version != FORMAT_VERSION {
            return Err(Error::Checkpoint {
                path: dir.to_path_buf(),
                message: format!(
                    "format version {} (this build reads {FORMAT_VERSION})",
                    state.format_version
                ),
            });
        }
        Ok(Checkpoint {
            step: state.step,
            config: state.config,
            model: tensor_file::read(&dir.join(MODEL_FILE))?,
            optimizer: OptimizerState {
                step: state.optimizer_step,
                tensors: tensor_file::read(&dir.join(OPTIMIZER_FILE))?,
            },
            caller: state.caller,
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
        c.optimizer.tensors.sort_by(|a, b| a.name.cmp(&b.name));
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
            optimizer: OptimizerState {
                step,
                tensors: vec![t("w.exp_avg", 0.5), t("w.exp_avg_sq", 0.25)],
            },
            caller: serde_json::json!({"epoch": 1, "position": step}),
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
}
