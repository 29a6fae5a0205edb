#!/usr/bin/env bash
# Issue 23's GPU checks in one go, on a GPU host, from the repository root (about 6-7 minutes on an H200):
#   1. the host: GPU, CUDA, torch, ONNX Runtime's providers, TensorRT, DALI (what is missing is said, not fatal);
#   2. the CUDA tests (tests/test_gpu_cuda.py: nvJPEG vs the CPU decoder, the batched augmentation on CUDA,
#      the prefetch stream, fit() in bf16/fp16/fp32, a torch row's MACs and GPU memory) and the faked-GPU tests;
#   3. `edgeres demo` on the GPU, then its torch rows' macs and gpu_mem_mb, every row's device, report.json's GPU;
#   4. benchmarks/bench_train_gpu.py: the pure-PyTorch fp32/bf16 limit vs `edgeres train` (gpu and cpu input
#      pipelines) on 10,000 generated JPEG files at 224 px, images/s and the ratio to the bf16 limit (goal >= 0.70).
#
#   bash benchmarks/gpu_check.sh                 # PYTHON=... to use another interpreter, OUT=... another folder
set -uo pipefail
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
status=0
step() { echo; echo "=== $* ($(date +%T))"; }

step "1/4 host"
"$PY" - <<'EOF'
import importlib.util, torch
print("torch", torch.__version__, "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version())
if not torch.cuda.is_available():
    raise SystemExit("no CUDA GPU visible to torch: nothing to check here")
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"GPU {i}: {p.name}, {p.total_memory / 2**30:.0f} GiB, sm_{p.major}{p.minor}")
import onnxruntime as ort
print("onnxruntime", ort.__version__, ort.get_available_providers())
for mod in ("tensorrt", "nvidia.dali", "cuda.bindings", "pycuda"):
    print(f"{mod}: {'yes' if importlib.util.find_spec(mod.split('.')[0]) else 'not installed'}")
from edgeres.amp import choose_amp
print("--amp auto here:", choose_amp("auto", torch.device("cuda", 0)).reason)
EOF
[ $? -eq 0 ] || exit 1

step "2/4 CUDA tests and faked-GPU tests"
timeout 240 "$PY" -m pytest -q -p no:cacheprovider tests/test_gpu_cuda.py tests/test_gpu_host.py tests/test_amp.py \
  tests/test_gpu_pipeline.py 2>&1 | tail -15 || status=1

step "3/4 edgeres demo on the GPU"
t0=$SECONDS
timeout 330 "$PY" -m edgeres -q demo --out "$OUT/demo" > "$OUT/demo.log" 2>&1 || status=1
tail -25 "$OUT/demo.log"
echo "demo wall $((SECONDS - t0)) s"
"$PY" - "$OUT/demo" <<'EOF' || status=1
import csv, json, sys
run = sys.argv[1]
host = json.load(open(f"{run}/report.json"))["host"]
print("report.json host gpu:", host.get("gpu"), "| gpus:", host.get("gpus"), "| cuda", host.get("cuda"))
rows = list(csv.DictReader(open(f"{run}/report.csv")))
print(f"{'stage':10} {'runtime':12} {'device':28} {'prec':6} {'bs':>3} {'macs':>12} {'gpu_mem_mb':>10} {'p50_ms':>8} status")
for r in rows:
    print(f"{r['stage']:10} {r['runtime']:12} {r['device'][:28]:28} {r['precision'][:6]:6} {r['batch_size']:>3} "
          f"{r['macs']:>12} {r['gpu_mem_mb']:>10} {r['latency_p50_ms']:>8} {r['status']}")
torch_rows = [r for r in rows if r["runtime"] == "torch" and r["status"] == "ok"]
bad = [r["stage"] for r in torch_rows if not r["macs"] or not r["gpu_mem_mb"]]
print("torch rows with MACs and gpu_mem_mb:", "all" if torch_rows and not bad else f"MISSING in {bad or 'no torch rows'}")
sys.exit(1 if bad or not torch_rows or not host.get("gpu") else 0)
EOF

step "4/4 bench_train_gpu (10,000 JPEG at 224 px, ResNet50, batch 256)"
timeout 420 "$PY" benchmarks/bench_train_gpu.py --data "$OUT/jpeg224" --out "$OUT/train_gpu.csv" || status=1
grep -o -w 'avx2\|avx512_vnni\|amx_int8' /proc/cpuinfo | sort -u | tr '\n' ' '; echo "($(nproc) cores)"

echo; echo "gpu_check: $([ $status -eq 0 ] && echo all steps ran || echo 'a step FAILED (see above)'); results in $OUT"
exit $status
