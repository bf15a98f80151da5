//! Per-epoch metrics, `metrics.csv` and `summary.json`.
//!
//! The CSV is rewritten (atomically) after every epoch, so a run killed at any point keeps the
//! rows of every finished epoch, and `--resume` can read them back and carry on. Accuracies are
//! fractions in [0, 1] everywhere in files; only the progress display shows percent.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::{Error, Result};

/// One finished epoch. `seconds` is the epoch's wall time (training and evaluation);
/// `samples_per_s` is the training throughput of that epoch. A value that was not measured
/// (no test set) is NaN: the CSV writes `NaN` and the curves skip it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based, and continuing across `--resume`.
    pub epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub test_loss: f64,
    pub test_acc: f64,
    pub seconds: f64,
    pub samples_per_s: f64,
}

pub const CSV_HEADER: &str = "epoch,train_loss,train_acc,test_loss,test_acc,seconds,samples_per_s";

impl EpochMetrics {
    /// One CSV row. `{}` prints the shortest text that parses back to the same f64.
    pub fn csv_row(&self) -> String {
        format!(
            "{},{},{},{},{},{},{}",
            self.epoch,
            self.train_loss,
            self.train_acc,
            self.test_loss,
            self.test_acc,
            self.seconds,
            self.samples_per_s
        )
    }
}

/// The `metrics.csv` of a run: every epoch so far, written out in full after each epoch.
#[derive(Debug, Clone)]
pub struct MetricsLog {
    path: PathBuf,
    rows: Vec<EpochMetrics>,
}

impl MetricsLog {
    /// A new, empty log; nothing is written until the first [`push`](Self::push).
    pub fn create(path: impl Into<PathBuf>) -> MetricsLog {
        MetricsLog { path: path.into(), rows: Vec::new() }
    }

    /// Continues an earlier run's log (for `--resume`): its rows are kept and new epochs follow.
    /// A log that does not exist yet starts empty.
    pub fn resume(path: impl Into<PathBuf>) -> Result<MetricsLog> {
        let path = path.into();
        let rows = if path.exists() { read_csv(&path)? } else { Vec::new() };
        Ok(MetricsLog { path, rows })
    }

    /// Records a finished epoch and rewrites the file.
    pub fn push(&mut self, row: EpochMetrics) -> Result<()> {
        self.rows.push(row);
        write_csv(&self.path, &self.rows)
    }

    /// Keeps the first `epochs` rows (the file is rewritten by the next push).
    pub fn truncate(&mut self, epochs: usize) {
        self.rows.truncate(epochs);
    }

    pub fn rows(&self) -> &[EpochMetrics] {
        &self.rows
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes `rows` under the header, replacing `path` atomically.
pub fn write_csv(path: &Path, rows: &[EpochMetrics]) -> Result<()> {
    let mut text = String::from(CSV_HEADER);
    text.push('\n');
    for row in rows {
        text.push_str(&row.csv_row());
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

/// Reads a `metrics.csv` back. Errors name the file, the line and the column.
pub fn read_csv(path: &Path) -> Result<Vec<EpochMetrics>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "reading", e))?;
    parse_csv(path, &text)
}

fn parse_csv(path: &Path, text: &str) -> Result<Vec<EpochMetrics>> {
    let err = |line: usize, message: String| Error::Parse { path: path.to_path_buf(), line, message };
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
    match lines.next() {
        Some((_, header)) if header == CSV_HEADER => {}
        Some((n, header)) => return Err(err(n, format!("expected the header {CSV_HEADER:?}, found {header:?}"))),
        None => return Err(err(1, format!("empty file, expected the header {CSV_HEADER:?}"))),
    }
    let columns: Vec<&str> = CSV_HEADER.split(',').collect();
    let mut rows = Vec::new();
    for (n, line) in lines.filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != columns.len() {
            return Err(err(n, format!("expected {} comma-separated values, found {}", columns.len(), fields.len())));
        }
        let epoch = fields[0]
            .parse::<usize>()
            .map_err(|_| err(n, format!("column epoch: expected a whole number, found {:?}", fields[0])))?;
        let mut v = [0.0f64; 6];
        for (k, slot) in v.iter_mut().enumerate() {
            *slot = fields[k + 1]
                .parse::<f64>()
                .map_err(|_| err(n, format!("column {}: expected a number, found {:?}", columns[k + 1], fields[k + 1])))?;
        }
        rows.push(EpochMetrics {
            epoch,
            train_loss: v[0],
            train_acc: v[1],
            test_loss: v[2],
            test_acc: v[3],
            seconds: v[4],
            samples_per_s: v[5],
        });
    }
    Ok(rows)
}

/// `summary.json`, and with `--json` the last line on stdout. Metrics are the final epoch's;
/// accuracies are fractions. A NaN (nothing measured) is written as JSON `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub test_acc: f64,
    pub test_loss: f64,
    pub train_acc: f64,
    pub train_loss: f64,
    /// The number of the last finished epoch (so it counts resumed epochs too).
    pub epochs: usize,
    pub adapter: String,
    pub backend: String,
    /// Wall time of all epochs.
    pub seconds: f64,
    /// Training throughput over all epochs.
    pub samples_per_s: f64,
    /// The most device memory the run's tensors held at once (dataset, weights, optimizer
    /// state, activations, kernel scratch), in bytes; absent in summaries of older runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_memory_bytes: Option<u64>,
    /// The whole run's wall time as estimated after its first epoch (the first this process
    /// ran), in seconds, to compare with `seconds`; absent where no estimate was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_seconds: Option<f64>,
    /// What activations were stored in (`f16` at `--precision f16`); absent at f32, as in
    /// summaries of older runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
}

