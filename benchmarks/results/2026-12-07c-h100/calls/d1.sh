# any GPU, after e1 (its tables in $VDEPLOY_HOME). carry: whichever peer part is next — issue 19: where an AWQ
# batch-1 decode step's time goes, kernel by kernel, beside bf16's (R1-Distill-Qwen-7B shape, dummy weights, CUDA
# graphs, 8 profiled pure-decode steps); and the Llama-3.1-8B shape's bf16 batch-1 step (issue 14: decode_8b at 0.78 of
# its roofline: where the other 0.22 goes). First: decode attention in one launch against the two-launch baseline
# (issue 14; base_decode_attention.py is kernels/decode_attention.py at 31cef1e), MLA's too (base_mla_attention.py:
# kernels/mla_attention.py at d9541b5, removed from here since: the revert made the kernel that file again), and MLA's GPU test
source "$(dirname "$0")/common.sh"
el decode-attention-ab; timeout 90 python3 benchmarks/kernels/decode_attention_ab.py --baseline "$(dirname "$0")/base_decode_attention.py" \
  --mla-baseline "$(dirname "$0")/base_mla_attention.py" --git-rev $REV --out $OUT 2>&1 | grep -v Warn | tail -10
el mla-gpu-test; timeout 60 python3 -m pytest -q -p no:cacheprovider tests/deepseek/test_deepseek_kernels_gpu.py -k mla_attention 2>&1 | tail -2 | tee $OUT/gpu-tests-mla.txt
python3 benchmarks/quant_configs.py /tmp/qm --models deepseek-r1-distill-qwen-7b deepseek-r1-distill-llama-8b --schemes bf16 awq > /dev/null
for m in qwen-7b-awq qwen-7b-bf16 llama-8b-bf16; do
  el step-$m; timeout 90 python3 benchmarks/engine/step_phases.py /tmp/qm/deepseek-r1-distill-$m \
    --num-prompts 1 --input-len 128 --output-len 120 --profile-after 40 --profile-steps 8 --label $m \
    --out $OUT/step-$m 2>&1 | grep -v Warn | tail -25
done
el done
