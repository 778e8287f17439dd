# call 4 on whichever GPU came: c4.sh on an H200, h4.sh elsewhere (same carry)
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then bash benchmarks/results/2026-12-06f-h100/calls/c4.sh; else bash benchmarks/results/2026-12-06f-h100/calls/h4.sh; fi
