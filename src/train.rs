//! Training: epochs of GPU steps (gather → forward → loss → backward → update, one submit
//! each), evaluation after every epoch, metrics, curves and checkpoints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::checkpoint::{self, Tensor, TensorSpec};
use crate::data::{self, DataOptions, Dataset};
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Plan};
use crate::layers::clip_grad_norm::ClipGradNorm;
use crate::metrics::{EpochMetrics, MetricsLog, Summary};
use crate::network::Network;
use crate::optim::Optimizer;
use crate::progress::Progress;
use crate::rng::Rng;
pub use crate::config::{Config, TrainConfig, SEED_CONFIG};
pub use crate::session::{epoch_batches, epoch_order, Predictions, Session, META_ARTICLE_RESHAPE, META_COLORMAP};

/// Everything a run needs besides the GPU.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub config: Config,
    pub data: DataOptions,
    /// Start from these weights (a model.safetensors).
    pub init: Option<PathBuf>,
    /// Continue the run in this folder from its last checkpoint (model, optimizer state,
    /// epoch and step, metrics so far).
    pub resume: Option<PathBuf>,
    pub limit_train: Option<usize>,
    pub limit_test: Option<usize>,
    pub out: PathBuf,
    pub quiet: bool,
    /// Time every dispatch of one step in K and write it to the run folder's profile.json
    /// and profile.csv (the last recorded step); the other steps are not slowed.
    pub profile_every: Option<u64>,
    /// Write the checkpoint after every N-th epoch (and after the last one); at least 1.
    pub checkpoint_every: usize,
    /// Scale the gradients to at most this total 2-norm before each update
    /// (torch.nn.utils.clip_grad_norm_), on the GPU inside the step.
    pub clip_grad_norm: Option<f32>,
    /// Set (by a Ctrl-C handler) to end the run after the current step with a checkpoint that
    /// `--resume` continues from exactly.
    pub stop: Option<Arc<AtomicBool>>,
}

/// Loads the data as the run asks, with `--limit-train` / `--limit-test` applied.
pub fn load_data(opts: &DataOptions, limit_train: Option<usize>, limit_test: Option<usize>) -> Result<Dataset> {
    let mut ds = data::load(opts)?;
    if let Some(n) = limit_train {
        let n = n.min(ds.train.len());
        ds.train = ds.train.select(&(0..n).collect::<Vec<_>>());
    }
    if let Some(n) = limit_test {
        let n = n.min(ds.test.len());
        ds.test = ds.test.select(&(0..n).collect::<Vec<_>>());
    }
    if ds.train.len() < 2 {
        return Err(Error::shape("data", format!("{} has {} training samples; at least 2 are needed", ds.source, ds.train.len())));
    }
    Ok(ds)
}


/// What a run trains on, recorded in its checkpoint (metadata `data`, `limit_train`,
/// `limit_test`, `batch_size`) and checked by `--resume`: the step and epoch counts, the
/// shuffle order and the epoch's metric sums only mean something on the same samples in the
/// same batches.
#[derive(Clone, Debug, PartialEq)]
struct DataRecord {
    /// The data file's canonical path, or `bundled`.
    data: String,
    limit_train: String,
    limit_test: String,
    batch_size: String,
}

impl DataRecord {
    /// The metadata keys and the flag each value comes from.
    const KEYS: [(&'static str, &'static str); 4] =
        [("data", "--data"), ("limit_train", "--limit-train"), ("limit_test", "--limit-test"), ("batch_size", "--batch-size")];

