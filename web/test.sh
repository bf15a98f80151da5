#!/usr/bin/env bash
# The page in a real browser: builds it, serves web/ on 127.0.0.1 and drives headless Chromium
# (WebGPU on SwiftShader) through web/drive.py. Passes when every kernel passes `check`, the
# short training run ends well above chance, and the console shows no errors.
# Needs: chromium and chromium-driver (Debian), python3; web/build.sh's needs.
# SCREENSHOT=path also saves a picture of the page after the run.
set -euo pipefail
cd "$(dirname "$0")"

bash build.sh
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 "$port" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null' EXIT
for _ in $(seq 50); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/index.html')" 2>/dev/null && break
    sleep 0.2
done

# A few hundred samples: 400 training and 200 test digits, 3 epochs of batch 20 (Adam, lr 1e-4).
result=$(mktemp)
python3 drive.py --url "http://127.0.0.1:$port/index.html?auto=1&train=400&test=200&epochs=3&batch=20&optimizer=adam&lr=0.0001&seed=0" \
    --timeout 1500 --result "$result" ${SCREENSHOT:+--screenshot "$SCREENSHOT"}
python3 - "$result" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
a, c, t = r["adapter"], r["check"], r["train"]
print(f"adapter: {a['browser'] or a['name']} ({a['backend']}, {a['device_type']})")
print(f"check: {c['passed']} of {c['kernels']} kernels pass in {c['seconds']:.1f} s" + (f"; failing: {', '.join(c['failed'])}" if c["failed"] else ""))
print(f"train: {t['train_samples']} samples x {t['epochs']} epochs, batch {t['batch']}, {t['optimizer']} lr {t['lr']}: "
      f"test accuracy {t['test_acc']:.3f} (loss {t['test_loss']:.3f}), train accuracy {t['train_acc']:.3f}, {t['seconds']:.1f} s, "
      f"{t['profiled_dispatches']} dispatches timed")
bad = []
if c["failed"] or c["kernels"] == 0:
    bad.append("check failed")
# Chance is 0.10 (ten digits); the run reaches about 0.35 on lavapipe.
if not t["test_acc"] >= 0.25:
    bad.append(f"test accuracy {t['test_acc']} is below 0.25 (chance: 0.10)")
if bad:
    sys.exit("web/test.sh: " + "; ".join(bad))
PY
echo "web/test.sh: pass"
