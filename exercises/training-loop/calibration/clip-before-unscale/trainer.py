"""Gradient accumulation, mixed precision, clipping and a resumable loop."""
from __future__ import annotations

import math
import os
import random
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from checkpoint import load_checkpoint, save_checkpoint
from schedule import lr_at

__all__ = ["IGNORE_INDEX", "accumulation_step", "clip_and_step", "train"]

IGNORE_INDEX = -100
_AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _autocast_dtype(precision: str) -> torch.dtype | None:
    try:
        return _AUTOCAST_DTYPES[precision]
    except KeyError:
        raise ValueError(f"precision must be one of {', '.join(_AUTOCAST_DTYPES)}, got {precision!r}") from None


def _count_tokens(micro_batches: Sequence[dict]) -> int:
    return int(sum(int((mb["labels"] != IGNORE_INDEX).sum()) for mb in micro_batches))


def accumulation_step(model: torch.nn.Module, window: Sequence[dict], *, start: int = 0, stop: int | None = None,
                      precision: str = "fp32", scaler: torch.amp.GradScaler | None = None) -> float:
    """Forward and backward over ``window[start:stop]``, one micro-batch at a time.

    Each micro-batch's summed token loss is divided by the number of real tokens of the whole
    ``window`` (not of the micro-batch), so that after all its micro-batches the gradients that
    this adds to ``p.grad`` are those of the mean loss over every real token of the window.
    Returns this call's share of that mean (the whole mean when the call covers the window).
    """
    dtype = _autocast_dtype(precision)
    tokens = max(_count_tokens(window), 1)  # a window without real tokens adds zero loss and gradient
    device = next(model.parameters()).device
    total = 0.0
    for mb in window[start:stop]:
        input_ids = mb["input_ids"].to(device)
        labels = mb["labels"].to(device)
        with torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(input_ids)
        loss_sum = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                   ignore_index=IGNORE_INDEX, reduction="sum")
        loss = loss_sum / tokens
        (scaler.scale(loss) if scaler is not None else loss).backward()
        total += float(loss.detach())
    return total


def clip_and_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, max_grad_norm: float | None = None,
                  scaler: torch.amp.GradScaler | None = None) -> float:
    """Unscale (with a scaler), clip the total gradient norm to ``max_grad_norm``, step.

    Returns the total 2-norm of the unscaled gradients before clipping (inf or nan when the
    scaler found non-finite gradients and skipped the step). Gradients are not zeroed.
    """
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if max_grad_norm is not None:
        norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], max_grad_norm)
    elif grads:
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in grads]))
    else:
        norm = torch.zeros(())
    if scaler is not None:
        scaler.unscale_(optimizer)
    if scaler is not None:
        scaler.step(optimizer)  # skips the step when unscale_ found inf/nan
        scaler.update()
    else:
        optimizer.step()
    return float(norm)


def _rng_state(device: torch.device) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None:
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


def train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, data: Sequence[dict], *, epochs: int = 1,
          accum_steps: int = 1, base_lr: float = 1e-3, warmup_steps: int = 0, min_lr: float = 0.0,
          max_grad_norm: float | None = None, precision: str = "fp32", scaler: torch.amp.GradScaler | None = None,
          checkpoint_path: str | os.PathLike | None = None, checkpoint_every: int = 0,
          stop_after: int | None = None) -> list[dict[str, Any]]:
    """Train for ``epochs`` passes over ``data`` (a sequence of micro-batches); see README.md.

    Position: ``micro`` counts the micro-batches consumed since the start of training (across
    resumes). Micro-batch ``micro`` is ``data[micro % len(data)]`` of epoch ``micro // len(data)``;
    each epoch's micro-batches form windows of ``accum_steps`` consecutive ones (the last may be
    shorter), and each window is one optimizer step.
    """
    n = len(data)
    if n < 1 or epochs < 1 or accum_steps < 1 or checkpoint_every < 0:
        raise ValueError("need len(data) >= 1, epochs >= 1, accum_steps >= 1, checkpoint_every >= 0")
    _autocast_dtype(precision)
    windows_per_epoch = math.ceil(n / accum_steps)
    total_steps = epochs * windows_per_epoch
    total_micro = epochs * n
    device = next(model.parameters()).device
    if precision == "fp16" and scaler is None:
        scaler = torch.amp.GradScaler(device.type)

    model.train()
    model.zero_grad(set_to_none=True)
    step, micro, window_loss = 0, 0, 0.0
    if checkpoint_path is not None and os.path.exists(checkpoint_path):
        state = load_checkpoint(checkpoint_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state["scaler"] is not None:
            scaler.load_state_dict(state["scaler"])
        step, micro, window_loss = state["step"], state["micro"], state["window_loss"]
        if state["grads"] is not None:  # stopped mid-window: the window's gradients so far
            for p, g in zip(model.parameters(), state["grads"]):
                p.grad = None if g is None else g.to(device=p.device, dtype=p.dtype)
        _set_rng_state(state["rng"])

    def save() -> None:
        mid_window = any(p.grad is not None for p in model.parameters())
        save_checkpoint(checkpoint_path, {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": {"step": step},  # the learning rate is lr_at(step): a pure function of the step
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": _rng_state(device),
            "step": step,
            "micro": micro,
            "window_loss": window_loss,
            "grads": [None if p.grad is None else p.grad.detach().cpu().clone() for p in model.parameters()]
            if mid_window else None,
        })

    history: list[dict[str, Any]] = []
    if stop_after is not None and micro >= stop_after:
        return history
    while micro < total_micro:
        epoch, i = divmod(micro, n)
        w_start = i // accum_steps * accum_steps
        w_end = min(w_start + accum_steps, n)
        end = w_end if stop_after is None else min(w_end, stop_after - epoch * n)
        window = [data[j] for j in range(w_start, w_end)]
        window_loss += accumulation_step(model, window, start=i - w_start, stop=end - w_start,
                                         precision=precision, scaler=scaler)
        micro = epoch * n + end
        if end == w_end:  # the window is complete: one optimizer step
            lr = lr_at(step, base_lr=base_lr, warmup_steps=min(warmup_steps, total_steps), total_steps=total_steps,
                       min_lr=min_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            norm = clip_and_step(model, optimizer, max_grad_norm=max_grad_norm, scaler=scaler)
            model.zero_grad(set_to_none=True)
            history.append({"step": step, "lr": lr, "loss": window_loss, "tokens": _count_tokens(window),
                            "grad_norm": norm})
            step += 1
            window_loss = 0.0
            if checkpoint_path is not None and checkpoint_every and step % checkpoint_every == 0:
                save()
        if stop_after is not None and micro >= stop_after and micro < total_micro:
            if checkpoint_path is not None:
                save()
            break
    return history