    fn of(opts: &RunOptions) -> DataRecord {
        let limit = |l: Option<usize>| l.map_or_else(|| "none".to_string(), |n| n.to_string());
        DataRecord {
            data: match &opts.data.data {
                Some(p) => std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()).display().to_string(),
                None => "bundled".into(),
            },
            limit_train: limit(opts.limit_train),
            limit_test: limit(opts.limit_test),
            batch_size: opts.config.train.batch_size.to_string(),
        }
    }

    fn values(&self) -> [&str; 4] {
        [&self.data, &self.limit_train, &self.limit_test, &self.batch_size]
    }

    fn write(&self, meta: &mut BTreeMap<String, String>) {
        for ((key, _), value) in Self::KEYS.iter().zip(self.values()) {
            meta.insert(key.to_string(), value.to_string());
        }
    }

    /// Refuses a resume whose data differs from what the checkpoint records, naming both. A
    /// checkpoint without the record (written before it existed) resumes with a warning: its
    /// run folder stays usable, and a mismatch that changes the epoch's length is still caught
    /// by the step check.
    fn check(&self, recorded: &BTreeMap<String, String>, path: &Path) -> Result<()> {
        let mut missing = vec![];
        for ((key, flag), now) in Self::KEYS.iter().zip(self.values()) {
            match recorded.get(*key) {
                None => missing.push(*flag),
                Some(was) if was != now => {
                    return Err(Error::Config {
                        file: path.display().to_string(),
                        message: format!(
                            "the run was trained with {flag} {was} but the resumed run has {flag} {now}; leave {flag} out to continue with the run's (or start a new run from its weights with --init)"
                        ),
                    });
                }
                Some(_) => {}
            }
        }
        if !missing.is_empty() {
            log::warn!(
                "{}: the checkpoint does not record the run's {} (written by an older cnn3d); resuming on the data given now without checking that it is the same",
                path.display(),
                missing.join(", ")
            );
        }
        Ok(())
    }
}

/// The data choices a run folder's checkpoint records (its `DataRecord`), as the flags'
/// values: what `cnn3d train --resume DIR` defaults to. Each flag the command line does not
/// give takes the recorded value, so that the run continues as it was; a flag given with
/// another value is refused when the run starts, naming both. None where nothing is recorded
/// (an older cnn3d's checkpoint: the flags as given, with a warning), and for the bundled
/// digits (`data`) and no limit. The data file's path is kept as recorded: canonical since
/// the record exists, a relative one relative to where `train` ran.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecordedData {
    pub data: Option<PathBuf>,
    pub limit_train: Option<usize>,
    pub limit_test: Option<usize>,
    pub batch_size: Option<usize>,
}

impl RecordedData {
    /// Reads the record of the checkpoint in the run folder `dir`. A value that does not parse
    /// is left out here and refused by the check, which names it.
    pub fn of_run(dir: &Path) -> Result<RecordedData> {
        let ck = checkpoint::load(&dir.join(CHECKPOINT))?;
        let number = |key: &str| ck.metadata.get(key).and_then(|v| v.parse().ok());
        Ok(RecordedData {
            data: ck.metadata.get("data").filter(|d| *d != "bundled").map(PathBuf::from),
            limit_train: number("limit_train"),
            limit_test: number("limit_test"),
            batch_size: number("batch_size"),
        })
    }

    /// The data file to resume on: `given` (--data) if any, else the recorded one, which must
    /// still exist (the error names it and asks for --data).
    pub fn data_file(&self, dir: &Path, given: Option<&Path>) -> Result<Option<PathBuf>> {
        match (given, &self.data) {
            (Some(p), _) => Ok(Some(p.to_path_buf())),
            (None, Some(p)) if !p.is_file() => Err(Error::Config {
                file: dir.join(CHECKPOINT).display().to_string(),
                message: format!(
                    "the run was trained on --data {}, which does not exist; pass --data with the file's location to resume",
                    p.display()
                ),
            }),
            (None, recorded) => Ok(recorded.clone()),
        }
    }
}

/// Where a run stands: what a checkpoint records and `--resume` continues from.
#[derive(Clone, Copy, Debug, PartialEq)]
struct RunPoint {
    /// Epochs finished (each with its metrics row).
    epoch: usize,
    /// Steps done in the unfinished epoch `epoch + 1`: 0 at an epoch's end, more after Ctrl-C.
    epoch_step: usize,
    /// Optimizer steps over the whole run (Adam's t, the dropout masks' step).
    t: u64,
    /// The GPU's metric sums and the sample count over the unfinished epoch's steps.
    loss_sum: f32,
    correct_sum: u32,
    seen: usize,
    batches_tracked: i64,
}

impl RunPoint {
    fn epoch_end(epoch: usize, t: u64, batches_tracked: i64) -> RunPoint {
        RunPoint { epoch, epoch_step: 0, t, loss_sum: 0.0, correct_sum: 0, seen: 0, batches_tracked }
    }
}

