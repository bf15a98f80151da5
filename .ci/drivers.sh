#!/usr/bin/env bash
# The driver matrix: `cnn3d check` and a one-epoch training run on every software driver this
# machine can run, each also without subgroups where the device has them, and at
# --precision f16 where the device has f16 (refused where not), with wall time and peak
# resident memory. Any failure, or a run whose peak reaches the limit, fails the script.
#
#   lavapipe     Mesa's CPU Vulkan driver (8-lane subgroups)       mesa-vulkan-drivers
#   SwiftShader  Google's CPU Vulkan driver (4-lane subgroups, at most 256 invocations a
#                workgroup), from Debian's chromium-common package, no browser needed
#   GL           llvmpipe's OpenGL through wgpu's GL backend (no subgroups)
# and, first, every shader through Tint (Chrome's shader compiler), see below; after the checks,
# every pipeline they created, with its override constants, through Tint too.
#
# Mesa's on-disk shader cache is off, so that each run pays its own shader compiles as a
# user's first run does. Each run starts with an empty tuning cache.
# Usage: .ci/drivers.sh [PEAK_LIMIT_MIB]   (default 2048)
set -euo pipefail
cd "$(dirname "$0")/.."
limit_mib=${1:-2048}

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
packages=(mesa-vulkan-drivers libvulkan1 libegl1 libegl-mesa0 libgl1-mesa-dri time)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# SwiftShader: libvk_swiftshader.so out of Debian's chromium-common, with an ICD file of our own
# that names it by absolute path.
ss=target/swiftshader
if [ ! -f "$ss/icd.json" ]; then
    rm -rf "$ss" && mkdir -p "$ss"
    (cd "$ss" && { apt-get download chromium-common >/dev/null 2>&1 || { $sudo apt-get update -qq && apt-get download chromium-common; }; })
    dpkg-deb -x "$ss"/chromium-common_*.deb "$ss/root"
    lib=$(find "$PWD/$ss/root" -name libvk_swiftshader.so | head -n 1)
    [ -n "$lib" ] || { echo "chromium-common has no libvk_swiftshader.so" >&2; exit 1; }
    printf '{"file_format_version": "1.0.0", "ICD": {"library_path": "%s", "api_version": "1.0.5"}}\n' "$lib" > "$ss/icd.json"
    rm -f "$ss"/chromium-common_*.deb
fi
ss_icd="$PWD/$ss/icd.json"

cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A copy, so that a build during the matrix does not change the binary under it.
bin="$work/cnn3d"
cp target/release/cnn3d "$bin"
export MESA_SHADER_CACHE_DISABLE=true
# wgpu's GL backend asks for it; without a session it only prints a warning.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$work}"

rows=()
failed=0
# measure NAME ENV_ICD -- COMMAND...: one command, timed, its output kept for a failure.
measure() {
    local name=$1 icd=$2; shift 3
    local log="$work/$(echo "$name" | tr ' /' '__').log"
    local cache="$work/cache-$(echo "$name" | tr ' /' '__')"
    local status=pass
    echo "== $name: $*"
    if ! env ${icd:+VK_ICD_FILENAMES="$icd"} CNN3D_CACHE_DIR="$cache" /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$log" 2>&1; then
        status=FAIL
    fi
    local wall peak_kib
    read -r wall peak_kib < <(tail -n 1 "$work/time")
    local peak_mib=$((peak_kib / 1024))
    if ((peak_mib >= limit_mib)); then status="FAIL (peak >= $limit_mib MiB)"; fi
    if [ "$status" != pass ]; then
        failed=1
        tail -n 40 "$log"
    else
        # check's last line, or train's summary (one JSON line).
        grep -E "kernels pass|^\{|under Tint|override constants:" "$log" | tail -n 2 | cut -c1-240 || true
    fi
    rows+=("$(printf '%-34s %9.1f s %7d MiB  %s' "$name" "$wall" "$peak_mib" "$status")")
}

