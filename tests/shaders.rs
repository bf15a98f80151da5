//! Every WGSL file is parsed and validated by naga, and each entry point is translated to
//! SPIR-V (Vulkan), MSL (Metal) and HLSL (DX12) the way wgpu does it, so Metal and DX12 are
//! checked on a Linux CI too. No GPU needed.

use cnn3d::gpu::Shader;

fn parse_and_validate(shader: Shader) -> (naga::Module, naga::valid::ModuleInfo) {
    let module = naga::front::wgsl::parse_str(shader.source())
        .unwrap_or_else(|e| panic!("shaders/{}.wgsl does not parse:\n{}", shader.name(), e.emit_to_string(shader.source())));
    // Default capabilities: the shaders must not need optional features, but for the one
    // compiled only for devices with subgroups (in compute shaders).
    let mut validator = if shader.needs_subgroups() {
        let mut v = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::SUBGROUP);
        v.subgroup_stages(naga::valid::ShaderStages::COMPUTE).subgroup_operations(naga::valid::SubgroupOperationSet::all());
        v
    } else {
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::default())
    };
    let info = validator
        .validate(&module)
        .unwrap_or_else(|e| panic!("shaders/{}.wgsl does not validate:\n{}", shader.name(), e.emit_to_string(shader.source())));
    (module, info)
}

#[test]
fn every_shader_file_is_registered() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut registered: Vec<String> = Shader::ALL.iter().map(|s| s.name().to_string()).collect();
    registered.sort();
    assert_eq!(files, registered, "shaders/ and gpu::Shader::ALL disagree");
}

#[test]
fn every_shader_documents_itself_and_has_compute_entry_points() {
    for &s in Shader::ALL {
        assert!(s.source().trim_start().starts_with("//"), "shaders/{}.wgsl must open with a comment on layouts and bindings", s.name());
        let (module, _) = parse_and_validate(s);
        assert!(!module.entry_points.is_empty(), "shaders/{}.wgsl has no entry point", s.name());
        for ep in &module.entry_points {
            assert_eq!(ep.stage, naga::ShaderStage::Compute, "{}: {} is not a compute entry point", s.name(), ep.name);
        }
    }
}

#[test]
fn every_entry_point_translates_to_spirv_msl_and_hlsl() {
    for &s in Shader::ALL {
        let (module, info) = parse_and_validate(s);
        for ep in &module.entry_points {
            let what = format!("shaders/{}.wgsl, entry point {}", s.name(), ep.name);
            // Resolve `override` constants to their defaults for this entry point, as wgpu does.
            let (m, i) = naga::back::pipeline_constants::process_overrides(
                &module,
                &info,
                Some((naga::ShaderStage::Compute, &ep.name)),
                &Default::default(),
            )
            .unwrap_or_else(|e| panic!("{what}: overrides: {e}"));

            let spv_opts = naga::back::spv::PipelineOptions { shader_stage: naga::ShaderStage::Compute, entry_point: ep.name.clone() };
            let words = naga::back::spv::write_vec(&m, &i, &Default::default(), Some(&spv_opts))
                .unwrap_or_else(|e| panic!("{what}: SPIR-V: {e}"));
            assert_eq!(words.first(), Some(&0x0723_0203), "{what}: SPIR-V magic number");

            let msl_opts = naga::back::msl::Options { lang_version: (2, 1), ..Default::default() };
            let msl_pipe = naga::back::msl::PipelineOptions {
                entry_point: Some((naga::ShaderStage::Compute, ep.name.clone())),
                ..Default::default()
            };
            let (msl, _) = naga::back::msl::write_string(&m, &i, &msl_opts, &msl_pipe)
                .unwrap_or_else(|e| panic!("{what}: MSL: {e}"));
            assert!(msl.contains("kernel void"), "{what}: MSL has no kernel");

            let hlsl_opts = naga::back::hlsl::Options { shader_model: naga::back::hlsl::ShaderModel::V6_0, ..Default::default() };
            let hlsl_pipe = naga::back::hlsl::PipelineOptions { entry_point: Some((naga::ShaderStage::Compute, ep.name.clone())) };
            let mut hlsl = String::new();
            naga::back::hlsl::Writer::new(&mut hlsl, &hlsl_opts, &hlsl_pipe)
                .write(&m, &i, None)
                .unwrap_or_else(|e| panic!("{what}: HLSL: {e}"));
            assert!(hlsl.contains("[numthreads("), "{what}: HLSL has no compute entry point");
        }
    }
}
