"""One phase of training at a time, resumable after any crash.

Files under `runs/<profile>/`:
- `phaseN/last.pt` after every epoch, `phaseN/best.pt`: the lowest validation loss over all
  phases so far (phase N starts from a copy of phase N-1's best), or the last epoch with
  `train.best_checkpoint: last`;
- `history.csv`: one row per finished epoch of every phase, rewritten after each epoch.

Each phase starts from the weights the previous phase ended with, with a fresh optimiser: the
head at `optim.lr`, the pretrained layers at `optim.backbone_lr` (the same unless set), or frozen
in a `train: head` phase (linear probing), whose head learns on features computed once when the
preset has no randomness. `optim.freeze_bn` keeps BatchNorm's running statistics fixed.
Every epoch is seeded from (profile seed, phase, epoch), so a run that is killed and started
again repeats the interrupted epoch exactly and ends with the same weights and history on the CPU.

Batches from the image cache arrive as uint8 and are finished on the device (vocproj/data/cache.py).
The loss stays on the device and is checked every few batches, so that a GPU is not stopped
after every batch to hand its loss to the CPU.

Under torchrun the same code trains in every process (vocproj/training/distributed.py): each
takes its slice of every global batch, the network is wrapped in DistributedDataParallel, the
loss of a slice is its part of the global batch's mean, validation is sharded and gathered, and
rank 0 alone writes files, after rank 0 has prepared the data and the phase's starting point.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn
from tqdm.auto import tqdm

from vocproj import __version__
from vocproj.artifacts import HISTORY_FIELDS, RunFiles, read_history
from vocproj.config import PhaseSettings, Profile, Settings, load_profile
from vocproj.data.prepare import open_split, prepared
from vocproj.data.transforms import augmentations
from vocproj.errors import CheckpointError, ConfigError, TrainingDiverged, TrainingFailed
from vocproj.images import input_normalisation
from vocproj.io import atomic_link, atomic_write_text, remove_temporaries
from vocproj.locks import owning_run_folder
from vocproj.metrics.multilabel import mean_average_precision
from vocproj.model.network import (
    build_model,
    head_name,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from vocproj.training.batches import loader, predict_logits
from vocproj.training.distributed import (
    SINGLE_PROCESS,
    World,
    barrier,
    check_batch_size,
    current_world,
    data_parallel,
    gather_in_order,
    main_process_first,
    sum_over_ranks,
    synced_batchnorm,
    unwrapped,
)
from vocproj.training.features import FeatureItems, frozen_features, starting_features
from vocproj.training.logistic import best_c, cross_validated_map, fit_logistic_head
from vocproj.training.losses import MultiLabelLoss, loss_for
from vocproj.training.runtime import Runtime, derived_seed, runtime_for, seed_everything

# Settings that change how fast or where a run goes, not what it computes (beyond rounding).
RUNTIME_ONLY_SETTINGS = {
    "data": ("root", "prefer_roots", "num_workers", "cache"),
    "train": ("device", "progress", "eval_batch_size", "compile", "sync_batchnorm", "timeout_s"),
    "": ("runs_dir", "reports_dir", "evaluate"),  # evaluate: test-time augmentation, after training
}
LOSS_CHECK_EVERY = 16  # training batches between checks of the loss on the CPU


@dataclass
class PhaseState:
    """Everything that carries from one epoch to the next."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    classes: tuple[str, ...]
    head_only: bool = False  # the pretrained layers are frozen (linear probing)
    freeze_bn: bool = False
    epochs_done: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val_loss: float = math.inf
    world: World = SINGLE_PROCESS
    loss: MultiLabelLoss = field(default_factory=MultiLabelLoss)

    @property
    def head(self) -> nn.Module:
        return self.model.get_submodule(head_name(self.model))

    def enter_training(self) -> None:
        """Training mode; the frozen layers (and BatchNorm, if asked) in eval mode."""
        self.model.train(not self.head_only)
        if self.freeze_bn:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()


def training_fingerprint(profile: Profile, phase: int) -> dict[str, Any]:
    """The settings that determine phase `phase`'s result and differ from their defaults.

    Later phases and runtime-only settings are left out. Only values that differ from their
    defaults count, so an option added with a default never makes a finished checkpoint look
    trained with other settings.
    """
    return fingerprint_of(profile.settings, phase)


