# Sourced by every device call of a results folder (`source benchmarks/lease_common.sh` from the repository root, after
# `export REV=...`): the installed layout without installing, results under $OUT, the peer bundle unpacked once its
# three parts (and the bundle's model directories) have arrived, helpers (el, h200, gpu, vllm_logs, pack_dirs).
set -o pipefail
export PYTHONUNBUFFERED=1 TRITON_INTERPRET=0 NCCL_NVLS_ENABLE=0 VDEPLOY_HOME=/tmp/vdeploy-home VDEPLOY_GIT_REV=${REV:-unknown}
mkdir -p /tmp/shim /tmp/peer && ln -sfn $PWD/kernels /tmp/shim/vdeploy_kernels && ln -sfn $PWD/profiles vdeploy/profiles_data
export PYTHONPATH=/tmp/shim:$PWD:/tmp/site
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
h200() { nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; }
gpu() { nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $OUT/gpu.txt; }
unpack_peer() { (cd /tmp/peer && cat vllm026.part0? > vllm026.tar.xz && sha256sum -c vllm026.sha256 && tar -xJf vllm026.tar.xz && rm vllm026.tar.xz vllm026.part0?); }
vllm_logs() { (cd $OUT && ls *.log >/dev/null 2>&1 && tar czf vllm-logs-$1.tar.gz *.log && rm *.log); }
# the bundle's model directories (config + tokenizer, minified JSON) travel as .peer/models-*.tar.xz beside its parts
for m in .peer/models-*.tar.xz; do [ -f "$m" ] && mkdir -p /tmp/peer/models && tar -xJf "$m" -C /tmp/peer/models; done
# the peer's parts arrive in three calls (whichever carries them); the call that completes them unpacks
[ -d /tmp/peer/site ] || { cp .peer/vllm026.* /tmp/peer/ 2>/dev/null; [ -f /tmp/peer/vllm026.part00 ] && [ -f /tmp/peer/vllm026.part01 ] && [ -f /tmp/peer/vllm026.part02 ] && unpack_peer; }
# a call brings back at most 8 files: every folder under $OUT goes back as one archive
pack_dirs() { (cd $OUT && for d in */; do [ -d "$d" ] && tar czf "${d%/}.tar.gz" "$d" && rm -rf "$d"; done; ls); }
# R1 on the card at hand: 8 layers (the issues' benchmarks) on an H200; on an 80 GB card 6 (3 dense + 3 MoE) for both
# engines, files tagged _6l. vLLM 0.26 then also needs --gpu-memory-utilization 0.80: at its default 0.92 it sizes the
# KV cache first and then asks for a ~4 GiB MLA workspace in flashinfer's autotune run, which runs out of memory at 4
# and 6 layers (2026-12-06 logs). At 0.80 its cache still holds ~12 GiB, ~1.8M tokens of 6 layers' latent cache,
# against the 512k the workloads need, so the setting costs it nothing. Call after the models archive is unpacked.
r1_fit() {
  R1L=$(h200 && echo 8 || echo 6); R1TAG=$([ "$R1L" = 8 ] || echo "_${R1L}l")
  VLLM_EXTRA=$([ "$R1L" = 8 ] || echo "--gpu-memory-utilization 0.80"); export R1L R1TAG VLLM_EXTRA
  python3 -c "import json, sys; p = '/tmp/peer/models/r1-8l-dummy/config.json'; d = json.load(open(p))
d['num_hidden_layers'] = int(sys.argv[1]); json.dump(d, open(p, 'w'), indent=1)" "$R1L"
  # the peer's bench.sh with $VLLM_EXTRA after its --dtype (an engine argument it has no variable for)
  [ -f /tmp/peer/bench.sh ] && sed 's/--dtype bfloat16/--dtype bfloat16 ${VLLM_EXTRA:-}/' /tmp/peer/bench.sh > /tmp/peer/bench_extra.sh
  true
}
