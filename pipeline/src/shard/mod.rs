//! The shard format: Arrow IPC **stream** files, uncompressed, plus `manifest.json`.
//!
//! A shard `shard-NNNNN.arrow` is an Arrow IPC stream (schema message, then record
//! batches, then the end-of-stream marker) with the schema of [`schema()`] (also written
//! to `schemas/shard.arrow-schema.json`):
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `input_ids` | `List<UInt32>` | `[CLS] span… [SEP]`, `seq_len` tokens (the last example of a set may be shorter) |
//! | `document` | `UInt64` | global ordinal of the document holding the span's first token |
//!
//! Stream format rather than file format because Hugging Face `datasets`
//! (`Dataset.from_file`) and `pyarrow.ipc.open_stream` read it directly, memory-mapped.
//! Random access does not need the file footer: the manifest lists the byte offset of
//! every record batch message ([`ShardRecord::batch_offsets`](cocolm_shared::ShardRecord)),
//! and the loader decodes the whole stream zero-copy from a memory map at open. Buffers
//! are 64-byte aligned and never compressed, so ids are read in place.
//!
//! Integrity: the manifest holds every shard's size and SHA-256; a shard is written as
//! `*.arrow.tmp`, fsynced, and renamed, so a listed shard is always complete.

mod background;
mod digest;
pub mod reader;
mod sync;
pub mod writer;

use arrow::datatypes::{DataType, Field, Schema};
use std::collections::HashMap;
use std::sync::Arc;

/// Name of the ids column.
pub const IDS_COLUMN: &str = "input_ids";
/// Name of the document-ordinal column.
pub const DOCUMENT_COLUMN: &str = "document";
/// Schema metadata key holding [`cocolm_shared::manifest::FORMAT_NAME`].
pub const FORMAT_KEY: &str = "cocolm.format";
/// Schema metadata key holding the format version.
pub const VERSION_KEY: &str = "cocolm.format_version";

/// File name of shard `index`.
pub fn shard_file_name(index: usize) -> String {
    format!("shard-{index:05}.arrow")
}

/// The Arrow schema of every shard.
pub fn schema() -> Arc<Schema> {
    let item = Arc::new(Field::new("item", DataType::UInt32, true));
    let metadata = HashMap::from([
        (
            FORMAT_KEY.to_string(),
            cocolm_shared::manifest::FORMAT_NAME.to_string(),
        ),
        (
            VERSION_KEY.to_string(),
            cocolm_shared::manifest::FORMAT_VERSION.to_string(),
        ),
    ]);
    Arc::new(
        Schema::new(vec![
            Field::new(IDS_COLUMN, DataType::List(item), false),
            Field::new(DOCUMENT_COLUMN, DataType::UInt64, false),
        ])
        .with_metadata(metadata),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `schemas/shard.arrow-schema.json` describes exactly [`schema()`].
    #[test]
    fn schema_matches_the_schemas_dir() {
        let described = crate::testutil::repo_schema("shard.arrow-schema.json");
        let s = schema();
        let fields: Vec<serde_json::Value> = s
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::List(item) => serde_json::json!({
                    "name": f.name(), "type": format!("List<{}>", item.data_type()),
                    "item_nullable": item.is_nullable(), "nullable": f.is_nullable(),
                }),
                t => serde_json::json!({"name": f.name(), "type": t.to_string(), "nullable": f.is_nullable()}),
            })
            .collect();
        assert_eq!(described["fields"], serde_json::Value::Array(fields));
        assert_eq!(
            described["metadata"],
            serde_json::to_value(s.metadata()).unwrap()
        );
    }
}
