//! The GPU context: errors become library errors, limits are enforced, big grids are split.

mod common;
use common::gpu;

use cnn3d::gpu::{grid_2d, DType, Op, Shader};
use cnn3d::layers::activation::{self, Activation};
use cnn3d::Error;

#[test]
fn a_tensor_above_the_binding_limit_is_refused_with_its_name() {
    let g = gpu();
    let limit = g.info().max_storage_buffer_binding_size;
    let too_many = (limit / 4 + 1) as usize;
    match g.zeros("conv1.activations", too_many, DType::F32) {
        Err(Error::TooLarge { tensor, bytes, limit: l, .. }) => {
            assert_eq!(tensor, "conv1.activations");
            assert_eq!(bytes, too_many as u64 * 4);
            assert!(l <= limit);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn a_validation_error_is_an_error_not_a_panic() {
    let g = gpu();
    let x = g.zeros("x", 10, DType::F32).unwrap();
    let y = g.zeros("y", 10, DType::F32).unwrap();
    // The backward entry point uses four storage bindings; giving it two is a wgpu validation
    // error, which must come back as Error::Gpu naming the dispatch.
    let mut op = activation::forward(Activation::Relu, &x, &y).unwrap();
    op.entry = "backward";
    op.label = "broken.backward".into();
    match g.compile(&[op]) {
        Err(Error::Gpu { context, message }) => {
            assert!(context.contains("broken.backward"), "context: {context}");
            assert!(!message.is_empty());
        }
        Err(e) => panic!("expected Error::Gpu, got {e}"),
        Ok(_) => panic!("a bind group with missing bindings was accepted"),
    }
    // The device is still usable afterwards.
    g.run_ops(&[activation::forward(Activation::Relu, &x, &y).unwrap()]).unwrap();
}

#[test]
fn an_unknown_entry_point_is_an_error() {
    let g = gpu();
    let x = g.zeros("x", 4, DType::F32).unwrap();
    let op = Op::threads("nope", Shader::Activation, "no_such_entry", &[0u32; 4], &[&x], 4);
    assert!(matches!(g.compile(&[op]), Err(Error::Gpu { .. })));
}

#[test]
fn grids_split_into_two_dimensions() {
    assert_eq!(grid_2d(0, 65_535), Some((0, 0)));
    assert_eq!(grid_2d(10, 65_535), Some((10, 1)));
    assert_eq!(grid_2d(65_535, 65_535), Some((65_535, 1)));
    assert_eq!(grid_2d(65_536, 65_535), Some((65_535, 2)));
    assert_eq!(grid_2d(65_535 * 65_535, 65_535), Some((65_535, 65_535)));
    assert_eq!(grid_2d(65_535 * 65_535 + 1, 65_535), None);
}

#[test]
fn uploads_read_back_exactly() {
    let g = gpu();
    let data: Vec<f32> = (0..1001).map(|i| i as f32 * 0.5 - 3.0).collect();
    let b = g.upload_f32("data", &data).unwrap();
    assert_eq!(g.read_f32(&b).unwrap(), data);
    let u: Vec<u32> = (0..77).map(|i| i * 3).collect();
    let b = g.upload_u32("u", &u).unwrap();
    assert_eq!(g.read_u32(&b).unwrap(), u);
    let empty = g.zeros("empty", 0, DType::F32).unwrap();
    assert!(g.read_f32(&empty).unwrap().is_empty());
}

/// f16 buffers (activations at --precision f16) take f32s rounded to nearest and give them
/// back widened exactly, odd lengths included (copies move whole 4 bytes); a view that ends
/// inside its buffer refuses an odd write rather than touch its neighbour.
#[test]
fn f16_buffers_round_once_and_read_back_exactly() {
    let g = gpu();
    let data: Vec<f32> = vec![1.0, 0.1, -65504.0, 1e-7, 3.0e-8, 2049.0, f32::NAN, f32::NEG_INFINITY, 70000.0];
    let b = g.upload("halves", &data, DType::F16).unwrap();
    assert_eq!(b.len(), 9);
    let back = g.read_f32(&b).unwrap();
    let want: Vec<f32> = data.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
    assert_eq!(back.len(), want.len());
    for (i, (g, w)) in back.iter().zip(&want).enumerate() {
        assert!(g == w || (g.is_nan() && w.is_nan()), "element {i}: {g} read back, {w} expected");
    }
    // Rounded, not truncated: 2049 lies between the f16s 2048 and 2050, ties to even.
    assert_eq!((back[1], back[5], back[8]), (0.099975586, 2048.0, f32::INFINITY));
    let whole = g.zeros("whole", 8, DType::F16).unwrap();
    let part = whole.view(0, 3, "first three");
    let err = g.write_f32(&part, &[1.0, 2.0, 3.0]).unwrap_err().to_string();
    assert!(err.contains("odd number of f16 values"), "{err}");
    g.write_f32(&whole.view(0, 4, "first four"), &[1.0, 2.0, 3.0, 4.0]).unwrap();
    assert_eq!(g.read_f32(&whole).unwrap(), vec![1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0]);
    assert_eq!(g.read_f32(&whole.view(0, 3, "first three")).unwrap(), vec![1.0, 2.0, 3.0]);
}

#[test]
fn flat_buffers_bind_each_tensor_on_its_own() {
    let g = gpu();
    let (whole, views) = g.flat("params", &[("a", 5), ("b", 70), ("c", 1)], DType::F32).unwrap();
    assert_eq!(views.iter().map(|v| v.len()).collect::<Vec<_>>(), vec![5, 70, 1]);
    let b: Vec<f32> = (0..70).map(|i| i as f32 - 35.0).collect();
    g.write_f32(&views[1], &b).unwrap();
    let out = g.zeros("out", 70, DType::F32).unwrap();
    g.run_ops(&[activation::forward(Activation::Relu, &views[1], &out).unwrap()]).unwrap();
    let want: Vec<f32> = b.iter().map(|v| v.max(0.0)).collect();
    assert_eq!(g.read_f32(&out).unwrap(), want);
    assert_eq!(g.read_f32(&views[1]).unwrap(), b);
    // The other tensors are untouched, and the whole buffer covers all three.
    assert_eq!(g.read_f32(&views[0]).unwrap(), vec![0.0; 5]);
    assert!(whole.len() >= 76);
    let all = g.read_f32(&whole).unwrap();
    assert_eq!(all.iter().filter(|&&v| v != 0.0).count(), 69);
}

/// A lost device (here destroyed on purpose, as a driver reset would) makes every later step
/// and read-back an error naming the loss, never a panic or a hang.
#[test]
fn a_lost_device_is_an_error_not_a_panic() {
    let gpu = cnn3d::gpu::Gpu::new(&cnn3d::gpu::GpuOptions { adapter: std::env::var("CNN3D_ADAPTER").ok(), ..Default::default() }).unwrap();
    let x = gpu.upload_f32("x", &[1.0, -2.0, 3.0, -4.0]).unwrap();
    let y = gpu.zeros("y", 4, cnn3d::gpu::DType::F32).unwrap();
    let op = cnn3d::layers::activation::forward(cnn3d::layers::activation::Activation::Relu, &x, &y).unwrap();
    let plan = gpu.compile(&[op]).unwrap();
    gpu.run(&plan).unwrap();
    gpu.lose_device_for_test();
    let e = gpu.run(&plan).expect_err("a step on a lost device").to_string();
    assert!(e.contains("lost"), "{e}");
    let e = gpu.read_f32(&y).expect_err("a read-back from a lost device").to_string();
    assert!(!e.is_empty());
}

/// The pipeline cache keeps the pipelines of live plans and at most IDLE_PIPELINES others:
/// compiling many variants and dropping their plans leaves memory flat, while a plan that
/// lives keeps its pipelines cached however many others come after.
#[test]
fn the_pipeline_cache_keeps_live_plans_and_a_bounded_number_of_idle_pipelines() {
    use cnn3d::gpu::IDLE_PIPELINES;
    // Its own device: the shared one's cache holds the other tests' pipelines. Opening it may
    // compile (and leave idle) a few pipelines of its own (the subgroup layout probe).
    let g = cnn3d::gpu::Gpu::new(&common::options()).unwrap();
    let at_open = g.compiled_pipelines();
    assert!(g.cached_pipelines() as u64 == at_open && at_open < IDLE_PIPELINES as u64);
    let x = g.zeros("x", 100, DType::F32).unwrap();
    let y = g.zeros("y", 100, DType::F32).unwrap();
    let variant = |wg: u32| activation::forward(Activation::Relu, &x, &y).unwrap().with_constant("WG", wg);
    let live = g.compile(&[variant(1), variant(2)]).unwrap();
    assert_eq!(g.compiled_pipelines(), at_open + 2);
    let last = 2 + IDLE_PIPELINES as u32 + 10;
    for wg in 3..=last {
        g.run(&g.compile(&[variant(wg)]).unwrap()).unwrap();
        // The one just compiled was held by its plan when the cache trimmed.
        assert!(g.cached_pipelines() <= 2 + IDLE_PIPELINES + 1, "{} cached", g.cached_pipelines());
    }
    let compiled = g.compiled_pipelines();
    assert_eq!(compiled, at_open + last as u64);
    // The live plan's pipelines were never released: it still runs, and compiling it again
    // creates nothing.
    g.run(&live).unwrap();
    let _again = g.compile(&[variant(1), variant(2)]).unwrap();
    assert_eq!(g.compiled_pipelines(), compiled);
    // The most recently used idle pipeline is still cached; the first idle ones are gone.
    let _recent = g.compile(&[variant(last)]).unwrap();
    assert_eq!(g.compiled_pipelines(), compiled);
    let _old = g.compile(&[variant(3)]).unwrap();
    assert_eq!(g.compiled_pipelines(), compiled + 1);
    assert!(g.cached_pipelines() <= 2 + IDLE_PIPELINES + 2);
}

/// `--default-limits`: the device has WebGPU's default limits, as a browser page that asks for
/// nothing, and the kernels chosen within them are right there (the page's test runs every
/// layer so in Chromium).
#[test]
fn a_device_with_webgpus_default_limits_has_them_and_checks() {
    let opts = cnn3d::gpu::GpuOptions { default_limits: true, ..common::options() };
    let g = cnn3d::gpu::Gpu::new(&opts).unwrap();
    let i = g.info();
    assert_eq!(i.max_storage_buffer_binding_size, 128 << 20);
    assert_eq!(i.max_buffer_size, 256 << 20);
    assert_eq!(i.max_compute_invocations_per_workgroup, 256);
    assert_eq!(i.max_compute_workgroup_storage_size, 16384);
    assert_eq!(i.max_uniform_buffer_binding_size, 65536);
    for layer in ["max_pool3d", "dense", "optim"] {
        for r in cnn3d::check::run_layer(&g, layer).unwrap() {
            assert!(r.pass, "{}", r.describe());
        }
    }
}

/// A device whose uniform bindings are too small for the blocked kernels' 64 KiB blocks runs
/// the convolutions on the kernels that need none, and they are right there.
#[test]
fn kernels_the_device_cannot_run_are_not_candidates() {
    use cnn3d::layers::conv3d::{Conv3d, Kernels, WeightKernels};
    let opts = cnn3d::gpu::GpuOptions { max_uniform_binding: Some(16384), ..common::options() };
    let g = cnn3d::gpu::Gpu::new(&opts).unwrap();
    assert_eq!(g.info().max_uniform_buffer_binding_size, 16384);
    // Enough channels for every kernel family on a device with 64 KiB blocks.
    let conv = Conv3d::new(2, 16, 20, [6, 7, 8], [3, 3, 3]).with_padding([1, 1, 1]);
    // No uniform blocks: the direct and implicit-GEMM kernels (storage buffers and workgroup
    // memory only) remain.
    let (k, w) = conv.candidates(&g);
    assert_eq!(k, vec![Kernels::Gemm128x64, Kernels::Gemm64x64, Kernels::Gemm32x32, Kernels::Direct]);
    let gemm = [WeightKernels::Gemm128x64, WeightKernels::Gemm64x64, WeightKernels::Gemm32x32];
    assert_eq!(w, [&[WeightKernels::Channels, WeightKernels::Columns][..], &gemm[..]].concat());
    // The defaults come from the candidates, and a blocked kernel asked for by name is refused
    // with the limit it needs.
    let choice = conv.default_choice(&g);
    assert_eq!((choice.forward, choice.backward_input), (Kernels::Direct, Kernels::Direct));
    conv.scratch_with(&g, choice).unwrap();
    let tiled = cnn3d::layers::conv3d::ConvChoice { forward: Kernels::Tiled, ..choice };
    let err = conv.scratch_with(&g, tiled).unwrap_err().to_string();
    assert!(err.contains("max_uniform_buffer_binding_size is 16384"), "{err}");
    // The same geometry on the full device has the blocked kernels.
    let (k, _) = conv.candidates(common::gpu());
    assert!(k.contains(&Kernels::Tiled), "{k:?}");
}

/// The implicit-GEMM kernels on more workgroups than one grid dimension holds (the check's
/// 2D-grid case has one channel, whose tiles are mostly padding, so `check` runs no GEMM
/// kernel there): 2,197,000 positions in tiles of 32 are 68,657 workgroups, laid out on a 2D
/// grid, and every output element is right.
#[test]
fn gemm_kernels_run_on_a_2d_grid() {
    use cnn3d::layers::conv3d::{Conv3d, ConvChoice, Kernels, WeightKernels};
    let g = gpu();
    let conv = Conv3d::new(1, 2, 8, [130, 130, 130], [1, 1, 1]);
    assert!(g.info().max_compute_workgroups_per_dimension < 68_657, "the case must need a 2D grid");
    let mut rng = cnn3d::rng::Rng::new(7);
    let x = rng.vec_f32(conv.x_shape().iter().product(), -1.0, 1.0);
    let w = rng.vec_f32(conv.weight_shape().iter().product(), -1.0, 1.0);
    let b = rng.vec_f32(8, -1.0, 1.0);
    let dy = rng.vec_f32(conv.y_shape().unwrap().iter().product(), -1.0, 1.0);
    let up = |v: &[f32]| g.upload_f32("t", v).unwrap();
    let (xb, wb, bb, dyb) = (up(&x), up(&w), up(&b), up(&dy));
    let (yb, dxb) = (g.zeros("y", dy.len(), DType::F32).unwrap(), g.zeros("dx", x.len(), DType::F32).unwrap());
    let choice = ConvChoice { forward: Kernels::Gemm32x32, backward_input: Kernels::Gemm32x32, backward_weight: WeightKernels::Columns };
    let scratch = conv.scratch_with(g, choice).unwrap();
    let mut ops = conv.forward(&xb, &wb, Some(&bb), &yb, &scratch).unwrap();
    ops.extend(conv.backward_input(&dyb, &wb, &dxb, &scratch).unwrap());
    g.run_ops(&ops).unwrap();
    let f = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
    let tol = cnn3d::check::Tol::new(4e-6 * 5.0, 1e-5);
    let y = cnn3d::reference::conv3d::forward(&conv, &f(&x), &f(&w), Some(&f(&b)));
    let r = cnn3d::check::compare("conv3d.forward", "130³", &g.read_f32(&yb).unwrap(), &y, tol);
    assert!(r.pass, "{}", r.describe());
    let dx = cnn3d::reference::conv3d::backward_input(&conv, &f(&w), &f(&dy));
    let r = cnn3d::check::compare("conv3d.backward_input", "130³", &g.read_f32(&dxb).unwrap(), &dx, tol);
    assert!(r.pass, "{}", r.describe());
}

/// A pass given the scratch of another geometry says so instead of panicking or writing out
/// of place, whichever kernels the scratch chose.
#[test]
fn a_scratch_of_another_geometry_is_an_error() {
    use cnn3d::layers::conv3d::{Conv3d, ConvChoice, Kernels, WeightKernels};
    let g = gpu();
    let made_for = Conv3d::new(2, 16, 20, [6, 7, 8], [3, 3, 3]).with_padding([1, 1, 1]);
    // More channel groups on both sides: every scratch buffer it needs has another size
    // (a buffer of the right size serves any geometry: the passes fill it first).
    let other = Conv3d::new(2, 40, 60, [6, 7, 8], [3, 3, 3]).with_padding([1, 1, 1]);
    let zeros = |len: usize| g.zeros("t", len, DType::F32).unwrap();
    let (x, y) = (zeros(other.x_shape().iter().product()), zeros(other.y_shape().unwrap().iter().product()));
    let (w, b) = (zeros(other.weight_shape().iter().product()), zeros(other.bias_len()));
    for weight in [WeightKernels::Channels, WeightKernels::Rows, WeightKernels::Samples] {
        let choice = ConvChoice { forward: Kernels::Tiled, backward_input: Kernels::Tiled, backward_weight: weight };
        let Ok(scratch) = made_for.scratch_with(g, choice) else { continue };
        let err = other.forward(&x, &w, Some(&b), &y, &scratch).unwrap_err().to_string();
        assert!(err.contains("another geometry"), "{err}");
        let err = other.backward_input(&y, &w, &x, &scratch).unwrap_err().to_string();
        assert!(err.contains("another geometry"), "{err}");
        if weight != WeightKernels::Channels {
            let err = other.backward_weight(&x, &y, &w, &scratch).unwrap_err().to_string();
            assert!(err.contains("another geometry") || err.contains("cannot be bound"), "{weight:?}: {err}");
        }
    }
}

/// A dispatch that is invalid only when recorded (its buffer bound both read-only and
/// writable, which wgpu checks per dispatch) fails the submit with an error that names it
/// among the plan's dispatches, and the device stays usable.
#[test]
fn an_invalid_dispatch_is_named_when_the_plan_runs() {
    let g = gpu();
    let x = g.zeros("x", 10, DType::F32).unwrap();
    let y = g.zeros("y", 10, DType::F32).unwrap();
    let good = activation::forward(Activation::Relu, &x, &y).unwrap();
    let mut bad = good.clone();
    bad.label = "broken.alias".into();
    bad.buffers = vec![x.clone(), x.clone()];
    let plan = g.compile(&[good.clone(), bad, good.clone()]).expect("the bind group itself is valid");
    match g.run(&plan) {
        Err(Error::Gpu { context, message }) => {
            assert!(context.contains("dispatch 2 of 3, broken.alias (shaders/activation.wgsl forward)"), "context: {context}");
            assert!(!message.is_empty());
        }
        Err(e) => panic!("expected Error::Gpu, got {e}"),
        Ok(()) => panic!("a buffer bound read-only and writable in one dispatch was accepted"),
    }
    g.run_ops(&[good]).unwrap();
}

/// A GPU error while training (here a device lost before a resumed run's first step) comes
/// back as an error that leaves the checkpoint as it was and says how to continue from it.
#[test]
fn a_gpu_error_while_training_says_how_to_resume() {
    use cnn3d::train::{self, Config, RunOptions};
    let dir = std::env::temp_dir().join(format!("cnn3d-gpu-lost-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = Config::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny.toml")).unwrap();
    let mut opts = RunOptions {
        config,
        data: cnn3d::data::DataOptions { colormap: cnn3d::data::Colormap::None, ..Default::default() },
        init: None,
        resume: None,
        limit_train: Some(32),
        limit_test: Some(16),
        out: dir.clone(),
        quiet: true,
        profile_every: None,
        checkpoint_every: 1,
        clip_grad_norm: None,
        stop: None,
    };
    opts.config.train.epochs = 1;
    train::train(gpu(), &opts).unwrap();
    let saved = std::fs::read(dir.join("optimizer.safetensors")).unwrap();
    let lost = cnn3d::gpu::Gpu::new(&common::options()).unwrap();
    lost.lose_device_for_test();
    opts.config.train.epochs = 2;
    opts.resume = Some(dir.clone());
    let e = train::train(&lost, &opts).expect_err("a run on a lost device").to_string();
    assert!(e.contains("lost") && e.contains(&format!("cnn3d train --resume {}", dir.display())), "{e}");
    assert_eq!(std::fs::read(dir.join("optimizer.safetensors")).unwrap(), saved, "the checkpoint changed");
}
