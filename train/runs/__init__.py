"""The run machinery training and distillation share: atomic checkpoints with keep-last-N (`checkpoint`),
automatic resume (`resume`), the non-finite-loss stop (`guard`), multi-process set-up (`distributed`), the run
log (`runlog`) and Ctrl-C handling (`interrupt`)."""
