//! The model with its state on the GPU and its plans per batch size: what a training step,
//! an evaluation and a state_dict need, for the CLI's `train`/`eval`/`profile` and for a
//! browser page alike (readbacks have async twins; the blocking ones are native only).

use std::collections::BTreeMap;
use std::path::Path;

use crate::checkpoint::{self, Tensor, TensorSpec};
use crate::config::ModelConfig;
use crate::data::{DataOptions, Dataset, DeviceSplit, Input};
use crate::error::{Error, Result};
use crate::gpu::{Buffer, DType, Gpu, Plan};
use crate::layers::clip_grad_norm::ClipGradNorm;
use crate::model::Model;
use crate::network::{Network, State};
use crate::optim::Optimizer;
use crate::rng::Rng;

/// The model with its state on the GPU, and plans per batch size.
pub struct Session<'g> {
    pub gpu: &'g Gpu,
    pub model: Model,
    pub state: State,
    pub input: Input,
    lut: Option<Buffer>,
    seed: u64,
    nets: BTreeMap<usize, Network>,
    /// [`Session::largest_batch`]'s answers, by the batch asked for.
    largest: BTreeMap<usize, usize>,
}

impl<'g> Session<'g> {
    pub fn new(gpu: &'g Gpu, model_cfg: &ModelConfig, ds: &Dataset, opts: &DataOptions, seed: u64) -> Result<Session<'g>> {
        let input = Input::new(ds, opts.colormap, opts.article_reshape)?;
        if ds.dims != model_cfg.input {
            return Err(Error::shape(
                "model input",
                format!("the model expects volumes of {:?} (D, H, W) but {} holds {:?}", model_cfg.input, ds.source, ds.dims),
            ));
        }
        if ds.classes > model_cfg.classes {
            return Err(Error::shape(
                "model",
                format!("the data has {} classes but the model outputs {}", ds.classes, model_cfg.classes),
            ));
        }
        let model = Model::from_config(model_cfg, input.channels())?;
        let state = State::new(gpu, &model)?;
        let lut = input.lut(gpu)?;
        Ok(Session { gpu, model, state, input, lut, seed, nets: BTreeMap::new(), largest: BTreeMap::new() })
    }

    /// The network for `batch` samples, built on first use.
    fn net(&mut self, batch: usize) -> Result<&Network> {
        if !self.nets.contains_key(&batch) {
            let net = Network::new(self.gpu, &self.model, batch, self.seed)?;
            self.nets.insert(batch, net);
        }
        Ok(&self.nets[&batch])
    }

    /// Whether the network of `batch` samples fits this device's limits; one that fits is kept
    /// for [`Session::net`].
    fn fits(&mut self, batch: usize) -> Result<bool> {
        if self.nets.contains_key(&batch) {
            return Ok(true);
        }
        match Network::new(self.gpu, &self.model, batch, self.seed) {
            Ok(net) => {
                self.nets.insert(batch, net);
                Ok(true)
            }
            Err(Error::TooLarge { .. } | Error::GridTooLarge { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The largest batch of at most `upto` samples whose network fits this device's limits
    /// (0 when not even one sample does). Starts from the bound the largest per-sample tensor
    /// sets on one binding, then halves the interval, so a batch that fits costs one try.
    pub fn largest_batch(&mut self, upto: usize) -> Result<usize> {
        if let Some(&known) = self.largest.get(&upto) {
            return Ok(known);
        }
        let found = self.search_largest_batch(upto)?;
        self.largest.insert(upto, found);
        Ok(found)
    }

    fn search_largest_batch(&mut self, upto: usize) -> Result<usize> {
        if upto == 0 {
            return Ok(0);
        }
        let info = self.gpu.info();
        let limit = (info.max_storage_buffer_binding_size.min(info.max_buffer_size) / 4).min(crate::model::MAX_TENSOR_ELEMENTS);
        let per = std::iter::once(&self.model.input[..])
            .chain(self.model.layers.iter().map(|l| &l.output[..]))
            .map(|s| crate::model::count(s).unwrap_or(usize::MAX) as u64)
            .max()
            .unwrap_or(1)
            .max(1);
        let mut hi = (upto as u64).min(limit / per) as usize;
        if hi == 0 {
            return Ok(0);
        }
        if self.fits(hi)? {
            return Ok(hi);
        }
        // fits(lo) holds (or lo = 0), fits(hi) does not. The networks made on the way are
        // dropped again, but for the answer's.
        let existing: Vec<usize> = self.nets.keys().copied().collect();
        let mut lo = 0;
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.fits(mid)? {
                if !existing.contains(&lo) {
                    self.nets.remove(&lo);
                }
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// gather + train step (+ gradient clipping) + update, for `batch` samples of `split`
    /// chosen by `indices`.
    pub fn train_plan(
        &mut self,
        batch: usize,
        split: &DeviceSplit,
        indices: &Buffer,
        optim: &Optimizer,
        clip: Option<&ClipGradNorm>,
    ) -> Result<Plan> {
        self.net(batch)?;
        let net = &self.nets[&batch];
        let mut ops = vec![self.input.gather(batch, split, indices, self.lut.as_ref(), &net.input, &net.labels)?];
        ops.extend(net.train_ops(&self.state)?);
        if let Some(clip) = clip {
            ops.extend(clip.ops(&self.state.grads)?);
        }
        ops.push(optim.update(&self.state.params, &self.state.grads)?);
        self.gpu.compile(&ops)
    }

    /// gather + eval forward + metric sums.
    pub(crate) fn eval_plan(&mut self, batch: usize, split: &DeviceSplit, indices: &Buffer) -> Result<Plan> {
        self.net(batch)?;
        let net = &self.nets[&batch];
        let mut ops = vec![self.input.gather(batch, split, indices, self.lut.as_ref(), &net.input, &net.labels)?];
        ops.extend(net.eval_ops(&self.state)?);
        self.gpu.compile(&ops)
    }

    /// Zeroes the GPU's running loss and correct-count sums (before an epoch or an evaluation).
    pub fn zero_sums(&self) -> Result<()> {
        self.gpu.write_f32(&self.state.loss_sum, &[0.0])?;
        self.gpu.write_u32(&self.state.correct_sum, &[0])
    }

    /// (Σ loss·batch, Σ correct) so far; waits for the GPU.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn sums(&self) -> Result<(f64, u64)> {
        pollster::block_on(self.sums_async())
    }

    /// [`Session::sums`] as a future (a browser's readback).
    pub async fn sums_async(&self) -> Result<(f64, u64)> {
        let loss = self.gpu.read_f32_async(&self.state.loss_sum).await?[0] as f64;
        let correct = self.gpu.read_u32_async(&self.state.correct_sum).await?[0] as u64;
        Ok((loss, correct))
    }

    /// Mean loss and accuracy of the eval-mode model over a whole split.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn evaluate(&mut self, split: &DeviceSplit, batch: usize) -> Result<(f64, f64)> {
        pollster::block_on(self.eval_split(split, batch, None))
    }

    /// [`Session::evaluate`] as a future.
    pub async fn evaluate_async(&mut self, split: &DeviceSplit, batch: usize) -> Result<(f64, f64)> {
        self.eval_split(split, batch, None).await
    }

    /// The eval-mode logits of every sample of `split`, in split order, with the mean loss and
    /// accuracy the GPU summed (the same numbers as [`Session::evaluate`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn predictions(&mut self, split: &DeviceSplit, batch: usize) -> Result<Predictions> {
        pollster::block_on(self.predictions_async(split, batch))
    }

    /// [`Session::predictions`] as a future.
    pub async fn predictions_async(&mut self, split: &DeviceSplit, batch: usize) -> Result<Predictions> {
        let mut logits = Vec::with_capacity(split.len.saturating_mul(self.model.classes).min(1 << 28));
        let (loss, accuracy) = self.eval_split(split, batch, Some(&mut logits)).await?;
        Ok(Predictions { classes: self.model.classes, logits, loss, accuracy })
    }

    /// Eval batches over `split`; with `logits`, each batch's logits are read back after its
    /// submit (a wait per batch, so training's per-epoch evaluation does without).
    async fn eval_split(&mut self, split: &DeviceSplit, batch: usize, mut logits: Option<&mut Vec<f32>>) -> Result<(f64, f64)> {
        if split.len == 0 {
            return Ok((f64::NAN, f64::NAN));
        }
        if batch == 0 {
            return Err(Error::shape("evaluation", "the batch size must be at least 1"));
        }
        // A batch beyond the device's limits runs as micro-batches that fit: eval mode
        // (running statistics, no dropout) computes each sample on its own, so the logits are
        // the same, and the GPU sums every micro-batch's loss and correct count.
        let asked = batch.min(split.len);
        let batch = self.largest_batch(asked)?;
        if batch == 0 {
            // Not even one sample fits: the error that says which tensor and which limit.
            return Network::new(self.gpu, &self.model, 1, self.seed).and_then(|_| {
                Err(Error::shape("evaluation", "no batch of samples fits this device's limits"))
            });
        }
        if batch < asked {
            log::debug!("evaluating in micro-batches of {batch} samples (the batch of {asked} exceeds this device's limits)");
        }
        self.zero_sums()?;
        let order: Vec<u32> = (0..split.len as u32).collect();
        let mut plans: BTreeMap<usize, (Plan, Buffer)> = BTreeMap::new();
        for chunk in order.chunks(batch) {
            if let std::collections::btree_map::Entry::Vacant(e) = plans.entry(chunk.len()) {
                let idx = self.gpu.zeros("eval indices", chunk.len(), DType::U32)?;
                let plan = self.eval_plan(chunk.len(), split, &idx)?;
                e.insert((plan, idx));
            }
            let (plan, idx) = &plans[&chunk.len()];
            self.gpu.write_u32(idx, chunk)?;
            self.gpu.submit(plan)?;
            if let Some(out) = logits.as_deref_mut() {
                let values = self.gpu.read_f32_async(self.nets[&chunk.len()].eval_logits()).await?;
                out.extend_from_slice(&values[..chunk.len() * self.model.classes]);
            }
        }
        let (loss, correct) = self.sums_async().await?;
        Ok((loss / split.len as f64, correct as f64 / split.len as f64))
    }

    /// Every tensor of the state_dict, PyTorch's names: parameters, running statistics and
    /// each batch norm's `num_batches_tracked`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn state_dict(&self, batches_tracked: i64) -> Result<Vec<Tensor>> {
        pollster::block_on(self.state_dict_async(batches_tracked))
    }

    /// [`Session::state_dict`] as a future (a browser's download of model.safetensors).
    pub async fn state_dict_async(&self, batches_tracked: i64) -> Result<Vec<Tensor>> {
        let mut out = vec![];
        let params = self.state.read_params_async(self.gpu).await?;
        let buffers = self.state.read_buffers_async(self.gpu).await?;
        let (mut p, mut b) = (params.into_iter(), buffers.into_iter());
        for layer in &self.model.layers {
            for t in &layer.params {
                out.push(Tensor::f32(&t.name, &t.shape, p.next().unwrap()));
            }
            for t in &layer.buffers {
                out.push(Tensor::f32(&t.name, &t.shape, b.next().unwrap()));
            }
            if !layer.buffers.is_empty() {
                out.push(Tensor::i64(format!("{}.num_batches_tracked", layer.name), &[], vec![batches_tracked]));
            }
        }
        Ok(out)
    }

    /// model.safetensors' metadata after `epoch` finished epochs and `epoch_step` steps of the
    /// next (0 at an epoch's end), `step` steps in all: that position, PyTorch's format tag and
    /// how the data became the input ([`META_COLORMAP`], [`META_ARTICLE_RESHAPE`]).
    pub fn model_metadata(&self, epoch: usize, epoch_step: usize, step: u64) -> BTreeMap<String, String> {
        let mut meta = BTreeMap::new();
        meta.insert("epoch".to_string(), epoch.to_string());
        meta.insert("epoch_step".to_string(), epoch_step.to_string());
        meta.insert("step".to_string(), step.to_string());
        meta.insert("format".to_string(), "pt".to_string());
        meta.insert(META_COLORMAP.to_string(), self.input.colormap.to_string());
        meta.insert(META_ARTICLE_RESHAPE.to_string(), self.input.article_reshape.to_string());
        meta
    }

    /// What a model.safetensors of this model holds.
    pub fn state_dict_specs(&self) -> Vec<TensorSpec> {
        self.model.state_dict_specs()
    }

    /// Loads a model.safetensors (names, shapes and dtypes checked); returns its
    /// num_batches_tracked (0 without batch norm).
    pub fn load_weights(&self, path: &Path) -> Result<i64> {
        let ck = checkpoint::load_expected(path, &self.state_dict_specs())?;
        self.apply_state_dict(&ck, "")
    }

    /// Writes the state_dict tensors of `ck`, each named `prefix` + its state_dict name and
    /// already checked against [`Session::state_dict_specs`], to the GPU; returns
    /// num_batches_tracked.
    pub(crate) fn apply_state_dict(&self, ck: &checkpoint::Checkpoint, prefix: &str) -> Result<i64> {
        let mut params = vec![];
        let mut buffers = vec![];
        let mut tracked = 0;
        let get = |name: &str| ck.get(&format!("{prefix}{name}"));
        for layer in &self.model.layers {
            for t in &layer.params {
                params.push(get(&t.name).and_then(|t| t.as_f32()).unwrap_or_default().to_vec());
            }
            for t in &layer.buffers {
                buffers.push(get(&t.name).and_then(|t| t.as_f32()).unwrap_or_default().to_vec());
            }
            if let Some(n) = get(&format!("{}.num_batches_tracked", layer.name)).and_then(|t| t.as_i64()) {
                tracked = n.first().copied().unwrap_or(0);
            }
        }
        self.state.write_params(self.gpu, &params)?;
        self.state.write_buffers(self.gpu, &buffers)?;
        Ok(tracked)
    }
}

/// Eval-mode logits of a split and the GPU's metric sums over it.
#[derive(Clone, Debug)]
pub struct Predictions {
    pub classes: usize,
    /// Row-major (samples, classes).
    pub logits: Vec<f32>,
    pub loss: f64,
    pub accuracy: f64,
}


/// The epoch's sample order: shuffled with a generator seeded by (seed, epoch), so a resumed
/// run sees the same order as an uninterrupted one.
pub fn epoch_order(n: usize, seed: u64, epoch: usize, shuffle: bool) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    if shuffle {
        let mut rng = Rng::new(seed ^ 0x5EED_0000_0000 ^ epoch as u64);
        for i in (1..n).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
    }
    order
}

/// Checkpoint metadata recording how the data became the model's input, so that `eval` and
/// `predict` on a run's model feed it what it was trained on.
pub const META_COLORMAP: &str = "colormap";
pub const META_ARTICLE_RESHAPE: &str = "article_reshape";

/// An epoch of `n` samples in batches of `b`: (steps, samples in the last, shorter batch or
/// 0). Batch norm cannot train on a batch of one: a last batch of a single sample is skipped
/// (it is a different sample each epoch when shuffling).
pub fn epoch_batches(n: usize, b: usize) -> (usize, usize) {
    let tail = match n % b {
        1 => 0,
        t => t,
    };
    (n / b + usize::from(tail > 0), tail)
}
