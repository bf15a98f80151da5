//! `cnn3d eval` and `cnn3d predict`: a trained model.safetensors run in eval mode over one
//! split, reported as loss, accuracy, per-class accuracy and a confusion matrix, or as one
//! prediction per sample.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::checkpoint;
use crate::data::{Colormap, DataOptions};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::train::{self, Config, Predictions, Session};

/// Which split of the data to run over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitName {
    Train,
    Val,
    Test,
}

impl std::str::FromStr for SplitName {
    type Err = Error;
    fn from_str(s: &str) -> Result<SplitName> {
        match s {
            "train" => Ok(SplitName::Train),
            "val" => Ok(SplitName::Val),
            "test" => Ok(SplitName::Test),
            _ => Err(Error::InvalidOption { field: "--split".into(), message: format!("unknown split {s:?}: expected test, train or val") }),
        }
    }
}

impl std::fmt::Display for SplitName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SplitName::Train => "train",
            SplitName::Val => "val",
            SplitName::Test => "test",
        })
    }
}

/// The config of a checkpoint: `--config` if given, else the `config.toml` that `train` wrote
/// beside it, else the seed model. Returns it with where it came from.
pub fn resolve_config(checkpoint: &Path, config: Option<&Path>) -> Result<(Config, String)> {
    if let Some(path) = config {
        return Ok((Config::load(path)?, path.display().to_string()));
    }
    let beside = checkpoint.parent().unwrap_or(Path::new(".")).join("config.toml");
    if beside.is_file() {
        return Ok((Config::load(&beside)?, beside.display().to_string()));
    }
    Ok((Config::seed(), "assets/seed.toml".to_string()))
}

/// The input mapping recorded in a checkpoint by `train` (None when the file lacks it).
/// Reading it also reports a missing or malformed file before any data is loaded.
pub fn recorded_input(checkpoint: &Path) -> Result<(Option<Colormap>, bool)> {
    recorded_input_of(&checkpoint::load(checkpoint)?)
}

/// [`recorded_input`] of a checkpoint already read.
pub fn recorded_input_of(ck: &checkpoint::Checkpoint) -> Result<(Option<Colormap>, bool)> {
    let colormap = match ck.metadata.get(train::META_COLORMAP) {
        Some(v) => Some(v.parse().map_err(Error::from)?),
        None => None,
    };
    let reshape = ck.metadata.get(train::META_ARTICLE_RESHAPE).is_some_and(|v| v == "true");
    Ok((colormap, reshape))
}

/// What eval and predict need besides the GPU.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    pub checkpoint: PathBuf,
    pub config: Config,
    pub data: DataOptions,
    pub split: SplitName,
    pub batch_size: usize,
    /// Only the split's first N samples.
    pub limit: Option<usize>,
}

/// The split's labels and the model's eval-mode outputs on it.
#[derive(Clone, Debug)]
pub struct Outputs {
    pub source: String,
    pub labels: Vec<u32>,
    pub predictions: Predictions,
}

/// Loads the data and the checkpoint (names and shapes checked) and runs the eval-mode model.
pub fn run(gpu: &Gpu, opts: &EvalOptions) -> Result<Outputs> {
    if opts.batch_size == 0 {
        return Err(Error::InvalidOption { field: "--batch-size".into(), message: "must be at least 1".into() });
    }
    let ds = crate::data::load(&opts.data)?;
    let mut split = match opts.split {
        SplitName::Train => ds.train.clone(),
        SplitName::Val => ds.val.clone(),
        SplitName::Test => ds.test.clone(),
    };
    if let Some(n) = opts.limit {
        split = split.select(&(0..n.min(split.len())).collect::<Vec<_>>());
    }
    if split.is_empty() {
        let hint = if opts.split == SplitName::Val { " (--val-split F holds a fraction of the training data out as one)" } else { "" };
        return Err(Error::shape("data", format!("the {} split of {} is empty{hint}", opts.split, ds.source)));
    }
    let mut s = Session::new(gpu, &opts.config.model, &ds, &opts.data, opts.config.train.seed)?;
    s.load_weights(&opts.checkpoint)?;
    let dev = s.input.upload(gpu, &split, &opts.split.to_string())?;
    let predictions = s.predictions(&dev, opts.batch_size)?;
    Ok(Outputs { source: ds.source.clone(), labels: split.y.clone(), predictions })
}

