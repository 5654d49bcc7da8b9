//! Parquet inputs: the text is a string column (`--text-field`, default `text`), read
//! one record batch at a time. A null is a rejected document, like a JSON `null`.

use super::input::Place;
use super::source::ReadStats;
use super::store::ObjectChunks;
use super::{DocumentReader, InputFile, Location, ReadOptions, Record, Reject};
use crate::{Error, Result};
use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::file::reader::ChunkReader;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Rows decoded per record batch.
const BATCH_ROWS: usize = 1024;

/// Reader of a Parquet file.
pub struct ParquetReader {
    state: State,
    input: InputFile,
    /// For an object: the first ranged request that failed after retries, which makes
    /// a Parquet error a failure to read the object (fatal) rather than a bad file.
    remote_failure: Option<Arc<Mutex<Option<String>>>>,
    max_doc_bytes: u64,
    stats: Arc<ReadStats>,
    file_bytes: u64,
    total_rows: u64,
    row: u64,
}

enum State {
    /// The file could not be opened as Parquet with the column: one rejection.
    Unreadable(String),
    Reading {
        reader: ParquetRecordBatchReader,
        batch: Option<RecordBatch>,
        index: usize,
    },
    Done,
}

impl ParquetReader {
    /// Open `input` and find the text column.
    pub fn open(input: &InputFile, options: &ReadOptions, stats: Arc<ReadStats>) -> Result<Self> {
        let (opened, file_bytes, remote_failure) = match input.place() {
            Place::Path(path) => {
                let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
                let bytes = file.metadata().map_err(|e| Error::io(path, e))?.len();
                (open_column(file, &options.text_field), bytes, None)
            }
            Place::Object(object) => {
                let chunks = ObjectChunks::new(object.clone());
                let failure = chunks.failure();
                let opened = open_column(chunks, &options.text_field);
                (opened, object.size(), Some(failure))
            }
        };
        let mut reader = ParquetReader {
            state: State::Done,
            input: input.clone(),
            remote_failure,
            max_doc_bytes: options.max_doc_bytes,
            stats,
            file_bytes,
            total_rows: 0,
            row: 0,
        };
        reader.state = match opened {
            Ok((batches, rows)) => {
                reader.total_rows = rows;
                State::Reading {
                    reader: batches,
                    batch: None,
                    index: 0,
                }
            }
            Err(message) => {
                reader.check_remote()?;
                State::Unreadable(message)
            }
        };
        Ok(reader)
    }

    /// The object could not be read (after retries): an error, not a bad file.
    fn check_remote(&self) -> Result<()> {
        let failure = self
            .remote_failure
            .as_ref()
            .and_then(|f| f.lock().unwrap_or_else(|e| e.into_inner()).clone());
        match failure {
            Some(message) => Err(self.input.read_error(std::io::Error::other(message))),
            None => Ok(()),
        }
    }

    fn record_at(&self, batch: &RecordBatch, index: usize) -> Record {
        let at = Some(Location::Row(self.row));
        let column = batch.column(0);
        if column.is_null(index) {
            return Record::rejected(at, Reject::NotAString, "null");
        }
        let text = match column.data_type() {
            DataType::Utf8 => column.as_string::<i32>().value(index),
            DataType::LargeUtf8 => column.as_string::<i64>().value(index),
            _ => column.as_string_view().value(index),
        };
        if text.len() as u64 > self.max_doc_bytes {
            return Record::rejected(
                at,
                Reject::TooLarge,
                format!(
                    "{} bytes exceed --max-doc-bytes {}",
                    text.len(),
                    self.max_doc_bytes
                ),
            );
        }
        if let Some(offset) = memchr::memchr(0, text.as_bytes()) {
            return Record::rejected(at, Reject::Binary, format!("NUL byte at offset {offset}"));
        }
        Record::from_text(at, text.to_string())
    }
}

fn open_column<R: ChunkReader + 'static>(
    file: R,
    field: &str,
) -> std::result::Result<(ParquetRecordBatchReader, u64), String> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
    let schema = builder.schema().clone();
    let Some(index) = schema.fields().iter().position(|f| f.name() == field) else {
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        return Err(format!(
            "no column {field:?} (columns: {})",
            names.join(", ")
        ));
    };
    let data_type = schema.field(index).data_type();
    if !matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) {
        return Err(format!("column {field:?} is {data_type}, not a string"));
    }
    let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
    let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| e.to_string())?;
    Ok((reader, rows))
}

impl DocumentReader for ParquetReader {
    fn next_record(&mut self) -> Result<Option<Record>> {
        loop {
            match &mut self.state {
                State::Done => return Ok(None),
                State::Unreadable(message) => {
                    let record = Record::rejected(None, Reject::UnreadableFile, message.clone());
                    self.stats
                        .disk_bytes
                        .fetch_add(self.file_bytes, Ordering::Relaxed);
                    self.state = State::Done;
                    return Ok(Some(record));
                }
                State::Reading {
                    reader,
                    batch,
                    index,
                } => {
                    if let Some(b) = batch.as_ref().filter(|b| *index < b.num_rows()) {
                        let b = b.clone();
                        let i = *index;
                        *index += 1;
                        let record = self.record_at(&b, i);
                        self.row += 1;
                        return Ok(Some(record));
                    }
                    let start = Instant::now();
                    let next = reader.next();
                    self.stats
                        .decompress_ns
                        .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    match next {
                        None => self.state = State::Done,
                        Some(Ok(b)) => {
                            let share =
                                self.file_bytes * b.num_rows() as u64 / self.total_rows.max(1);
                            self.stats.disk_bytes.fetch_add(share, Ordering::Relaxed);
                            *batch = Some(b);
                            *index = 0;
                        }
                        Some(Err(e)) => {
                            self.check_remote()?;
                            let record = Record::rejected(
                                Some(Location::Row(self.row)),
                                Reject::CorruptCompression,
                                format!("{e} (from row {} to the end)", self.row),
                            );
                            self.state = State::Done;
                            return Ok(Some(record));
                        }
                    }
                }
            }
        }
    }
}
