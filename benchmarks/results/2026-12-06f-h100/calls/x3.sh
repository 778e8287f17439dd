# call 3 on whichever GPU came: c3.sh on an H200, h3.sh elsewhere (same carry)
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then bash benchmarks/results/2026-12-06f-h100/calls/c3.sh; else bash benchmarks/results/2026-12-06f-h100/calls/h3.sh; fi
