// Compiles every .wgsl file under a folder with Dawn, Chrome's WebGPU implementation, whose
// shader compiler (Tint) is stricter than naga: WebGPU's uniformity rules (barriers and
// subgroupBroadcast only in uniform control flow), and WebGPU's default limits, as a page gets
// them. Each file becomes a shader module (Tint parses, resolves and validates it, uniformity
// analysis included), and each of its compute entry points a pipeline with the override
// constants' defaults. Prints one line per file; exits 1 if any fails.
//
// With --pipelines FILE (repeatable; `cnn3d check --pipelines FILE` writes one), also every
// pipeline listed there: its shader's entry point with the override constants cnn3d used (tile
// sizes, workgroup sizes, unrolls), which the defaults alone do not exercise.
//
// Usage: node validate.mjs DIR [--pipelines FILE]...
//        (DIR: the shaders as cnn3d compiles them, `cnn3d shaders --out DIR`)
// Runs on whatever Vulkan driver the loader finds (CI: SwiftShader, see .ci/drivers.sh).
import { create, globals } from 'webgpu';
import fs from 'node:fs';
import path from 'node:path';

Object.assign(globalThis, globals);

function wgslFiles(dir) {
    return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
        const p = path.join(dir, e.name);
        return e.isDirectory() ? wgslFiles(p) : e.name.endsWith('.wgsl') ? [p] : [];
    }).sort();
}

const args = process.argv.slice(2);
const dir = args.shift();
const listings = [];
while (args.length) {
    const flag = args.shift();
    const file = args.shift();
    if (flag !== '--pipelines' || !file || !fs.existsSync(file)) {
        console.error(`usage: node validate.mjs DIR [--pipelines FILE]... (got ${flag} ${file ?? ''})`);
        process.exit(2);
    }
    listings.push(file);
}
if (!dir || !fs.existsSync(dir)) {
    console.error('usage: node validate.mjs DIR [--pipelines FILE]... (DIR: a folder of .wgsl files)');
    process.exit(2);
}
// DAWN_OPTIONS: Dawn's toggles, comma-separated (e.g. backend=null).
// The instance stays referenced: dawn.node aborts if it is collected while its device lives.
const gpu = create(process.env.DAWN_OPTIONS ? process.env.DAWN_OPTIONS.split(',') : []);
const adapter = await gpu.requestAdapter();
if (!adapter) {
    console.error('Dawn found no adapter (is a Vulkan driver installed, VK_ICD_FILENAMES set?)');
    process.exit(1);
}
const subgroups = adapter.features.has('subgroups');
// WebGPU's default limits: no requiredLimits, as a page that asks for nothing.
const device = await adapter.requestDevice({ requiredFeatures: subgroups ? ['subgroups'] : [] });
console.log(`Tint (Dawn) on ${adapter.info.description || adapter.info.vendor}, subgroups: ${subgroups}`);

// naga takes subgroup operations without WGSL's `enable subgroups;` (and rejects it), Tint
// requires it: a shader that uses them gets it here.
function readShader(file) {
    const code = fs.readFileSync(file, 'utf8');
    const needsSubgroups = /\bsubgroup[A-Z]\w*\s*\(|@builtin\(subgroup_/.test(code);
    return { code: needsSubgroups ? 'enable subgroups;\n' + code : code, needsSubgroups };
}

let failed = 0;
for (const file of wgslFiles(dir)) {
    const { code, needsSubgroups } = readShader(file);
    const name = path.relative(dir, file);
    if (needsSubgroups && !subgroups) {
        console.log(`skip ${name}: needs subgroups, which this adapter lacks`);
        continue;
    }
    const errors = [];
    const module = device.createShaderModule({ code });
    const info = await module.getCompilationInfo();
    for (const m of info.messages) {
        // Line numbers of the file as written (the `enable` line shifted them).
        const line = m.lineNum - (needsSubgroups ? 1 : 0);
        if (m.type !== 'info') errors.push(`${m.type} at ${name}:${line}:${m.linePos}: ${m.message}`);
    }
    const entries = [...code.matchAll(/@compute[^]*?\bfn\s+(\w+)\s*\(/g)].map((m) => m[1]);
    if (!errors.some((e) => e.startsWith('error'))) {
        for (const entryPoint of entries) {
            device.pushErrorScope('validation');
            device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint } });
            const e = await device.popErrorScope();
            if (e) errors.push(`error in pipeline ${name} ${entryPoint}: ${e.message}`);
        }
    }
    const bad = errors.filter((e) => !e.startsWith('warning'));
    console.log(`${bad.length ? 'FAIL' : 'ok  '} ${name}: ${entries.length} entry points${errors.length ? '\n  ' + errors.join('\n  ') : ''}`);
    if (bad.length) failed++;
}
// The pipelines cnn3d created, with their override constants (each distinct one once).
const seen = new Set();
const modules = new Map();
let compiled = 0, skipped = 0, failedPipelines = 0;
for (const listing of listings) {
    for (const p of JSON.parse(fs.readFileSync(listing, 'utf8'))) {
        const key = JSON.stringify([p.shader, p.entry, p.constants]);
        if (seen.has(key)) continue;
        seen.add(key);
        if (!modules.has(p.shader)) {
            const { code, needsSubgroups } = readShader(path.join(dir, `${p.shader}.wgsl`));
            modules.set(p.shader, { needsSubgroups, module: needsSubgroups && !subgroups ? null : device.createShaderModule({ code }) });
        }
        const { module } = modules.get(p.shader);
        const what = `${p.shader} ${p.entry} ${JSON.stringify(p.constants)}`;
        if (!module) {
            skipped++;
            continue;
        }
        device.pushErrorScope('validation');
        device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: p.entry, constants: p.constants } });
        const e = await device.popErrorScope();
        if (e) {
            console.log(`FAIL pipeline ${what}: ${e.message}`);
            failedPipelines++;
        } else {
            compiled++;
        }
    }
}
if (listings.length) {
    console.log(`pipelines with cnn3d's override constants: ${compiled} compile, ${failedPipelines} fail` +
        (skipped ? `, ${skipped} skipped (need subgroups, which this adapter lacks)` : '') + ` (${listings.join(', ')})`);
}
failed += failedPipelines;
console.log(failed ? `${failed} shader file(s) or pipeline(s) failed under Tint` : 'every shader compiles under Tint');
// Dawn keeps the event loop alive.
process.exit(failed ? 1 : 0);
