"""Training: config errors, packing, DeepSpeed ZeRO-2 with 1 and 2 processes on the CPU, resume after SIGKILL."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from test_train_helpers import (REPO, logged_losses, one_thread, run_env, run_training,  # noqa: F401 (fixture)
                                stage1_config, train_command, trained_experiments, write_config)
from zipasr.config import ConfigError
from zipasr.train.checkpoint import WEIGHTS, list_checkpoints, load_trainable_state, load_weights
from zipasr.train.config import load_experiment_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_whisper_dir, tiny_llm_dir):
    return trained_experiments(tmp_path_factory.mktemp("runs"), tiny_whisper_dir, tiny_llm_dir)


# --------------------------------------------------------------------------- config
def test_unknown_or_mistyped_config_key_is_an_error(tmp_path, capsys):
    from zipasr.bin.train import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lrr: 0.1\n")
    assert main(["--config", str(bad), "--exp_dir", str(tmp_path / "exp")]) == 2
    assert "optim.lrr" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="train.max_steps"):
        load_experiment_config(None, ["train.max_steps=ten"])
    with pytest.raises(ConfigError, match="encoder_adapter.method"):
        load_experiment_config(None, ["train.stage=2"])
    with pytest.raises(ConfigError, match="model.encoder_adaptor"):
        load_experiment_config(None, ["model.encoder_adaptor.rank=4"])
    with pytest.raises(ConfigError, match="data.lang_alpha"):
        load_experiment_config(None, ["data.lang_alpha=2.0"])
    with pytest.raises(ConfigError, match="data.lang_weights"):
        load_experiment_config(None, ["data.lang_weights={vi: -1}"])
    assert not (tmp_path / "exp").exists()


def test_recipe_configs_load():
    confs = sorted((REPO / "egs" / "TEMPLATE" / "asr1" / "conf").glob("train_*.yaml"))
    assert len(confs) >= 8
    stage2 = {}
    for conf in confs:
        cfg = load_experiment_config(conf)
        if cfg.train.stage == 2:
            data = yaml.safe_load(conf.read_text())
            del data["model"]["encoder_adapter"]
            stage2[conf.name] = data
    # Stage-2 configs differ only in the encoder-side adapter section.
    first = next(iter(stage2.values()))
    assert all(d == first for d in stage2.values()), list(stage2)


# --------------------------------------------------------------------------- packing
def test_packed_sample_loss_equals_sample_alone(tmp_path, tiny_whisper_dir, tiny_llm_dir):
    from test_train_helpers import make_data_dir
    from zipasr.train.trainer import build_model, load_dataset

    data = make_data_dir(tmp_path / "data", per_lang=3)
    cfg = load_experiment_config(write_config(stage1_config(tiny_whisper_dir, tiny_llm_dir, data), tmp_path / "c.yaml"))
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    dataset = load_dataset(cfg, model, str(data))
    de = [i for i, u in enumerate(dataset.utterances) if u.lang == "de"]
    a, b, c = de[:3]

    def loss_sum(rows):
        with torch.no_grad():
            out = model(dataset.collate(rows), segment_frames=0)
        return float(out.loss) * out.n_tokens

    alone = {i: loss_sum([[i]]) for i in (a, b, c)}
    assert loss_sum([[a, b]]) == pytest.approx(alone[a] + alone[b], rel=1e-5)
    assert loss_sum([[b, a, c]]) == pytest.approx(alone[a] + alone[b] + alone[c], rel=1e-5)
    # a packed row next to an unpacked (padded) row
    assert loss_sum([[a, b], [c]]) == pytest.approx(sum(alone.values()), rel=1e-5)


def test_packed_lengths_reserve_each_languages_own_prompt(tmp_path, tiny_whisper_dir, tiny_llm_dir):
    from test_train_helpers import make_data_dir
    from zipasr.train.dataset import speech_tokens
    from zipasr.train.trainer import build_model, load_dataset

    data = make_data_dir(tmp_path / "data", per_lang=1)
    cfg = load_experiment_config(write_config(stage1_config(tiny_whisper_dir, tiny_llm_dir, data), tmp_path / "c.yaml"))
    model = build_model(cfg).eval()
    dataset = load_dataset(cfg, model, str(data))
    per_lang = [len(ids) for ids in model.prompt_ids]
    assert len(set(per_lang)) > 1  # the test means something only if prompts differ in length
    lengths = dataset.packed_lengths(per_lang)
    for i, u in enumerate(dataset.utterances):
        prompt = len(model.prompt_ids[dataset.lang_ids[i]])
        assert lengths[i] == speech_tokens(u.n_frames) + len(u.text_ids) + 1 + prompt
    assert dataset.packed_lengths(50) == [n - per_lang[l] + 50 for n, l in zip(lengths, dataset.lang_ids)]
    # a stride-2 projector (25 Hz) gives each utterance twice the speech positions, which packing reserves
    model_out = model.encode(*[torch.as_tensor(x) for x in (dataset.features(0)[None], [dataset.utterances[0].n_frames],
                                                             [0])])[0]
    assert speech_tokens(dataset.utterances[0].n_frames) == model_out.shape[1]
    u = dataset.utterances[0]
    assert speech_tokens(u.n_frames, 2) == -(-(-(-u.n_frames // 2)) // 2)
    assert [a - b for a, b in zip(dataset.packed_lengths(50, 2), dataset.packed_lengths(50))] == \
        [speech_tokens(v.n_frames, 2) - speech_tokens(v.n_frames) for v in dataset.utterances]


# --------------------------------------------------------------------------- DeepSpeed
def test_two_processes_match_one_process(runs, tmp_path):
    """ZeRO-2 on 2 CPU processes with batch 1 each = 1 process with batch 2 (same global batch)."""
    cfg = yaml.safe_load(yaml.safe_dump(runs["stage1_config"]))
    cfg["data"]["batch_size"] = 1
    exp = tmp_path / "exp2"
    run_training(write_config(cfg, tmp_path / "two.yaml"), exp, nproc=2)
    one, two = logged_losses(runs["stage1"]), logged_losses(exp)
    assert sorted(one) == sorted(two) == list(range(1, 7))
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-4), (step, one, two)
    # both processes saved their state; the averaged model loads and matches the 1-process one
    last = list_checkpoints(exp / "checkpoints")[-1]
    assert (last / "rng_rank0.safetensors").is_file() and (last / "rng_rank1.safetensors").is_file()
    ref, got = load_weights(runs["stage1"] / "final" / WEIGHTS), load_weights(exp / "final" / WEIGHTS)
    assert ref.keys() == got.keys()
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=1e-3, atol=1e-4)


def test_gradient_accumulation_matches_the_larger_batch(runs, tmp_path):
    """Batch 1 x 2 accumulated micro-batches = batch 2 (the loss is token-weighted over the whole step);
    features read from disk per batch give the same result as cached ones."""
    cfg = yaml.safe_load(yaml.safe_dump(runs["stage1_config"]))
    cfg["data"]["batch_size"] = 1
    cfg["optim"]["grad_accum"] = 2
    cfg["data"]["cache_features"] = False  # features read per batch, in the background prefetch thread
    exp = tmp_path / "exp_gas"
    run_training(write_config(cfg, tmp_path / "gas.yaml"), exp)
    one, gas = logged_losses(runs["stage1"]), logged_losses(exp)
    assert sorted(gas) == sorted(one)
    for step in one:
        assert gas[step] == pytest.approx(one[step], rel=1e-4), (step, one, gas)


def test_resume_after_sigkill_ends_with_the_same_weights(runs, tmp_path):
    config = write_config(runs["stage1_config"], tmp_path / "stage1.yaml")
    exp = tmp_path / "exp"
    proc = subprocess.Popen(train_command(config, exp), env=run_env(), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not list_checkpoints(exp / "checkpoints") and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = list_checkpoints(exp / "checkpoints")
    assert done and done[-1].name != "step_00000006" and not (exp / "final").exists()
    assert [c.name for c in list_checkpoints(runs["stage1"] / "checkpoints")] == ["step_00000004", "step_00000006"]
    # a half-written checkpoint (a kill during saving) is ignored by --resume
    shutil.copytree(done[-1], exp / "checkpoints" / ".tmp-step_00000099")
    (exp / "checkpoints" / ".tmp-step_00000099" / "trainer_state.json").unlink()

    run_training(config, exp, resume=True)
    log = (exp / "train.log").read_text()
    assert f"resumed from {done[-1]}" in log and "valid loss" in log
    for name in ("checkpoints/step_00000006/" + WEIGHTS, "final/" + WEIGHTS):
        ref, got = load_weights(runs["stage1"] / name), load_weights(exp / name)
        assert ref.keys() == got.keys()
        for key in ref:
            assert torch.equal(got[key], ref[key]), (name, key)


def test_new_run_refuses_an_exp_dir_with_checkpoints_and_resume_checks_the_config(runs, tmp_path):
    exp = tmp_path / "exp"
    shutil.copytree(runs["stage1"], exp)
    from zipasr.train.trainer import check_exp_dir

    cfg = load_experiment_config(exp / "config.yaml")
    with pytest.raises(ConfigError, match="--resume"):
        check_exp_dir(cfg, exp, resume=False)
    check_exp_dir(cfg, exp, resume=True)
    cfg.optim.lr = 1.0
    with pytest.raises(ConfigError, match="optim.lr"):
        check_exp_dir(cfg, exp, resume=True)


def test_checkpoint_of_another_stage_or_method_is_rejected(runs):
    from zipasr.train.inference import load_model

    model, _ = load_model(runs["stage1"])
    stage2_state = load_weights(runs["stage2"] / "final" / WEIGHTS)
    with pytest.raises(ValueError, match="does not fit the model"):
        load_trainable_state(model, stage2_state, "stage2")


# --------------------------------------------------------------------------- bad input
def test_non_finite_features_are_an_error_naming_the_utterance(tmp_path):
    import kaldiio
    import numpy as np

    from test_train_helpers import make_data_dir
    from zipasr.train.dataset import SpeechDataset

    data = make_data_dir(tmp_path / "data", per_lang=1)
    feats = dict(kaldiio.load_scp(str(data / "feats.scp")))
    feats["de_spk0_000"] = np.full_like(feats["de_spk0_000"], np.nan)
    with kaldiio.WriteHelper(f"ark,scp:{data / 'feats.ark'},{data / 'feats.scp'}") as writer:
        for utt in sorted(feats):
            writer(utt, feats[utt])
    with pytest.raises(ValueError, match="de_spk0_000"):
        SpeechDataset(data, ["en", "de", "fr", "zh"], None)


def test_non_finite_losses_are_skipped_counted_and_stop_training(tmp_path, tiny_whisper_dir, tiny_llm_dir):
    """Huge (finite) features overflow the encoder: their micro-batches are skipped with a warning;
    too many in a row stop the run."""
    import json

    import kaldiio

    from test_train_helpers import make_data_dir

    data = make_data_dir(tmp_path / "data", per_lang=3)
    feats = dict(kaldiio.load_scp(str(data / "feats.scp")))
    with kaldiio.WriteHelper(f"ark,scp:{data / 'feats.ark'},{data / 'feats.scp'}") as writer:
        for utt in sorted(feats):
            writer(utt, feats[utt] * (3e37 if utt.startswith("zh") else 1.0))
    cfg = stage1_config(tiny_whisper_dir, tiny_llm_dir, data, max_steps=0, epochs=1, save_every=100)
    exp = tmp_path / "exp"
    run_training(write_config(cfg, tmp_path / "c.yaml"), exp)
    state = json.loads((list_checkpoints(exp / "checkpoints")[-1] / "trainer_state.json").read_text())
    assert state["bad_total"] >= 1
    assert "non-finite loss" in (exp / "train.log").read_text()
    assert all(torch.isfinite(t).all() for t in load_weights(exp / "final" / WEIGHTS).values())

    cfg["train"]["max_bad_steps"] = 1
    with pytest.raises(AssertionError, match="non-finite losses in a row"):
        run_training(write_config(cfg, tmp_path / "stop.yaml"), tmp_path / "exp_stop")


def test_stage1_with_a_frozen_encoder(runs, tmp_path):
    """train.stage1_train_encoder=false (not the paper's): Stage 1 trains projector + LLM LoRA only, and its
    checkpoint holds no encoder weights (a Stage 2 from it uses the pretrained encoder, as trained)."""
    from zipasr.train.trainer import build_model

    cfg = dict(runs["stage1_config"])
    cfg["train"] = dict(cfg["train"], stage1_train_encoder=False, max_steps=2, save_every=2)
    model = build_model(load_experiment_config(write_config(cfg, tmp_path / "frozen.yaml"), []))
    assert model.trainable_parameter_count()["encoder"] == 0
    exp = tmp_path / "exp"
    run_training(tmp_path / "frozen.yaml", exp)
    meta = yaml.safe_load((exp / "final" / "speech_llm.json").read_text())
    assert "encoder" not in meta["parts"] and "projector" in meta["parts"]


def test_stage2_with_the_encoder_convolutions(runs, tmp_path):
    """train.stage2_train_encoder_convs=true (not the paper's): Stage 2 also trains conv1/conv2; the final model
    and the experiment dir that decoding loads carry them, every other encoder weight is Stage 1's."""
    from safetensors.torch import load_file

    from test_train_helpers import stage2_config
    from zipasr.train.inference import load_model

    cfg = stage2_config(runs["stage1_config"], runs["stage1"], "vanilla", save_every=2, stage2_train_encoder_convs=True)
    cfg["train"]["max_steps"] = 2
    exp = tmp_path / "exp"
    run_training(write_config(cfg, tmp_path / "convs.yaml"), exp)
    meta = yaml.safe_load((exp / "final" / "speech_llm.json").read_text())
    assert "encoder_convs" in meta["parts"] and "encoder" not in meta["parts"]
    convs = load_file(str(exp / "final" / "encoder_convs.safetensors"))
    stage1 = load_file(str(runs["stage1"] / "final" / "encoder.safetensors"))
    assert sorted(convs) == ["whisper.conv1.bias", "whisper.conv1.weight", "whisper.conv2.bias", "whisper.conv2.weight"]
    assert not torch.equal(convs["whisper.conv1.weight"], stage1["conv1.weight"])
    model, _ = load_model(exp)
    own = model.encoder.state_dict()
    for key, value in convs.items():
        torch.testing.assert_close(own[key], value)
    torch.testing.assert_close(own["whisper.layers.0.fc1.base_layer.weight"], stage1["layers.0.fc1.weight"])


def test_lang_weights_for_a_language_without_data_is_a_config_error(runs, tmp_path):
    cfg = yaml.safe_load(yaml.safe_dump(runs["stage1_config"]))
    cfg["data"]["lang_weights"] = {"vi": 2.0}
    with pytest.raises(AssertionError, match=r"data.lang_weights' names languages without training data .*\['vi'\]"):
        run_training(write_config(cfg, tmp_path / "w.yaml"), tmp_path / "exp")
    assert not list_checkpoints(tmp_path / "exp" / "checkpoints")


# --------------------------------------------------------------------------- DeepSpeed's JIT build lock
GUARD_HOLDER = """
import sys, time
from pathlib import Path
from zipasr.train.trainer import jit_build_guard
ext = Path(sys.argv[1])
with jit_build_guard(ext):
    (ext / "op").mkdir(exist_ok=True)
    (ext / "op" / "lock").touch()  # the lock of a build in progress
    print("held", flush=True)
    time.sleep(2)
    assert (ext / "op" / "lock").exists(), "a live build's lock was removed"
    (ext / "op" / "lock").unlink()
"""


def test_build_guard_removes_a_killed_builds_lock_and_waits_for_a_live_build(tmp_path):
    from zipasr.train.trainer import jit_build_guard

    ext = tmp_path / "torch_extensions_x"
    (ext / "op").mkdir(parents=True)
    (ext / "op" / "lock").touch()  # left by a killed build: no process holds the guard
    with jit_build_guard(ext):
        assert not (ext / "op" / "lock").exists()

    holder = subprocess.Popen([sys.executable, "-c", GUARD_HOLDER, str(ext)], env=run_env(), cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        with jit_build_guard(ext):  # waits for the holder to finish, leaving its lock alone meanwhile
            waited = time.monotonic() - start
        assert holder.wait(timeout=60) == 0
        assert waited > 1.0
    finally:
        holder.kill()


def test_init_distributed_is_not_stopped_by_a_killed_builds_lock():
    """A stale `lock` in zipasr's real extension cache: before jit_build_guard every later training waited
    for it forever."""
    from zipasr.train.trainer import _writable_cache, jit_build_guard

    ext = Path(_writable_cache())
    op_dir = ext / "deepspeed_shm_comm"
    with jit_build_guard(ext):  # planted while no zipasr build runs, as a killed build leaves it
        op_dir.mkdir(exist_ok=True)
        (op_dir / "lock").touch()
    code = "from zipasr.train.trainer import init_distributed; print(init_distributed())"
    try:
        out = subprocess.run([sys.executable, "-c", code], env=run_env(), cwd=REPO, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        assert "(0, 1, device(type='cpu'))" in out.stdout
        assert not (op_dir / "lock").exists()
    finally:
        with jit_build_guard(ext):
            pass  # clears the planted lock if the run above failed, so later trainings do not wait for it


def test_trainings_started_together_each_get_their_own_rendezvous_port():
    """A recipe's job pool starts trainings at the same moment. Each world of one binds its rendezvous store to
    port 0 (a free port picked by the kernel as it binds); picking a port first and binding it later let two of
    them pick the same one, and one failed with EADDRINUSE."""
    code = ("import torch, torch.distributed as dist\n"
            "from zipasr.train.trainer import init_distributed\n"
            "init_distributed()\n"
            "t = torch.ones(1); dist.all_reduce(t); assert float(t) == 1.0\n"
            "store = dist.distributed_c10d._get_default_store()\n"
            "while hasattr(store, 'underlying_store'): store = store.underlying_store\n"
            "print('port', store.port)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=run_env(), cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    ports = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        ports += [int(line.split()[1]) for line in out.splitlines() if line.startswith("port ")]
    assert len(ports) == 4 and 0 not in ports and len(set(ports)) == 4
