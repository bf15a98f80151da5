//! cnn3d in a browser tab: the page's entry points (web/index.html calls them through
//! wasm-bindgen). Everything runs in the library: the same check cases as `cnn3d check`, and
//! the same training step as `cnn3d train` (one submit per step, the GPU's own metric sums),
//! with readbacks that await the browser instead of blocking it. Results cross to JavaScript
//! as JSON text.

use std::cell::RefCell;
use std::path::Path;

use cnn3d::check;
use cnn3d::config::Config;
use cnn3d::data::{self, DataOptions, SynthOptions};
use cnn3d::gpu::{DType, Gpu, GpuOptions, Precision, StepProfile};
use cnn3d::optim::Optimizer;
use cnn3d::rng::Rng;
use cnn3d::session::{epoch_batches, epoch_order, Session};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

thread_local! {
    /// The device, opened once per page (a Session borrows it for the page's lifetime).
    static GPU: RefCell<Option<&'static Gpu>> = const { RefCell::new(None) };
    /// model.safetensors of the last finished run.
    static MODEL: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// Panics and the library's log records go to the browser console (warnings and errors: a
/// test reads the console's errors).
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| web_sys::console::error_1(&format!("cnn3d panicked: {info}").into())));
    if log::set_logger(&ConsoleLog).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
}

struct ConsoleLog;

impl log::Log for ConsoleLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record) {
        let text = format!("{} {}: {}", r.level(), r.target(), r.args());
        match r.level() {
            log::Level::Error => web_sys::console::error_1(&text.into()),
            _ => web_sys::console::warn_1(&text.into()),
        }
    }
    fn flush(&self) {}
}

fn js_err(e: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&e.to_string())
}

fn json(v: &impl Serialize) -> Result<String, JsValue> {
    serde_json::to_string(v).map_err(js_err)
}

fn gpu() -> Result<&'static Gpu, JsValue> {
    GPU.with(|g| *g.borrow()).ok_or_else(|| js_err("the GPU is not open yet (open_gpu)"))
}

#[derive(Serialize)]
struct Opened<'a> {
    info: &'a cnn3d::gpu::GpuInfo,
    /// How `train` times its dispatches here (or why it cannot).
    timing: &'static str,
    precision: String,
}

/// Opens the browser's WebGPU adapter (once; later calls return the same device) with
/// activations in `precision` ("f32" or "f16"), and with the adapter's limits or, with
/// `default_limits`, WebGPU's defaults; returns its description as JSON.
#[wasm_bindgen]
pub async fn open_gpu(precision: String, default_limits: bool) -> Result<String, JsValue> {
    if GPU.with(|g| g.borrow().is_none()) {
        let precision: Precision = precision.parse().map_err(js_err)?;
        let opts = GpuOptions { precision, default_limits, ..GpuOptions::default() };
        let opened = Gpu::new_async(&opts).await.map_err(js_err)?;
        // Leaked on purpose: one device for the page's lifetime, borrowed by every session.
        let opened: &'static Gpu = Box::leak(Box::new(opened));
        GPU.with(|g| *g.borrow_mut() = Some(opened));
    }
    let gpu = gpu()?;
    let timing = match gpu.timing_method() {
        cnn3d::gpu::TimingMethod::WallClock => "none: the browser offers no timestamp queries here",
        m => m.describe(),
    };
    json(&Opened { info: gpu.info(), timing, precision: gpu.precision().to_string() })
}

/// The layers `check` runs, in order (JSON array).
#[wasm_bindgen]
pub fn check_layers() -> String {
    serde_json::to_string(check::LAYERS).expect("strings serialise")
}

/// Every case of one layer against the CPU reference, one merged report per kernel (JSON
/// array of `cnn3d check`'s reports).
#[wasm_bindgen]
pub async fn check_layer(layer: String) -> Result<String, JsValue> {
    let reports = check::run_layer_async(gpu()?, &layer).await.map_err(js_err)?;
    json(&check::merge_by_name(reports))
}

/// What the page's form asks for. The model is always the article's (assets/seed.toml).
#[derive(Deserialize)]
struct TrainRequest {
    train: usize,
    test: usize,
    epochs: usize,
    batch: usize,
    optimizer: String,
    lr: f64,
    seed: u64,
}

