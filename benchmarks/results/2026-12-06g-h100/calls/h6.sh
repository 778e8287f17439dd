# as it ran (after h5): ours V2-Lite 500 with neither table from h1 (shipped tables only)
source benchmarks/results/2026-12-06g-h200-vs-vllm/calls/common.sh; mv $VDEPLOY_HOME/kernel_configs/mla_decode /tmp/held/; ls -R $VDEPLOY_HOME/kernel_configs; el dsv2tp-500-shipped; N=500 TAG=_500_shipped timeout 150 bash benchmarks/same_lease.sh dsv2tp; el done
