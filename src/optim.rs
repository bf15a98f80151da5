//! Optimizers with torch.optim's update rules — SGD (momentum, dampening, nesterov, weight
//! decay), Adam and AdamW (betas, eps, weight decay; no amsgrad) — and learning-rate schedules
//! (constant, StepLR, CosineAnnealingLR) evaluated per epoch. Shader: `shaders/optim.wgsl`.
//!
//! The update is one dispatch per step over the model's ONE flat parameter buffer and ONE flat
//! gradient buffer, with the optimizer state (SGD's momentum buffer; Adam's exp_avg and
//! exp_avg_sq) in buffers of the same length that [`Optimizer`] owns. Constant
//! hyper-parameters go in the dispatch's uniform; what changes per step (the scheduled
//! learning rate and the step count t) goes in a 4-float storage buffer that the host writes
//! before each submit ([`Optimizer::write_hyper`]; layout at [`UpdateRule::hyper`]), since a
//! compiled plan's uniforms are written once.
//!
//! As a TOML model config (`kind` picks the optimizer; omitted fields take PyTorch's defaults;
//! fields of another optimizer are errors):
//!
//! ```toml
//! [optimizer]
//! kind = "adamw"              # "sgd" | "adam" | "adamw"
//! lr = 0.001
//! betas = [0.9, 0.999]
//! eps = 1e-8
//! weight_decay = 0.01
//! [optimizer.schedule]
//! kind = "cosine"             # "constant" (default) | "step" | "cosine"
//! t_max = 45
//! eta_min = 0.0
//! ```

use bytemuck::{Pod, Zeroable};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gpu::{Buffer, DType, Gpu, Op, Shader};
use crate::layers::{expect_len, u32_of};

const LAYER: &str = "optimizer";

/// `torch.optim.SGD`'s options, with its defaults.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig { lr: 1e-3, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false }
    }
}

/// `torch.optim.Adam`'s and `AdamW`'s options. Their defaults differ only in weight decay:
/// [`AdamConfig::adam`] (0) and [`AdamConfig::adamw`] (0.01); `Default` is Adam's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamConfig {
    pub lr: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamConfig {
    pub const fn adam() -> Self {
        AdamConfig { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.0 }
    }
    pub const fn adamw() -> Self {
        AdamConfig { weight_decay: 1e-2, ..AdamConfig::adam() }
    }
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig::adam()
    }
}

/// Which update and its constant hyper-parameters. Adam adds `weight_decay·p` to the gradient;
/// AdamW first multiplies p by `1 − lr·weight_decay` (decoupled decay).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UpdateRule {
    Sgd(SgdConfig),
    Adam(AdamConfig),
    AdamW(AdamConfig),
}

/// The config names of the optimizers, as `kind` takes them.
pub const KINDS: &[&str] = &["sgd", "adam", "adamw"];

fn invalid(field: &str, message: String) -> Error {
    Error::InvalidOption { field: field.to_string(), message }
}

/// A hyper-parameter the shader receives as f32 must stay finite there.
fn fits_f32(v: f64) -> bool {
    v.is_finite() && (v as f32).is_finite()
}

/// `lo ≤ v < hi` style checks, with a message naming the field, the expectation and the value.
fn expect(field: &str, ok: bool, expected: &str, v: f64) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(invalid(field, format!("must be {expected}, got {v}")))
    }
}

/// The learning rate (of the config or the base of a schedule): finite, > 0, and still > 0
/// once rounded to the f32 that the shader multiplies with.
fn expect_lr(field: &str, lr: f64) -> Result<()> {
    expect(field, fits_f32(lr) && (lr as f32) >= f32::MIN_POSITIVE, "a finite number > 0 (at least 1.2e-38, f32's smallest normal)", lr)
}

fn expect_weight_decay(field: &str, wd: f64) -> Result<()> {
    expect(field, fits_f32(wd) && wd >= 0.0, "a finite number ≥ 0", wd)
}

impl UpdateRule {
    /// PyTorch's defaults for `kind` (`"sgd"`, `"adam"`, `"adamw"`).
    pub fn defaults(kind: &str) -> Result<UpdateRule> {
        match kind {
            "sgd" => Ok(UpdateRule::Sgd(SgdConfig::default())),
            "adam" => Ok(UpdateRule::Adam(AdamConfig::adam())),
            "adamw" => Ok(UpdateRule::AdamW(AdamConfig::adamw())),
            _ => {
                let hint = crate::config::nearest(kind, KINDS.iter().copied()).map(|k| format!("; did you mean {k:?}?")).unwrap_or_default();
                Err(invalid("optimizer.kind", format!("unknown optimizer {kind:?}: expected one of {}{hint}", KINDS.join(", "))))
            }
        }
    }

