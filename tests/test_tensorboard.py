"""Training you can watch: TensorBoard scalars and CAM overlay images from a short run,
the CAM grid's geometry, and the console line's timing (a fake clock)."""

import os

import numpy as np
import pytest

from camjax.train import load_config, progress, train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _events(logdir: str) -> dict[str, dict[int, object]]:
    import tensorflow as tf

    out: dict[str, dict[int, object]] = {}
    for name in sorted(os.listdir(logdir)):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(logdir, name)):
            for v in event.summary.value:
                out.setdefault(v.tag, {})[event.step] = (v.metadata.plugin_data.plugin_name,
                                                         tf.make_ndarray(v.tensor))  # fmt: skip
    return out


@pytest.mark.slow  # a tiny training run with two evaluations (~15 s on 2 cores)
def test_short_run_writes_scalars_and_cam_images(tmp_path, capsys):
    import tensorflow as tf

    c = load_config(os.path.join(ROOT, "configs", "default.py"))
    c.data.data_dir = str(tmp_path / "tfds")
    c.data.image_size = c.data.shapes.image_size = 16
    c.data.shapes.num_train, c.data.shapes.num_validation, c.data.shapes.num_test = 32, 16, 8
    c.model.kwargs.widths = (4, 8)
    c.model.kwargs.head_features = 8
    c.optimizer.schedule, c.optimizer.learning_rate = "constant", 0.05
    c.train.batch_size, c.train.num_steps = 16, 3
    c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 0, 2, 0
    c.train.async_checkpoints = False
    c.eval.batch_size, c.eval.cam_threshold_steps = 16, 10
    train_and_evaluate(c, str(tmp_path / "w"))
    lines = [s for s in capsys.readouterr().out.splitlines() if s.startswith("step ")]
    # The first step is reported (with its compile time), then the last one with an ETA.
    assert lines[0].startswith("step 1/3 ") and "incl. compilation" in lines[0], lines
    assert [s.split()[1] for s in lines] == ["1/3", "2/3", "3/3", "3/3"], lines
    assert "ETA 0:00:00" in lines[2], lines

    ev = _events(str(tmp_path / "w" / "tensorboard"))
    assert set(ev["train/loss"]) == {1, 3} and set(ev["eval/accuracy"]) == {2, 3}
    assert {k: float(v[1]) for k, v in ev["train/learning_rate"].items()} == pytest.approx(
        {1: 0.05, 3: 0.05}
    )
    # Rates need a step after the compiled first one.
    for tag in ("train/step_time_s", "train/input_wait_s", "train/images_per_second"):
        assert set(ev[tag]) == {3}, tag
        assert ev[tag][3][0] == "scalars"
    assert 0 <= float(ev["train/input_wait_s"][3][1]) <= float(ev["train/step_time_s"][3][1])
    images = ev["eval/cam_overlays"]
    assert set(images) == {2, 3}
    plugin, value = images[3]
    assert plugin == "images" and value.shape == (3,)
    png = tf.io.decode_png(value[2]).numpy()
    # 8 fixed validation images of 16 px shown 8x (128 px): 2 rows x 4 columns, 2-px gutters.
    assert png.shape == (2 * 130 - 2, 4 * 130 - 2, 3)
    assert (int(value[0]), int(value[1])) == (518, 258)
    assert (png[128:130] == 0).all() and (png[:, 128:130] == 0).all()


def test_cam_grid_draws_boxes_over_the_overlay_in_cells():
    from camjax.overlay import overlay

    images = np.zeros((3, 10, 12, 3), np.float32)
    images[:, :, 6:] = 1.0  # left half black, right half white after min-max scaling
    maps = np.zeros((3, 10, 12), np.float32)
    pred = np.array([[1, 1, 4, 4]] * 3)
    gt = np.array([[[6, 2, 9, 8], [0, 0, 0, 0]]] * 3)
    valid = np.array([[True, False]] * 3)
    grid = progress.cam_grid(images, maps, pred, gt, valid, cols=2)
    assert grid.shape == (2 * 12 - 2, 2 * 14 - 2, 3)
    cell = grid[12:22, 0:12]  # the third image: second row, first column
    assert (grid[12:22, 14:] == 0).all()  # no fourth image: left black
    bare = overlay((np.round(images[0] * 255)).astype(np.uint8), maps[0])
    assert tuple(cell[1, 1]) == (0, 255, 0) and tuple(cell[4, 2]) == (0, 255, 0)
    assert tuple(cell[2, 6]) == (255, 0, 0) and tuple(cell[8, 9]) == (255, 0, 0)
    assert (cell[2:4, 2:4] == bare[2:4, 2:4]).all()  # inside the box: the overlay itself
    assert tuple(cell[0, 0]) == tuple(bare[0, 0])  # the invalid gt box is not drawn
    # Enlarged 3x: box (1, 1, 4, 4) covers pixels 3..14; its outline, 1 px, at 3 and 14.
    big = progress.cam_grid(images[:1], maps[:1], pred[:1], gt[:1], valid[:1], scale=3)
    assert big.shape == (30, 36, 3)
    assert tuple(big[3, 3]) == tuple(big[14, 14]) == (0, 255, 0)
    assert tuple(big[2, 3]) != (0, 255, 0) and tuple(big[15, 15]) != (0, 255, 0)
    assert tuple(big[4, 4]) != (0, 255, 0)


def test_progress_rates_exclude_compilation_and_evaluation(monkeypatch, tmp_path):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
    log = progress.Progress(str(tmp_path), 100, 32, tensorboard=False)
    log.start(0)
    clock[0] = 10.0  # the first step, compilation included
    first = log.report(1, {"loss": 2.0})
    assert "first step 10.0 s" in first and "ETA" not in first
    for _ in range(10):  # steps 2..11: one second each, a quarter of it waiting for input
        log.waited(0.25)
    clock[0] = 20.0
    line = log.report(11, {"loss": 1.0})
    assert "1000 ms/step (input 25%)" in line and "32.0 img/s" in line
    assert "ETA 0:01:29" in line  # 89 steps left at 1 s each
    clock[0] = 500.0  # a long evaluation is not training time
    log.restart_clock(11)
    clock[0] = 501.0
    line = log.report(13, {"loss": 1.0})
    assert "500 ms/step" in line and "ETA 0:00:43" in line  # 87 steps at 0.5 s: 43.5 s
