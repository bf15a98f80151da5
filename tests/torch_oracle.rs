//! PyTorch as the outside oracle: `tests/fixtures/torch_kernels.json` (written by
//! `tests/fixtures/make_torch_kernels.py`) holds inputs, outputs and gradients computed by
//! PyTorch in float64. Both the CPU reference and the GPU kernels must reproduce them: for
//! conv3d and dense (which training runs as a 1×1×1 convolution), every convolution kernel
//! the device offers, not only the defaults an untuned device runs.

mod common;
use common::gpu;

use cnn3d::check::{compare, compare_f64, compare_u32, KernelReport, Tol};
use cnn3d::gpu::{Buffer, DType, Op};
use cnn3d::layers::activation::Activation;
use cnn3d::layers::{avg_pool3d::AvgPool3d, batch_norm::BatchNorm, conv3d::Conv3d, conv3d::ConvChoice, dense::Dense};
use cnn3d::layers::{max_pool3d::MaxPool3d, softmax_xent::SoftmaxXent};
use cnn3d::{layers, reference};
use serde_json::Value;

/// The reference is f64 on the same (f32-representable) inputs: it must agree with PyTorch's
/// f64 to the fixture's 10 significant digits.
const REF_TOL: Tol = Tol::new(1e-8, 1e-7);
/// The GPU computes in f32: sums of at most a few hundred terms of magnitude ≤ 1 here, so
/// errors stay near 1e-6 (a few hundred × 2^-24 in the worst case).
const GPU_TOL: Tol = Tol::new(2e-5, 1e-5);

fn cases(layer: &str) -> Vec<Value> {
    let text = include_str!("fixtures/torch_kernels.json");
    let doc: Value = serde_json::from_str(text).expect("torch_kernels.json parses");
    let all: Vec<Value> = doc["cases"].as_array().unwrap().iter().filter(|c| c["layer"] == layer).cloned().collect();
    assert!(!all.is_empty(), "no {layer} cases in the fixture");
    all
}

fn f(c: &Value, key: &str) -> Vec<f64> {
    c[key].as_array().unwrap_or_else(|| panic!("fixture lacks {key}")).iter().map(|v| v.as_f64().unwrap()).collect()
}
/// An input: every fixture input is an f32 value (printed to 10 digits); rounding it back to f32
/// gives the reference exactly what PyTorch and the GPU saw.
fn input(c: &Value, key: &str) -> Vec<f64> {
    f(c, key).iter().map(|&v| v as f32 as f64).collect()
}
fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}
fn u(c: &Value, key: &str) -> Vec<usize> {
    c[key].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect()
}
fn d3(c: &Value, key: &str) -> [usize; 3] {
    let v = u(c, key);
    [v[0], v[1], v[2]]
}
fn up(v: &[f64]) -> Buffer {
    gpu().upload_f32("fixture", &f32s(v)).unwrap()
}
fn zeros(n: usize) -> Buffer {
    gpu().zeros("out", n, DType::F32).unwrap()
}
fn read(b: &Buffer) -> Vec<f32> {
    gpu().read_f32(b).unwrap()
}
fn run(ops: Vec<Op>) {
    gpu().run_ops(&ops).unwrap()
}

/// Collects comparisons and fails with every failing one described.
#[derive(Default)]
struct Judge(Vec<KernelReport>);
impl Judge {
    fn reference(&mut self, name: &str, got: &[f64], want: &[f64]) {
        self.0.push(compare_f64(&format!("reference {name}"), "", got, want, REF_TOL));
    }
    fn gpu(&mut self, name: &str, got: &[f32], want: &[f64]) {
        self.0.push(compare(&format!("gpu {name}"), "", got, want, GPU_TOL));
    }
    fn finish(self) {
        let bad: Vec<String> = self.0.iter().filter(|r| !r.pass).map(|r| r.describe()).collect();
        assert!(bad.is_empty(), "disagreements with PyTorch:\n{}", bad.join("\n"));
    }
}

/// PyTorch's results for one convolution: inputs and what each pass must give.
struct ConvCase<'a> {
    what: &'a str,
    x: Vec<f64>,
    w: Vec<f64>,
    b: Option<Vec<f64>>,
    dy: Vec<f64>,
    y: Vec<f64>,
    dx: Vec<f64>,
    dweight: Vec<f64>,
}