/// Trains as `opts` says and writes the run's folder; returns the summary. A GPU error on
/// the way (device lost, out of memory) leaves what was saved as it was, and says so where the
/// run's folder holds a checkpoint to continue from.
pub fn train(gpu: &Gpu, opts: &RunOptions) -> Result<Summary> {
    run(gpu, opts).map_err(|e| match e {
        Error::Gpu { context, message } if opts.out.join(CHECKPOINT).is_file() => Error::Gpu {
            context,
            message: format!(
                "{message}; the last checkpoint in {dir} is intact: continue the run with `cnn3d train --resume {dir}`",
                dir = opts.out.display()
            ),
        },
        e => e,
    })
}

/// The file of a run's folder that `--resume` continues from.
const CHECKPOINT: &str = "optimizer.safetensors";

fn run(gpu: &Gpu, opts: &RunOptions) -> Result<Summary> {
    let cfg = &opts.config;
    cfg.validate("the command line")?;
    if opts.checkpoint_every == 0 {
        return Err(Error::InvalidOption { field: "--checkpoint-every".into(), message: "must be at least 1 (epochs), got 0".into() });
    }
    if let Some(max_norm) = opts.clip_grad_norm {
        ClipGradNorm::validate(max_norm)?;
    }
    let started = Instant::now();
    let ds = load_data(&opts.data, opts.limit_train, opts.limit_test)?;
    let seed = cfg.train.seed;
    let mut s = Session::new(gpu, &cfg.model, &ds, &opts.data, seed)?;
    let mut batches_tracked = 0i64;
    match &opts.init {
        Some(path) => batches_tracked = s.load_weights(path)?,
        None => s.state.write_params(gpu, &s.model.init_params(&mut Rng::new(seed)))?,
    }
    let optim = Optimizer::new(gpu, &cfg.optimizer.rule, s.state.params.len())?;
    let clip = opts.clip_grad_norm.map(|m| ClipGradNorm::new(gpu, s.state.grads.len(), m)).transpose()?;
    let train_dev = s.input.upload(gpu, &ds.train, "train")?;
    let test_dev = s.input.upload(gpu, &ds.test, "test")?;

    // Every buffer and plan exists before the run folder does: a batch whose tensors exceed the
    // device's limits is refused (Error::TooLarge names the tensor) before anything is written.
    let b = cfg.train.batch_size;
    let n = ds.train.len();
    let (steps, tail) = epoch_batches(n, b);
    // A training batch that does not fit is refused naming the batch and the largest that fits
    // (training cannot split a batch: batch norm's statistics are the whole batch's).
    let too_large = |s: &mut Session, batch: usize, e: Error| -> Result<Plan> {
        match e {
            Error::TooLarge { .. } | Error::GridTooLarge { .. } => {
                let largest = s.largest_batch(batch)?;
                Err(Error::BatchTooLarge { batch, asked: b, samples: n, largest, cause: e.to_string() })
            }
            e => Err(e),
        }
    };
    let idx_full = gpu.zeros("train indices", b.min(n), DType::U32)?;
    let plan_full = if n >= b {
        Some(s.train_plan(b, &train_dev, &idx_full, &optim, clip.as_ref()).or_else(|e| too_large(&mut s, b, e))?)
    } else {
        None
    };
    let idx_tail = gpu.zeros("train indices (last batch)", tail.max(1), DType::U32)?;
    let plan_tail = if tail > 0 {
        Some(s.train_plan(tail, &train_dev, &idx_tail, &optim, clip.as_ref()).or_else(|e| too_large(&mut s, tail, e))?)
    } else {
        None
    };
    // The per-epoch evaluation runs in micro-batches where its batch would not fit: make its
    // network now, so that a device that cannot hold even one sample refuses before the run.
    if !ds.test.is_empty() {
        let eval_batch = s.largest_batch(b.min(ds.test.len()))?;
        if eval_batch == 0 {
            Network::new(gpu, &s.model, 1, seed)?;
        }
    }

    let record = DataRecord::of(opts);
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, "creating the run folder", e))?;
    let (mut log, at) = match &opts.resume {
        Some(dir) => {
            let at = resume(&s, &optim, dir, &record)?;
            if at.epoch_step > steps {
                return Err(Error::Config {
                    file: dir.join(CHECKPOINT).display().to_string(),
                    message: format!(
                        "the checkpoint stands at step {} of epoch {}, but an epoch of {n} samples in batches of {b} has {steps} steps",
                        at.epoch_step,
                        at.epoch + 1
                    ),
                });
            }
            let mut log = MetricsLog::resume(dir.join("metrics.csv"))?;
            if log.rows().len() < at.epoch {
                return Err(Error::Config {
                    file: dir.join("metrics.csv").display().to_string(),
                    message: format!("holds {} epochs but the checkpoint is from epoch {}", log.rows().len(), at.epoch),
                });
            }
            // metrics.csv is written every epoch, before that epoch's checkpoint (which may
            // come only every N epochs): rows past the checkpoint are recomputed, identically.
            log.truncate(at.epoch);
            (log, at)
        }
        None => (MetricsLog::create(opts.out.join("metrics.csv")), RunPoint::epoch_end(0, 0, batches_tracked)),
    };
    let mut t = at.t;
    batches_tracked = at.batches_tracked;
    crate::atomic::write_atomic(&opts.out.join("config.toml"), cfg.to_toml().as_bytes())?;


    let progress = Progress::new(opts.quiet, cfg.train.epochs);
    let info = gpu.info();
    progress.println(&format!(
        "training {} parameters on {} ({}{}), {} train / {} test samples from {}, batch {b}, {} epochs",
        s.model.param_count(),
        info.name,
        info.backend,
        if gpu.precision() == crate::gpu::Precision::F32 { String::new() } else { format!(", activations in {}", gpu.precision()) },
        n,
        ds.test.len(),
        ds.source,
        cfg.train.epochs
    ));
    // The whole run's time, estimated once this process's first epoch has finished.
    let mut estimate: Option<f64> = None;
    for epoch in at.epoch..cfg.train.epochs {
        let epoch_start = Instant::now();
        let lr = cfg.optimizer.lr_at(epoch as u64);
        let order = epoch_order(n, seed, epoch, cfg.train.shuffle);
        // A run stopped mid-epoch continues at its next step, with the epoch's sums so far.
        let first = if epoch == at.epoch { at.epoch_step } else { 0 };
        let mut seen = 0usize;
        if first > 0 {
            gpu.write_f32(&s.state.loss_sum, &[at.loss_sum])?;
            gpu.write_u32(&s.state.correct_sum, &[at.correct_sum])?;
            seen = at.seen;
        } else {
            s.zero_sums()?;
        }
        let mut bar = progress.epoch(epoch + 1, steps, b);
        // Read the running sums back a few times per epoch only: each read waits for the GPU.
        let report_every = (steps / 20).max(1);
        let mut last_read = first;
        for step in first..steps {
            let (chunk, idx, plan) = if step < n / b {
                (&order[step * b..(step + 1) * b], &idx_full, plan_full.as_ref().unwrap())
            } else {
                (&order[n - n % b..n - n % b + tail], &idx_tail, plan_tail.as_ref().unwrap())
            };
            t += 1;
            gpu.write_u32(idx, chunk)?;
            gpu.write_u32(&s.state.step, &[t as u32])?;
            optim.write_hyper(gpu, lr, t)?;
            match opts.profile_every {
                Some(k) if k > 0 && t % k == 0 => {
                    let p = gpu.submit_profiled(plan)?;
                    crate::trace::write_profile(&opts.out, std::slice::from_ref(&p), info)?;
                }
                _ => gpu.submit(plan)?,
            }
            seen += chunk.len();
            batches_tracked += 1;
            let stop = opts.stop.as_ref().is_some_and(|f| f.load(Ordering::SeqCst));
            if (step + 1) % report_every == 0 || step + 1 == steps || stop {
                let (loss, correct) = s.sums()?;
                if !loss.is_finite() {
                    return Err(Error::Diverged { epoch: epoch + 1, first: last_read + 1, step: step + 1, loss });
                }
                last_read = step + 1;
                bar.update(step + 1, loss / seen as f64, correct as f64 / seen as f64);
                if stop {
                    let here = RunPoint {
                        epoch,
                        epoch_step: step + 1,
                        t,
                        loss_sum: loss as f32,
                        correct_sum: correct as u32,
                        seen,
                        batches_tracked,
                    };
                    save_checkpoint(&s, &optim, &opts.out, &here, &record)?;
                    return Err(Error::Interrupted { epoch: epoch + 1, step: step + 1, steps, dir: opts.out.clone() });
                }
            }
        }
        let (loss, correct) = s.sums()?;
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let (test_loss, test_acc) = s.evaluate(&test_dev, b)?;
        let row = EpochMetrics {
            epoch: epoch + 1,
            train_loss: loss / seen as f64,
            train_acc: correct as f64 / seen as f64,
            test_loss,
            test_acc,
            seconds: epoch_start.elapsed().as_secs_f64(),
            samples_per_s: seen as f64 / train_seconds,
        };
        log.push(row)?;
        bar.finish(&row);
        if estimate.is_none() {
            // What has passed (start-up included) plus the remaining epochs at this one's pace.
            let remaining = cfg.train.epochs - (epoch + 1);
            let total = started.elapsed().as_secs_f64() + remaining as f64 * row.seconds;
            estimate = Some(total);
            if remaining > 0 {
                progress.println(&format!(
                    "estimated time of the whole run: {} ({remaining} more epoch{} of about {})",
                    crate::progress::duration_text(total),
                    if remaining == 1 { "" } else { "s" },
                    crate::progress::duration_text(row.seconds)
                ));
            }
        }
        if (epoch + 1) % opts.checkpoint_every == 0 || epoch + 1 == cfg.train.epochs {
            save_checkpoint(&s, &optim, &opts.out, &RunPoint::epoch_end(epoch + 1, t, batches_tracked), &record)?;
        }
        crate::plot::write_curves(log.rows(), &format!("cnn3d on {}", ds.source), &opts.out.join("curves.png"), &opts.out.join("curves.svg"))?;
    }
    let mut summary = Summary::from_epochs(log.rows(), info.name.clone(), info.backend.clone())
        .ok_or_else(|| Error::shape("train", "no epoch finished"))?;
    summary.seconds = started.elapsed().as_secs_f64();
    summary.gpu_memory_bytes = Some(gpu.memory().peak_bytes);
    summary.estimated_seconds = estimate;
    summary.precision = (gpu.precision() != crate::gpu::Precision::F32).then(|| gpu.precision().to_string());
    summary.write(&opts.out.join("summary.json"))?;
    Ok(summary)
}

