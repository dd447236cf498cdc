//! Parquet tables partitioned by day, Hive-style (`TABLE/day=YYYY-MM-DD/part-S.parquet`), so
//! DuckDB, Spark and pandas read a whole directory as one table with a `day` column.
//!
//! Why the parquet crate's low-level typed column writer and not its `arrow` feature: rows
//! arrive one at a time from the replay and go into plain column buffers (`Vec<i64>`, string
//! bytes), which is all the low-level writer needs; arrow would add a dozen crates to the
//! build for no gain here.
//!
//! Memory is bounded: each open day file buffers at most [`ROW_GROUP_ROWS`] rows, then writes
//! them as a row group; a day's file is closed as soon as the replay's batch time is past that
//! day in every UTC offset a program can have ([`DayFiles::close_before`]). One shard writes
//! its own files (`part-S`, S the shard), so shards export in parallel without sharing
//! anything. A file is written as `part-S.parquet.partial` and renamed when complete, so a
//! reader never sees half a file.

use parquet::basic::Compression;
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows buffered per open file before they are written as one row group.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

/// A column's type, as Parquet declares it and as the README's schema tables name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `int64 (INTEGER(64,false))`: card ids and event seqs (they pass `i64::MAX`).
    U64,
    /// `int64`: money in minor units, points, LSNs.
    I64,
    /// `int32`.
    I32,
    /// `int64 (TIMESTAMP(MILLIS,true))`: an instant, UTC.
    Timestamp,
    /// `int32 (DATE)`: a local calendar day.
    Date,
    /// `binary (STRING)`, UTF-8.
    Str,
    /// `boolean`.
    Bool,
}

impl Kind {
    /// The type in Parquet's schema language.
    fn parquet(self) -> &'static str {
        match self {
            Kind::U64 => "int64 {} (INTEGER(64,false))",
            Kind::I64 => "int64 {}",
            Kind::I32 => "int32 {}",
            Kind::Timestamp => "int64 {} (TIMESTAMP(MILLIS,true))",
            Kind::Date => "int32 {} (DATE)",
            Kind::Str => "binary {} (STRING)",
            Kind::Bool => "boolean {}",
        }
    }

    /// The type as the README's schema tables name it.
    pub fn doc(self) -> &'static str {
        match self {
            Kind::U64 => "uint64",
            Kind::I64 => "int64",
            Kind::I32 => "int32",
            Kind::Timestamp => "timestamp(ms, UTC)",
            Kind::Date => "date",
            Kind::Str => "string",
            Kind::Bool => "boolean",
        }
    }
}

/// One column of a table: name, type, whether it may be null.
#[derive(Debug, Clone, Copy)]
pub struct ColumnDef {
    pub name: &'static str,
    pub kind: Kind,
    pub nullable: bool,
}

/// A table's name (its directory) and columns, in file order.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [ColumnDef],
}

impl Table {
    /// The Parquet message type of the table.
    fn message_type(&self) -> String {
        let mut s = format!("message {} {{\n", self.name);
        for c in self.columns {
            let rep = if c.nullable { "optional" } else { "required" };
            s.push_str(&format!(
                "  {rep} {};\n",
                c.kind.parquet().replace("{}", c.name)
            ));
        }
        s.push('}');
        s
    }
}

/// Values of one column for the rows buffered.
enum Data {
    I64(Vec<i64>),
    I32(Vec<i32>),
    Bool(Vec<bool>),
    /// All strings' bytes one after the other, and where each ends.
    Str {
        bytes: Vec<u8>,
        ends: Vec<usize>,
    },
}

struct Column {
    def: ColumnDef,
    /// Definition levels (1 present, 0 null); only for nullable columns.
    defs: Vec<i16>,
    data: Data,
}

/// Rows of one table being assembled, column by column. A row is pushed value by value in
/// the table's column order; [`RowBuf::end_row`] checks that every column got one.
pub struct RowBuf {
    columns: Vec<Column>,
    next: usize,
    rows: usize,
}

impl RowBuf {
    fn new(table: &Table) -> RowBuf {
        RowBuf {
            columns: table
                .columns
                .iter()
                .map(|&def| Column {
                    def,
                    defs: Vec::new(),
                    data: match def.kind {
                        Kind::U64 | Kind::I64 | Kind::Timestamp => Data::I64(Vec::new()),
                        Kind::I32 | Kind::Date => Data::I32(Vec::new()),
                        Kind::Bool => Data::Bool(Vec::new()),
                        Kind::Str => Data::Str {
                            bytes: Vec::new(),
                            ends: Vec::new(),
                        },
                    },
                })
                .collect(),
            next: 0,
            rows: 0,
        }
    }

