"""The training wing: the study's phases, one at a time.

- `phases`: one phase with resume and history, the three phases in order, under torchrun too
- `runtime`: device, precision (bfloat16 where the CPU has it), loader workers, seeds
- `distributed`: DistributedDataParallel under torchrun, kept apart from the loop
"""
