"""The training wing: the study's phases, one at a time.

- `phases`: one phase with resume and history, the three phases in order, under torchrun too
- `batches`: loaders, the on-device augmentation of each batch, logits over a split
- `features`: the frozen backbone's pooled features of a split, kept on disk for reuse
- `logistic`: the linear probe's per-class logistic regressions and their cross-validated C
- `losses`: BCE with an optional per-class pos_weight, and the asymmetric loss
- `runtime`: device, precision (bfloat16 where the CPU has it), loader workers, seeds
- `distributed`: DistributedDataParallel under torchrun, kept apart from the loop
"""
