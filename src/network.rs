//! A [`Model`] on the GPU for one batch size: parameter, gradient and activation buffers, and
//! the dispatches of the training step (forward, loss, backward) and of evaluation.
//!
//! Buffers: parameters and gradients are each ONE flat buffer with an aligned view per tensor
//! (so the optimizer is one dispatch); activations are one buffer per layer output, and the
//! gradient with respect to it beside it. Flatten is a view: it shares its input's buffers.

use crate::config::LayerSpec;
use crate::error::{Error, Result};
use crate::gpu::{Buffer, DType, Gpu, Op};
use crate::layers::activation::{self, Activation};
use crate::layers::avg_pool3d::{self, AvgPool3d};
use crate::layers::batch_norm::BatchNorm;
use crate::layers::conv3d::{Conv3d, ConvScratch};
use crate::layers::dense::Dense;
use crate::layers::dropout::Dropout;
use crate::layers::max_pool3d::{self, MaxPool3d};
use crate::layers::softmax_xent::SoftmaxXent;
use crate::model::{Layer, Model};

/// Buffers shared by every batch size of one run: the trained state.
pub struct State {
    pub params: Buffer,
    /// One view per [`Model::params`] tensor, in that order.
    pub param_views: Vec<Buffer>,
    pub grads: Buffer,
    pub grad_views: Vec<Buffer>,
    /// One per [`Model::buffers`] tensor (running statistics).
    pub buffers: Vec<Buffer>,
    /// The dropout step counter (u32), rewritten by the host before each training step.
    pub step: Buffer,
    /// Epoch metric sums: Σ loss·batch (f32) and Σ correct (u32).
    pub loss_sum: Buffer,
    pub correct_sum: Buffer,
}

impl State {
    pub fn new(gpu: &Gpu, model: &Model) -> Result<State> {
        let names: Vec<(&str, usize)> = model.params().map(|t| (t.name.as_str(), t.len())).collect();
        let (params, param_views) = gpu.flat("params", &names, DType::F32)?;
        let (grads, grad_views) = gpu.flat("grads", &names, DType::F32)?;
        let buffers = model
            .buffers()
            .zip(model.init_buffers())
            .map(|(t, v)| gpu.upload_f32(&t.name, &v))
            .collect::<Result<Vec<_>>>()?;
        Ok(State {
            params,
            param_views,
            grads,
            grad_views,
            buffers,
            step: gpu.zeros("dropout step", 1, DType::U32)?,
            loss_sum: gpu.zeros("loss_sum", 1, DType::F32)?,
            correct_sum: gpu.zeros("correct_sum", 1, DType::U32)?,
        })
    }
}

impl State {
    /// Writes every parameter tensor (in [`Model::params`] order).
    pub fn write_params(&self, gpu: &Gpu, values: &[Vec<f32>]) -> Result<()> {
        write_all(gpu, &self.param_views, values, "parameter")
    }