/// The prefix of the model's tensors in optimizer.safetensors.
const MODEL_PREFIX: &str = "model.";

/// Restores a run folder's last checkpoint from its optimizer.safetensors: weights, running
/// statistics, optimizer state and where the run stood.
fn resume(s: &Session, optim: &Optimizer, dir: &Path, record: &DataRecord) -> Result<RunPoint> {
    let path = dir.join(CHECKPOINT);
    let mut specs: Vec<TensorSpec> = optim.state().iter().map(|(name, b)| TensorSpec::f32(*name, &[b.len()])).collect();
    specs.extend(s.state_dict_specs().into_iter().map(|t| TensorSpec { name: format!("{MODEL_PREFIX}{}", t.name), ..t }));
    let ck = checkpoint::load_expected(&path, &specs)?;
    let kind = ck.metadata.get("optimizer").cloned().unwrap_or_default();
    if kind != optim.rule().kind() {
        return Err(Error::Config {
            file: path.display().to_string(),
            message: format!("holds {kind:?} state but the run's optimizer is {:?}", optim.rule().kind()),
        });
    }
    record.check(&ck.metadata, &path)?;
    fn meta<T: std::str::FromStr>(ck: &checkpoint::Checkpoint, path: &Path, key: &str) -> Result<T> {
        ck.metadata.get(key).and_then(|v| v.parse().ok()).ok_or_else(|| Error::Config {
            file: path.display().to_string(),
            message: format!("metadata {key:?} is missing or not a number"),
        })
    }
    let at = RunPoint {
        epoch: meta(&ck, &path, "epoch")?,
        epoch_step: meta(&ck, &path, "epoch_step")?,
        t: meta(&ck, &path, "step")?,
        loss_sum: meta(&ck, &path, "loss_sum")?,
        correct_sum: meta(&ck, &path, "correct_sum")?,
        seen: meta(&ck, &path, "seen")?,
        batches_tracked: 0,
    };
    for (name, b) in optim.state() {
        if let Some(v) = ck.get(name).and_then(|t| t.as_f32()) {
            s.gpu.write_f32(b, v)?;
        }
    }
    let batches_tracked = s.apply_state_dict(&ck, MODEL_PREFIX)?;
    Ok(RunPoint { batches_tracked, ..at })
}

