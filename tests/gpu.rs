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
