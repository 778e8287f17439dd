# sourced by every call: the installed layout without installing, results under $OUT; H200 or not
set -o pipefail
export PYTHONUNBUFFERED=1 TRITON_INTERPRET=0 NCCL_NVLS_ENABLE=0 VDEPLOY_HOME=/tmp/vdeploy-home VDEPLOY_GIT_REV=${REV:-unknown}
mkdir -p /tmp/shim /tmp/peer && ln -sfn $PWD/kernels /tmp/shim/vdeploy_kernels && ln -sfn $PWD/profiles vdeploy/profiles_data
export PYTHONPATH=/tmp/shim:$PWD:/tmp/site
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
h200() { nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; }
# H100 (80 GB): vLLM 0.26 cannot start R1 at 8 or 6 layers; both engines run it at 4 (3 dense + 1 MoE), files tagged _4l
cut_r1() { python3 -c "
import json; p='/tmp/peer/models/r1-8l-dummy/config.json'; d=json.load(open(p)); d['num_hidden_layers']=4
json.dump(d, open(p, 'w'), indent=1)"; }