    /// The next column, which must be of `kind` (a mismatch is a bug in the row's code).
    fn column(&mut self, kind: Kind, null: bool) -> &mut Data {
        let i = self.next;
        self.next += 1;
        let c = self
            .columns
            .get_mut(i)
            .unwrap_or_else(|| panic!("row has more values than the table has columns"));
        assert!(
            c.def.kind == kind,
            "column {} is {:?}, got a {kind:?}",
            c.def.name,
            c.def.kind
        );
        if c.def.nullable {
            c.defs.push(if null { 0 } else { 1 });
        } else {
            assert!(!null, "column {} may not be null", c.def.name);
        }
        &mut c.data
    }

    fn int64(&mut self, kind: Kind, v: Option<i64>) {
        let d = self.column(kind, v.is_none());
        if let (Data::I64(x), Some(v)) = (d, v) {
            x.push(v);
        }
    }

    fn int32(&mut self, kind: Kind, v: Option<i32>) {
        let d = self.column(kind, v.is_none());
        if let (Data::I32(x), Some(v)) = (d, v) {
            x.push(v);
        }
    }

    /// An unsigned 64-bit value (stored as its bits in an int64, as Parquet's unsigned
    /// annotation does).
    pub fn u64(&mut self, v: u64) {
        self.int64(Kind::U64, Some(v as i64));
    }
    /// The next value, into an `int64` column (money in minor units, points, LSNs).
    pub fn i64(&mut self, v: i64) {
        self.int64(Kind::I64, Some(v));
    }
    /// The next value, into a nullable `int64` column; `None` writes a null.
    pub fn opt_i64(&mut self, v: Option<i64>) {
        self.int64(Kind::I64, v);
    }
    /// The next value, into an `int32` column (a shard, a count).
    pub fn i32(&mut self, v: i32) {
        self.int32(Kind::I32, Some(v));
    }
    /// The next value, into a nullable `int32` column; `None` writes a null.
    pub fn opt_i32(&mut self, v: Option<i32>) {
        self.int32(Kind::I32, v);
    }
    /// Milliseconds since the Unix epoch.
    pub fn timestamp(&mut self, ms: i64) {
        self.int64(Kind::Timestamp, Some(ms));
    }
    /// Like [`RowBuf::timestamp`], for a nullable column; `None` writes a null.
    pub fn opt_timestamp(&mut self, ms: Option<i64>) {
        self.int64(Kind::Timestamp, ms);
    }
    /// Days since 1970-01-01.
    pub fn date(&mut self, day: i64) {
        let day = i32::try_from(day).unwrap_or(if day < 0 { i32::MIN } else { i32::MAX });
        self.int32(Kind::Date, Some(day));
    }
    /// The next value, into a `boolean` column.
    pub fn bool(&mut self, v: bool) {
        if let Data::Bool(x) = self.column(Kind::Bool, false) {
            x.push(v);
        }
    }
    /// The next value, into a `string` column; the bytes are copied into the column buffer.
    pub fn str(&mut self, s: &str) {
        self.opt_str(Some(s));
    }
    /// Like [`RowBuf::str`], for a nullable column; `None` writes a null.
    pub fn opt_str(&mut self, s: Option<&str>) {
        if let (Data::Str { bytes, ends }, Some(s)) = (self.column(Kind::Str, s.is_none()), s) {
            bytes.extend_from_slice(s.as_bytes());
            ends.push(bytes.len());
        }
    }

    /// Closes the row: every column got exactly one value.
    fn end_row(&mut self) {
        assert_eq!(
            self.next,
            self.columns.len(),
            "a row must give every column a value"
        );
        self.next = 0;
        self.rows += 1;
    }