/// Runs `g` on the GPU against PyTorch's results with every kernel the device offers for it
/// (`Conv3d::candidates`, as the tuner would try them: forward and backward_input with each
/// kernel that suits the pass, backward_weight with each weight kernel), each named in its
/// report; returns the kernels run, as `pass Kernel`.
fn conv_every_kernel(j: &mut Judge, g: &Conv3d, c: &ConvCase) -> Vec<String> {
    let (kernels, weight) = g.candidates(gpu());
    let base = g.default_choice(gpu());
    let mut ran = vec![];
    let (xb, wb, dyb) = (up(&c.x), up(&c.w), up(&c.dy));
    let bb = c.b.as_ref().map(|b| up(b));
    let mut choices = vec![];
    for &k in &kernels {
        if k.suits(g.c_out) {
            choices.push((format!("forward {k:?}"), ConvChoice { forward: k, ..base }));
        }
        if k.suits(g.c_in) {
            choices.push((format!("backward_input {k:?}"), ConvChoice { backward_input: k, ..base }));
        }
    }
    for &k in &weight {
        choices.push((format!("backward_weight {k:?}"), ConvChoice { backward_weight: k, ..base }));
    }
    for (kernel, choice) in choices {
        let scratch = g.scratch_with(gpu(), choice).unwrap_or_else(|e| panic!("{}: {kernel} is a candidate but cannot run: {e}", c.what));
        let name = |pass: &str| format!("{} {pass} (kernel {kernel}, choice {choice})", c.what);
        if kernel.starts_with("forward") {
            let yb = zeros(c.y.len());
            run(g.forward(&xb, &wb, bb.as_ref(), &yb, &scratch).unwrap());
            j.gpu(&name("forward"), &read(&yb), &c.y);
        } else if kernel.starts_with("backward_input") {
            let dxb = zeros(c.x.len());
            run(g.backward_input(&dyb, &wb, &dxb, &scratch).unwrap());
            j.gpu(&name("backward_input"), &read(&dxb), &c.dx);
        } else {
            let dwb = zeros(c.w.len());
            run(g.backward_weight(&xb, &dyb, &dwb, &scratch).unwrap());
            j.gpu(&name("backward_weight"), &read(&dwb), &c.dweight);
        }
        ran.push(kernel);
    }
    // Each kernel offered ran at least once (a wide kernel suits at least one pass where it
    // is offered), so the oracle judges every family, not only the defaults.
    for k in kernels.iter().map(|k| format!("{k:?}")).chain(weight.iter().map(|k| format!("{k:?}"))) {
        assert!(ran.iter().any(|r| r.ends_with(&format!(" {k}"))), "{}: kernel {k} is offered but was not compared; ran {ran:?}", c.what);
    }
    eprintln!("{}: compared with PyTorch on {ran:?}", c.what);
    ran
}

/// Each sample's `c` channels of `inner` values, repeated `reps` times along the channels:
/// channel `i + c·r` is channel `i`.
fn repeat_channels(v: &[f64], c: usize, inner: usize, reps: usize) -> Vec<f64> {
    v.chunks(c * inner).flat_map(|s| std::iter::repeat_n(s, reps).flatten().copied()).collect()
}

