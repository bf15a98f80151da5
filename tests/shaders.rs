//! Every WGSL file is parsed and validated by naga, and each entry point is translated to
//! SPIR-V (Vulkan), MSL (Metal) and HLSL (DX12) the way wgpu does it, so Metal and DX12 are
//! checked on a Linux CI too. No GPU needed.

use cnn3d::gpu::{Precision, Shader};

/// The WGSL that runs (a variant composed onto its base, see gpu::compose), validated.
fn parse_and_validate(shader: Shader) -> (naga::Module, naga::valid::ModuleInfo) {
    validate_text(shader, shader.source(), "as composed")
}

fn validate_text(shader: Shader, text: &str, what: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    validate_at(shader, text, what, Precision::F32)
}

fn validate_at(shader: Shader, text: &str, what: &str, precision: Precision) -> (naga::Module, naga::valid::ModuleInfo) {
    let module = naga::front::wgsl::parse_str(text)
        .unwrap_or_else(|e| panic!("shaders/{}.wgsl ({what}) does not parse:\n{}", shader.name(), e.emit_to_string(text)));
    // Default capabilities: the shaders must not need optional features, but for the one
    // compiled only for devices with subgroups (in compute shaders), and f16 where the run's
    // precision is f16 (devices with shader-f16 only).
    let mut caps = naga::valid::Capabilities::default();
    if shader.needs_subgroups() {
        caps |= naga::valid::Capabilities::SUBGROUP;
    }
    if precision == Precision::F16 {
        caps |= naga::valid::Capabilities::SHADER_FLOAT16;
    }
    let mut validator = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
    if shader.needs_subgroups() {
        validator.subgroup_stages(naga::valid::ShaderStages::COMPUTE).subgroup_operations(naga::valid::SubgroupOperationSet::all());
    }
    let info = validator
        .validate(&module)
        .unwrap_or_else(|e| panic!("shaders/{}.wgsl ({what}) does not validate:\n{}", shader.name(), e.emit_to_string(text)));
    (module, info)
}

#[test]
fn every_shader_file_validates_on_its_own() {
    for &s in Shader::ALL {
        validate_text(s, s.file(), "the file alone");
    }
}

/// Whitespace runs as one space, so that declarations compare regardless of layout.
fn squeeze(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn stubs_repeat_their_bases_declarations() {
    for &s in Shader::ALL {
        let Some(base) = s.base() else { continue };
        let (stubs, own) = cnn3d::gpu::split_stubs(s.file());
        assert!(!stubs.trim().is_empty(), "shaders/{}.wgsl composes onto {} but has no stubs", s.name(), base.name());
        // The base as composed: its own declarations and those of the files below it.
        let base_text = squeeze(base.source());
        let base_lines: Vec<String> = base.source().lines().map(squeeze).collect();
        // Declarations: a struct runs to its closing line; anything else is one line.
        let mut lines = stubs.lines();
        while let Some(line) = lines.next() {
            let line = line.trim();
            if line.is_empty() || line.starts_with("//") {
                continue;
            }
            if line.starts_with("struct ") {
                let mut decl = line.to_string();
                for l in lines.by_ref() {
                    decl += "\n";
                    decl += l;
                    if l.trim() == "}" {
                        break;
                    }
                }
                assert!(base_text.contains(&squeeze(&decl)), "shaders/{}.wgsl: stub {decl:?} is not {}.wgsl's", s.name(), base.name());
            } else if line.starts_with("fn ") {
                // A function by its signature: up to its body.
                let sig = squeeze(&line[..line.find('{').expect("a stub function has a body")]);
                assert!(
                    base_lines.iter().any(|b| b.starts_with(&sig) && b[sig.len()..].trim_start().starts_with('{')),
                    "shaders/{}.wgsl: stub signature {sig:?} is not one of {}.wgsl's functions",
                    s.name(),
                    base.name()
                );
            } else {
                assert!(base_lines.contains(&squeeze(line)), "shaders/{}.wgsl: stub {line:?} is not a line of {}.wgsl", s.name(), base.name());
            }
        }
        // The composition drops the stubs and the base's functions the variant redefines.
        let composed = s.source();
        assert!(!composed.contains(cnn3d::gpu::STUBS_BEGIN), "{}: stubs left in the composed shader", s.name());
        for name in own.lines().filter_map(|l| l.strip_prefix("fn ")).map(|l| l.split('(').next().unwrap()) {
            let defs = composed.lines().filter(|l| l.starts_with(&format!("fn {name}("))).count();
            assert_eq!(defs, 1, "{}: fn {name} defined {defs} times in the composed shader", s.name());
        }
    }
}

/// A variant's redefinition replaces its base's function, whatever lies around it, and the
/// base's entry points are left out.
#[test]
fn compose_replaces_functions_by_name() {
    let base = "// base\nfn a() -> u32 {\n    return 1u;\n}\n\nfn b() -> u32 { return a(); }\n@compute @workgroup_size(1)\nfn main() {\n    if (b() == 0u) {\n        c();\n    }\n}\nfn c() {}\n";
    let variant = "// variant\n// stubs: begin\nfn b() -> u32 { return 0u; }\n// stubs: end\nfn a() -> u32 {\n    return 2u;\n}\nfn c() {}\n";
    let composed = cnn3d::gpu::compose(base, variant);
    assert_eq!(composed, "// base\n\nfn b() -> u32 { return a(); }\n\n// variant\nfn a() -> u32 {\n    return 2u;\n}\nfn c() {}\n");
}

/// No short-circuit `&&` or `||` in shader code: they compile to a branch per operand, and
/// SwiftShader's compiler took over 100 s and 8 GB for the rows kernel's bounds tests written so
/// (0.2 s and 10 MB with `&` on the comparisons, which evaluate both sides: every operand
/// here is free of side effects, and an out-of-range index in WGSL reads a defined value).
#[test]
fn no_short_circuit_operators_in_shaders() {
    for &s in Shader::ALL {
        for (i, line) in s.file().lines().enumerate() {
            let code = line.split("//").next().unwrap();
            assert!(
                !code.contains("&&") && !code.contains("||"),
                "shaders/{}.wgsl:{}: short-circuit operator in {line:?}; use & or | on parenthesised comparisons",
                s.name(),
                i + 1
            );
        }
    }
}

#[test]
fn every_shader_file_is_registered() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    // Every .wgsl file under shaders/, by its path without the extension (conv3d/tiled).
    fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.extension().is_some_and(|e| e == "wgsl") {
                out.push(p.strip_prefix(root).unwrap().with_extension("").to_string_lossy().into_owned());
            }
        }
    }
    let mut files = vec![];
    walk(&dir, &dir, &mut files);
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
        assert_eq!(!module.entry_points.is_empty(), s.has_entry_points(), "shaders/{}.wgsl: entry points", s.name());
        for ep in &module.entry_points {
            assert_eq!(ep.stage, naga::ShaderStage::Compute, "{}: {} is not a compute entry point", s.name(), ep.name);
        }
    }
}

