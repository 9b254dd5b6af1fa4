"""training/train.py and `zeroshape-w train`: a real run, resume after a kill, time budget, schedule, CLI help."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from backend.model.checkpoint import load_checkpoint, read_header
from backend.model.zeroshape import PIXEL_COMPONENTS, SHAPE_COMPONENTS
from tests.training.conftest import ROOT, cpu_options, one_torch_thread, run_cli
from training.options import TrainOptions, resolve_recipe
from training.recipes import get_recipe
from training.train import (
    FINAL_CHECKPOINT,
    JOINT_STAGE,
    LAST_CHECKPOINT,
    PIXEL_STAGE,
    SHAPE_STAGE,
    STATE_FILE,
    schedule,
    stage_of,
    train,
)
from zeroshape_w.cli import build_parser

RESUME_STEPS = 12


def saved_step(run: Path) -> int | None:
    """The step recorded in a run's train_state.pt, None before the first checkpoint.

    The file is replaced atomically, so a read racing a write sees the old or the new state, never a torn one:
    any other error here is a real failure."""
    try:
        return int(torch.load(run / STATE_FILE, map_location="cpu", weights_only=True)["step"])
    except FileNotFoundError:
        return None


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    # One torch thread per process: the resume test runs two at once on a 2-core machine, and oversubscribed
    # cores slow torch's thread pool down several-fold.
    common = ["--config", "tiny", "--data", str(data), "--out", str(out), "--workers", "0", "--device", "cpu"]
    return ["train", *common, "--threads", "1", *extra]


# ------------------------------------------------------------------------------------------------------ a real run
@pytest.mark.blender
def test_two_step_run_writes_a_loadable_trained_checkpoint(tiny_run):
    result = tiny_run.result
    assert result.finished
    assert result.step == 2
    assert result.stopped_because == "finished"
    assert result.checkpoint == tiny_run.out / FINAL_CHECKPOINT
    assert all(math.isfinite(v) for v in result.last_losses.values())
    assert {"camera", "depth", "visible_mask", "occluder_mask", "occupancy", "total"} <= set(result.last_losses)
    for name in (FINAL_CHECKPOINT, STATE_FILE, "options.json"):
        assert (tiny_run.out / name).is_file(), name
    assert any((tiny_run.out / "tensorboard").iterdir())

    model = load_checkpoint(tiny_run.out / FINAL_CHECKPOINT)
    assert model.config.name == "tiny"
    provenance = read_header(tiny_run.out / FINAL_CHECKPOINT)["provenance"]
    assert provenance["steps"] == 2
    assert provenance["max_steps"] == 2
    assert provenance["finished"] is True
    assert provenance["config"] == "tiny"
    assert provenance["views"] == 6
    assert provenance["categories"] == ["chair", "sofa", "table"]
    assert saved_step(tiny_run.out) == 2

    # Both stages' parts moved away from the initial weights (2 steps of `tiny` are all stage 2).
    initial = load_file(str(tiny_run.init))
    trained = load_file(str(tiny_run.out / FINAL_CHECKPOINT))
    assert initial.keys() == trained.keys()
    for component in (*PIXEL_COMPONENTS, *SHAPE_COMPONENTS):
        keys = [k for k in trained if k.startswith(component + ".") and trained[k].is_floating_point()]
        changed = [k for k in keys if not torch.equal(initial[k], trained[k])]
        assert len(changed) > 0.9 * len(keys), f"{component}: only {len(changed)} of {len(keys)} tensors trained"


@pytest.mark.blender
def test_the_same_seed_gives_the_same_weights(rendered_dataset, tmp_path):
    """TrainOptions.seed fixes the whole run, its initial weights included, whatever the RNG state of the process
    (a fresh process's torch RNG is seeded at random): otherwise no two runs, nor a run and its resumed twin,
    can be compared."""
    weights = []
    for number in (1, 2):
        torch.manual_seed(number)  # stands for two separate processes
        out = tmp_path / f"run{number}"
        options = cpu_options(rendered_dataset, out, max_steps=1)
        with one_torch_thread():
            train(options)
        weights.append(load_file(str(out / FINAL_CHECKPOINT)))
    different = [key for key in weights[0] if not torch.equal(weights[0][key], weights[1][key])]
    assert not different, f"{len(different)} tensors differ between two runs with seed 0, e.g. {different[:3]}"


# ------------------------------------------------------------------------------------------------------ resume
@pytest.mark.blender
def test_resume_after_kill_gives_the_uninterrupted_weights(rendered_dataset, tmp_path):
    run_a, run_b = tmp_path / "run_a", tmp_path / "run_b"
    extra = ("--max-steps", str(RESUME_STEPS), "--checkpoint-every", "1")

    # Run B is started and killed while run A trains uninterrupted beside it (same work, less waiting). Their
    # output goes to files: a full pipe would stall a run.
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    log_a, log_b = (tmp_path / "run_a.log").open("w+"), (tmp_path / "run_b.log").open("w+")
    uninterrupted = subprocess.Popen(
        [sys.executable, "-m", "zeroshape_w", *train_args(rendered_dataset, run_a, *extra)],
        cwd=ROOT,
        env=env,
        stdout=log_a,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    victim = subprocess.Popen(
        [sys.executable, "-m", "zeroshape_w", *train_args(rendered_dataset, run_b, *extra)],
        cwd=ROOT,
        env=env,
        stdout=log_b,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        # A stat is cheap, unlike loading the state: the kill follows the first checkpoint as closely as it can.
        while not (run_b / STATE_FILE).exists():
            if victim.poll() is not None:
                log_b.seek(0)
                pytest.fail(f"run B exited ({victim.returncode}) before its first checkpoint:\n{log_b.read()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail("run B wrote no checkpoint within 300 s")
            time.sleep(0.01)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=60)
        killed_at = saved_step(run_b)
        if killed_at >= RESUME_STEPS or (run_b / FINAL_CHECKPOINT).exists():
            pytest.fail(f"run B finished (step {killed_at}) before it could be killed: the resume was not exercised")
        assert victim.returncode == -signal.SIGKILL
        assert 1 <= killed_at < RESUME_STEPS

        resumed = run_cli(*train_args(rendered_dataset, run_b, *extra))
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert f"at step {killed_at} of {RESUME_STEPS}" in resumed.stderr  # it resumed rather than starting over
        assert f"step {RESUME_STEPS}: finished" in resumed.stdout

        uninterrupted.wait(timeout=600)
        log_a.seek(0)
        output_a = log_a.read()
        assert uninterrupted.returncode == 0, output_a[-3000:]
        assert "resuming" not in output_a
    finally:
        for process in (victim, uninterrupted):  # never leave a run behind when the test fails early
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=60)
        log_a.close()
        log_b.close()

    a = load_file(str(run_a / FINAL_CHECKPOINT))
    b = load_file(str(run_b / FINAL_CHECKPOINT))
    assert a.keys() == b.keys()
    different = [key for key in a if not torch.equal(a[key], b[key])]
    assert not different, f"{len(different)} tensors differ after the resume, e.g. {different[:3]}"
    assert read_header(run_b / FINAL_CHECKPOINT)["provenance"]["steps"] == RESUME_STEPS


@pytest.mark.blender
def test_time_budget_stops_cleanly(rendered_dataset, tmp_path):
    run = tmp_path / "run"
    args = ("--max-steps", "1000", "--time-budget", "0.05", "--checkpoint-every", "1000")
    result = run_cli(*train_args(rendered_dataset, run, *args))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "run again to continue" in result.stdout
    assert "time budget" in result.stdout
    step = saved_step(run)
    assert 1 <= step < 1000
    assert (run / LAST_CHECKPOINT).is_file()
    assert not (run / FINAL_CHECKPOINT).exists()
    provenance = read_header(run / LAST_CHECKPOINT)["provenance"]
    assert provenance["steps"] == step
    assert provenance["finished"] is False
    assert provenance["max_steps"] == 1000


@pytest.mark.blender
def test_a_run_folder_of_another_config_is_refused(tiny_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_run.out / STATE_FILE, run / STATE_FILE)
    options = cpu_options(tiny_run.data, run, config="small", max_steps=2)
    with pytest.raises(ValueError, match=re.escape(str(run)) + ".*'tiny'"):
        train(options)
    assert sorted(p.name for p in run.iterdir()) == [STATE_FILE]  # nothing written into the other run

    result = run_cli("train", "--config", "small", "--data", str(tiny_run.data), "--out", str(run), "--device", "cpu")
    assert result.returncode == 1
    assert str(run) in result.stderr
    assert "'tiny'" in result.stderr


# ------------------------------------------------------------------------------------------------------ schedule
def test_stage_one_trains_only_the_pixel_parts():
    recipe = get_recipe("tiny")
    steps = 200
    stage1 = round(steps * recipe.stage1_fraction)
    assert stage_of(0, recipe, steps) == (1, 0, stage1)
    assert stage_of(stage1 - 1, recipe, steps)[0] == 1
    assert stage_of(stage1, recipe, steps) == (2, stage1, steps - stage1)
    for step in range(stage1):
        pixel, shape, forcing = schedule(step, recipe, steps, 1e-3)
        assert shape == 0.0
        assert pixel > 0.0
        assert forcing == 1.0


@pytest.mark.parametrize("config", ["tiny", "paper"])
def test_stage_two_pixel_rate_is_the_recipes_fraction(config):
    recipe = get_recipe(config)
    steps = 1000
    for step in range(round(steps * recipe.stage1_fraction), steps, 37):
        pixel, shape, _ = schedule(step, recipe, steps, 1e-3)
        assert shape > 0.0
        assert pixel == pytest.approx(recipe.stage2_pixel_lr_ratio * shape, rel=1e-12)


def test_warm_up_rises_then_cosine_decays():
    recipe = get_recipe("tiny")
    steps, base = 200, 1e-3
    stage1 = round(steps * recipe.stage1_fraction)
    for start, group in ((0, 0), (stage1, 1)):  # stage 1 warms the pixel group, stage 2 the shape group
        rates = [schedule(start + i, recipe, steps, base)[group] for i in range(recipe.warmup_steps)]
        assert all(b > a for a, b in itertools.pairwise(rates)), rates
        assert rates[-1] == pytest.approx(base)
        assert rates[0] == pytest.approx(base / recipe.warmup_steps)
    decay = [schedule(s, recipe, steps, base)[1] for s in range(stage1 + recipe.warmup_steps, steps)]
    assert all(b <= a for a, b in itertools.pairwise(decay))
    assert decay[-1] == pytest.approx(base * recipe.final_lr_ratio, rel=0.01)


def test_teacher_forcing_goes_from_start_to_end():
    recipe = get_recipe("tiny")
    start, end = recipe.teacher_forcing
    assert start > end  # the recipe must actually anneal for this test to mean something
    steps = 200
    stage1 = round(steps * recipe.stage1_fraction)
    forcing = [schedule(s, recipe, steps, 1e-3)[2] for s in range(stage1, steps)]
    assert forcing[0] == pytest.approx(start)
    assert forcing[-1] == pytest.approx(end)
    assert all(b < a for a, b in itertools.pairwise(forcing))
    middle = forcing[len(forcing) // 2]
    assert middle == pytest.approx(start + (end - start) * (len(forcing) // 2) / (len(forcing) - 1))


# ------------------------------------------------------------------------------------------------------ CLI help
def command_help(command: str, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal width


def test_train_help_mentions_resuming_and_torchrun(capsys):
    text = command_help("train", capsys)
    assert "torchrun" in text
    assert "run the same command again" in text
    for option in ("--time-budget", "--checkpoint-every", "--aux-depth-model", "--max-steps"):
        assert option in text


def test_loss_weight_help_lists_every_term_with_its_default(capsys):
    """The help's list is written by hand (importing torch to build it would slow every --help), so this test
    keeps it in step with LossWeights."""
    import dataclasses

    from training.losses import LossWeights

    text = command_help("train", capsys)
    help_text = text[text.index("--loss-weight TERM=WEIGHT", text.index("--loss-weight TERM=WEIGHT") + 1) :]
    for term in dataclasses.fields(LossWeights):
        assert f"{term.name} ({term.default:g}" in help_text, term.name


def test_evaluate_help_describes_the_protocol(capsys):
    text = command_help("evaluate", capsys)
    for phrase in ("Chamfer distance", "F-score", "10,000 surface samples", "clean and occluded", "baselines"):
        assert phrase in text
    for option in ("--views-per-object", "--resolution", "--samples", "--out"):
        assert option in text


# ------------------------------------------------------------------------------------------- torchrun, warm start
@pytest.mark.blender
def test_torchrun_with_two_processes_trains_through_both_stages(rendered_dataset, tmp_path):
    """DDP from the same command (gloo on the CPU): two processes share each step's batch, across the stage
    boundary (stage 1 of the tiny recipe is the first step of 4), and rank 0 writes one checkpoint."""
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "zeroshape_w"]
    command += train_args(rendered_dataset, out, "--max-steps", "4")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("step 4: finished") == 1  # only rank 0 reports
    header = read_header(out / FINAL_CHECKPOINT)
    assert header["provenance"]["steps"] == 4
    load_checkpoint(out / FINAL_CHECKPOINT)


@pytest.mark.blender
def test_warm_start_from_our_checkpoint(tiny_run, tmp_path):
    """--init loads the weights (a 0-learning-rate step leaves them as they were) and refuses another config."""
    with one_torch_thread():
        result = train(
            cpu_options(
                tiny_run.data,
                tmp_path / "warm",
                max_steps=1,
                learning_rate=1e-30,
                init=str(tiny_run.out / FINAL_CHECKPOINT),
            )
        )
    before, after = load_file(tiny_run.out / FINAL_CHECKPOINT), load_file(result.checkpoint)
    weights = [k for k in before if "running_" not in k and "num_batches" not in k]  # BatchNorm statistics move
    assert all(torch.allclose(before[k].float(), after[k].float(), atol=1e-6) for k in weights)
    assert read_header(result.checkpoint)["provenance"]["warm_start"].endswith(FINAL_CHECKPOINT)
    with pytest.raises(ValueError, match="same architecture"):
        train(
            cpu_options(
                tiny_run.data,
                tmp_path / "wrong",
                config="small",
                max_steps=1,
                init=str(tiny_run.out / FINAL_CHECKPOINT),
            )
        )


@pytest.mark.blender
def test_warm_start_across_architectures_copies_what_matches(tiny_run, tmp_path):
    """--init-matching: a checkpoint with a narrower decoder warm-starts the tiny config; the pixel parts are
    copied, the decoder tensors whose shapes changed start fresh, --stage1-fraction 0 goes straight to stage 2, and
    --teacher-forcing replaces the recipe's schedule."""
    import dataclasses

    from backend.model.checkpoint import save_checkpoint
    from backend.model.config import get_config
    from backend.model.zeroshape import ZeroShapeW

    tiny = get_config("tiny")
    narrower = dataclasses.replace(tiny, decoder=dataclasses.replace(tiny.decoder, width=16, occupancy_hidden=16))
    torch.manual_seed(123)
    source = save_checkpoint(ZeroShapeW(narrower), tmp_path / "narrow.safetensors")
    seen_losses = []
    with one_torch_thread():
        result = train(
            cpu_options(
                tiny_run.data,
                tmp_path / "wider",
                max_steps=4,
                learning_rate=1e-30,
                init=str(source),
                init_matching=True,
                stage1_fraction=0.0,
                teacher_forcing=(0.25, 0.0),
            ),
            on_step=lambda step, losses: seen_losses.append(set(losses)),
        )
    before, after = load_file(source), load_file(result.checkpoint)
    backbone = [k for k in before if k.startswith("backbone.") and "running_" not in k and "num_batches" not in k]
    assert backbone
    assert all(torch.allclose(before[k].float(), after[k].float(), atol=1e-6) for k in backbone)
    changed = [k for k in before if k.startswith("decoder.") and before[k].shape != after[k].shape]
    assert changed, "the wider decoder should have tensors of other shapes"
    fresh = read_header(result.checkpoint)["provenance"]["warm_start_fresh_tensors"]
    assert set(changed) <= set(fresh)
    assert not any(k.startswith("backbone.") for k in fresh)
    assert all("occupancy" in losses for losses in seen_losses)  # no stage-1 step
    recorded = json.loads((tmp_path / "wider" / "options.json").read_text())["recipe"]
    assert recorded["teacher_forcing"] == [0.25, 0.0]  # the override, not the recipe's (0.8, 0.2)
    with pytest.raises(ValueError, match="teacher_forcing"):
        train(cpu_options(tiny_run.data, tmp_path / "bad", teacher_forcing=(1.5, 0.0)))
    with pytest.raises(ValueError, match="stage1_fraction"):
        train(TrainOptions(data=(str(tiny_run.data),), out=str(tmp_path / "bad"), config="tiny", stage1_fraction=1.0))
    with pytest.raises(ValueError, match="needs --init"):
        train(TrainOptions(data=(str(tiny_run.data),), out=str(tmp_path / "bad"), config="tiny", init_matching=True))


@pytest.mark.blender
def test_train_only_the_scene_head_leaves_the_rest_bit_for_bit(tiny_run, tmp_path):
    """`--train-only scene_head` through the CLI: the scene head learns, every other tensor (batch-norm statistics
    included) is the warm start's, every step is a pixel-stage step, and the provenance says what was trained."""
    out = tmp_path / "scene-only"
    start = tiny_run.out / FINAL_CHECKPOINT
    done = run_cli(
        *train_args(tiny_run.data, out, "--max-steps", "3", "--init", str(start), "--train-only", "scene_head")
    )
    assert done.returncode == 0, done.stderr
    before, after = load_file(start), load_file(out / FINAL_CHECKPOINT)
    assert before.keys() == after.keys()
    scene = [k for k in before if k.startswith("scene_head.")]
    assert any(not torch.equal(before[k], after[k]) for k in scene), "the scene head did not train"
    assert all(torch.equal(before[k], after[k]) for k in before if k not in scene)
    recorded = json.loads((out / "options.json").read_text())
    assert recorded["recipe"]["stage1_fraction"] == 1.0  # no joint step: the decoder is frozen
    assert read_header(out / FINAL_CHECKPOINT)["provenance"]["trained_only"] == ["scene_head"]
    refused = run_cli(*train_args(tiny_run.data, tmp_path / "bad", "--train-only", "scene_head"))
    assert refused.returncode == 1
    assert "give --init" in refused.stderr


@pytest.mark.blender
def test_train_only_the_category_head_fits_it_onto_a_model_without_heads(tiny_run, tmp_path):
    """`--init-matching --train-only category_head` onto a model with neither head (like the bundled run 8): the
    category head learns on joint steps of the model's own predictions under the "object" prompt, the scene head,
    which --init lacks and the run does not train, is left out (untrained, its constant gravity would tilt every
    mesh), and every tensor of the warm start is kept bit for bit."""
    import dataclasses

    from backend.model.checkpoint import save_checkpoint
    from backend.model.zeroshape import ZeroShapeW
    from training.warm_start import copy_matching_weights

    trained = load_checkpoint(tiny_run.out / FINAL_CHECKPOINT)
    plain = ZeroShapeW(dataclasses.replace(trained.config, scene_head=False, shape_category_head=False))
    copy_matching_weights(trained, plain)
    start = save_checkpoint(plain, tmp_path / "plain.safetensors", provenance={"test": True})
    out = tmp_path / "category-only"
    args = ["--max-steps", "3", "--init", str(start), "--init-matching", "--train-only", "category_head"]
    done = run_cli(*train_args(tiny_run.data, out, *args, "--query-points", "16"))
    assert done.returncode == 0, done.stderr
    result = load_checkpoint(out / FINAL_CHECKPOINT)
    assert result.scene_head is None
    assert result.category_head is not None
    before, after = load_file(start), load_file(out / FINAL_CHECKPOINT)
    head = [k for k in after if k.startswith("category_head.")]
    assert set(after) == set(before) | set(head)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(after[k].abs().sum() > 0 for k in head if k.startswith("category_head.category.")), "no training"
    recipe = json.loads((out / "options.json").read_text())["recipe"]
    assert (recipe["stage1_fraction"], recipe["shape_stage_fraction"]) == (0.0, 0.0)  # joint steps only
    assert recipe["teacher_forcing"] == [0.0, 0.0]  # on its own predictions, as `auto` sees them
    assert recipe["prompt_dropout"] == 1.0  # under "object", as `auto` encodes first


@pytest.mark.blender
def test_freeze_keeps_the_3d_half_and_trains_the_image_side_on_joint_steps(tiny_run, tmp_path):
    """`--freeze coord_encoder --freeze decoder` through the CLI: joint steps as asked (no stage is forced), the
    3D half comes out bit for bit, the image side trains, the provenance names what was frozen; --freeze needs
    --init and refuses --train-only beside it."""
    out = tmp_path / "frozen-3d"
    start = tiny_run.out / FINAL_CHECKPOINT
    args = ["--max-steps", "3", "--init", str(start), "--freeze", "coord_encoder", "--freeze", "decoder"]
    done = run_cli(*train_args(tiny_run.data, out, *args, "--stage1-fraction", "0", "--teacher-forcing", "0", "0"))
    assert done.returncode == 0, done.stderr
    before, after = load_file(start), load_file(out / FINAL_CHECKPOINT)
    shape = [k for k in before if k.startswith(("coord_encoder.", "decoder."))]
    assert shape
    assert all(torch.equal(before[k], after[k]) for k in shape)
    backbone = [k for k in before if k.startswith("backbone.")]
    assert any(not torch.equal(before[k], after[k]) for k in backbone), "the image side did not train"
    recipe = json.loads((out / "options.json").read_text())["recipe"]
    assert (recipe["stage1_fraction"], recipe["teacher_forcing"]) == (0.0, [0.0, 0.0])
    assert read_header(out / FINAL_CHECKPOINT)["provenance"]["frozen"] == ["coord_encoder", "decoder"]
    no_init = run_cli(*train_args(tiny_run.data, tmp_path / "bad", "--freeze", "decoder"))
    assert no_init.returncode == 1
    assert "give --init" in no_init.stderr
    both = run_cli(*train_args(tiny_run.data, tmp_path / "bad", *args, "--train-only", "scene_head"))
    assert both.returncode == 1
    assert "not both" in both.stderr


@pytest.mark.blender
def test_train_cli_passes_loss_weights_and_clip_through(tiny_run, tmp_path):
    """The CLI's overrides reach the run: options.json records the resolved recipe; a bad term is an error."""
    out = tmp_path / "override"
    done = run_cli(
        *train_args(tiny_run.data, out, "--max-steps", "1", "--loss-weight", "camera=0.5", "--grad-clip", "7")
    )
    assert done.returncode == 0, done.stderr
    recorded = json.loads((out / "options.json").read_text())["recipe"]
    assert recorded["loss_weights"]["camera"] == 0.5
    assert recorded["grad_clip"] == 7.0
    refused = run_cli(*train_args(tiny_run.data, tmp_path / "bad", "--loss-weight", "colour=1"))
    assert refused.returncode == 1
    assert "unknown loss term 'colour'" in refused.stderr


# --------------------------------------------------------------------------------------------------- shape stage
def test_the_shape_stage_runs_first_and_trains_only_the_shape_parts():
    import dataclasses

    recipe = dataclasses.replace(get_recipe("tiny"), shape_stage_fraction=0.2)
    steps = 200
    shape, pixel = round(steps * 0.2), round(steps * recipe.stage1_fraction)
    assert stage_of(0, recipe, steps) == (SHAPE_STAGE, 0, shape)
    assert stage_of(shape, recipe, steps) == (PIXEL_STAGE, shape, pixel)
    assert stage_of(shape + pixel, recipe, steps) == (JOINT_STAGE, shape + pixel, steps - shape - pixel)
    for step in range(shape):
        pixel_lr, shape_lr, _ = schedule(step, recipe, steps, 1e-3)
        assert pixel_lr == 0.0
        assert shape_lr > 0.0
    assert schedule(shape - 1, recipe, steps, 1e-3)[1] < schedule(shape // 2, recipe, steps, 1e-3)[1]
    with pytest.raises(ValueError, match="more than the whole run"):
        resolve_recipe(TrainOptions(data=("x",), out="y", config="tiny", shape_stage_fraction=0.9))


@pytest.mark.blender
def test_shape_stage_steps_leave_the_pixel_parts_alone(tiny_run, tmp_path):
    """Two shape-stage steps (no backbone): only the coordinate encoder and decoder change, only occupancy is a
    loss, and the options are recorded."""
    seen = []
    with one_torch_thread():
        result = train(
            cpu_options(
                tiny_run.data,
                tmp_path / "shape",
                max_steps=4,
                init=str(tiny_run.init),
                shape_stage_fraction=0.5,
                stage1_fraction=0.0,
            ),
            on_step=lambda step, losses: seen.append((step, set(losses))),
        )
    assert [losses for step, losses in seen[:2]] == [{"occupancy", "total"}] * 2
    assert all("camera" in losses for step, losses in seen[2:])  # then the joint stage
    before = load_file(tiny_run.init)
    state = torch.load(tmp_path / "shape" / STATE_FILE, map_location="cpu", weights_only=True)
    assert state["step"] == 4
    options = json.loads((tmp_path / "shape" / "options.json").read_text())
    assert options["recipe"]["shape_stage_fraction"] == 0.5
    # A 2-step shape-only run: the pixel parts keep their initial weights exactly.
    with one_torch_thread():
        shape_only = train(
            cpu_options(
                tiny_run.data,
                tmp_path / "shape-only",
                max_steps=2,
                init=str(tiny_run.init),
                shape_stage_fraction=1.0,
                stage1_fraction=0.0,
            )
        )
    after = load_file(shape_only.checkpoint)
    for name in before:
        if "running_" in name or "num_batches" in name:
            continue
        same = torch.equal(before[name].float(), after[name].float())
        if name.split(".")[0] in PIXEL_COMPONENTS or name.startswith("text_encoder."):
            assert same, f"{name} changed in the shape stage"
    assert any(
        not torch.equal(before[n].float(), after[n].float()) for n in before if n.split(".")[0] in SHAPE_COMPONENTS
    )
    assert result.finished


def test_pixel_aligned_override_changes_the_decoder_only():
    from training.warm_start import model_config

    token_only = model_config(TrainOptions(data=("x",), out="y", config="small", pixel_aligned=False))
    assert not token_only.decoder.pixel_aligned
    assert token_only.backbone == get_recipe_config("small").backbone
    assert model_config(TrainOptions(data=("x",), out="y", config="small")) == get_recipe_config("small")
    parser = build_parser()
    args = parser.parse_args(
        ["train", "--data", "d", "--out", "o", "--no-pixel-aligned", "--shape-stage-fraction", "0.3"]
    )
    assert args.pixel_aligned is False
    assert args.shape_stage_fraction == 0.3
    assert build_parser().parse_args(["train", "--data", "d", "--out", "o"]).pixel_aligned is None


def get_recipe_config(name: str):
    from backend.model.config import get_config

    return get_config(name)


@pytest.mark.blender
def test_corrupted_teacher_forcing_feeds_the_corrupted_truth(tiny_run, tmp_path, monkeypatch):
    """--corrupt-teacher-forcing: a teacher-forced stage-2 step goes through the shape corruption; without it, the
    exact truth is given and nothing is corrupted."""
    import training.train as train_module

    calls = []
    original = train_module.corrupt_visible_shape

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(train_module, "corrupt_visible_shape", counting)
    common = {"max_steps": 2, "init": str(tiny_run.init), "stage1_fraction": 0.0, "teacher_forcing": (1.0, 1.0)}
    with one_torch_thread():
        train(cpu_options(tiny_run.data, tmp_path / "exact", **common))
        assert calls == []
        train(cpu_options(tiny_run.data, tmp_path / "corrupted", corrupt_teacher_forcing=True, **common))
    assert len(calls) == 2
    recorded = json.loads((tmp_path / "corrupted" / "options.json").read_text())["recipe"]
    assert recorded["corrupt_teacher_forcing"] is True