    /// `"sgd"`, `"adam"` or `"adamw"`.
    pub fn kind(&self) -> &'static str {
        match self {
            UpdateRule::Sgd(_) => "sgd",
            UpdateRule::Adam(_) => "adam",
            UpdateRule::AdamW(_) => "adamw",
        }
    }

    /// The label of the update dispatch: `sgd.update`, `adam.update`, `adamw.update`.
    pub fn kernel_name(&self) -> &'static str {
        match self {
            UpdateRule::Sgd(_) => "sgd.update",
            UpdateRule::Adam(_) => "adam.update",
            UpdateRule::AdamW(_) => "adamw.update",
        }
    }

    /// The base learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            UpdateRule::Sgd(c) => c.lr,
            UpdateRule::Adam(c) | UpdateRule::AdamW(c) => c.lr,
        }
    }

    pub fn set_lr(&mut self, lr: f64) {
        match self {
            UpdateRule::Sgd(c) => c.lr = lr,
            UpdateRule::Adam(c) | UpdateRule::AdamW(c) => c.lr = lr,
        }
    }

    /// The state tensors this rule keeps per parameter, under PyTorch's state keys (what an
    /// `optimizer.safetensors` would name them): none for plain SGD, `momentum_buffer` for SGD
    /// with momentum, `exp_avg` and `exp_avg_sq` for Adam and AdamW.
    pub fn state_names(&self) -> &'static [&'static str] {
        match self {
            UpdateRule::Sgd(c) if c.momentum == 0.0 => &[],
            UpdateRule::Sgd(_) => &["momentum_buffer"],
            UpdateRule::Adam(_) | UpdateRule::AdamW(_) => &["exp_avg", "exp_avg_sq"],
        }
    }

    /// PyTorch's checks, made strict where a value cannot train (lr = 0, eps = 0, momentum ≥ 1)
    /// or would not survive the f32 the shader computes in. Errors name the field.
    pub fn validate(&self) -> Result<()> {
        match self {
            UpdateRule::Sgd(c) => {
                expect_lr("optimizer.lr", c.lr)?;
                expect("optimizer.momentum", fits_f32(c.momentum) && (0.0..1.0).contains(&c.momentum), "in [0, 1)", c.momentum)?;
                expect(
                    "optimizer.dampening",
                    fits_f32(c.dampening) && (0.0..=1.0).contains(&c.dampening),
                    "in [0, 1]",
                    c.dampening,
                )?;
                expect_weight_decay("optimizer.weight_decay", c.weight_decay)?;
                if c.nesterov && c.momentum <= 0.0 {
                    return Err(invalid("optimizer.nesterov", "Nesterov momentum requires momentum > 0 (got momentum = 0)".into()));
                }
                if c.nesterov && c.dampening != 0.0 {
                    return Err(invalid(
                        "optimizer.nesterov",
                        format!("Nesterov momentum requires dampening = 0 (got dampening = {})", c.dampening),
                    ));
                }
            }
            UpdateRule::Adam(c) | UpdateRule::AdamW(c) => {
                expect_lr("optimizer.lr", c.lr)?;
                for (i, b) in c.betas.iter().enumerate() {
                    expect(&format!("optimizer.betas[{i}]"), (0.0..1.0).contains(b), "in [0, 1)", *b)?;
                }
                expect(
                    "optimizer.eps",
                    fits_f32(c.eps) && (c.eps as f32) >= f32::MIN_POSITIVE,
                    "a finite number > 0 (at least 1.2e-38, f32's smallest normal)",
                    c.eps,
                )?;
                expect_weight_decay("optimizer.weight_decay", c.weight_decay)?;
            }
        }
        Ok(())
    }

    /// The 4 f32 values of the per-step "hyper" buffer (binding 1 of the update) for step `t`
    /// (1 for the first step: PyTorch's `state['step']` after its increment) at learning rate
    /// `lr` (the schedule's value for the current epoch), computed in f64 and rounded once:
    ///
    /// | index | SGD                           | Adam / AdamW                          |
    /// |-------|-------------------------------|---------------------------------------|
    /// | 0     | lr                            | lr                                    |
    /// | 1     | first: 1.0 if t = 1, else 0.0 | step_size = lr / (1 − β1^t)           |
    /// | 2     | 0                             | bc2_sqrt = √(1 − β2^t)                |
    /// | 3     | 0                             | decay = 1 − lr·weight_decay (AdamW), 1 (Adam) |
    ///
    /// `first` makes the momentum buffer start as the gradient, as PyTorch's does on the first
    /// step. Errors (never panics) on t = 0 and on a negative or non-finite lr; lr = 0 is
    /// allowed, since a cosine schedule reaches it.
    pub fn hyper(&self, lr: f64, t: u64) -> Result<[f32; 4]> {
        if t == 0 {
            return Err(invalid("optimizer step", "steps count from 1 (PyTorch's state['step'] after its increment), got 0".into()));
        }
        expect("optimizer learning rate of this step", fits_f32(lr) && lr >= 0.0, "a finite number ≥ 0", lr)?;
        let h = match self {
            UpdateRule::Sgd(_) => [lr as f32, if t == 1 { 1.0 } else { 0.0 }, 0.0, 0.0],
            UpdateRule::Adam(c) | UpdateRule::AdamW(c) => {
                // As PyTorch: Python floats (f64), `beta ** step` with the step as a float.
                let bc1 = 1.0 - c.betas[0].powf(t as f64);
                let bc2 = 1.0 - c.betas[1].powf(t as f64);
                let decay = match self {
                    UpdateRule::AdamW(_) => 1.0 - lr * c.weight_decay,
                    _ => 1.0,
                };
                [lr as f32, (lr / bc1) as f32, bc2.sqrt() as f32, decay as f32]
            }
        };
        // lr / (1 − β1^t) grows by up to 1 / (1 − β1): a huge lr with β1 near 1 could leave
        // f32's range, which the shader would turn into inf/NaN parameters.
        if let Some(v) = h.iter().find(|v| !v.is_finite()) {
            return Err(invalid(
                "optimizer learning rate of this step",
                format!("lr {lr} at step {t} gives the per-step value {v} in f32 (step_size = lr / (1 − β1^t) overflows)"),
            ));
        }
        Ok(h)
    }

    /// The uniform of the update dispatch.
    fn params(&self, n: u32) -> Params {
        let mut p = Params { n, ..Params::zeroed() };
        match self {
            UpdateRule::Sgd(c) => {
                p.nesterov = c.nesterov as u32;
                p.weight_decay = c.weight_decay as f32;
                p.momentum = c.momentum as f32;
                // PyTorch passes `alpha = 1 - dampening` (a Python float) to add_.
                p.one_minus_dampening = (1.0 - c.dampening) as f32;
            }
            UpdateRule::Adam(c) | UpdateRule::AdamW(c) => {
                // Adam adds wd·p to the gradient; AdamW's decay is `decay` in the hyper buffer.
                p.weight_decay = if matches!(self, UpdateRule::Adam(_)) { c.weight_decay as f32 } else { 0.0 };
                p.one_minus_beta1 = (1.0 - c.betas[0]) as f32;
                p.beta2 = c.betas[1] as f32;
                p.one_minus_beta2 = (1.0 - c.betas[1]) as f32;
                p.eps = c.eps as f32;
            }
        }
        p
    }
}

