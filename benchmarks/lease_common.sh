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