/// A progress report: running means within an epoch, or an epoch's row with its test metrics.
#[derive(Serialize)]
struct Progress {
    epoch: usize,
    epochs: usize,
    step: usize,
    steps: usize,
    train_loss: f64,
    train_acc: f64,
    test_loss: Option<f64>,
    test_acc: Option<f64>,
    seconds: f64,
}

#[derive(Serialize)]
struct TrainResult {
    parameters: usize,
    train_samples: usize,
    test_samples: usize,
    epochs: usize,
    batch: usize,
    optimizer: String,
    lr: f64,
    train_loss: f64,
    train_acc: f64,
    test_loss: f64,
    test_acc: f64,
    seconds: f64,
    samples_per_s: f64,
    gpu_memory_bytes: u64,
    /// The first step of the last epoch, timed dispatch by dispatch.
    profile: Option<StepProfile>,
    profile_error: Option<String>,
}

/// Trains the article's model on bundled digits generated here, calling `progress` with a
/// JSON [`Progress`] a few times per epoch and after each epoch's evaluation; returns the
/// result (JSON) and keeps model.safetensors for [`model_safetensors`].
#[wasm_bindgen]
pub async fn train(request: String, progress: js_sys::Function) -> Result<String, JsValue> {
    let req: TrainRequest = serde_json::from_str(&request).map_err(|e| js_err(format!("the training request: {e}")))?;
    run(&req, &progress).await.map_err(js_err)
}