    /// Writes the buffered rows as one row group and empties the buffers (keeping their
    /// capacity: the next group reuses it).
    fn write_group<W: std::io::Write + Send>(
        &mut self,
        w: &mut SerializedFileWriter<W>,
    ) -> parquet::errors::Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut group = w.next_row_group()?;
        for c in &mut self.columns {
            let Some(mut out) = group.next_column()? else {
                return Err(parquet::errors::ParquetError::General(format!(
                    "the schema has no column {}",
                    c.def.name
                )));
            };
            let defs = c.def.nullable.then_some(c.defs.as_slice());
            match &mut c.data {
                Data::I64(v) => {
                    out.typed::<Int64Type>().write_batch(v, defs, None)?;
                    v.clear();
                }
                Data::I32(v) => {
                    out.typed::<Int32Type>().write_batch(v, defs, None)?;
                    v.clear();
                }
                Data::Bool(v) => {
                    out.typed::<BoolType>().write_batch(v, defs, None)?;
                    v.clear();
                }
                Data::Str { bytes, ends } => {
                    let all = ::bytes::Bytes::from(std::mem::take(bytes));
                    let mut start = 0;
                    let values: Vec<ByteArray> = ends
                        .iter()
                        .map(|&end| {
                            let v = ByteArray::from(all.slice(start..end));
                            start = end;
                            v
                        })
                        .collect();
                    out.typed::<ByteArrayType>()
                        .write_batch(&values, defs, None)?;
                    ends.clear();
                }
            }
            c.defs.clear();
            out.close()?;
        }
        group.close()?;
        self.rows = 0;
        Ok(())
    }
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HiveError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
}

struct OpenFile {
    writer: SerializedFileWriter<BufWriter<File>>,
    rows: RowBuf,
    partial: PathBuf,
    path: PathBuf,
}

/// One shard's files of one table: a file per local day, open while rows may still come.
pub struct DayFiles {
    table: &'static Table,
    dir: PathBuf,
    shard: usize,
    schema: Arc<parquet::schema::types::Type>,
    props: Arc<WriterProperties>,
    open: BTreeMap<i64, OpenFile>,
    /// Files each day has had (a day reopened after it was closed gets `part-S-N`).
    parts: BTreeMap<i64, u32>,
    /// Rows written (closed files and open ones).
    pub rows: u64,
    /// Files completed.
    pub files: u64,
}

