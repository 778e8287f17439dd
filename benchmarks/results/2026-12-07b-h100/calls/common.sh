# sourced by every call: the installed layout without installing, results under $OUT; H200 or not
set -o pipefail
export PYTHONUNBUFFERED=1 TRITON_INTERPRET=0 NCCL_NVLS_ENABLE=0 VDEPLOY_HOME=/tmp/vdeploy-home VDEPLOY_GIT_REV=${REV:-unknown}
mkdir -p /tmp/shim /tmp/peer && ln -sfn $PWD/kernels /tmp/shim/vdeploy_kernels && ln -sfn $PWD/profiles vdeploy/profiles_data
export PYTHONPATH=/tmp/shim:$PWD:/tmp/site
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
h200() { nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; }
# H100 (80 GB): vLLM 0.26 cannot start R1 even at 4 layers (2026-12-06d-h100); these calls are for the H200
