"""Multi-LoRA serving: PEFT adapters read and checked (adapter), slots handed out on the engine host (registry),
stacked slot weights in every target layer on each rank (layers)."""