/// The first index of the maximum, as torch.argmax and the GPU's accuracy count.
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = j;
        }
    }
    best
}

/// Softmax of one row of logits, in f64 for the sums.
pub fn softmax(row: &[f32]) -> Vec<f64> {
    let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let e: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

#[derive(Clone, Debug, Serialize)]
pub struct ClassAccuracy {
    pub class: usize,
    pub samples: u64,
    pub correct: u64,
    /// NaN (null in JSON) for a class without samples.
    pub accuracy: f64,
}

/// `cnn3d eval`'s result.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub checkpoint: String,
    pub config: String,
    pub data: String,
    pub split: SplitName,
    pub samples: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub per_class: Vec<ClassAccuracy>,
    /// `confusion[true label][predicted class]`.
    pub confusion: Vec<Vec<u64>>,
}

impl Report {
    pub fn new(out: &Outputs, checkpoint: &Path, config: &str, split: SplitName) -> Report {
        let p = &out.predictions;
        let k = p.classes;
        let mut confusion = vec![vec![0u64; k]; k];
        for (i, &label) in out.labels.iter().enumerate() {
            let pred = argmax(&p.logits[i * k..(i + 1) * k]);
            if (label as usize) < k {
                confusion[label as usize][pred] += 1;
            }
        }
        let per_class = confusion
            .iter()
            .enumerate()
            .map(|(c, row)| {
                let samples: u64 = row.iter().sum();
                ClassAccuracy { class: c, samples, correct: row[c], accuracy: row[c] as f64 / samples as f64 }
            })
            .collect();
        Report {
            checkpoint: checkpoint.display().to_string(),
            config: config.to_string(),
            data: out.source.clone(),
            split,
            samples: out.labels.len(),
            loss: p.loss,
            accuracy: p.accuracy,
            per_class,
            confusion,
        }
    }

    /// The report as people read it: totals, per-class accuracy, the confusion matrix.
    pub fn text(&self) -> String {
        let mut s = format!(
            "{} on the {} split of {} ({} samples, config {})\nloss {:.4}  accuracy {:.2}%\n\nclass  samples  correct  accuracy\n",
            self.checkpoint,
            self.split,
            self.data,
            self.samples,
            self.config,
            self.loss,
            self.accuracy * 100.0
        );
        for c in &self.per_class {
            let acc = if c.samples == 0 { "-".to_string() } else { format!("{:.2}%", c.accuracy * 100.0) };
            s += &format!("{:>5}  {:>7}  {:>7}  {:>8}\n", c.class, c.samples, c.correct, acc);
        }
        let w = self.confusion.iter().flatten().max().map_or(1, |m| m.to_string().len()).max(self.confusion.len().to_string().len());
        s += "\nconfusion matrix (rows: true label, columns: predicted)\n";
        s += &format!("{:>5} ", "");
        for c in 0..self.confusion.len() {
            s += &format!(" {c:>w$}");
        }
        s.push('\n');
        for (c, row) in self.confusion.iter().enumerate() {
            s += &format!("{c:>5} ");
            for v in row {
                s += &format!(" {v:>w$}");
            }
            s.push('\n');
        }
        s
    }
}

/// One CSV row per sample: index, label, predicted, then p0..pK-1 (softmax) or the raw
/// logits l0..lK-1.
pub fn write_csv(out: &Outputs, logits: bool, w: &mut dyn Write) -> std::io::Result<()> {
    let p = &out.predictions;
    let k = p.classes;
    let prefix = if logits { "l" } else { "p" };
    let cols: Vec<String> = (0..k).map(|c| format!("{prefix}{c}")).collect();
    writeln!(w, "index,label,predicted,{}", cols.join(","))?;
    for (i, &label) in out.labels.iter().enumerate() {
        let row = &p.logits[i * k..(i + 1) * k];
        let values: Vec<String> =
            if logits { row.iter().map(|v| v.to_string()).collect() } else { softmax(row).iter().map(|v| format!("{v:.6e}")).collect() };
        writeln!(w, "{i},{label},{},{}", argmax(row), values.join(","))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_maximum_and_softmax_sums_to_one() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
        let p = softmax(&[1000.0, 1000.0, -5.0]);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12 && (p[0] - 0.5).abs() < 1e-9);
    }
}