    /// Writes every buffer tensor (in [`Model::buffers`] order).
    pub fn write_buffers(&self, gpu: &Gpu, values: &[Vec<f32>]) -> Result<()> {
        write_all(gpu, &self.buffers, values, "buffer")
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_params(&self, gpu: &Gpu) -> Result<Vec<Vec<f32>>> {
        self.param_views.iter().map(|v| gpu.read_f32(v)).collect()
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_grads(&self, gpu: &Gpu) -> Result<Vec<Vec<f32>>> {
        self.grad_views.iter().map(|v| gpu.read_f32(v)).collect()
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_buffers(&self, gpu: &Gpu) -> Result<Vec<Vec<f32>>> {
        self.buffers.iter().map(|v| gpu.read_f32(v)).collect()
    }

    /// [`State::read_params`] without blocking (see [`Gpu::read_f32_async`]).
    pub async fn read_params_async(&self, gpu: &Gpu) -> Result<Vec<Vec<f32>>> {
        read_all_async(gpu, &self.param_views).await
    }

    /// [`State::read_grads`] without blocking.
    pub async fn read_grads_async(&self, gpu: &Gpu) -> Result<Vec<Vec<f32>>> {
        read_all_async(gpu, &self.grad_views).await
    }

    /// [`State::read_buffers`] without blocking.
    pub async fn read_buffers_async(&self, gpu: &Gpu) -> Result<Vec<Vec<f32>>> {
        read_all_async(gpu, &self.buffers).await
    }
}

async fn read_all_async(gpu: &Gpu, views: &[Buffer]) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(views.len());
    for v in views {
        out.push(gpu.read_f32_async(v).await?);
    }
    Ok(out)
}

fn write_all(gpu: &Gpu, views: &[Buffer], values: &[Vec<f32>], what: &str) -> Result<()> {
    if views.len() != values.len() {
        return Err(Error::shape("model", format!("expected {} {what} tensors, got {}", views.len(), values.len())));
    }
    for (v, data) in views.iter().zip(values) {
        if v.len() != data.len() {
            return Err(Error::shape(v.label(), format!("expected {} values, got {}", v.len(), data.len())));
        }
        gpu.write_f32(v, data)?;
    }
    Ok(())
}

/// What one layer computes with, for one batch size.
pub(crate) enum Kernel {
    Conv(Conv3d),
    MaxPool(MaxPool3d, [usize; 5]),
    AvgPool(AvgPool3d, [usize; 5]),
    Act(Activation),
    Norm(BatchNorm),
    Drop(Dropout),
    Flatten,
    Dense(Dense),
}

impl Kernel {
    /// The geometry of `layer` for `n` samples; errors name the layer.
    pub(crate) fn for_layer(layer: &Layer, n: usize, seed: u64) -> Result<Kernel> {
        let x_shape = &layer.input;
        let at = |e: Error| Error::shape(layer.describe(), e.to_string());
        Ok(match &layer.spec {
            LayerSpec::Conv3d { out_channels, kernel, stride, padding, dilation, bias, .. } => {
                let c = Conv3d::new(n, x_shape[0], *out_channels, [x_shape[1], x_shape[2], x_shape[3]], kernel.dims())
                    .with_stride(stride.dims())
                    .with_padding(padding.dims())
                    .with_dilation(dilation.dims())
                    .with_bias(*bias);
                c.output().map_err(at)?;
                Kernel::Conv(c)
            }
            LayerSpec::MaxPool3d { kernel, stride, padding, dilation, .. } => Kernel::MaxPool(
                MaxPool3d::new(kernel.dims(), stride.unwrap_or(*kernel).dims(), padding.dims(), dilation.dims()).map_err(at)?,
                batched5(n, x_shape),
            ),
            LayerSpec::AvgPool3d { kernel, stride, padding, .. } => Kernel::AvgPool(
                AvgPool3d::new(kernel.dims(), stride.unwrap_or(*kernel).dims(), padding.dims()).map_err(at)?,
                batched5(n, x_shape),
            ),
            LayerSpec::Relu { .. } => Kernel::Act(Activation::Relu),
            LayerSpec::LeakyRelu { slope, .. } => Kernel::Act(Activation::LeakyRelu(*slope)),
            LayerSpec::Sigmoid { .. } => Kernel::Act(Activation::Sigmoid),
            LayerSpec::Tanh { .. } => Kernel::Act(Activation::Tanh),
            LayerSpec::BatchNorm { eps, momentum, .. } => {
                let mut shape = vec![n];
                shape.extend_from_slice(x_shape);
                Kernel::Norm(BatchNorm::new(&shape).and_then(|b| b.with_eps(*eps)).and_then(|b| b.with_momentum(*momentum)).map_err(at)?)
            }
            LayerSpec::Dropout { p, .. } => Kernel::Drop(Dropout::new(*p, dropout_seed(seed, layer.index)).map_err(at)?),
            LayerSpec::Flatten { .. } => Kernel::Flatten,
            LayerSpec::Dense { out_features, bias, .. } => Kernel::Dense(Dense::new(n, x_shape[0], *out_features, *bias).map_err(at)?),
        })
    }
}

/// Each dropout layer's mask seed, from the run's seed and the layer's position.
pub(crate) fn dropout_seed(seed: u64, layer_index: usize) -> u32 {
    crate::rng::Rng::new(seed ^ (layer_index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64() as u32
}

/// Whether layer `li`'s output and its gradient can share one buffer, because the pass that
/// writes the gradient is the last to read the output:
/// - a pool whose output feeds a convolution: the convolution's backward reads its input for
///   the weight gradient before it writes the input gradient (and a pool's own backward reads
///   only dy and its indices);
/// - a convolution whose output goes (through a relu / leaky_relu fused into the pool, or
///   directly) into a max pool whose windows tile it: the pool's backward writes the gradient
///   over the output in place (the convolution's own backward reads its input and dy only).
fn dy_over_y(model: &Model, li: usize) -> bool {
    let spec = |k: usize| model.layers.get(k).map(|l| &l.spec);
    match spec(li) {
        Some(LayerSpec::MaxPool3d { .. } | LayerSpec::AvgPool3d { .. }) => return matches!(spec(li + 1), Some(LayerSpec::Conv3d { .. })),
        Some(LayerSpec::Conv3d { .. }) => {}
        _ => return false,
    }
    let pool = match spec(li + 1) {
        Some(LayerSpec::Relu { .. } | LayerSpec::LeakyRelu { .. }) => li + 2,
        _ => li + 1,
    };
    let out = &model.layers[li].output;
    match model.layers.get(pool).map(|l| Kernel::for_layer(l, 1, 0)) {
        Some(Ok(Kernel::MaxPool(p, _))) => p.tiles([out[1], out[2], out[3]]),
        _ => false,
    }
}

struct Node {
    /// The label prefix of its dispatches: the layer's name.
    name: String,
    kernel: Kernel,
    /// Indices into State::param_views / grad_views, and State::buffers.
    params: Vec<usize>,
    buffers: Vec<usize>,
    /// Output, and the gradient with respect to it (one buffer where [`dy_over_y`]).
    y: Buffer,
    dy: Buffer,
    /// Max pooling's argmax, batch norm's saved mean and invstd.
    aux: Vec<Buffer>,
    /// A convolution's (or a dense layer's, run as one) weight blocks and partial sums.
    conv: Option<ConvScratch>,
    /// Whether any earlier layer has parameters, i.e. whether dx is needed at all.
    needs_dx: bool,
    /// An activation whose work the next layer (a max pool) does: it dispatches nothing, and
    /// its y and dy are its input's buffers.
    fused_into_next: bool,
    /// A max pool's fused activation (the previous layer).
    fused_act: Option<Activation>,
}

/// The model for a fixed batch size, over a shared [`State`].
pub struct Network {
    pub batch: usize,
    /// Input activations (N, C, D, H, W), written by the batch gather.
    pub input: Buffer,
    /// Labels (N) as u32, written by the batch gather.
    pub labels: Buffer,
    pub loss: Buffer,
    pub correct: Buffer,
    nodes: Vec<Node>,
    xent: SoftmaxXent,
}

/// The elements of `batch` samples of per-sample shape `s`, refused (naming the tensor, the
/// batch and the limit) when the count passes what the shaders can index: no size that a flag
/// or a config controls wraps before the buffer limits are checked.
fn batch_len(tensor: &str, batch: usize, s: &[usize]) -> Result<usize> {
    let per = crate::model::count(s).unwrap_or(usize::MAX);
    match batch.checked_mul(per) {
        Some(n) if n as u64 <= crate::model::MAX_TENSOR_ELEMENTS => Ok(n),
        _ => Err(Error::shape(
            tensor,
            format!(
                "a batch of {batch} samples of {s:?} has more than {} elements (the shaders index a tensor with 32 bits); at most {} samples of it fit",
                crate::model::MAX_TENSOR_ELEMENTS,
                crate::model::MAX_TENSOR_ELEMENTS / per.max(1) as u64
            ),
        )),
    }
}

/// `[N, C, D, H, W]` of a per-sample (C, D, H, W) shape.
fn batched5(n: usize, s: &[usize]) -> [usize; 5] {
    [n, s[0], s[1], s[2], s[3]]
}

impl Network {
    /// Allocates activations for `batch` samples and resolves every layer's geometry.
    pub fn new(gpu: &Gpu, model: &Model, batch: usize, seed: u64) -> Result<Network> {
        if batch == 0 {
            return Err(Error::shape("network", "batch size must be positive"));
        }
        // Every tensor's element count first, so that no later size computation can wrap.
        let input_len = batch_len("input", batch, &model.input)?;
        let out_lens =
            model.layers.iter().map(|l| batch_len(&format!("{}.y", l.name), batch, &l.output)).collect::<Result<Vec<_>>>()?;
        let kernels = model.layers.iter().map(|l| Kernel::for_layer(l, batch, seed)).collect::<Result<Vec<_>>>()?;
        // A convolution's input gets the slack that lets its weight gradient read it in windows
        // in place (see Conv3d::input_slack).
        let slack: Vec<usize> = kernels.iter().map(|k| if let Kernel::Conv(c) = k { c.input_slack() } else { 0 }).collect();
        // (Without the slack where that would pass the adapter's buffer limits, or at f16,
        // whose windows no uniform block holds: the kernel then reads an f32 copy.)
        let alloc = |label: String, len: usize, next: usize| match slack.get(next) {
            Some(&extra)
                if extra > 0 && gpu.activations() == DType::F32 && len.checked_add(extra).is_some_and(|n| gpu.check_fits(&label, n).is_ok()) =>
            {
                gpu.zeros_windowed(&label, len, extra)
            }
            _ => gpu.zeros_act(&label, len),
        };
        let input = alloc("input".into(), input_len, 0)?;
        let labels = gpu.zeros("labels", batch, DType::U32)?;
        let mut nodes: Vec<Node> = vec![];
        let (mut p_index, mut b_index) = (0, 0);
        let mut seen_params = false;
        for (li, (layer, kernel)) in model.layers.iter().zip(kernels).enumerate() {
            // relu or leaky_relu then max pooling: one pass (shaders/max_pool3d.wgsl), so the
            // activation's full-size output and gradient are never written.
            let fused_into_next = matches!(kernel, Kernel::Act(a) if max_pool3d::fuses(a))
                && matches!(model.layers.get(li + 1).map(|l| &l.spec), Some(LayerSpec::MaxPool3d { .. }));
            let fused_act = match (&kernel, nodes.last()) {
                (Kernel::MaxPool(..), Some(prev)) if prev.fused_into_next => match prev.kernel {
                    Kernel::Act(a) => Some(a),
                    _ => None,
                },
                _ => None,
            };
            let params: Vec<usize> = (p_index..p_index + layer.params.len()).collect();
            let buffers: Vec<usize> = (b_index..b_index + layer.buffers.len()).collect();
            p_index += params.len();
            b_index += buffers.len();
            let out_len = out_lens[li];
            let view = matches!(kernel, Kernel::Flatten) || fused_into_next;
            let (y, dy) = match (view, nodes.last()) {
                // A view: the same buffers as its input.
                (true, Some(prev)) => (prev.y.clone(), prev.dy.clone()),
                (true, None) => (input.clone(), gpu.zeros_act(&format!("{}.dx", layer.name), out_len)?),
                _ => {
                    let y = alloc(format!("{}.y", layer.name), out_len, li + 1)?;
                    let dy = if dy_over_y(model, li) { y.clone() } else { gpu.zeros_act(&format!("{}.dy", layer.name), out_len)? };
                    (y, dy)
                }
            };
            let aux = match &kernel {
                Kernel::MaxPool(..) => vec![gpu.zeros(&format!("{}.indices", layer.name), out_len, DType::U32)?],
                Kernel::Norm(_) => vec![
                    gpu.zeros(&format!("{}.mean", layer.name), layer.input[0], DType::F32)?,
                    gpu.zeros(&format!("{}.invstd", layer.name), layer.input[0], DType::F32)?,
                ],
                _ => vec![],
            };
            let conv = match &kernel {
                Kernel::Conv(c) => {
                    let x = nodes.last().map_or(&input, |prev| &prev.y);
                    Some(crate::tune::scratch(gpu, c, seen_params, Some(x)).map_err(|e| Error::shape(layer.describe(), e.to_string()))?)
                }
                Kernel::Dense(d) => Some(crate::tune::scratch(gpu, &d.as_conv(), seen_params, None).map_err(|e| Error::shape(layer.describe(), e.to_string()))?),
                _ => None,
            };
            // Dispatches carry the layer's name; a fused pair's both: `conv_layer1.1+conv_layer1.2`.
            let name = match (fused_act, nodes.last()) {
                (Some(_), Some(prev)) => format!("{}+{}", prev.name, layer.name),
                _ => layer.name.clone(),
            };
            nodes.push(Node {
                name,
                kernel,
                params,
                buffers,
                y,
                dy,
                aux,
                conv,
                needs_dx: seen_params,
                fused_into_next,
                fused_act,
            });
            seen_params |= !layer.params.is_empty();
        }
        Ok(Network {
            batch,
            input,
            labels,
            loss: gpu.zeros("loss", 1, DType::F32)?,
            correct: gpu.zeros("correct", 1, DType::U32)?,
            xent: SoftmaxXent::new(batch, model.classes)?,
            nodes,
        })
    }

    /// The logits buffer (N, classes).
    pub fn logits(&self) -> &Buffer {
        &self.nodes.last().expect("a model has layers").y
    }

    /// Forward in training mode (batch statistics, dropout on), loss, metric sums, backward.
    pub fn train_ops(&self, state: &State) -> Result<Vec<Op>> {
        let mut ops = self.forward_ops(state, true)?;
        let logits = self.logits();
        ops.push(self.xent.forward(logits, &self.labels, &self.loss, &self.correct)?);
        ops.push(self.xent.accumulate(&self.loss, &self.correct, &state.loss_sum, &state.correct_sum)?);
        ops.push(self.xent.backward(logits, &self.labels, &self.nodes.last().unwrap().dy)?);
        ops.extend(self.backward_ops(state)?);
        Ok(ops)
    }

    /// Forward in eval mode (running statistics, no dropout), loss and metric sums.
    pub fn eval_ops(&self, state: &State) -> Result<Vec<Op>> {
        let mut ops = self.forward_ops(state, false)?;
        let logits = self.eval_logits();
        ops.push(self.xent.forward(logits, &self.labels, &self.loss, &self.correct)?);
        ops.push(self.xent.accumulate(&self.loss, &self.correct, &state.loss_sum, &state.correct_sum)?);
        Ok(ops)
    }

    /// Forward in eval mode only (for predictions): the logits are [`Network::eval_logits`].
    pub fn predict_ops(&self, state: &State) -> Result<Vec<Op>> {
        self.forward_ops(state, false)
    }

    /// The buffer holding the logits after the eval-mode forward (dropout is skipped there, so
    /// a trailing dropout leaves them in its input).
    pub fn eval_logits(&self) -> &Buffer {
        self.eval_outputs().last().copied().unwrap_or(&self.input)
    }

    /// The output buffer of each layer in eval mode: dropout passes its input through.
    fn eval_outputs(&self) -> Vec<&Buffer> {
        let mut outs: Vec<&Buffer> = vec![];
        for node in &self.nodes {
            let prev = outs.last().copied().unwrap_or(&self.input);
            outs.push(match node.kernel {
                Kernel::Drop(_) => prev,
                Kernel::Flatten => prev,
                _ if node.fused_into_next => prev,
                _ => &node.y,
            });
        }
        outs
    }

    fn forward_ops(&self, state: &State, train: bool) -> Result<Vec<Op>> {
        let mut ops = vec![];
        let eval_outs = self.eval_outputs();
        for (i, node) in self.nodes.iter().enumerate() {
            let x = match (train, i) {
                (_, 0) => &self.input,
                (true, _) => &self.nodes[i - 1].y,
                (false, _) => eval_outs[i - 1],
            };
            let p = |k: usize| &state.param_views[node.params[k]];
            let named = |op: Op| op.named(&node.name);
            match &node.kernel {
                Kernel::Conv(c) => {
                    let bias = c.has_bias.then(|| p(1));
                    let scratch = node.conv.as_ref().expect("conv nodes have scratch");
                    ops.extend(c.forward(x, p(0), bias, &node.y, scratch)?.into_iter().map(named));
                }
                Kernel::MaxPool(pool, shape) => {
                    ops.push(named(max_pool3d::forward_with(pool, *shape, x, &node.y, &node.aux[0], node.fused_act)?))
                }
                Kernel::AvgPool(pool, shape) => ops.push(named(avg_pool3d::forward(pool, *shape, x, &node.y)?)),
                Kernel::Act(_) if node.fused_into_next => {}
                Kernel::Act(a) => ops.push(named(activation::forward(*a, x, &node.y)?)),
                Kernel::Norm(bn) => {
                    let (rm, rv) = (&state.buffers[node.buffers[0]], &state.buffers[node.buffers[1]]);
                    if train {
                        for op in bn.forward_train(x, p(0), p(1), rm, rv, &node.y, &node.aux[0], &node.aux[1])? {
                            ops.push(named(op));
                        }
                    } else {
                        ops.push(named(bn.forward_eval(x, p(0), p(1), rm, rv, &node.y)?));
                    }
                }
                Kernel::Drop(d) => {
                    if train {
                        ops.push(named(d.forward(&state.step, x, &node.y)?));
                    }
                }
                Kernel::Flatten => {}
                Kernel::Dense(d) => {
                    // On the tiled convolution kernels (see Dense::as_conv).
                    let bias = d.bias.then(|| p(1));
                    let scratch = node.conv.as_ref().expect("dense nodes have scratch");
                    ops.extend(d.as_conv().forward(x, p(0), bias, &node.y, scratch)?.into_iter().map(named));
                }
            }
        }
        Ok(ops)
    }

    fn backward_ops(&self, state: &State) -> Result<Vec<Op>> {
        let mut ops = vec![];
        for (i, node) in self.nodes.iter().enumerate().rev() {
            let x = if i == 0 { &self.input } else { &self.nodes[i - 1].y };
            let dx = if i == 0 { None } else { Some(&self.nodes[i - 1].dy) }.filter(|_| node.needs_dx);
            let p = |k: usize| &state.param_views[node.params[k]];
            let g = |k: usize| &state.grad_views[node.params[k]];
            let named = |op: Op| op.named(&node.name);
            match &node.kernel {
                Kernel::Conv(c) => {
                    let scratch = node.conv.as_ref().expect("conv nodes have scratch");
                    // Weight first: dx may be x's own buffer (see dy_over_y).
                    ops.extend(c.backward_weight(x, &node.dy, g(0), scratch)?.into_iter().map(named));
                    if c.has_bias {
                        ops.push(named(c.backward_bias(&node.dy, g(1))?));
                    }
                    if let Some(dx) = dx {
                        ops.extend(c.backward_input(&node.dy, p(0), dx, scratch)?.into_iter().map(named));
                    }
                }
                Kernel::MaxPool(pool, shape) => {
                    if let Some(dx) = dx {
                        // Fused: x and dx are the activation's input and its gradient (views).
                        let act = node.fused_act.map(|a| (a, x));
                        ops.extend(max_pool3d::backward_with(pool, *shape, &node.aux[0], &node.dy, dx, act)?.into_iter().map(named));
                    }
                }
                Kernel::AvgPool(pool, shape) => {
                    if let Some(dx) = dx {
                        ops.push(named(avg_pool3d::backward(pool, *shape, &node.dy, dx)?));
                    }
                }
                Kernel::Act(_) if node.fused_into_next => {}
                Kernel::Act(a) => {
                    if let Some(dx) = dx {
                        ops.push(named(activation::backward(*a, x, &node.y, &node.dy, dx)?));
                    }
                }
                Kernel::Norm(bn) => {
                    // dx is needed by backward_input's formula only as an output; batch norm
                    // always computes its parameter gradients.
                    let (mean, invstd) = (&node.aux[0], &node.aux[1]);
                    match dx {
                        Some(dx) => {
                            for op in bn.backward(x, mean, invstd, p(0), &node.dy, dx, g(0), g(1))? {
                                ops.push(named(op));
                            }
                        }
                        None => ops.push(named(bn.backward_params(x, mean, invstd, &node.dy, g(0), g(1))?)),
                    }
                }
                Kernel::Drop(d) => {
                    if let Some(dx) = dx {
                        ops.push(named(d.backward(&state.step, &node.dy, dx)?));
                    }
                }
                Kernel::Flatten => {}
                Kernel::Dense(d) => {
                    let c = d.as_conv();
                    let scratch = node.conv.as_ref().expect("dense nodes have scratch");
                    ops.extend(c.backward_weight(x, &node.dy, g(0), scratch)?.into_iter().map(named));
                    if d.bias {
                        // dense's own: one position per sample suits it better (lavapipe, fc1:
                        // 0.5 ms vs the convolution's 6.7 ms).
                        ops.push(named(d.backward_bias(&node.dy, g(1))?));
                    }
                    if let Some(dx) = dx {
                        ops.extend(c.backward_input(&node.dy, p(0), dx, scratch)?.into_iter().map(named));
                    }
                }
            }
        }
        Ok(ops)
    }
}
