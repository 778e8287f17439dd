# call 5 on whichever GPU came: c5.sh on an H200, h5.sh elsewhere (same carry)
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then bash benchmarks/results/2026-12-06f-h100/calls/c5.sh; else bash benchmarks/results/2026-12-06f-h100/calls/h5.sh; fi