# run NAME ENV_ICD -- ARGS...: cnn3d with ARGS, measured.
run() {
    local name=$1 icd=$2; shift 3
    measure "$name" "$icd" -- "$bin" "$@"
}

# Tint, the shader compiler of Chrome's WebGPU (Dawn), is stricter than naga (WebGPU's
# uniformity rules for barriers and subgroup operations, its default limits): every shader as
# cnn3d compiles it goes through Dawn's Node.js build on SwiftShader (tools/tint/validate.mjs).
command -v node >/dev/null || { echo "node (Node.js 18 or newer) is needed for the Tint check" >&2; exit 1; }
(cd tools/tint && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
"$bin" shaders --out "$work/shaders" >/dev/null
measure "tint (dawn.node on swiftshader)" "$ss_icd" -- node tools/tint/validate.mjs "$work/shaders"

train=(train --epochs 1 --limit-train 300 --limit-test 100 --quiet --json)
for sub in "" "--no-subgroups"; do
    tag=${sub:+ $sub}
    run "lavapipe check$tag" "" -- --backend vulkan --adapter llvmpipe check $sub --pipelines "$work/pipelines-lvp$sub.json"
    run "lavapipe train$tag" "" -- --backend vulkan --adapter llvmpipe "${train[@]}" --out "$work/run-lvp$sub" $sub
    run "swiftshader check$tag" "$ss_icd" -- --backend vulkan --adapter swiftshader check $sub --pipelines "$work/pipelines-ss$sub.json"
    run "swiftshader train$tag" "$ss_icd" -- --backend vulkan --adapter swiftshader "${train[@]}" --out "$work/run-ss$sub" $sub
done
run "gl check" "" -- --backend gl check --pipelines "$work/pipelines-gl.json"
run "gl train" "" -- --backend gl "${train[@]}" --out "$work/run-gl"
# The pipelines those checks created, each with the override constants cnn3d chose on that
# device (tile and workgroup sizes, subgroup widths), through Tint again.
measure "tint pipelines (checks' constants)" "$ss_icd" -- node tools/tint/validate.mjs "$work/shaders" \
    $(for f in "$work"/pipelines-*.json; do printf -- '--pipelines %s ' "$f"; done)

# --precision f16 (activations stored in f16): lavapipe has shader-f16 and runs it; SwiftShader
# and llvmpipe's GL have none and must refuse it as a usage error naming what is missing.
run "lavapipe check --precision f16" "" -- --backend vulkan --adapter llvmpipe --precision f16 check
run "lavapipe train --precision f16" "" -- --backend vulkan --adapter llvmpipe --precision f16 "${train[@]}" --out "$work/run-lvp-f16"
# refuse NAME ENV_ICD -- ARGS...: cnn3d with ARGS must exit 2 saying shader-f16 is missing.
refuse() {
    local name=$1 icd=$2; shift 3
    local code=0
    echo "== $name: $*"
    env ${icd:+VK_ICD_FILENAMES="$icd"} "$bin" "$@" >"$work/refuse.log" 2>&1 || code=$?
    if [ "$code" -eq 2 ] && grep -q "shader-f16" "$work/refuse.log"; then
        rows+=("$(printf '%-34s %9s   %7s      %s' "$name" "-" "-" "pass (refused)")")
    else
        failed=1
        tail -n 20 "$work/refuse.log"
        rows+=("$(printf '%-34s %9s   %7s      %s' "$name" "-" "-" "FAIL (exit $code, not refused)")")
    fi
}
refuse "swiftshader --precision f16" "$ss_icd" -- --backend vulkan --adapter swiftshader --precision f16 check --layer dropout
refuse "gl --precision f16" "" -- --backend gl --precision f16 check --layer dropout

echo
echo "driver matrix (peak resident memory limit $limit_mib MiB)"
printf '%s\n' "${rows[@]}"
exit $failed