/// model.safetensors: PyTorch's state_dict, the run's product. optimizer.safetensors: the
/// optimizer state, a copy of the state_dict under `model.` and where the run stands — all
/// that --resume reads, in ONE atomically written file, so a kill between the two writes
/// cannot pair weights and optimizer state of different steps. It is written second: a
/// model.safetensors newer than it is rewritten, identically, by the resumed run.
fn save_checkpoint(s: &Session, optim: &Optimizer, out: &Path, at: &RunPoint, record: &DataRecord) -> Result<()> {
    let mut meta = s.model_metadata(at.epoch, at.epoch_step, at.t);
    let state_dict = s.state_dict(at.batches_tracked)?;
    checkpoint::save(&out.join("model.safetensors"), &state_dict, &meta)?;
    let mut tensors = vec![];
    for (name, buf) in optim.state() {
        let v = s.gpu.read_f32(buf)?;
        tensors.push(Tensor::f32(*name, &[v.len()], v));
    }
    tensors.extend(state_dict.into_iter().map(|t| Tensor { name: format!("{MODEL_PREFIX}{}", t.name), ..t }));
    meta.insert("optimizer".to_string(), optim.rule().kind().to_string());
    // f32's Display is the shortest text that parses back to the same bits.
    meta.insert("loss_sum".to_string(), at.loss_sum.to_string());
    meta.insert("correct_sum".to_string(), at.correct_sum.to_string());
    meta.insert("seen".to_string(), at.seen.to_string());
    record.write(&mut meta);
    checkpoint::save(&out.join(CHECKPOINT), &tensors, &meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_config_is_the_articles_set_up_and_round_trips() {
        let cfg = Config::seed();
        assert_eq!(cfg.train, TrainConfig { epochs: 45, batch_size: 100, seed: 0, shuffle: true });
        assert_eq!(cfg.optimizer.rule.kind(), "sgd");
        assert_eq!(cfg.optimizer.lr(), 0.001);
        let again = Config::parse(&cfg.to_toml(), "resolved").unwrap();
        assert_eq!(again, cfg);
    }

    #[test]
    fn bad_training_options_name_the_field() {
        let with = |extra: &str| {
            let text = format!("{SEED_CONFIG}\n{extra}");
            Config::parse(&text, "run.toml").unwrap_err().to_string()
        };
        let e = with("[train]\nepochs = 0\n");
        assert!(e.contains("run.toml") && e.contains("train.epochs"), "{e}");
        let e = with("[train]\nbatch_size = 1\n");
        assert!(e.contains("train.batch_size"), "{e}");
        let e = with("[optimizer]\nkind = \"rmsprop\"\n");
        assert!(e.contains("run.toml") && e.contains("rmsprop"), "{e}");
        let e = with("[optimizer]\nkind = \"sgd\"\nlr = -1.0\n");
        assert!(e.contains("lr"), "{e}");
        let e = with("[train]\nepoch = 3\n");
        assert!(e.contains("epoch"), "{e}");
    }

    #[test]
    fn shuffling_is_a_seeded_permutation_per_epoch() {
        let a = epoch_order(50, 1, 0, true);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<u32>>());
        assert_eq!(a, epoch_order(50, 1, 0, true));
        assert_ne!(a, epoch_order(50, 1, 1, true));
        assert_eq!(epoch_order(5, 1, 3, false), vec![0, 1, 2, 3, 4]);
    }
}
