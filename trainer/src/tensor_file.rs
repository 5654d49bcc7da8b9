//! Reading and writing `f32` safetensors files of [`NamedTensor`]s.

use crate::params::NamedTensor;
use crate::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensors, View};
use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

/// All tensors of a safetensors file, sorted by name; every tensor must be `F32`.
pub fn read(path: &Path) -> Result<Vec<NamedTensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| Error::Safetensors {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut out = Vec::with_capacity(file.len());
    for (name, view) in file.iter() {
        if view.dtype() != Dtype::F32 {
            return Err(Error::TensorMismatch {
                path: path.to_path_buf(),
                name: name.to_string(),
                expected: "dtype F32".into(),
                got: format!("dtype {:?}", view.dtype()),
            });
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        out.push(NamedTensor {
            name: name.to_string(),
            shape: view.shape().to_vec(),
            data,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

struct F32View<'a>(&'a NamedTensor);

impl View for F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.0.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.0.data.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
    fn data_len(&self) -> usize {
        self.0.data.len() * 4
    }
}

/// Write `tensors` to `path` and fsync it.
pub fn write(path: &Path, tensors: &[NamedTensor]) -> Result<()> {
    let bytes = safetensors::serialize(tensors.iter().map(|t| (t.name.as_str(), F32View(t))), None)
        .map_err(|e| Error::Safetensors {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let mut file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    file.write_all(&bytes).map_err(|e| Error::io(path, e))?;
    file.sync_all().map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let tensors = vec![
            NamedTensor {
                name: "b".into(),
                shape: vec![2],
                data: vec![f32::MIN_POSITIVE, -0.0],
            },
            NamedTensor {
                name: "a.weight".into(),
                shape: vec![1, 3],
                data: vec![1.0 / 3.0, f32::MAX, -7.5e-39],
            },
        ];
        write(&path, &tensors).unwrap();
        let mut back = read(&path).unwrap();
        back.sort_by(|x, y| y.name.cmp(&x.name));
        assert_eq!(back, tensors);
    }

    #[test]
    fn garbage_is_an_error_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.safetensors");
        std::fs::write(&path, b"\x05\x00\x00\x00\x00\x00\x00\x00{oops").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("bad.safetensors"), "{err}");
        let missing = read(&dir.path().join("none.safetensors")).unwrap_err();
        assert!(matches!(missing, Error::Io { .. }));
    }
}