/// The uniform `Params` of `shaders/optim.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    nesterov: u32,
    _pad0: u32,
    _pad1: u32,
    weight_decay: f32,
    momentum: f32,
    one_minus_dampening: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    eps: f32,
    _pad2: f32,
}

/// A learning-rate schedule, stepped once per epoch as PyTorch's schedulers are when
/// `scheduler.step()` is called after each epoch: epoch 0 trains at the base lr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Schedule {
    /// The base lr throughout.
    #[default]
    Constant,
    /// `StepLR`: lr · gamma^⌊epoch / step_size⌋.
    Step {
        step_size: u64,
        #[serde(default = "default_gamma")]
        gamma: f64,
    },
    /// `CosineAnnealingLR` in PyTorch's closed form:
    /// eta_min + (lr − eta_min)·(1 + cos(π·epoch / t_max)) / 2. Past t_max it rises again, as
    /// PyTorch's does (a cosine of period 2·t_max).
    Cosine {
        t_max: u64,
        #[serde(default)]
        eta_min: f64,
    },
}

fn default_gamma() -> f64 {
    0.1
}

impl Schedule {
    pub fn kind(&self) -> &'static str {
        match self {
            Schedule::Constant => "constant",
            Schedule::Step { .. } => "step",
            Schedule::Cosine { .. } => "cosine",
        }
    }

    /// step_size ≥ 1, gamma finite and > 0, t_max ≥ 1, eta_min finite and ≥ 0.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Schedule::Constant => Ok(()),
            Schedule::Step { step_size, gamma } => {
                if step_size == 0 {
                    return Err(invalid("optimizer.schedule.step_size", "must be ≥ 1 epoch, got 0".into()));
                }
                expect("optimizer.schedule.gamma", fits_f32(gamma) && gamma > 0.0, "a finite number > 0", gamma)
            }
            Schedule::Cosine { t_max, eta_min } => {
                if t_max == 0 {
                    return Err(invalid("optimizer.schedule.t_max", "must be ≥ 1 epoch, got 0".into()));
                }
                expect("optimizer.schedule.eta_min", fits_f32(eta_min) && eta_min >= 0.0, "a finite number ≥ 0", eta_min)
            }
        }
    }

    /// The learning rate of epoch `epoch` (0-based: the number of `scheduler.step()` calls
    /// before it) for base learning rate `base_lr`.
    pub fn lr_at(&self, base_lr: f64, epoch: u64) -> f64 {
        match *self {
            Schedule::Constant => base_lr,
            Schedule::Step { step_size, gamma } => base_lr * gamma.powf((epoch / step_size.max(1)) as f64),
            Schedule::Cosine { t_max, eta_min } => {
                let phase = std::f64::consts::PI * epoch as f64 / t_max.max(1) as f64;
                eta_min + (base_lr - eta_min) * (1.0 + phase.cos()) / 2.0
            }
        }
    }
}