#[test]
fn every_entry_point_translates_to_spirv_msl_and_hlsl() {
    for &s in Shader::ALL {
        let (module, info) = parse_and_validate(s);
        translate(s, &module, &info, Precision::F32);
    }
}

/// At `--precision f16` every shader as it then runs (f16 enabled, `act` made f16: see
/// Shader::source_at) validates and translates too, and each one that binds activations
/// stores them as f16 then.
#[test]
fn every_entry_point_translates_at_f16() {
    let mut with_activations = 0;
    for &s in Shader::ALL {
        let text = s.source_at(Precision::F16);
        assert!(text.starts_with("enable f16;"), "shaders/{}.wgsl at f16 must enable f16 first", s.name());
        let declared = s.source().matches(cnn3d::gpu::ACT_F32).count();
        assert!(declared <= 1, "shaders/{}.wgsl declares act {declared} times as composed", s.name());
        assert!(!text.contains(cnn3d::gpu::ACT_F32), "shaders/{}.wgsl at f16 still declares act as f32", s.name());
        with_activations += declared;
        let (module, info) = validate_at(s, text, "at f16", Precision::F16);
        translate(s, &module, &info, Precision::F16);
    }
    // Every layer with activations: all but clip_grad_norm, optim, subgroup_layout (and
    // conv3d's geometry, which declares act for the kernels composed onto it).
    assert_eq!(with_activations, Shader::ALL.len() - 3, "shaders declaring `{}`", cnn3d::gpu::ACT_F32);
}

fn translate(s: Shader, module: &naga::Module, info: &naga::valid::ModuleInfo, precision: Precision) {
    {
        let (module, info) = (module.clone(), info.clone());
        for ep in &module.entry_points {
            let what = format!("shaders/{}.wgsl at {precision}, entry point {}", s.name(), ep.name);
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

            // 16-bit types need shader model 6.2 (what wgpu's DX12 backend asks for with f16).
            let shader_model = if precision == Precision::F16 { naga::back::hlsl::ShaderModel::V6_2 } else { naga::back::hlsl::ShaderModel::V6_0 };
            let hlsl_opts = naga::back::hlsl::Options { shader_model, ..Default::default() };
            let hlsl_pipe = naga::back::hlsl::PipelineOptions { entry_point: Some((naga::ShaderStage::Compute, ep.name.clone())) };
            let mut hlsl = String::new();
            naga::back::hlsl::Writer::new(&mut hlsl, &hlsl_opts, &hlsl_pipe)
                .write(&m, &i, None)
                .unwrap_or_else(|e| panic!("{what}: HLSL: {e}"));
            assert!(hlsl.contains("[numthreads("), "{what}: HLSL has no compute entry point");
        }
    }
}

/// No `&` or `|` on vectors of bools: naga's GLSL writer (wgpu's GL backend) writes each
/// operand of such an operation out again, so a chain of n of them grows like 4ⁿ — the
/// weight-gradient kernels' six bounds tests became one 85 KB line of GLSL, and llvmpipe's
/// GL driver took 40 s and 4 GB to compile it. Combine them as u32 masks instead.
#[test]
fn no_vector_bool_and_or_in_shaders() {
    fn check(module: &naga::Module, f: &naga::Function, fi: &naga::valid::FunctionInfo, what: &str) {
        for (h, e) in f.expressions.iter() {
            if let naga::Expression::Binary { op: naga::BinaryOperator::And | naga::BinaryOperator::InclusiveOr, left, .. } = *e {
                let ty = fi[left].ty.inner_with(&module.types);
                if let naga::TypeInner::Vector { scalar: naga::Scalar { kind: naga::ScalarKind::Bool, .. }, .. } = *ty {
                    let span = f.expressions.get_span(h);
                    panic!("{what}: & or | on vectors of bools at {span:?}; combine them as vec<u32> masks");
                }
            }
        }
    }
    for &s in Shader::ALL {
        let (module, info) = parse_and_validate(s);
        for (h, f) in module.functions.iter() {
            check(&module, f, &info[h], &format!("shaders/{}.wgsl fn {}", s.name(), f.name.as_deref().unwrap_or("?")));
        }
        for (i, ep) in module.entry_points.iter().enumerate() {
            check(&module, &ep.function, info.get_entry_point(i), &format!("shaders/{}.wgsl entry point {}", s.name(), ep.name));
        }
    }
}
