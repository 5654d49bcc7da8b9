//! `cocolm export --parquet`: shards to zstd-compressed Parquet for interchange.
//!
//! One Parquet file per shard (`shard-NNNNN.parquet`), same columns as the shard
//! (`input_ids` `List<UInt32>`, `document` UInt64), row groups of up to 64K examples,
//! zstd level 3. Each file is written under a temporary name and renamed.

use crate::shard::reader::ShardSet;
use crate::{Error, Result};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::path::{Path, PathBuf};

/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Write every shard of `set` as a Parquet file in `out` (created if needed). Returns the
/// files written.
pub fn to_parquet(set: &ShardSet, out: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("level 3 is valid"),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let mut batches = set.record_batches().iter();
    let mut written = Vec::new();
    for shard in &set.manifest().shards {
        let name = shard.file.replace(".arrow", ".parquet");
        let path = out.join(&name);
        let tmp = out.join(format!("{name}.tmp"));
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut writer = ArrowWriter::try_new(file, crate::shard::schema(), Some(props.clone()))
            .map_err(|e| Error::format(&tmp, e))?;
        for batch in batches.by_ref().take(shard.batch_rows.len()) {
            writer.write(batch).map_err(|e| Error::format(&tmp, e))?;
        }
        let file = writer.into_inner().map_err(|e| Error::format(&tmp, e))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::reader::Verify;
    use crate::testutil::toy_shards;
    use arrow::array::AsArray;
    use arrow::datatypes::UInt32Type;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    #[test]
    fn parquet_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let set = ShardSet::open(&toy_shards(dir.path(), 80), Verify::Full).unwrap();
        let files = to_parquet(&set, &dir.path().join("pq")).unwrap();
        assert_eq!(files.len(), set.manifest().shards.len());
        let mut index = 0;
        for f in files {
            let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap())
                .unwrap()
                .build()
                .unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                let ids = batch.column(0).as_list::<i32>();
                for row in 0..batch.num_rows() {
                    let got = ids.value(row);
                    assert_eq!(
                        got.as_primitive::<UInt32Type>().values().as_ref(),
                        set.example(index)
                    );
                    index += 1;
                }
            }
        }
        assert_eq!(index, set.len());
    }
}