async fn run(req: &TrainRequest, progress: &js_sys::Function) -> cnn3d::Result<String> {
    let gpu = GPU.with(|g| *g.borrow()).ok_or_else(|| cnn3d::Error::shape("train", "the GPU is not open yet"))?;
    let started = web_time::Instant::now();
    let mut cfg = Config::seed();
    cfg.train.epochs = req.epochs;
    cfg.train.batch_size = req.batch;
    cfg.train.seed = req.seed;
    cfg.optimizer = cfg.optimizer.with_kind(&req.optimizer)?;
    cfg.optimizer.rule.set_lr(req.lr);
    cfg.validate("the page's form")?;
    let opts = DataOptions { synth: SynthOptions { train: req.train, test: req.test, seed: req.seed }, seed: req.seed, ..DataOptions::default() };
    let ds = data::load(&opts)?;
    let seed = cfg.train.seed;
    let mut s = Session::new(gpu, &cfg.model, &ds, &opts, seed)?;
    s.state.write_params(gpu, &s.model.init_params(&mut Rng::new(seed)))?;
    let optim = Optimizer::new(gpu, &cfg.optimizer.rule, s.state.params.len())?;
    let train_dev = s.input.upload(gpu, &ds.train, "train")?;
    let test_dev = s.input.upload(gpu, &ds.test, "test")?;
    let (b, n) = (cfg.train.batch_size, ds.train.len());
    let (steps, tail) = epoch_batches(n, b);
    let idx_full = gpu.zeros("train indices", b.min(n), DType::U32)?;
    let plan_full = if n >= b { Some(s.train_plan(b, &train_dev, &idx_full, &optim, None)?) } else { None };
    let idx_tail = gpu.zeros("train indices (last batch)", tail.max(1), DType::U32)?;
    let plan_tail = if tail > 0 { Some(s.train_plan(tail, &train_dev, &idx_tail, &optim, None)?) } else { None };

    let report = |p: &Progress| {
        let text = serde_json::to_string(p).unwrap_or_default();
        if let Err(e) = progress.call1(&JsValue::NULL, &JsValue::from_str(&text)) {
            web_sys::console::error_2(&"the progress callback failed:".into(), &e);
        }
    };
    let (mut t, mut batches_tracked) = (0u64, 0i64);
    let (mut profile, mut profile_error) = (None, None);
    let mut last = None;
    for epoch in 0..cfg.train.epochs {
        let epoch_start = web_time::Instant::now();
        let lr = cfg.optimizer.lr_at(epoch as u64);
        let order = epoch_order(n, seed, epoch, cfg.train.shuffle);
        s.zero_sums()?;
        let mut seen = 0usize;
        // Reading the sums back waits for the GPU (and lets the page draw): a few times an epoch.
        let report_every = (steps / 10).max(1);
        let mut last_read = 0;
        for step in 0..steps {
            let (chunk, idx, plan) = if step < n / b {
                (&order[step * b..(step + 1) * b], &idx_full, plan_full.as_ref().expect("n >= b"))
            } else {
                (&order[n - n % b..n - n % b + tail], &idx_tail, plan_tail.as_ref().expect("a tail"))
            };
            t += 1;
            gpu.write_u32(idx, chunk)?;
            gpu.write_u32(&s.state.step, &[t as u32])?;
            optim.write_hyper(gpu, lr, t)?;
            if step == 0 && epoch + 1 == cfg.train.epochs && gpu.timing_method() != cnn3d::gpu::TimingMethod::WallClock {
                match gpu.submit_profiled_async(plan).await {
                    Ok(p) => profile = Some(p),
                    Err(e) => profile_error = Some(e.to_string()),
                }
            } else {
                gpu.submit(plan)?;
            }
            seen += chunk.len();
            batches_tracked += 1;
            if (step + 1) % report_every == 0 || step + 1 == steps {
                let (loss, correct) = s.sums_async().await?;
                if !loss.is_finite() {
                    return Err(cnn3d::Error::Diverged { epoch: epoch + 1, first: last_read + 1, step: step + 1, loss });
                }
                last_read = step + 1;
                report(&Progress {
                    epoch: epoch + 1,
                    epochs: cfg.train.epochs,
                    step: step + 1,
                    steps,
                    train_loss: loss / seen as f64,
                    train_acc: correct as f64 / seen as f64,
                    test_loss: None,
                    test_acc: None,
                    seconds: started.elapsed().as_secs_f64(),
                });
            }
        }
        let (loss, correct) = s.sums_async().await?;
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let (test_loss, test_acc) = s.evaluate_async(&test_dev, b).await?;
        let row = Progress {
            epoch: epoch + 1,
            epochs: cfg.train.epochs,
            step: steps,
            steps,
            train_loss: loss / seen as f64,
            train_acc: correct as f64 / seen as f64,
            test_loss: Some(test_loss),
            test_acc: Some(test_acc),
            seconds: started.elapsed().as_secs_f64(),
        };
        report(&row);
        last = Some((row, seen as f64 / train_seconds));
    }
    if profile.is_none() && profile_error.is_none() {
        profile_error = Some(match gpu.timing_method() {
            cnn3d::gpu::TimingMethod::WallClock => "this browser offers no timestamp queries on this adapter".to_string(),
            _ => "no full batch to time (fewer training samples than the batch size)".to_string(),
        });
    }
    let state_dict = s.state_dict_async(batches_tracked).await?;
    let bytes = cnn3d::checkpoint::to_bytes(Path::new("model.safetensors"), &state_dict, &s.model_metadata(cfg.train.epochs, 0, t))?;
    MODEL.with(|m| *m.borrow_mut() = Some(bytes));
    let (row, samples_per_s) = last.expect("at least one epoch (validated)");
    let result = TrainResult {
        parameters: s.model.param_count(),
        train_samples: n,
        test_samples: ds.test.len(),
        epochs: cfg.train.epochs,
        batch: b,
        optimizer: optim.rule().kind().to_string(),
        lr: req.lr,
        train_loss: row.train_loss,
        train_acc: row.train_acc,
        test_loss: row.test_loss.unwrap_or(f64::NAN),
        test_acc: row.test_acc.unwrap_or(f64::NAN),
        seconds: started.elapsed().as_secs_f64(),
        samples_per_s,
        gpu_memory_bytes: gpu.memory().peak_bytes,
        profile,
        profile_error,
    };
    serde_json::to_string(&result).map_err(|e| cnn3d::Error::shape("train", e.to_string()))
}

/// model.safetensors of the last finished run (PyTorch's state_dict names, as `cnn3d train`
/// writes it), or nothing before a run has finished.
#[wasm_bindgen]
pub fn model_safetensors() -> Option<Vec<u8>> {
    MODEL.with(|m| m.borrow().clone())
}