/// The same convolution with its channels repeated past 16 (input channels `r_i` times,
/// output channels `r_o` times), so that the kernels the fixtures' few channels never offer
/// (the wide ones, from 17 channels; rows, from 16 output channels) are compared with PyTorch
/// too: PyTorch's results carry over exactly. With x, the weight's two channel axes and dy
/// repeated, y' = r_i·(y − b) + b (bias unrepeated in value), dx' = r_o·dx repeated, and
/// dweight' = dweight repeated, all in f64 from the fixture's values.
fn widened(g: &Conv3d, c: &ConvCase, what: &str) -> (Conv3d, String, [Vec<f64>; 7]) {
    let (r_i, r_o) = (17usize.div_ceil(g.c_in), 17usize.div_ceil(g.c_out));
    let w2 = Conv3d { c_in: g.c_in * r_i, c_out: g.c_out * r_o, ..*g };
    let x_inner: usize = g.input.iter().product();
    let y_inner = c.y.len() / (g.n * g.c_out);
    let taps: usize = g.kernel.iter().product();
    let x = repeat_channels(&c.x, g.c_in, x_inner, r_i);
    let w = repeat_channels(&repeat_channels(&c.w, g.c_in, taps, r_i), g.c_out, g.c_in * r_i * taps, r_o);
    let b = c.b.as_ref().map(|b| repeat_channels(b, g.c_out, 1, r_o)).unwrap_or_default();
    let dy = repeat_channels(&c.dy, g.c_out, y_inner, r_o);
    let y = repeat_channels(&c.y, g.c_out, y_inner, r_o)
        .iter()
        .enumerate()
        .map(|(k, &y)| {
            let bias = b.get(k / y_inner % w2.c_out).copied().unwrap_or(0.0);
            r_i as f64 * (y - bias) + bias
        })
        .collect();
    let dx = repeat_channels(&c.dx, g.c_in, x_inner, r_i).iter().map(|&v| r_o as f64 * v).collect();
    let dweight = repeat_channels(&repeat_channels(&c.dweight, g.c_in, taps, r_i), g.c_out, g.c_in * r_i * taps, r_o);
    let name = format!("{what} widened to c_in {} c_out {}", w2.c_in, w2.c_out);
    (w2, name, [x, w, b, dy, y, dx, dweight])
}

/// conv3d against PyTorch: the reference, and the GPU with every kernel of every pass that the
/// device offers for the case (not only the defaults an untuned device runs), on the fixture's
/// geometry and on it widened past 16 channels (see [`widened`]), so that every kernel the
/// device can run (wide, rows, samples, subgroups) is compared at least once.
#[test]
fn conv3d_matches_pytorch() {
    let mut j = Judge::default();
    let mut ran = vec![];
    for c in cases("conv3d") {
        let bias = c["bias"].as_bool().unwrap();
        let n = |k: &str| c[k].as_u64().unwrap() as usize;
        let g = Conv3d::new(n("n"), n("c_in"), n("c_out"), d3(&c, "input"), d3(&c, "kernel"))
            .with_stride(d3(&c, "stride"))
            .with_padding(d3(&c, "padding"))
            .with_dilation(d3(&c, "dilation"))
            .with_bias(bias);
        assert_eq!(g.y_shape().unwrap().to_vec(), u(&c, "y_shape"));
        let (x, w, dy) = (input(&c, "x"), input(&c, "weight"), input(&c, "dy"));
        let b = bias.then(|| input(&c, "b"));
        j.reference("conv3d.forward", &reference::conv3d::forward(&g, &x, &w, b.as_deref()), &f(&c, "y"));
        j.reference("conv3d.backward_input", &reference::conv3d::backward_input(&g, &w, &dy), &f(&c, "dx"));
        j.reference("conv3d.backward_weight", &reference::conv3d::backward_weight(&g, &x, &dy), &f(&c, "dweight"));
        if bias {
            j.reference("conv3d.backward_bias", &reference::conv3d::backward_bias(&g, &dy), &f(&c, "dbias"));
            let (dyb, dbb) = (up(&dy), zeros(g.bias_len()));
            run(vec![g.backward_bias(&dyb, &dbb).unwrap()]);
            j.gpu("conv3d.backward_bias", &read(&dbb), &f(&c, "dbias"));
        }
        let what = format!("conv3d {:?} c_in {} c_out {}", g.input, g.c_in, g.c_out);
        let case = ConvCase { what: &what, x, w, b, dy, y: f(&c, "y"), dx: f(&c, "dx"), dweight: f(&c, "dweight") };
        ran.extend(conv_every_kernel(&mut j, &g, &case));
        let (wide, name, [x, w, b, dy, y, dx, dweight]) = widened(&g, &case, &what);
        ran.extend(conv_every_kernel(&mut j, &wide, &ConvCase { what: &name, x, w, b: bias.then_some(b), dy, y, dx, dweight }));
    }
    j.finish();
    // Every kernel this device can run was among them.
    use cnn3d::layers::conv3d::{Kernels, WeightKernels};
    let (kernels, weight) = (Kernels::ALL, WeightKernels::ALL);
    let device = kernels.iter().filter(|k| gpu().meets(&k.needs())).map(|k| format!("{k:?}"));
    for k in device.chain(weight.iter().filter(|k| gpu().meets(&k.needs())).map(|k| format!("{k:?}"))) {
        assert!(ran.iter().any(|r| r.ends_with(&format!(" {k}"))), "the device runs conv3d kernel {k} but no case compared it with PyTorch");
    }
}