def fingerprint_of(settings: Settings, phase: int) -> dict[str, Any]:
    values = settings.model_dump(mode="json", exclude_defaults=True)
    values["train"]["phases"] = values["train"]["phases"][:phase]
    for section, keys in RUNTIME_ONLY_SETTINGS.items():
        target = values.get(section, {}) if section else values
        for key in keys:
            target.pop(key, None)
    return values


def recorded_settings(fingerprint: dict[str, Any], profile: Profile) -> Settings | None:
    """A checkpoint's fingerprint as settings (runtime-only values from `profile`), if valid.

    Fingerprints of earlier versions hold every setting of their time, defaults included; a
    setting they lack did not exist yet and takes its default. One that no longer exists makes
    the checkpoint another run's (None).
    """
    values = copy.deepcopy(fingerprint)
    current = profile.to_dict()["settings"]
    for section, keys in RUNTIME_ONLY_SETTINGS.items():
        source = current[section] if section else current
        target = values.setdefault(section, {}) if section else values
        for key in keys:
            if key in source:
                target.setdefault(key, source[key])
    try:
        return Settings.model_validate(values)
    except ValidationError:
        return None


def parameter_groups(
    model: nn.Module, lr: float, backbone_lr: float | None, head_only: bool
) -> list[dict[str, Any]]:
    """The head at `lr`; the pretrained layers at `backbone_lr` (or `lr`), frozen if head_only."""
    head_prefix = head_name(model) + "."
    head, backbone = [], []
    for name, parameter in model.named_parameters():
        (head if name.startswith(head_prefix) else backbone).append(parameter)
    for parameter in backbone:
        parameter.requires_grad_(not head_only)
    groups = [{"params": head, "lr": lr}]
    if not head_only:
        groups.append({"params": backbone, "lr": lr if backbone_lr is None else backbone_lr})
    return groups


def make_optimizer(
    profile: Profile, model: nn.Module, phase: PhaseSettings
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD with the profile's learning rates, momentum and weight decay, and its schedule."""
    optim = profile.settings.optim
    groups = parameter_groups(model, optim.lr, optim.backbone_lr, phase.train != "all")
    optimizer = torch.optim.SGD(
        groups,
        lr=optim.lr,
        momentum=optim.momentum,
        weight_decay=optim.weight_decay,
        nesterov=optim.nesterov,
    )
    if optim.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=phase.epochs)
    elif optim.schedule == "step":
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, optim.step_epochs, optim.step_gamma)
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    return optimizer, scheduler


def new_phase_state(
    profile: Profile,
    phase: int,
    runtime: Runtime,
    classes: tuple[str, ...],
    world: World = SINGLE_PROCESS,
) -> PhaseState:
    """Phase 1 starts from the profile's weights; phase N from phase N-1's final weights."""
    if phase == 1:
        model = starting_model(profile, classes)
        return state_for_model(profile, phase, runtime, model, classes, world)
    seed_everything(derived_seed(profile.settings.seed, "init"))
    previous = require_finished_phase(profile, phase - 1)
    path = RunFiles.of(profile).last(phase - 1)
    model = model_from_checkpoint(previous, classes, path)
    state = state_for_model(profile, phase, runtime, model, classes, world)
    state.history, state.best_val_loss = previous["history"], previous["best_val_loss"]
    if world.is_main:
        carry_best_checkpoint(profile, phase)
    return state


def starting_model(profile: Profile, classes: tuple[str, ...]) -> nn.Module:
    """Phase 1's starting network: the profile's weights, a random head (and a random
    initialisation with weights: none) drawn from the profile's seed."""
    seed_everything(derived_seed(profile.settings.seed, "init"))
    settings = profile.settings.model
    return build_model(settings.backbone, settings.weights, len(classes))


