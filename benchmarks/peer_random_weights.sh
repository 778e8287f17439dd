#!/usr/bin/env bash
# vLLM's side of a same-weights comparison (issue 15): ../shared/peer-vllm/bench.sh's DeepSeek modes with the same
# arguments, but on the random checkpoint that benchmarks/random_checkpoint.py wrote under /tmp/random/ (WEIGHTS=random
# bash benchmarks/same_lease.sh MODE writes it and runs ours) instead of --load-format dummy. Runs on the lent GPU after
# the peer bundle is unpacked into $P (default /tmp/peer).
#   bash benchmarks/peer_random_weights.sh dsv2tp|r1tp|r1lat      (N=… TAG=… as bench.sh takes them)
set -o pipefail
P=${P:-/tmp/peer}
export PYTHONPATH=$P/site${PYTHONPATH:+:$PYTHONPATH}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 PYTHONUNBUFFERED=1
export VLLM_USE_FLASHINFER_SAMPLER=0
O=${OUT:-/tmp/out}; mkdir -p "$O"
V="python3 -m vllm.entrypoints.cli.main"
TAG=${TAG:-}
tp() {  # model-dir output-name prompts
  $V bench throughput --model "/tmp/random/$1" --dtype bfloat16 --dataset-name random --random-input-len 1000 \
     --random-output-len 1000 --num-prompts "$3" --max-model-len 2048 --seed 0 \
     --output-json "$O/vllm_$2${TAG}_random.json" 2>&1 | tee "$O/vllm_$2${TAG}_random.log"
}
case "${1:-}" in
dsv2tp) tp dsv2-lite-dummy throughput_dsv2lite "${N:-1000}" ;;
r1tp) tp r1-8l-dummy throughput_r1_8l "${N:-256}" ;;
r1lat) $V bench latency --model /tmp/random/r1-8l-dummy --dtype bfloat16 --max-model-len 2048 --batch-size 1 \
         --input-len 128 --output-len 1024 --num-iters-warmup 1 --num-iters 3 \
         --output-json "$O/vllm_latency_r1_8l${TAG}_random.json" 2>&1 | tee "$O/vllm_r1lat${TAG}_random.log" ;;
*) echo "usage: $0 dsv2tp|r1tp|r1lat"; exit 2 ;;
esac