#[test]
fn activations_match_pytorch() {
    let mut j = Judge::default();
    for c in cases("activation") {
        let act = match c["kind"].as_str().unwrap() {
            "relu" => Activation::Relu,
            "leaky_relu" => Activation::LeakyRelu(c["slope"].as_f64().unwrap() as f32),
            "sigmoid" => Activation::Sigmoid,
            "tanh" => Activation::Tanh,
            k => panic!("unknown activation {k}"),
        };
        let (x, dy, y, dx) = (input(&c, "x"), input(&c, "dy"), f(&c, "y"), f(&c, "dx"));
        let name = act.name();
        // leaky_relu's slope is the f32 0.01 on our side, 0.01 in f64 on PyTorch's: a relative
        // difference of 2e-9 on the negative side, within REF_TOL.
        j.reference(&format!("{name}.forward"), &reference::activation::forward(act, &x), &y);
        j.reference(&format!("{name}.backward"), &reference::activation::backward(act, &x, &y, &dy), &dx);
        let (xb, dyb, yb, dxb) = (up(&x), up(&dy), zeros(x.len()), zeros(x.len()));
        run(vec![
            layers::activation::forward(act, &xb, &yb).unwrap(),
            layers::activation::backward(act, &xb, &yb, &dyb, &dxb).unwrap(),
        ]);
        j.gpu(&format!("{name}.forward"), &read(&yb), &y);
        j.gpu(&format!("{name}.backward"), &read(&dxb), &dx);
    }
    j.finish();
}

/// dense against PyTorch: the reference, dense.wgsl's kernels (`cnn3d check`'s GPU reference
/// and the bias gradient), and the path training takes, the layer as a 1×1×1 convolution on
/// every convolution kernel the device offers for it.
#[test]
fn dense_matches_pytorch() {
    let mut j = Judge::default();
    for c in cases("dense") {
        let bias = c["bias"].as_bool().unwrap();
        let n = |k: &str| c[k].as_u64().unwrap() as usize;
        let d = Dense::new(n("n"), n("in_features"), n("out_features"), bias).unwrap();
        let (x, w, dy) = (input(&c, "x"), input(&c, "weight"), input(&c, "dy"));
        let b = bias.then(|| input(&c, "b"));
        j.reference("dense.forward", &reference::dense::forward(&d, &x, &w, b.as_deref()), &f(&c, "y"));
        j.reference("dense.backward_input", &reference::dense::backward_input(&d, &dy, &w), &f(&c, "dx"));
        j.reference("dense.backward_weight", &reference::dense::backward_weight(&d, &dy, &x), &f(&c, "dweight"));
        let (xb, wb, dyb) = (up(&x), up(&w), up(&dy));
        let bb = b.as_ref().map(|b| up(b));
        let (yb, dxb, dwb, dbb) = (zeros(d.output_len()), zeros(x.len()), zeros(w.len()), zeros(d.bias_len()));
        let mut ops = vec![
            d.forward(&xb, &wb, bb.as_ref(), &yb).unwrap(),
            d.backward_input(&dyb, &wb, &dxb).unwrap(),
            d.backward_weight(&dyb, &xb, &dwb).unwrap(),
        ];
        if bias {
            j.reference("dense.backward_bias", &reference::dense::backward_bias(&d, &dy), &f(&c, "dbias"));
            ops.push(d.backward_bias(&dyb, &dbb).unwrap());
        }
        run(ops);
        // Training runs the layer as a 1×1×1 convolution (`Dense::as_conv`): that path too,
        // with every kernel the device offers for it.
        let what = format!("dense {}→{} as conv3d", d.in_features, d.out_features);
        let case = ConvCase { what: &what, x: x.clone(), w: w.clone(), b: b.clone(), dy: dy.clone(), y: f(&c, "y"), dx: f(&c, "dx"), dweight: f(&c, "dweight") };
        conv_every_kernel(&mut j, &d.as_conv(), &case);
        j.gpu("dense.forward", &read(&yb), &f(&c, "y"));
        j.gpu("dense.backward_input", &read(&dxb), &f(&c, "dx"));
        j.gpu("dense.backward_weight", &read(&dwb), &f(&c, "dweight"));
        if bias {
            j.gpu("dense.backward_bias", &read(&dbb), &f(&c, "dbias"));
        }
    }
    j.finish();
}

