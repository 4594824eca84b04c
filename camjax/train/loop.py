"""``train_and_evaluate(config, workdir)``: the training loop around the pieces of this package.

Exact resume: everything a step depends on is a function of what the checkpoint holds.
The state (params, BN statistics, optimizer moments, step) is restored bitwise; the input
pipeline restarts at the restored step (``train_iterator(start_step=step)``); the step's
RNG key is ``fold_in(key(seed), step)``. So a run killed after any step and restarted
reaches bitwise the same state at step n as an uninterrupted run (on a deterministic
backend such as the CPU).
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from camjax import config as config_lib
from camjax import models
from camjax.checkpoints import network
from camjax.train import checkpoint, distributed, guard, optimizer, progress, state, step
from camjax.train.evaluation import eval_batches, evaluate, predictor

DTYPES = network.DTYPES
NonFiniteLossError = guard.NonFiniteLossError  # the public name since camjax 0.1
SKIPPED_LIST = "skipped_images.tsv"  # in the workdir: image files the data set left out


def build_model(config: ml_collections.ConfigDict, num_classes: int):
    """The model named by ``config.model`` with its compute dtype and BN axis (and the
    CPU depthwise of ``config.cpu.shifted_depthwise``)."""
    # Networks without BatchNorm have nothing to synchronise (config.model.sync_batch_norm).
    name = config.model.name
    sync = (
        config.model.sync_batch_norm and name in models.REGISTRY and models.takes_bn_axis_name(name)
    )
    extra = {"bn_axis_name": step.AXIS} if sync else {}
    model = network.build_model(
        config.model.name, num_classes, config.model.kwargs.to_dict(), config.model.dtype, **extra
    )
    return network.cpu_tuned(model, config)


def initial_state(config, model, tx, image_size: int) -> state.TrainState:
    """Step-0 state: fresh init, then ``config.init_from`` weights if given."""
    variables = state.init_variables(model, jax.random.key(config.seed), image_size)
    if config.init_from:
        from camjax import pretrained

        variables = pretrained.load_into(config.model.name, config.init_from, variables)
    return state.create_train_state(variables, tx)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Train ``config`` in ``workdir`` (resuming from its newest intact checkpoint), then
    evaluate.

    Returns the final metrics: ``step``, ``train_loss``, ``train_accuracy`` (mean over the
    last log interval) and the evaluation's ``eval_*`` numbers. Config values are checked
    (:func:`camjax.config.validate`) before anything is read or written.
    """
    from camjax import data

    config_lib.validate(config)
    workdir = os.path.abspath(workdir)  # Orbax needs absolute paths
    distributed.initialize(config.distributed)
    tc = config.train
    num_procs, proc = jax.process_count(), jax.process_index()
    if tc.batch_size % jax.device_count():
        raise ValueError(
            f"train.batch_size {tc.batch_size} is not divisible by {jax.device_count()} devices"
        )

    info = data.info(config.data)
    net = network.NetworkSpec.from_config(config, info.num_classes, info.class_names)
    try:
        shapes = net.param_shapes()  # the model's kwargs, checked without computing
    except (TypeError, ValueError) as e:
        raise ValueError(f"model {config.model.name!r} rejects its config: {e}") from e
    model = build_model(config, info.num_classes)
    tx = optimizer.create_optimizer(config.optimizer, tc.num_steps)
    os.makedirs(workdir, exist_ok=True)
    _report_skipped(info, workdir, proc)
    ckpt = checkpoint.Checkpointer(
        os.path.join(workdir, "checkpoints"),
        checkpoint.fingerprint(
            config, info.num_classes, shapes["params"], getattr(info, "identity", None)
        ),
        max_to_keep=tc.keep_checkpoints,
        async_save=tc.async_checkpoints,
        network=net,
    )
    try:
        fresh = initial_state(config, model, tx, config.data.image_size)
        restored = ckpt.restore(fresh)
        host_state = fresh if restored is None else restored[0]
        start = int(step.host_array(host_state.step))
        lr = optimizer.learning_rate_schedule(config.optimizer, tc.num_steps)
        fresh_norm = guard.param_norm(fresh)
        watch = guard.Guard(config.optimizer.learning_rate, lr, fresh_norm)
        if restored is not None:
            watch.check_restored(host_state, restored[1], ckpt.saved_meta(restored[1]), fresh_norm)

        runner = step.create_runner(
            config.parallel, step.make_train_step(model, tx), step.make_eval_step(model)
        )
        dstate = runner.put_state(host_state)
        del fresh, restored, host_state
        log = progress.Progress(workdir, tc.num_steps, tc.batch_size, learning_rate=lr)
        if start:
            print(f"resumed from step {start} in {workdir}", flush=True)
        run = (runner, dstate, ckpt, log, watch)
        result = _train(config, workdir, info, run, start, proc, num_procs)
    except BaseException:
        ckpt.manager.close()
        raise
    return result