impl DayFiles {
    /// The files of `table` under `out/TABLE/`, for shard `shard`.
    pub fn new(out: &Path, table: &'static Table, shard: usize) -> Result<DayFiles, HiveError> {
        let dir = out.join(table.name);
        let schema = parquet::schema::parser::parse_message_type(&table.message_type()).map_err(
            |source| HiveError::Parquet {
                path: dir.clone(),
                source,
            },
        )?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("svault report {}", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(DayFiles {
            table,
            dir,
            shard,
            schema: Arc::new(schema),
            props: Arc::new(props),
            open: BTreeMap::new(),
            parts: BTreeMap::new(),
            rows: 0,
            files: 0,
        })
    }

    /// Adds one row to the file of local day `day` (days since 1970-01-01); `fill` pushes the
    /// row's values in column order.
    pub fn push(&mut self, day: i64, fill: impl FnOnce(&mut RowBuf)) -> Result<(), HiveError> {
        if !self.open.contains_key(&day) {
            let f = self.create(day)?;
            self.open.insert(day, f);
        }
        let Some(f) = self.open.get_mut(&day) else {
            unreachable!("opened just above")
        };
        fill(&mut f.rows);
        f.rows.end_row();
        self.rows += 1;
        if f.rows.rows >= ROW_GROUP_ROWS {
            let path = f.path.clone();
            f.rows
                .write_group(&mut f.writer)
                .map_err(|source| HiveError::Parquet { path, source })?;
        }
        Ok(())
    }

    fn create(&mut self, day: i64) -> Result<OpenFile, HiveError> {
        let dir = self
            .dir
            .join(format!("day={}", super::time::day_label(day)));
        std::fs::create_dir_all(&dir).map_err(|source| HiveError::Io {
            path: dir.clone(),
            source,
        })?;
        let n = self.parts.entry(day).or_insert(0);
        let name = if *n == 0 {
            format!("part-{}.parquet", self.shard)
        } else {
            format!("part-{}-{n}.parquet", self.shard)
        };
        *n += 1;
        let path = dir.join(name);
        let partial = path.with_extension("parquet.partial");
        let file = File::create(&partial).map_err(|source| HiveError::Io {
            path: partial.clone(),
            source,
        })?;
        let writer = SerializedFileWriter::new(
            BufWriter::with_capacity(1 << 20, file),
            self.schema.clone(),
            self.props.clone(),
        )
        .map_err(|source| HiveError::Parquet {
            path: partial.clone(),
            source,
        })?;
        Ok(OpenFile {
            writer,
            rows: RowBuf::new(self.table),
            partial,
            path,
        })
    }

    /// Completes the files of every day before `day`: no more rows will come for them.
    pub fn close_before(&mut self, day: i64) -> Result<(), HiveError> {
        while let Some(entry) = self.open.first_entry() {
            if *entry.key() >= day {
                break;
            }
            let f = entry.remove();
            self.complete(f)?;
        }
        Ok(())
    }

    /// Completes every open file.
    pub fn finish(&mut self) -> Result<(), HiveError> {
        self.close_before(i64::MAX)
    }

    fn complete(&mut self, mut f: OpenFile) -> Result<(), HiveError> {
        let err = |path: &PathBuf| {
            let path = path.clone();
            move |source| HiveError::Parquet { path, source }
        };
        f.rows.write_group(&mut f.writer).map_err(err(&f.path))?;
        let out = f.writer.into_inner().map_err(err(&f.path))?;
        let file = out.into_inner().map_err(|e| HiveError::Io {
            path: f.partial.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(|source| HiveError::Io {
            path: f.partial.clone(),
            source,
        })?;
        std::fs::rename(&f.partial, &f.path).map_err(|source| HiveError::Io {
            path: f.path.clone(),
            source,
        })?;
        self.files += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    static T: Table = Table {
        name: "t",
        columns: &[
            ColumnDef {
                name: "id",
                kind: Kind::U64,
                nullable: false,
            },
            ColumnDef {
                name: "amount",
                kind: Kind::I64,
                nullable: false,
            },
            ColumnDef {
                name: "note",
                kind: Kind::Str,
                nullable: true,
            },
        ],
    };

    fn read(path: &Path) -> (usize, Vec<Vec<(String, Field)>>) {
        let r = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
        let groups = r.metadata().num_row_groups();
        let rows = r
            .get_row_iter(None)
            .unwrap()
            .map(|row| row.unwrap().into_columns())
            .collect();
        (groups, rows)
    }

    /// More rows than a row group holds, over two days, one day closed early: every row comes
    /// back once, in order, with its nulls; a file is complete only once it is closed.
    #[test]
    fn rows_come_back_across_row_groups_and_days() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = DayFiles::new(dir.path(), &T, 3).unwrap();
        let n = 2 * ROW_GROUP_ROWS + 5;
        let mut want = [0i128; 2];
        for i in 0..n {
            let day = 20_458 + (i % 2) as i64;
            let amount = i as i64 * 7 - 1_000;
            want[i % 2] += i128::from(amount);
            f.push(day, |r| {
                r.u64(u64::MAX - i as u64);
                r.i64(amount);
                r.opt_str((i % 3 == 0).then_some("x"));
            })
            .unwrap();
        }
        f.close_before(20_459).unwrap();
        let day0 = dir.path().join("t/day=2026-01-05/part-3.parquet");
        let day1 = dir.path().join("t/day=2026-01-06/part-3.parquet");
        assert!(day0.exists());
        assert!(!day1.exists(), "an open day's file is not complete yet");
        f.finish().unwrap();
        assert_eq!((f.rows, f.files), (n as u64, 2));
        for (k, path) in [day0, day1].iter().enumerate() {
            let (groups, rows) = read(path);
            assert!(groups >= 2, "{groups} row groups");
            let mut sum = 0i128;
            for (j, row) in rows.iter().enumerate() {
                let i = 2 * j + k;
                assert_eq!(
                    row[0],
                    ("id".to_string(), Field::ULong(u64::MAX - i as u64))
                );
                let Field::Long(a) = row[1].1 else {
                    panic!("{row:?}")
                };
                sum += i128::from(a);
                let note = if i % 3 == 0 {
                    Field::Str("x".into())
                } else {
                    Field::Null
                };
                assert_eq!(row[2].1, note);
            }
            assert_eq!(rows.len(), n / 2 + (n % 2) * (1 - k));
            assert_eq!(sum, want[k]);
        }
        // The day reopened after it was closed gets a second file.
        f.push(20_458, |r| {
            r.u64(1);
            r.i64(1);
            r.opt_str(None);
        })
        .unwrap();
        f.finish().unwrap();
        assert!(dir
            .path()
            .join("t/day=2026-01-05/part-3-1.parquet")
            .exists());
    }

    #[test]
    #[should_panic(expected = "every column")]
    fn a_short_row_is_a_bug() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = DayFiles::new(dir.path(), &T, 0).unwrap();
        let _ = f.push(0, |r| r.u64(1));
    }
}