/// The `[optimizer]` table: the update rule and its learning-rate schedule. The default is the
/// article's: SGD, lr 0.001, no momentum, constant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawOptimizer", into = "RawOptimizer")]
pub struct OptimizerConfig {
    pub rule: UpdateRule,
    pub schedule: Schedule,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig { rule: UpdateRule::Sgd(SgdConfig::default()), schedule: Schedule::Constant }
    }
}

impl OptimizerConfig {
    /// Validates the rule and the schedule (call it after applying command-line overrides).
    pub fn validate(&self) -> Result<()> {
        self.rule.validate()?;
        self.schedule.validate()
    }

    /// The base learning rate.
    pub fn lr(&self) -> f64 {
        self.rule.lr()
    }

    /// The learning rate of epoch `epoch` (0-based).
    pub fn lr_at(&self, epoch: u64) -> f64 {
        self.schedule.lr_at(self.rule.lr(), epoch)
    }

    /// For `--optimizer KIND`: the same config when `kind` is already the rule's; otherwise
    /// PyTorch's defaults for `kind`, keeping the learning rate and the schedule (the other
    /// options of one optimizer mean nothing to another).
    pub fn with_kind(&self, kind: &str) -> Result<OptimizerConfig> {
        if kind == self.rule.kind() {
            return Ok(self.clone());
        }
        let mut rule = UpdateRule::defaults(kind)?;
        rule.set_lr(self.rule.lr());
        Ok(OptimizerConfig { rule, schedule: self.schedule })
    }
}

/// What `[optimizer]` holds before `kind` says which fields belong: every field of every
/// optimizer, each optional so that omitted ones take the chosen optimizer's defaults and
/// another optimizer's fields can be refused by name.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOptimizer {
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    lr: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    momentum: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dampening: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nesterov: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    betas: Option<[f64; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    weight_decay: Option<f64>,
    #[serde(default)]
    schedule: Schedule,
}

impl TryFrom<RawOptimizer> for OptimizerConfig {
    type Error = String;

    fn try_from(r: RawOptimizer) -> std::result::Result<Self, String> {
        let rule = UpdateRule::defaults(&r.kind).map_err(|e| e.to_string())?;
        let given: [(&str, bool); 6] = [
            ("momentum", r.momentum.is_some()),
            ("dampening", r.dampening.is_some()),
            ("nesterov", r.nesterov.is_some()),
            ("betas", r.betas.is_some()),
            ("eps", r.eps.is_some()),
            ("weight_decay", r.weight_decay.is_some()),
        ];
        let allowed: &[&str] = match rule {
            UpdateRule::Sgd(_) => &["momentum", "dampening", "nesterov", "weight_decay"],
            _ => &["betas", "eps", "weight_decay"],
        };
        if let Some((name, _)) = given.iter().find(|(name, set)| *set && !allowed.contains(name)) {
            return Err(format!(
                "optimizer.{name}: not an option of kind = {:?} (it takes lr, {})",
                r.kind,
                allowed.join(", ")
            ));
        }
        let rule = match rule {
            UpdateRule::Sgd(d) => UpdateRule::Sgd(SgdConfig {
                lr: r.lr.unwrap_or(d.lr),
                momentum: r.momentum.unwrap_or(d.momentum),
                dampening: r.dampening.unwrap_or(d.dampening),
                weight_decay: r.weight_decay.unwrap_or(d.weight_decay),
                nesterov: r.nesterov.unwrap_or(d.nesterov),
            }),
            UpdateRule::Adam(d) | UpdateRule::AdamW(d) => {
                let c = AdamConfig {
                    lr: r.lr.unwrap_or(d.lr),
                    betas: r.betas.unwrap_or(d.betas),
                    eps: r.eps.unwrap_or(d.eps),
                    weight_decay: r.weight_decay.unwrap_or(d.weight_decay),
                };
                if matches!(rule, UpdateRule::Adam(_)) {
                    UpdateRule::Adam(c)
                } else {
                    UpdateRule::AdamW(c)
                }
            }
        };
        Ok(OptimizerConfig { rule, schedule: r.schedule })
    }
}