def state_for_model(
    profile: Profile,
    phase: int,
    runtime: Runtime,
    model: nn.Module,
    classes: tuple[str, ...],
    world: World = SINGLE_PROCESS,
) -> PhaseState:
    """Put the model on the device and give it a fresh optimiser and schedule for the phase."""
    sync = world.is_distributed and profile.settings.train.sync_batchnorm
    model = on_runtime(model, runtime, sync_batchnorm=sync)
    settings = profile.settings.train.phases[phase - 1]
    optimizer, scheduler = make_optimizer(profile, model, settings)
    head_only = settings.train in ("head", "probe")
    freeze_bn = profile.settings.optim.freeze_bn
    return PhaseState(model, optimizer, scheduler, classes, head_only, freeze_bn, world=world)


class Float32Linear(nn.Linear):
    """A linear layer that computes in float32 under autocast too.

    As the classifier head it keeps the logits exact: bfloat16 logits have 8 significant bits,
    and most scores of a split would tie with another one in rankings and threshold sweeps.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float())


def with_float32_head(model: nn.Module) -> nn.Module:
    """Swap the classifier head for a Float32Linear with the same weights (and state dict keys)."""
    name = head_name(model)
    head = model.get_submodule(name)
    if not isinstance(head, Float32Linear):
        exact = Float32Linear(head.in_features, head.out_features, head.bias is not None)
        exact.load_state_dict(head.state_dict())
        parent, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent), attribute, exact)
    return model


def on_runtime(model: nn.Module, runtime: Runtime, sync_batchnorm: bool = False) -> nn.Module:
    """The model on the runtime's device and memory format, compiled if the runtime says so.

    `sync_batchnorm`: BatchNorm computes the statistics of the global batch (DDP).
    """
    model = with_float32_head(model).to(runtime.device, memory_format=runtime.memory_format)
    if sync_batchnorm:
        model = synced_batchnorm(model)
    if runtime.compile:
        model.compile()  # in place: the state dict keeps its keys
    return model


def require_finished_phase(profile: Profile, phase: int) -> dict[str, Any]:
    """Phase `phase`'s last checkpoint, which must be complete and from the same settings."""
    path = RunFiles.of(profile).last(phase)
    if not path.is_file():
        raise CheckpointError(
            f"{path} not found: phase {phase} must be trained first "
            f"(python -m vocproj train --profile {profile.profile} --phase {phase})."
        )
    checkpoint = load_checkpoint(path)
    if not checkpoint_is_finished(checkpoint) or not same_settings(checkpoint, profile, phase):
        raise CheckpointError(
            f"{path} is not a finished phase {phase} of the current settings; train phase "
            f"{phase} first (python -m vocproj train --profile {profile.profile} --phase {phase})."
        )
    return checkpoint


def checkpoint_is_finished(checkpoint: dict[str, Any]) -> bool:
    return checkpoint["epoch"] >= checkpoint["epochs"]


def same_settings(checkpoint: dict[str, Any], profile: Profile, phase: int) -> bool:
    """Whether the checkpoint was trained with the profile's settings (defaults filled in)."""
    recorded = recorded_settings(checkpoint["fingerprint"], profile)
    current = training_fingerprint(profile, phase)
    return recorded is not None and fingerprint_of(recorded, phase) == current


def carry_best_checkpoint(profile: Profile, phase: int) -> None:
    """Start phase N's best.pt as phase N-1's, so it is the best over all phases."""
    files = RunFiles.of(profile)
    source, target = files.best(phase - 1), files.best(phase)
    if source.is_file():
        atomic_link(source, target)


def resume_phase_state(
    profile: Profile,
    phase: int,
    runtime: Runtime,
    classes: tuple[str, ...],
    path: Path,
    world: World = SINGLE_PROCESS,
) -> PhaseState:
    """Rebuild model, optimiser, schedule and history from a phase's last.pt."""
    checkpoint = load_checkpoint(path)
    model = model_from_checkpoint(checkpoint, classes, path)
    state = state_for_model(profile, phase, runtime, model, classes, world)
    state.optimizer.load_state_dict(checkpoint["optimizer"])
    state.scheduler.load_state_dict(checkpoint["scheduler"])
    state.epochs_done = checkpoint["epoch"]
    state.history = checkpoint["history"]
    state.best_val_loss = checkpoint["best_val_loss"]
    return state