#[test]
fn batch_norm_matches_pytorch() {
    let mut j = Judge::default();
    for c in cases("batch_norm") {
        let shape = u(&c, "shape");
        let bn = BatchNorm::new(&shape).unwrap();
        let (x, gamma, beta, rm, rv, dy) =
            (input(&c, "x"), input(&c, "gamma"), input(&c, "beta"), input(&c, "running_mean"), input(&c, "running_var"), input(&c, "dy"));
        let t = reference::batch_norm::forward_train(&bn, &x, &gamma, &beta, &rm, &rv);
        j.reference("batch_norm.forward_train y", &t.y, &f(&c, "y"));
        j.reference("batch_norm.forward_train running_mean", &t.running_mean, &f(&c, "running_mean_after"));
        j.reference("batch_norm.forward_train running_var", &t.running_var, &f(&c, "running_var_after"));
        let g = reference::batch_norm::backward(&bn, &x, &t.mean, &t.invstd, &gamma, &dy);
        j.reference("batch_norm.backward_input", &g.dx, &f(&c, "dx"));
        j.reference("batch_norm.backward_params dgamma", &g.dgamma, &f(&c, "dgamma"));
        j.reference("batch_norm.backward_params dbeta", &g.dbeta, &f(&c, "dbeta"));
        let y_eval = reference::batch_norm::forward_eval(&bn, &x, &gamma, &beta, &t.running_mean, &t.running_var);
        j.reference("batch_norm.forward_eval", &y_eval, &f(&c, "y_eval"));

        let ch = shape[1];
        let (xb, gb, bb, rmb, rvb, dyb) = (up(&x), up(&gamma), up(&beta), up(&rm), up(&rv), up(&dy));
        let (yb, meanb, invb, dxb, dgb, dbb, yeb) =
            (zeros(x.len()), zeros(ch), zeros(ch), zeros(x.len()), zeros(ch), zeros(ch), zeros(x.len()));
        let mut ops = bn.forward_train(&xb, &gb, &bb, &rmb, &rvb, &yb, &meanb, &invb).unwrap();
        ops.extend(bn.backward(&xb, &meanb, &invb, &gb, &dyb, &dxb, &dgb, &dbb).unwrap());
        ops.push(bn.forward_eval(&xb, &gb, &bb, &rmb, &rvb, &yeb).unwrap());
        run(ops);
        j.gpu("batch_norm.forward_train y", &read(&yb), &f(&c, "y"));
        j.gpu("batch_norm.forward_train running_mean", &read(&rmb), &f(&c, "running_mean_after"));
        j.gpu("batch_norm.forward_train running_var", &read(&rvb), &f(&c, "running_var_after"));
        j.gpu("batch_norm.backward_input", &read(&dxb), &f(&c, "dx"));
        j.gpu("batch_norm.backward_params dgamma", &read(&dgb), &f(&c, "dgamma"));
        j.gpu("batch_norm.backward_params dbeta", &read(&dbb), &f(&c, "dbeta"));
        j.gpu("batch_norm.forward_eval", &read(&yeb), &f(&c, "y_eval"));
    }
    j.finish();
}

#[test]
fn softmax_xent_matches_pytorch() {
    let mut j = Judge::default();
    for c in cases("softmax_xent") {
        let n = |k: &str| c[k].as_u64().unwrap() as usize;
        let l = SoftmaxXent::new(n("n"), n("classes")).unwrap();
        let logits = input(&c, "logits");
        let labels: Vec<u32> = u(&c, "labels").iter().map(|&v| v as u32).collect();
        let (loss, correct) = reference::softmax_xent::forward(&l, &logits, &labels);
        j.reference("softmax_xent.forward loss", &[loss], &[c["loss"].as_f64().unwrap()]);
        assert_eq!(correct as u64, c["correct"].as_u64().unwrap(), "reference correct count");
        j.reference("softmax_xent.backward", &reference::softmax_xent::backward(&l, &logits, &labels), &f(&c, "dlogits"));

        let lb = up(&logits);
        let labb = gpu().upload_u32("labels", &labels).unwrap();
        let lossb = zeros(1);
        let corb = gpu().zeros("correct", 1, DType::U32).unwrap();
        let dlb = zeros(logits.len());
        run(vec![l.forward(&lb, &labb, &lossb, &corb).unwrap(), l.backward(&lb, &labb, &dlb).unwrap()]);
        j.gpu("softmax_xent.forward loss", &read(&lossb), &[c["loss"].as_f64().unwrap()]);
        let r = compare_u32("gpu softmax_xent.forward correct", "", &gpu().read_u32(&corb).unwrap(), &[c["correct"].as_u64().unwrap() as u32]);
        j.0.push(r);
        j.gpu("softmax_xent.backward", &read(&dlb), &f(&c, "dlogits"));
    }
    j.finish();
}

