// Scratch: FMA throughput of accumulator structures on this adapter.
use std::time::Instant;

const GROUPS: u32 = 256;

fn main() {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle().with_env();
    desc.backends = wgpu::Backends::VULKAN;
    let inst = wgpu::Instance::new(desc);
    let adapters = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::VULKAN));
    let adapter = &adapters[0];
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor { label: None, required_limits: adapter.limits(), ..Default::default() })).unwrap();
    let mk = |size: u64, usage| device.create_buffer(&wgpu::BufferDescriptor { label: None, size, usage, mapped_at_creation: false });
    let out = mk(4 * 64 * GROUPS as u64 * 64, wgpu::BufferUsages::STORAGE);
    let uni = mk(65536, wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST);
    queue.write_buffer(&uni, 0, &vec![0u8; 65536]);
    let head = "@group(0) @binding(0) var<uniform> blk: array<vec4<f32>, 4096>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
struct Acc { a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32> }
fn mac(a: ptr<function, Acc>, v: f32, q: u32) {
    (*a).a0 += v * blk[q]; (*a).a1 += v * blk[q + 1u]; (*a).a2 += v * blk[q + 2u]; (*a).a3 += v * blk[q + 3u];
}
fn macw(a: ptr<function, Acc>, v: f32, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>) {
    (*a).a0 += v * w0; (*a).a1 += v * w1; (*a).a2 += v * w2; (*a).a3 += v * w3;
}
fn sum(a: Acc) -> f32 { return dot(a.a0 + a.a1 + a.a2 + a.a3, vec4<f32>(1.0)); }
const ITERS: u32 = 1024u;
";
    // (name, body, fmas per lane per iteration)
    let kernels: Vec<(&str, String, u32)> = vec![
        ("acc4_blk (64 acc, 16 ubo)", "
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let z = Acc(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    var a = z; var b = z; var c = z; var d = z;
    var v = vec4<f32>(f32(gid.x), 1.0, 2.0, 3.0);
    for (var i = 0u; i < ITERS; i++) {
        let q = (i * 4u) & 4095u;
        mac(&a, v.x, q); mac(&b, v.y, q); mac(&c, v.z, q); mac(&d, v.w, q);
        v = v * 0.999;
    }
    out[gid.x] = sum(a) + sum(b) + sum(c) + sum(d);
}".into(), 64),
        ("acc4_reg (64 acc, no ubo)", "
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let z = Acc(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    var a = z; var b = z; var c = z; var d = z;
    var v = vec4<f32>(f32(gid.x), 1.0, 2.0, 3.0);
    let w0 = blk[0]; let w1 = blk[1]; let w2 = blk[2]; let w3 = blk[3];
    for (var i = 0u; i < ITERS; i++) {
        macw(&a, v.x, w0, w1, w2, w3); macw(&b, v.y, w0, w1, w2, w3); macw(&c, v.z, w0, w1, w2, w3); macw(&d, v.w, w0, w1, w2, w3);
        v = v * 0.999;
    }
    out[gid.x] = sum(a) + sum(b) + sum(c) + sum(d);
}".into(), 64),
        ("acc2_blk (32 acc, 16 ubo)", "
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let z = Acc(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    var a = z; var b = z;
    var v = vec4<f32>(f32(gid.x), 1.0, 2.0, 3.0);
    for (var i = 0u; i < ITERS; i++) {
        let q = (i * 4u) & 4095u;
        mac(&a, v.x, q); mac(&b, v.y, q);
        v = v * 0.999;
    }
    out[gid.x] = sum(a) + sum(b);
}".into(), 32),
        ("acc1_reg (16 acc)", "
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let z = Acc(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    var a = z;
    var v = vec4<f32>(f32(gid.x), 1.0, 2.0, 3.0);
    let w0 = blk[0]; let w1 = blk[1]; let w2 = blk[2]; let w3 = blk[3];
    for (var i = 0u; i < ITERS; i++) {
        macw(&a, v.x, w0, w1, w2, w3); macw(&a, v.y, w0, w1, w2, w3);
        v = v * 0.999;
    }
    out[gid.x] = sum(a);
}".into(), 32),
        ("fma_builtin acc4_reg", "
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let z = Acc(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    var a = z; var b = z; var c = z; var d = z;
    var v = vec4<f32>(f32(gid.x), 1.0, 2.0, 3.0);
    let w0 = blk[0]; let w1 = blk[1]; let w2 = blk[2]; let w3 = blk[3];
    for (var i = 0u; i < ITERS; i++) {
        a.a0 = fma(vec4<f32>(v.x), w0, a.a0); a.a1 = fma(vec4<f32>(v.x), w1, a.a1); a.a2 = fma(vec4<f32>(v.x), w2, a.a2); a.a3 = fma(vec4<f32>(v.x), w3, a.a3);
        b.a0 = fma(vec4<f32>(v.y), w0, b.a0); b.a1 = fma(vec4<f32>(v.y), w1, b.a1); b.a2 = fma(vec4<f32>(v.y), w2, b.a2); b.a3 = fma(vec4<f32>(v.y), w3, b.a3);
        c.a0 = fma(vec4<f32>(v.z), w0, c.a0); c.a1 = fma(vec4<f32>(v.z), w1, c.a1); c.a2 = fma(vec4<f32>(v.z), w2, c.a2); c.a3 = fma(vec4<f32>(v.z), w3, c.a3);
        d.a0 = fma(vec4<f32>(v.w), w0, d.a0); d.a1 = fma(vec4<f32>(v.w), w1, d.a1); d.a2 = fma(vec4<f32>(v.w), w2, d.a2); d.a3 = fma(vec4<f32>(v.w), w3, d.a3);
        v = v * 0.999;
    }
    out[gid.x] = sum(a) + sum(b) + sum(c) + sum(d);
}".into(), 64),
    ];
    for rep in 0..2 {
        for (name, body, fmas) in &kernels {
            let src = format!("{head}{body}");
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: None, source: wgpu::ShaderSource::Wgsl(src.into()) });
            let pipe = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor { label: None, layout: None, module: &module, entry_point: Some("main"), compilation_options: Default::default(), cache: None });
            let bg = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipe.get_bind_group_layout(0),
                entries: &[wgpu::BindGroupEntry { binding: 0, resource: uni.as_entire_binding() }, wgpu::BindGroupEntry { binding: 1, resource: out.as_entire_binding() }],
            });
            let mut best = f64::MAX;
            for _ in 0..3 {
                let mut enc = device.create_command_encoder(&Default::default());
                {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    pass.set_pipeline(&pipe);
                    pass.set_bind_group(0, &bg, &[]);
                    pass.dispatch_workgroups(GROUPS, 1, 1);
                }
                let t = Instant::now();
                queue.submit([enc.finish()]);
                device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
                best = best.min(t.elapsed().as_secs_f64());
            }
            let flops = 2.0 * (GROUPS * 64) as f64 * 1024.0 * *fmas as f64;
            println!("rep {rep} {name:28} {:8.2} ms {:6.2} GFLOP/s", best * 1e3, flops / best / 1e9);
        }
    }
}