def starting_state(
    profile: Profile,
    phase: int,
    runtime: Runtime,
    classes: tuple[str, ...],
    retrain: bool,
    world: World = SINGLE_PROCESS,
) -> PhaseState:
    """Resume from last.pt when it belongs to these settings; otherwise start the phase over.

    Under DDP rank 0 decides first (and removes or copies files); the others follow its files.
    """
    path = RunFiles.of(profile).last(phase)
    if world.is_main:  # a checkpoint write killed midway left its temporary file
        remove_temporaries(path.parent)
    if path.is_file() and not retrain:
        if same_settings(load_checkpoint(path), profile, phase):
            return resume_phase_state(profile, phase, runtime, classes, path, world)
        if world.is_main:
            tqdm.write(f"{path} was trained with other settings: phase {phase} starts over.")
    if world.is_main:
        discard_phases_from(profile, phase)
    return new_phase_state(profile, phase, runtime, classes, world)


def discard_phases_from(profile: Profile, phase: int) -> None:
    """Remove checkpoints of `phase` and later ones, which the new phase `phase` supersedes."""
    for later in range(phase, len(profile.settings.train.phases) + 1):
        shutil.rmtree(RunFiles.of(profile).phase_dir(later), ignore_errors=True)


def train_one_epoch(
    state: PhaseState,
    network: nn.Module,
    batches: Iterable[Any],
    runtime: Runtime,
    where: str,
    progress: bool,
) -> tuple[float, int]:
    """One pass over the batches through `network` (the model, or its head on features).

    Each process's loss is its slice's part of the global batch's mean, times the number of
    processes, as DDP averages the gradients. Returns (mean loss, images seen by all processes).
    """
    world = state.world
    state.enter_training()
    scaler = torch.amp.GradScaler(enabled=runtime.needs_grad_scaler)
    losses: list[torch.Tensor] = []
    images = 0
    bar = tqdm(batches, desc=f"{where} train", leave=False, disable=not progress, unit="batch")
    started = time.perf_counter()
    for batch, (x, target, mask, _) in enumerate(bar, start=1):
        x = runtime.to_device(x)
        target = target.to(runtime.device, non_blocking=runtime.pin_memory)
        mask = mask.to(runtime.device, non_blocking=runtime.pin_memory)
        with runtime.autocast():
            logits = network(x)
        share = state.loss(logits, target, mask, kept=sum_over_ranks(mask.sum(), world))
        state.optimizer.zero_grad(set_to_none=True)
        scaler.scale(share * world.size).backward()
        scaler.step(state.optimizer)
        scaler.update()
        losses.append(share.detach())
        images += len(x)
        if batch % LOSS_CHECK_EVERY == 0:
            mean_loss = check_losses(losses, where, world)
            rate = images * world.size / (time.perf_counter() - started)
            bar.set_postfix(loss=f"{mean_loss:.4f}", img_per_s=f"{rate:.1f}")
    seen = sum_over_ranks(torch.tensor(images, device=runtime.device), world)
    return check_losses(losses, where, world), int(seen)


def check_losses(losses: list[torch.Tensor], where: str, world: World = SINGLE_PROCESS) -> float:
    """The mean of the epoch's (global) batch losses so far, after checking each is finite.

    Under DDP each process holds its slices' parts of the losses, summed here over processes.
    """
    if not losses:
        return 0.0
    stacked = sum_over_ranks(torch.stack(losses).double(), world)
    finite = torch.isfinite(stacked)
    if not finite.all():
        first = int(torch.nonzero(~finite)[0])
        check_finite(stacked[first], f"{where}, batch {first + 1}")
    return stacked.mean().item()


def check_finite(loss: torch.Tensor, where: str) -> None:
    if not torch.isfinite(loss):
        raise TrainingDiverged(
            f"the training loss became {loss.item()} at {where}. The last good checkpoint is "
            f"kept; lower optim.lr in the profile (or check the data) and run again to resume."
        )