fn x_shape(c: &Value) -> [usize; 5] {
    let n = |k: &str| c[k].as_u64().unwrap() as usize;
    let i = d3(c, "input");
    [n("n"), n("c"), i[0], i[1], i[2]]
}

#[test]
fn max_pool3d_matches_pytorch() {
    let mut j = Judge::default();
    for c in cases("max_pool3d") {
        let pool = MaxPool3d::new(d3(&c, "kernel"), d3(&c, "stride"), d3(&c, "padding"), d3(&c, "dilation")).unwrap();
        let shape = x_shape(&c);
        assert_eq!(pool.output_shape(shape).unwrap().to_vec(), u(&c, "y_shape"));
        let (x, dy) = (input(&c, "x"), input(&c, "dy"));
        let want_idx: Vec<u32> = u(&c, "indices").iter().map(|&v| v as u32).collect();
        let (y, idx) = reference::max_pool3d::forward(&pool, shape, &x);
        j.reference("max_pool3d.forward", &y, &f(&c, "y"));
        j.0.push(compare_u32("reference max_pool3d.forward indices", "", &idx, &want_idx));
        j.reference("max_pool3d.backward", &reference::max_pool3d::backward(&pool, shape, &want_idx, &dy), &f(&c, "dx"));

        let (xb, dyb, yb, dxb) = (up(&x), up(&dy), zeros(want_idx.len()), zeros(x.len()));
        let ib = gpu().zeros("indices", want_idx.len(), DType::U32).unwrap();
        let mut ops = vec![layers::max_pool3d::forward(&pool, shape, &xb, &yb, &ib).unwrap()];
        ops.extend(layers::max_pool3d::backward(&pool, shape, &ib, &dyb, &dxb).unwrap());
        run(ops);
        j.gpu("max_pool3d.forward", &read(&yb), &f(&c, "y"));
        j.0.push(compare_u32("gpu max_pool3d.forward indices", "", &gpu().read_u32(&ib).unwrap(), &want_idx));
        j.gpu("max_pool3d.backward", &read(&dxb), &f(&c, "dx"));
    }
    j.finish();
}

#[test]
fn avg_pool3d_matches_pytorch() {
    let mut j = Judge::default();
    for c in cases("avg_pool3d") {
        let pool = AvgPool3d::new(d3(&c, "kernel"), d3(&c, "stride"), d3(&c, "padding")).unwrap();
        let shape = x_shape(&c);
        assert_eq!(pool.output_shape(shape).unwrap().to_vec(), u(&c, "y_shape"));
        let (x, dy) = (input(&c, "x"), input(&c, "dy"));
        j.reference("avg_pool3d.forward", &reference::avg_pool3d::forward(&pool, shape, &x), &f(&c, "y"));
        j.reference("avg_pool3d.backward", &reference::avg_pool3d::backward(&pool, shape, &dy), &f(&c, "dx"));
        let (xb, dyb, yb, dxb) = (up(&x), up(&dy), zeros(dy.len()), zeros(x.len()));
        run(vec![
            layers::avg_pool3d::forward(&pool, shape, &xb, &yb).unwrap(),
            layers::avg_pool3d::backward(&pool, shape, &dyb, &dxb).unwrap(),
        ]);
        j.gpu("avg_pool3d.forward", &read(&yb), &f(&c, "y"));
        j.gpu("avg_pool3d.backward", &read(&dxb), &f(&c, "dx"));
    }
    j.finish();
}