impl Summary {
    /// The summary of a run from its epochs; `None` when no epoch finished.
    ///
    /// Every epoch trains on the same number of samples N, so the overall rate
    /// E·N / Σ(N / rᵢ) is the harmonic mean of the per-epoch rates rᵢ — the plain mean would
    /// overweight fast epochs.
    pub fn from_epochs(rows: &[EpochMetrics], adapter: impl Into<String>, backend: impl Into<String>) -> Option<Summary> {
        let last = rows.last()?;
        let rates: Vec<f64> = rows.iter().map(|r| r.samples_per_s).filter(|r| r.is_finite() && *r > 0.0).collect();
        let samples_per_s = if rates.is_empty() {
            f64::NAN
        } else {
            rates.len() as f64 / rates.iter().map(|r| 1.0 / r).sum::<f64>()
        };
        Some(Summary {
            test_acc: last.test_acc,
            test_loss: last.test_loss,
            train_acc: last.train_acc,
            train_loss: last.train_loss,
            epochs: last.epoch,
            adapter: adapter.into(),
            backend: backend.into(),
            seconds: rows.iter().map(|r| r.seconds).filter(|s| s.is_finite()).sum(),
            samples_per_s,
            gpu_memory_bytes: None,
            estimated_seconds: None,
            precision: None,
        })
    }

    /// One line of JSON, for `--json` on stdout.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("a struct of numbers and strings always serializes")
    }

    /// Pretty JSON with a trailing newline, replacing `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self).expect("a struct of numbers and strings always serializes");
        text.push('\n');
        write_atomic(path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: usize) -> EpochMetrics {
        EpochMetrics {
            epoch,
            train_loss: 2.0 / epoch as f64,
            train_acc: 0.5 + 0.01 * epoch as f64,
            test_loss: 2.1 / epoch as f64,
            test_acc: 0.49 + 0.01 * epoch as f64,
            seconds: 3.25,
            samples_per_s: 1000.0 * epoch as f64,
        }
    }

    #[test]
    fn csv_is_rewritten_each_epoch_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        let mut log = MetricsLog::create(&path);
        log.push(row(1)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert_eq!(text.lines().next(), Some(CSV_HEADER));
        log.push(row(2)).unwrap();
        assert_eq!(read_csv(&path).unwrap(), vec![row(1), row(2)]);
    }

    #[test]
    fn resume_keeps_rows_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        let mut log = MetricsLog::create(&path);
        log.push(row(1)).unwrap();
        log.push(row(2)).unwrap();
        drop(log); // the run is killed here
        let mut log = MetricsLog::resume(&path).unwrap();
        log.push(row(3)).unwrap();
        assert_eq!(read_csv(&path).unwrap(), vec![row(1), row(2), row(3)]);
        assert!(MetricsLog::resume(dir.path().join("none.csv")).unwrap().rows().is_empty());
    }

    #[test]
    fn nan_and_inf_survive_the_csv() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        let r = EpochMetrics { test_loss: f64::NAN, train_loss: f64::INFINITY, ..row(1) };
        write_csv(&path, &[r]).unwrap();
        let back = read_csv(&path).unwrap()[0];
        assert!(back.test_loss.is_nan() && back.train_loss == f64::INFINITY, "{back:?}");
    }

    #[test]
    fn bad_csv_names_file_line_and_column() {
        let p = Path::new("runs/x/metrics.csv");
        let msg = parse_csv(p, "epoch,loss\n").unwrap_err().to_string();
        assert!(msg.starts_with("runs/x/metrics.csv:1: expected the header"), "{msg}");
        let msg = parse_csv(p, &format!("{CSV_HEADER}\n1,0.5,0.9,0.6,0.8,1.0,100\n2,0.4,abc,0.5,0.8,1.0,100\n"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("metrics.csv:3: column train_acc: expected a number, found \"abc\""), "{msg}");
        let msg = parse_csv(p, &format!("{CSV_HEADER}\n1,2\n")).unwrap_err().to_string();
        assert!(msg.contains(":2: expected 7 comma-separated values, found 2"), "{msg}");
        assert!(parse_csv(p, "").is_err());
    }

    #[test]
    fn summary_from_epochs() {
        assert!(Summary::from_epochs(&[], "a", "b").is_none());
        let rows = [row(1), row(2)];
        let s = Summary::from_epochs(&rows, "llvmpipe", "vulkan").unwrap();
        assert_eq!((s.epochs, s.test_acc, s.train_loss), (2, row(2).test_acc, row(2).train_loss));
        assert_eq!(s.seconds, 6.5);
        // 1000 and 2000 samples/s for equal sample counts: 2 / (1/1000 + 1/2000).
        assert!((s.samples_per_s - 4000.0 / 3.0).abs() < 1e-9, "{}", s.samples_per_s);
    }

    #[test]
    fn summary_json_round_trip_and_single_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.json");
        let s = Summary::from_epochs(&[row(1)], "llvmpipe", "vulkan").unwrap();
        s.write(&path).unwrap();
        let back: Summary = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back, s);
        let line = s.to_json_line();
        assert!(!line.contains('\n') && line.contains("\"test_acc\":0.5"), "{line}");
        // NaN has no JSON spelling: it becomes null rather than an invalid file.
        let nan = Summary { test_loss: f64::NAN, ..s };
        assert!(nan.to_json_line().contains("\"test_loss\":null"));
    }
}