def validate(
    network: nn.Module,
    batches: Iterable[Any],
    runtime: Runtime,
    labels: np.ndarray,
    world: World = SINGLE_PROCESS,
    loss: MultiLabelLoss | None = None,
):
    """Validation loss (the training loss, BCE by default) and mAP (VOC AP, difficult-only
    left out).

    Under DDP each process scores its shard of the split; the scores are gathered in order.
    """
    _, logits, target, mask = predict_logits(unwrapped(network), batches, runtime)
    logits, target, mask = (gather_in_order(t, len(labels), world) for t in (logits, target, mask))
    val_loss = (loss or MultiLabelLoss())(logits, target, mask).item()
    val_map, _ = mean_average_precision(torch.sigmoid(logits).numpy(), labels)
    return val_loss, val_map


def checkpoint_payload(
    profile: Profile, phase: int, epochs: int, state: PhaseState
) -> dict[str, Any]:
    """What last.pt and best.pt hold: weights, optimiser, position, RNG, profile, classes."""
    return {
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "phase": phase,
        "epoch": state.epochs_done,
        "epochs": epochs,
        "history": state.history,
        "best_val_loss": state.best_val_loss,
        "rng": {"torch": torch.get_rng_state()},
        "profile": profile.to_dict(),
        "fingerprint": training_fingerprint(profile, phase),
        "classes": list(state.classes),
        "processes": state.world.size,
        "backbone": profile.settings.model.backbone,
        "normalisation": input_normalisation(profile.settings.model.backbone)._asdict(),
        "image_size": profile.settings.train.image_size,
        "version": __version__,
    }


def write_history(profile: Profile, history: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(RunFiles.of(profile).history, buffer.getvalue())


def save_epoch(profile: Profile, phase: int, epochs: int, state: PhaseState, improved: bool):
    """Persist an epoch: best.pt first, then last.pt, then history (a crash repeats the epoch).

    An improved epoch's last.pt is a hard link to its best.pt: one copy of the bytes on disk.
    Rank 0 writes; under DDP the others wait for it, so that every process can read the files.
    """
    if state.world.is_main:
        payload = checkpoint_payload(profile, phase, epochs, state)
        files = RunFiles.of(profile)
        if improved:
            save_checkpoint(files.best(phase), payload)
            atomic_link(files.best(phase), files.last(phase))
        else:
            save_checkpoint(files.last(phase), payload)
        write_history(profile, state.history)
    barrier(state.world)


def train_phase(
    profile: Profile,
    phase: int,
    *,
    retrain: bool = False,
    progress: bool | None = None,
    processes: int = 1,
) -> list[dict[str, Any]]:
    """Train phase `phase` (1-based) to its last epoch, resuming from its last.pt if present.

    A finished phase is not retrained unless `retrain` is set. Returns the history so far.
    Under torchrun (vocproj/training/distributed.py) every process calls it; rank 0 prepares first.
    `processes` > 1 starts torchrun with that many processes on this machine to train it.
    The run folder is this run's alone meanwhile (`owning_run`): a second run of the profile
    stops at once (or waits for it, with VOCPROJ_WAIT=1).
    """
    phases = profile.settings.train.phases
    if not 1 <= phase <= len(phases):
        raise CheckpointError(f"profile {profile.profile} has phases 1..{len(phases)}, not {phase}")
    if processes > 1:
        return train_with_torchrun(profile, phase, processes, retrain=retrain)
    world = current_world()
    with owning_run(profile, world, f"phase {phase}"):
        return train_phase_here(profile, phase, world, retrain=retrain, progress=progress)


def owning_run(profile: Profile, world: World, what: str) -> AbstractContextManager[None]:
    """The run folder's lock (vocproj/locks.py), held by rank 0 or the only process."""
    return owning_run_folder(profile, what) if world.is_main else nullcontext()


def train_phase_here(
    profile: Profile, phase: int, world: World, *, retrain: bool, progress: bool | None
) -> list[dict[str, Any]]:
    """train_phase's work in this process (one rank of several under torchrun)."""
    phases = profile.settings.train.phases
    check_batch_size(profile.settings.train.batch_size, world)
    progress = world.is_main and (profile.settings.train.progress if progress is None else progress)
    runtime = runtime_for(profile, world.local_rank if world.is_distributed else None)
    with main_process_first(world):
        record = prepared(profile, progress=progress)
        state = starting_state(profile, phase, runtime, record.classes, retrain, world)
        splits = phase_splits(profile, phases[phase - 1], state.classes, progress)
    if state.epochs_done >= phases[phase - 1].epochs:
        if world.is_main:
            tqdm.write(f"phase {phase} of {profile.profile} is already finished; skipping.")
        return state.history
    run_epochs(profile, phase, phases[phase - 1], state, runtime, splits, progress)
    return state.history


def train_with_torchrun(
    profile: Profile, phase: int, processes: int, *, retrain: bool = False
) -> list[dict[str, Any]]:
    """Train a phase in `processes` DDP processes: torchrun --standalone running the CLI.

    The processes read the profile's file, which must hold this profile; their output is
    passed on as it comes (to a notebook, say). Returns the history the run wrote.
    """
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={processes}", "-m", "vocproj", "train", "--profile",
        str(profile_file(profile)), "--phase", str(phase), "--no-progress",
    ]  # fmt: skip
    code = run_passing_output([*command, "--retrain"] if retrain else command)
    if code:
        raise TrainingFailed(
            f"torchrun with {processes} processes ({' '.join(command)}) ended with exit code "
            f"{code}; its output above says why. Finished epochs are kept: run it again to resume."
        )
    return read_history(RunFiles.of(profile).history)