impl From<OptimizerConfig> for RawOptimizer {
    /// Every option of the rule, defaults included, so a written config is fully resolved.
    fn from(c: OptimizerConfig) -> RawOptimizer {
        let mut r = RawOptimizer { kind: c.rule.kind().to_string(), lr: Some(c.rule.lr()), schedule: c.schedule, ..Default::default() };
        match c.rule {
            UpdateRule::Sgd(s) => {
                r.momentum = Some(s.momentum);
                r.dampening = Some(s.dampening);
                r.nesterov = Some(s.nesterov);
                r.weight_decay = Some(s.weight_decay);
            }
            UpdateRule::Adam(a) | UpdateRule::AdamW(a) => {
                r.betas = Some(a.betas);
                r.eps = Some(a.eps);
                r.weight_decay = Some(a.weight_decay);
            }
        }
        r
    }
}

/// An optimizer on the GPU: its validated rule, the state buffers beside the flat parameter
/// buffer (zero-filled, as PyTorch's fresh state), and the per-step hyper buffer.
///
/// Per training step: [`write_hyper`](Self::write_hyper) with the epoch's lr and the step
/// number, then replay the plan holding [`update`](Self::update)'s op. The write lands before
/// the next submit, so each submit must hold at most one update.
pub struct Optimizer {
    rule: UpdateRule,
    len: usize,
    hyper: Buffer,
    state: Vec<(&'static str, Buffer)>,
}

impl Optimizer {
    /// Validates `rule` and allocates its state for `len` parameters (the flat parameter
    /// buffer's length, alignment padding included).
    pub fn new(gpu: &Gpu, rule: &UpdateRule, len: usize) -> Result<Optimizer> {
        rule.validate()?;
        if len == 0 {
            return Err(Error::shape(LAYER, "there are no parameters to optimize (0 elements)"));
        }
        u32_of(LAYER, "parameter count", len)?;
        let hyper = gpu.zeros("optim.hyper", 4, DType::F32)?;
        let state = rule
            .state_names()
            .iter()
            .map(|&name| Ok((name, gpu.zeros(&format!("optim.{name}"), len, DType::F32)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Optimizer { rule: *rule, len, hyper, state })
    }

    pub fn rule(&self) -> &UpdateRule {
        &self.rule
    }

    /// The number of parameters (elements) it updates.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The 4-float per-step buffer (layout at [`UpdateRule::hyper`]).
    pub fn hyper_buffer(&self) -> &Buffer {
        &self.hyper
    }

    /// The state buffers under PyTorch's state keys ([`UpdateRule::state_names`]), each `len`
    /// elements in the flat parameter buffer's order: read them to save, write them to resume.
    pub fn state(&self) -> &[(&'static str, Buffer)] {
        &self.state
    }

    /// Writes the hyper buffer for step `t` (1-based, counted over the whole run, resumes
    /// included) at learning rate `lr`.
    pub fn write_hyper(&self, gpu: &Gpu, lr: f64, t: u64) -> Result<()> {
        gpu.write_f32(&self.hyper, &self.rule.hyper(lr, t)?)
    }

    /// The update dispatch over the flat `params` and `grads` buffers (each `len` f32s).
    pub fn update(&self, params: &Buffer, grads: &Buffer) -> Result<Op> {
        for (what, b) in [("params", params), ("grads", grads)] {
            expect_len(LAYER, what, b, self.len)?;
            if b.dtype() != DType::F32 {
                return Err(Error::shape(LAYER, format!("{what} must be an f32 buffer, got {:?}", b.dtype())));
            }
        }
        let p = self.rule.params(self.len as u32);
        let name = self.rule.kernel_name();
        let entry = match (&self.rule, self.state.len()) {
            (UpdateRule::Sgd(_), 0) => "sgd",
            (UpdateRule::Sgd(_), _) => "sgd_momentum",
            _ => "adam",
        };
        let mut buffers = vec![&self.hyper, params, grads];
        buffers.extend(self.state.iter().map(|(_, b)| b));
        // Per element: params and grads read, params written, each state tensor read and
        // written; flops: a few for SGD, about a dozen for Adam's moments and sqrt.
        let n = self.len as u64;
        let flops = match entry {
            "sgd" => 3,
            "sgd_momentum" => 5,
            _ => 12,
        };
        let bytes = 4 * n * (3 + 2 * self.state.len() as u64);
        Ok(Op::threads(name, Shader::Optim, entry, &p, &buffers, self.len).with_cost(flops * n, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> std::result::Result<OptimizerConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    fn close(got: f64, want: f64) {
        assert!((got - want).abs() <= 1e-12 * want.abs().max(1e-12), "got {got}, want {want}");
    }

    #[test]
    fn defaults_are_pytorchs() {
        assert_eq!(
            parse(r#"{"kind": "sgd"}"#).unwrap().rule,
            UpdateRule::Sgd(SgdConfig { lr: 1e-3, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false })
        );
        assert_eq!(
            parse(r#"{"kind": "adam"}"#).unwrap().rule,
            UpdateRule::Adam(AdamConfig { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.0 })
        );
        assert_eq!(
            parse(r#"{"kind": "adamw"}"#).unwrap().rule,
            UpdateRule::AdamW(AdamConfig { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.01 })
        );
        assert_eq!(OptimizerConfig::default(), parse(r#"{"kind": "sgd"}"#).unwrap());
        assert_eq!(parse(r#"{"kind": "sgd"}"#).unwrap().schedule, Schedule::Constant);
    }

    #[test]
    fn parses_options_and_schedules() {
        let c = parse(
            r#"{"kind": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": true, "weight_decay": 5e-4,
                "schedule": {"kind": "step", "step_size": 30}}"#,
        )
        .unwrap();
        assert_eq!(c.rule, UpdateRule::Sgd(SgdConfig { lr: 0.1, momentum: 0.9, dampening: 0.0, weight_decay: 5e-4, nesterov: true }));
        assert_eq!(c.schedule, Schedule::Step { step_size: 30, gamma: 0.1 });
        c.validate().unwrap();
        let c = parse(r#"{"kind": "adamw", "betas": [0.8, 0.99], "schedule": {"kind": "cosine", "t_max": 45}}"#).unwrap();
        assert_eq!(c.rule, UpdateRule::AdamW(AdamConfig { lr: 1e-3, betas: [0.8, 0.99], eps: 1e-8, weight_decay: 0.01 }));
        assert_eq!(c.schedule, Schedule::Cosine { t_max: 45, eta_min: 0.0 });
        assert_eq!(parse(r#"{"kind": "adam", "schedule": {"kind": "constant"}}"#).unwrap().schedule, Schedule::Constant);
    }

    #[test]
    fn serializes_fully_resolved_and_round_trips() {
        for json in [
            r#"{"kind": "sgd", "momentum": 0.9, "dampening": 0.1}"#,
            r#"{"kind": "adam", "weight_decay": 0.1, "schedule": {"kind": "step", "step_size": 3, "gamma": 0.5}}"#,
            r#"{"kind": "adamw", "schedule": {"kind": "cosine", "t_max": 10, "eta_min": 1e-5}}"#,
        ] {
            let c = parse(json).unwrap();
            let text = serde_json::to_string(&c).unwrap();
            assert_eq!(parse(&text).unwrap(), c, "{text}");
        }
        let text = serde_json::to_string(&parse(r#"{"kind": "adamw"}"#).unwrap()).unwrap();
        for field in ["\"lr\"", "\"betas\"", "\"eps\"", "\"weight_decay\":0.01", "\"schedule\":{\"kind\":\"constant\"}"] {
            assert!(text.contains(field), "{text} lacks {field}");
        }
        assert!(!text.contains("momentum"), "{text}");
    }

    #[test]
    fn refuses_unknown_kinds_and_fields_by_name() {
        let e = parse(r#"{"kind": "rmsprop"}"#).unwrap_err();
        assert!(e.contains("rmsprop") && e.contains("sgd, adam, adamw"), "{e}");
        let e = parse(r#"{"kind": "adam", "momentum": 0.9}"#).unwrap_err();
        assert!(e.contains("optimizer.momentum") && e.contains("\"adam\""), "{e}");
        let e = parse(r#"{"kind": "sgd", "betas": [0.9, 0.99]}"#).unwrap_err();
        assert!(e.contains("optimizer.betas"), "{e}");
        let e = parse(r#"{"kind": "sgd", "learning_rate": 0.1}"#).unwrap_err();
        assert!(e.contains("learning_rate"), "{e}");
        let e = parse(r#"{"kind": "sgd", "schedule": {"kind": "cosine", "t_max": 3, "gamma": 0.5}}"#).unwrap_err();
        assert!(e.contains("gamma"), "{e}");
        let e = parse(r#"{"kind": "sgd", "schedule": {"kind": "step"}}"#).unwrap_err();
        assert!(e.contains("step_size"), "{e}");
        let e = parse(r#"{"lr": 0.1}"#).unwrap_err();
        assert!(e.contains("kind"), "{e}");
    }

    fn invalid_field(c: &OptimizerConfig) -> String {
        match c.validate() {
            Err(Error::InvalidOption { field, .. }) => field,
            other => panic!("expected an invalid option, got {other:?}"),
        }
    }

    #[test]
    fn validation_names_the_field() {
        let sgd = |f: &dyn Fn(&mut SgdConfig)| {
            let mut c = SgdConfig::default();
            f(&mut c);
            OptimizerConfig { rule: UpdateRule::Sgd(c), schedule: Schedule::Constant }
        };
        let adam = |f: &dyn Fn(&mut AdamConfig)| {
            let mut c = AdamConfig::adamw();
            f(&mut c);
            OptimizerConfig { rule: UpdateRule::AdamW(c), schedule: Schedule::Constant }
        };
        assert_eq!(invalid_field(&sgd(&|c| c.lr = 0.0)), "optimizer.lr");
        assert_eq!(invalid_field(&sgd(&|c| c.lr = -0.1)), "optimizer.lr");
        assert_eq!(invalid_field(&sgd(&|c| c.lr = f64::NAN)), "optimizer.lr");
        assert_eq!(invalid_field(&sgd(&|c| c.lr = f64::INFINITY)), "optimizer.lr");
        assert_eq!(invalid_field(&sgd(&|c| c.lr = 1e-50)), "optimizer.lr", "0 as f32");
        assert_eq!(invalid_field(&sgd(&|c| c.momentum = -0.1)), "optimizer.momentum");
        assert_eq!(invalid_field(&sgd(&|c| c.momentum = 1.0)), "optimizer.momentum");
        assert_eq!(invalid_field(&sgd(&|c| c.dampening = 1.5)), "optimizer.dampening");
        assert_eq!(invalid_field(&sgd(&|c| c.weight_decay = -1e-4)), "optimizer.weight_decay");
        assert_eq!(invalid_field(&sgd(&|c| c.nesterov = true)), "optimizer.nesterov");
        assert_eq!(
            invalid_field(&sgd(&|c| {
                c.nesterov = true;
                c.momentum = 0.9;
                c.dampening = 0.1;
            })),
            "optimizer.nesterov"
        );
        sgd(&|c| {
            c.nesterov = true;
            c.momentum = 0.9;
        })
        .validate()
        .unwrap();
        assert_eq!(invalid_field(&adam(&|c| c.betas[0] = 1.0)), "optimizer.betas[0]");
        assert_eq!(invalid_field(&adam(&|c| c.betas[1] = -0.5)), "optimizer.betas[1]");
        assert_eq!(invalid_field(&adam(&|c| c.betas[1] = f64::NAN)), "optimizer.betas[1]");
        assert_eq!(invalid_field(&adam(&|c| c.eps = 0.0)), "optimizer.eps");
        assert_eq!(invalid_field(&adam(&|c| c.weight_decay = -0.01)), "optimizer.weight_decay");
        assert_eq!(invalid_field(&adam(&|c| c.lr = 0.0)), "optimizer.lr");
        adam(&|c| c.betas = [0.0, 0.0]).validate().unwrap();

        let with = |s: Schedule| OptimizerConfig { schedule: s, ..Default::default() };
        assert_eq!(invalid_field(&with(Schedule::Step { step_size: 0, gamma: 0.1 })), "optimizer.schedule.step_size");
        assert_eq!(invalid_field(&with(Schedule::Step { step_size: 2, gamma: 0.0 })), "optimizer.schedule.gamma");
        assert_eq!(invalid_field(&with(Schedule::Step { step_size: 2, gamma: f64::NAN })), "optimizer.schedule.gamma");
        assert_eq!(invalid_field(&with(Schedule::Cosine { t_max: 0, eta_min: 0.0 })), "optimizer.schedule.t_max");
        assert_eq!(invalid_field(&with(Schedule::Cosine { t_max: 5, eta_min: -1.0 })), "optimizer.schedule.eta_min");
        let msg = with(Schedule::Cosine { t_max: 5, eta_min: -1.0 }).validate().unwrap_err().to_string();
        assert!(msg.contains("optimizer.schedule.eta_min") && msg.contains("-1"), "{msg}");
        let msg = sgd(&|c| c.lr = -0.1).validate().unwrap_err().to_string();
        assert!(msg.starts_with("optimizer.lr: must be a finite number > 0") && msg.ends_with("got -0.1"), "{msg}");
    }

    /// Values printed by PyTorch 2.15 (`torch.optim.lr_scheduler`, stepped once per epoch,
    /// reading `optimizer.param_groups[0]["lr"]` before each step) for base lr 0.1. PyTorch
    /// updates the lr recursively, so its values drift from the closed form by a few ulp per
    /// epoch (1e-12 relative covers hundreds of epochs).
    #[test]
    fn schedules_match_pytorch() {
        // StepLR(step_size=3, gamma=0.5)
        let step = Schedule::Step { step_size: 3, gamma: 0.5 };
        for (e, want) in [(0, 0.1), (2, 0.1), (3, 0.05), (5, 0.05), (6, 0.025), (9, 0.0125), (10, 0.0125)] {
            close(step.lr_at(0.1, e), want);
        }
        // CosineAnnealingLR(T_max=10, eta_min=1e-4), including past T_max.
        let cos = Schedule::Cosine { t_max: 10, eta_min: 1e-4 };
        for (e, want) in [
            (0, 0.1),
            (1, 0.09755527298894293),
            (3, 0.07940987335200904),
            (5, 0.050050000000000004),
            (9, 0.002544727011057081),
            (10, 0.0001),
            (11, 0.002544727011057081),
            (15, 0.050050000000000226),
            (20, 0.10000000000000045),
            (25, 0.05005000000000023),
        ] {
            close(cos.lr_at(0.1, e), want);
        }
        assert_eq!(Schedule::Constant.lr_at(0.1, 1000), 0.1);
    }

    #[test]
    fn hyper_values() {
        let sgd = UpdateRule::Sgd(SgdConfig { momentum: 0.9, ..Default::default() });
        assert_eq!(sgd.hyper(0.1, 1).unwrap(), [0.1, 1.0, 0.0, 0.0]);
        assert_eq!(sgd.hyper(0.1, 2).unwrap(), [0.1, 0.0, 0.0, 0.0]);
        let adamw = UpdateRule::AdamW(AdamConfig::adamw());
        let h = adamw.hyper(1e-3, 1).unwrap();
        assert_eq!(h, [1e-3, (1e-3 / (1.0 - 0.9f64)) as f32, (1.0 - 0.999f64).sqrt() as f32, (1.0 - 1e-5f64) as f32]);
        let adam = UpdateRule::Adam(AdamConfig::adam());
        assert_eq!(adam.hyper(1e-3, 2).unwrap()[3], 1.0);
        assert!(adam.hyper(1e-3, 0).is_err());
        assert!(adam.hyper(-1e-3, 1).is_err());
        assert!(adam.hyper(f64::NAN, 1).is_err());
        assert_eq!(adam.hyper(0.0, 5).unwrap()[1], 0.0, "lr 0 (end of a cosine) is a valid step");
        let steep = UpdateRule::Adam(AdamConfig { betas: [0.999_999_999, 0.999], ..AdamConfig::adam() });
        assert!(steep.hyper(1e35, 1).is_err(), "lr / (1 − β1) = 1e44 is not an f32");
        // A long run: β^t underflows to 0 and the corrections reach 1.
        assert_eq!(adam.hyper(1e-3, u64::MAX).unwrap(), [1e-3, 1e-3, 1.0, 1.0]);
    }

    #[test]
    fn with_kind_keeps_lr_and_schedule() {
        let c = OptimizerConfig {
            rule: UpdateRule::Sgd(SgdConfig { lr: 0.05, momentum: 0.9, ..Default::default() }),
            schedule: Schedule::Cosine { t_max: 4, eta_min: 0.0 },
        };
        assert_eq!(c.with_kind("sgd").unwrap(), c);
        let a = c.with_kind("adamw").unwrap();
        assert_eq!(a.rule, UpdateRule::AdamW(AdamConfig { lr: 0.05, ..AdamConfig::adamw() }));
        assert_eq!(a.schedule, c.schedule);
        assert!(matches!(c.with_kind("lbfgs"), Err(Error::InvalidOption { .. })));
    }
}
