# H200 (first call; carries .peer/vllm026.part00 .peer/vllm026.sha256) — the FP8 block GEMM's decode sweep at M = 1 on
# this card (tables into $VDEPLOY_HOME for this machine's later runs, copies to $OUT); ours: R1-8L + its MTP layer,
# batch-1 decode with MTP k = 1, 2 against none, real drafts and replayed acceptance 0 / 0.5 / 0.8 / 1.0 (issue 18)
source "$(dirname "$0")/common.sh"; gpu
h200 || { echo "not an H200: e1 instead"; exec bash "$(dirname "$0")/e1.sh"; }
el fp8-decode-sweep; timeout 130 python3 benchmarks/kernels/fp8_decode_check.py --sweep --sweep-m 1 --git-rev $REV --out $OUT 2>&1 | grep -v Warn | tail -12
mkdir -p $VDEPLOY_HOME/kernel_configs/fp8_block_gemm && cp $OUT/fp8_block_gemm/*.json $VDEPLOY_HOME/kernel_configs/fp8_block_gemm/ 2>/dev/null
el mtp; timeout 330 python3 benchmarks/speculative_mtp.py --num-prompts 1 --ks 1 2 --out $OUT/speculative-mtp.json 2>&1 | grep -v Warn | tail -25
el done