def profile_file(profile: Profile) -> Path:
    """params/<profile>.yaml of the profile's project, which must hold exactly this profile."""
    path = Path(profile.project_dir) / "params" / f"{profile.profile}.yaml"
    if not path.is_file() or load_profile(path).to_dict() != profile.to_dict():
        raise ConfigError(
            f"training in several processes reads the profile from {path}, which does not hold "
            f"these settings; save them there (or train in one process)."
        )
    return path


def run_passing_output(command: list[str]) -> int:
    """Run a command, writing its output (stdout and stderr) to sys.stdout as it comes."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
        assert process.stdout is not None
        while chunk := process.stdout.read1(4096):
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
    return process.returncode


def run_epochs(
    profile: Profile,
    phase: int,
    settings: PhaseSettings,
    state: PhaseState,
    runtime: Runtime,
    splits: tuple[Any, Any],
    progress: bool,
) -> None:
    """The remaining epochs of a phase, each seeded from (seed, phase, epoch) and saved at once."""
    world = state.world
    inputs = phase_inputs(profile, phase, settings, state, runtime, splits, progress)
    network, train_items, val_set, val_items = inputs
    train_set = splits[0]
    state.loss = loss_for(profile.settings.loss, train_set.targets, train_set.masks)
    network = data_parallel(network, world, runtime.device)
    eval_batch_size = profile.settings.train.eval_batch_size
    val_batches = loader(val_items, eval_batch_size, runtime, seed=None, world=world)
    first_global = sum(p.epochs for p in profile.settings.train.phases[: phase - 1])
    epochs = range(state.epochs_done + 1, settings.epochs + 1)
    bar = tqdm(epochs, desc=f"phase {phase}", disable=not progress, unit="epoch")
    for epoch in bar:
        seed = derived_seed(profile.settings.seed, phase, epoch)
        seed_everything(seed)
        lr = state.optimizer.param_groups[0]["lr"] if settings.train != "probe" else math.nan
        started = time.perf_counter()
        where = f"phase {phase} epoch {epoch}"
        if settings.train == "probe":
            train_loss, images = fit_head_as_probe(state, train_items, profile.settings.seed)
        else:
            batches = loader(train_items, profile.settings.train.batch_size, runtime, seed, world)
            train_loss, images = train_one_epoch(state, network, batches, runtime, where, progress)
        train_seconds = time.perf_counter() - started
        val_loss, val_map = validate(
            network, val_batches, runtime, val_set.labels, world, state.loss
        )
        check_finite(torch.tensor(val_loss), f"{where}, validation")
        if settings.train != "probe":  # a fit, not an optimiser's step
            state.scheduler.step()
        improved = keeps_as_best(profile.settings.train.best_checkpoint, val_loss, state)
        state.best_val_loss = val_loss if improved else state.best_val_loss
        state.epochs_done = epoch
        state.history.append({
            "phase": phase, "epoch": epoch, "global_epoch": first_global + epoch,
            "preset": settings.preset, "train_loss": train_loss, "val_loss": val_loss,
            "val_map": val_map, "lr": lr, "seconds": time.perf_counter() - started,
            "train_images_per_second": images / train_seconds,
        })  # fmt: skip
        save_epoch(profile, phase, settings.epochs, state, improved)
        bar.set_postfix(train_loss=f"{train_loss:.4f}", val_loss=f"{val_loss:.4f}",
                        val_map=f"{val_map:.3f}")  # fmt: skip


def keeps_as_best(rule: str, val_loss: float, state: PhaseState) -> bool:
    """Whether this epoch becomes best.pt: a lower validation loss than the best so far, or
    every epoch when the rule is `last` (so that best.pt ends as the last one)."""
    return rule == "last" or val_loss < state.best_val_loss


def fit_head_as_probe(state: PhaseState, features: FeatureItems, seed: int) -> tuple[float, int]:
    """Make the head the linear probe's fit on the train features (C cross-validated); return
    its train loss and the number of images, as an epoch of training does."""
    x, split = features.features.numpy(), features.split
    map_by_c = cross_validated_map(x, split.targets, split.masks, seed)
    fitted = fit_logistic_head(x, split.targets, split.masks, best_c(map_by_c))
    with torch.no_grad():
        state.head.weight.copy_(torch.from_numpy(fitted.weights))
        state.head.bias.copy_(torch.from_numpy(fitted.biases))
        logits = state.head(features.features.to(state.head.weight.device))
        targets, masks = (
            torch.from_numpy(a).to(logits.device) for a in (split.targets, split.masks)
        )
        train_loss = state.loss(logits, targets, masks).item()
    if state.world.is_main:
        tried = ", ".join(f"{c:g}: {value:.4f}" for c, value in map_by_c.items())
        tqdm.write(f"the head is the linear probe with C = {best_c(map_by_c):g} (cross-validated "
                   f"mAP of each C: {tried})")  # fmt: skip
    return train_loss, len(x)


def phase_splits(
    profile: Profile, settings: PhaseSettings, classes: tuple[str, ...], progress: bool
) -> tuple[Any, Any]:
    """The phase's (train, val) datasets: the train split with the phase's preset, val plain."""
    data = profile.settings.data
    train_set = open_split(
        profile, data.train_split, settings.preset, classes=classes, progress=progress
    )
    val_set = open_split(profile, data.val_split, "eval", classes=classes, progress=progress)
    return train_set, val_set


def phase_inputs(
    profile: Profile,
    phase: int,
    settings: PhaseSettings,
    state: PhaseState,
    runtime: Runtime,
    splits: tuple[Any, Any],
    progress: bool,
) -> tuple[nn.Module, Any, Any, Any]:
    """(network to train, train items, val split, val items) of phase `phase`.

    A head-only phase whose preset has no randomness trains the head on features of the frozen
    layers, computed once per split; any other phase trains the model on images.
    """
    train_set, val_set = splits
    if not (state.head_only and not augmentations(settings.preset, profile.settings.augment)):
        return state.model, train_set, val_set, val_set
    train_features, val_features = (
        phase_features(profile, phase, state, split, runtime, progress)
        for split in (train_set, val_set)
    )
    return state.head, train_features, val_set, val_features


def phase_features(
    profile: Profile, phase: int, state: PhaseState, split: Any, runtime: Runtime, progress: bool
) -> FeatureItems:
    """The frozen layers' features of a split; phase 1's are the starting weights', kept on disk
    for the linear probe (and read back from there when current)."""
    if phase == 1:
        return starting_features(
            profile, split, runtime, lambda: state.model, progress, state.world
        )
    batch_size = profile.settings.train.eval_batch_size
    return frozen_features(state.model, split, batch_size, runtime, progress, state.world)


def train_phases(
    profile: Profile, phases: Iterable[int] | None = None, *, retrain: bool = False,
    progress: bool | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Train the given phases (all by default) in order, owning the run folder throughout;
    returns the full history."""
    history: list[dict[str, Any]] = []
    with owning_run(profile, current_world(), "training"):
        for phase in phases or range(1, len(profile.settings.train.phases) + 1):
            history = train_phase(profile, phase, retrain=retrain, progress=progress)
    return history