def _report_skipped(info, workdir: str, proc: int) -> None:
    """Write the data set's undecodable image files (left out of it) to the workdir's
    ``SKIPPED_LIST`` and say how many and where; remove a stale list otherwise."""
    skipped = tuple(getattr(info, "skipped", ()))
    path = os.path.join(workdir, SKIPPED_LIST)
    if proc != 0:
        return
    if not skipped:
        if os.path.exists(path):
            os.remove(path)
        return
    with open(path, "w", encoding="utf-8") as f:
        f.write("path\treason\n")
        for p, why in skipped:
            f.write(f"{p!r}\t{why}\n" if "\t" in p or "\n" in p else f"{p}\t{why}\n")
    print(
        f"warning: skipped {len(skipped)} image file(s) that cannot be decoded "
        f"(first: {skipped[0][0]}: {skipped[0][1]}); the list is in {path}",
        flush=True,
    )


def _train(config, workdir, info, run, start, proc, num_procs):
    from camjax import data

    runner, dstate, ckpt, log, watch = run
    tc = config.train
    batches = data.train_iterator(
        config.data,
        global_batch_size=tc.batch_size,
        seed=config.seed,
        start_step=start,
        process_index=proc,
        process_count=num_procs,
    )
    base_key = jax.random.key(config.seed)
    pending: list[tuple[int, Any]] = []  # (step, loss) not yet checked for finiteness
    window: list[dict] = []
    result: dict[str, float] = {"step": start}
    log.start(start)
    shown: dict = {}  # the fixed validation batch whose CAMs TensorBoard shows
    for s in range(start, tc.num_steps):
        t = time.perf_counter()
        batch = next(batches)
        log.waited(time.perf_counter() - t)
        dstate, m = runner.train_step(
            dstate, runner.put_batch(batch), jax.random.fold_in(base_key, s)
        )
        m = runner.metrics(m)
        done = s + 1
        pending.append((done, m["loss"]))
        window.append(m)
        last = done == tc.num_steps
        # The first step is reported too: a line within seconds, compilation timed apart.
        if last or done == start + 1 or (tc.log_every and done % tc.log_every == 0):
            watch.check_losses(pending, ckpt.latest_step())
            pending = []
            means = {k: float(np.mean(jax.device_get([w[k] for w in window]))) for k in m}
            window = []
            log.report(done, means)
            result.update({"step": done, **{f"train_{k}": v for k, v in means.items()}})
        if last or (tc.checkpoint_every and done % tc.checkpoint_every == 0):
            watch.check_losses(pending, ckpt.latest_step())
            pending = []
            host = runner.host_state(dstate)
            # Never save NaN or a diverged state: it would be resumed from (guard.py).
            loss = float(np.asarray(jax.device_get(m["loss"])))
            norm = watch.check_state(host, done, loss, ckpt.latest_step())
            ckpt.save(done, host, config, extra={"guard": watch.meta(norm)})
            watch.latest = (done, norm)
        if not last and tc.eval_every and done % tc.eval_every == 0:
            # No collective program may still run while evaluation's host callbacks do:
            # on CPU both want the device threads (issue #18, item 11).
            jax.block_until_ready(dstate)
            ev = evaluate(config, None, runner, dstate, info)
            log.report(done, ev, prefix="eval")
            _log_cams(config, runner, dstate, info, log, done, shown)
            log.restart_clock(done)
    ckpt.close()  # raises if a background save failed
    jax.block_until_ready(dstate)
    ev = evaluate(config, None, runner, dstate, info)
    log.report(int(result["step"]), ev, prefix="eval")
    _log_cams(config, runner, dstate, info, log, int(result["step"]), shown)
    log.close()
    result.update({f"eval_{k}": v for k, v in ev.items()})
    return result


def _log_cams(config, runner, dstate, info, log, at: int, shown: dict, n: int = 8) -> None:
    """TensorBoard image ``eval/cam_overlays``: the top class's CAM and box of the first
    ``n`` validation images (the same images at every evaluation). Every process predicts
    its own first batch, as evaluation does; process 0 writes."""
    if "batch" not in shown:
        shown["batch"] = next(iter(eval_batches(config)), None)
    batch = shown["batch"]
    if batch is None:
        return
    out = predictor(runner, dstate, top_k=min(5, int(info.num_classes)))("cam", batch)
    rows = np.flatnonzero(np.asarray(batch["valid"], bool))[:n]
    grid = progress.cam_grid(
        np.asarray(batch["image"])[rows],
        out["maps"][rows, 0],
        out["boxes"][rows, 0],
        np.asarray(batch.get("bboxes", np.zeros((len(rows), 0, 4))))[rows],
        np.asarray(batch.get("bbox_valid", np.zeros((len(rows), 0), bool)))[rows],
        scale=max(1, 128 // int(batch["image"].shape[1])),  # small images: 128+ px cells
    )
    log.image(at, "eval/cam_overlays", grid)
