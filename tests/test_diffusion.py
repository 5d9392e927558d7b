"""The shared diffusion layer: targets and losses, the sampling loop, the Generator base
(training, EMA, checkpoints, export, pipelines), on a tiny diffusers UNet and 8x8 data."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
import torch.nn.functional as F

diffusers = pytest.importorskip("diffusers")

import codecgen  # noqa: E402
from codecgen.config import configurable  # noqa: E402
from codecgen.generators import Generator, GeneratorOutput  # noqa: E402
from codecgen.nn.diffusion import (diffusion_loss, make_scheduler, min_snr_weight, predicted_x0,  # noqa: E402
                                   sample, training_target)
from codecgen.nn.ema import EMA  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*validation_step.*but have no .val_dataloader"),
    pytest.mark.filterwarnings("ignore:.*callbacks used to create the checkpoint"),
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),  # diffusers' DPM + numpy 2
]

SCHEDULERS = {"ddpm": diffusers.DDPMScheduler, "ddim": diffusers.DDIMScheduler,
              "dpm": diffusers.DPMSolverMultistepScheduler}


def tiny_unet(in_channels: int = 1) -> torch.nn.Module:
    return diffusers.UNet2DModel(sample_size=8, in_channels=in_channels, out_channels=1, block_out_channels=(16, 32),
                                 layers_per_block=1, norm_num_groups=8, down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"))


def coarse(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")


@configurable
class CoarseToFine(Generator):
    """Test-only: an 8x8 image conditioned on its 2x-pooled copy, concatenated as a channel."""

    def latents_and_condition(self, batch):
        return batch[0], coarse(batch[0])

    def denoise(self, x_t, t, cond):
        return self.unet(torch.cat([x_t, cond], 1), t).sample


def make_model(seed: int = 0, **kwargs) -> CoarseToFine:
    torch.manual_seed(seed)
    kwargs.setdefault("scheduler", diffusers.DDPMScheduler(num_train_timesteps=100))
    return CoarseToFine(tiny_unet(in_channels=2), **kwargs)


def images(n: int = 8, seed: int = 0) -> torch.Tensor:
    """Smooth random 8x8 images in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    return torch.tanh(2 * F.interpolate(torch.randn(n, 1, 4, 4, generator=g), size=8, mode="bilinear"))


def loader(x: torch.Tensor, batch_size: int = 4):
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=batch_size)


def trainer(tmp_path, **kwargs) -> L.Trainer:
    options = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                   enable_checkpointing=False, default_root_dir=tmp_path, num_sanity_val_steps=0)
    return L.Trainer(**{**options, **kwargs})


# -- targets and losses ---------------------------------------------------------------------
def test_targets_follow_the_diffusers_formulas_and_invert_to_x0():
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=100)
    x0, noise = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    t = torch.tensor([0, 10, 50, 99])
    a = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    x_t = scheduler.add_noise(x0, noise, t)
    assert torch.allclose(x_t, a.sqrt() * x0 + (1 - a).sqrt() * noise, atol=1e-6)
    expected = {"epsilon": noise, "v_prediction": a.sqrt() * noise - (1 - a).sqrt() * x0, "sample": x0}
    for kind, want in expected.items():
        target = training_target(scheduler, x0, noise, t, kind)
        assert torch.allclose(target, want, atol=1e-6), kind
        assert torch.allclose(predicted_x0(scheduler, x_t, target, t, kind), x0, atol=1e-4), kind
    with pytest.raises(ValueError, match="prediction_type"):
        training_target(scheduler, x0, noise, t, "flow")


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_min_snr_weights_each_sample_before_the_batch_mean(kind):
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=100)
    t = torch.tensor([1, 5, 90])  # SNR far above, near and below gamma
    gamma = 5.0
    a = scheduler.alphas_cumprod[t]
    snr = a / (1 - a)
    assert snr[0] > gamma > snr[2]
    want_weight = {"epsilon": snr.clamp(max=gamma) / snr, "v_prediction": snr.clamp(max=gamma) / (snr + 1),
                   "sample": snr.clamp(max=gamma)}[kind]
    assert torch.allclose(min_snr_weight(scheduler, t, gamma, kind), want_weight)

    target = torch.zeros(3, 1, 4, 4)
    output = torch.stack([torch.full((1, 4, 4), v) for v in (0.1, 1.0, 3.0)])  # per-sample MSE 0.01, 1, 9
    mse = torch.tensor([0.01, 1.0, 9.0])
    weighted = diffusion_loss(output, target, t, scheduler, min_snr_gamma=gamma, prediction_type=kind)
    assert torch.allclose(weighted, (want_weight * mse).mean())
    assert not torch.allclose(weighted, want_weight.mean() * mse.mean(), rtol=1e-2)  # weighting after averaging
    assert torch.allclose(diffusion_loss(output, target, t, scheduler), mse.mean())


def test_min_snr_epsilon_weight_is_finite_at_zero_terminal_snr():
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=100, rescale_betas_zero_snr=True)
    weight = min_snr_weight(scheduler, torch.tensor([0, 99]), 5.0, "epsilon")
    assert torch.isfinite(weight).all() and weight[1] == 1.0


# -- the sampling loop ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return tiny_unet().eval()


def unet_denoiser(unet, calls: list | None = None):
    def denoise(x, t, cond):
        if calls is not None:
            calls.append((x.shape[0], t.shape, cond))
        with torch.no_grad():
            return unet(x, t).sample
    return denoise


@pytest.mark.parametrize("name", SCHEDULERS)
def test_sampling_is_reproducible_per_seed_and_leaves_the_scheduler_alone(unet, name):
    scheduler = SCHEDULERS[name](num_train_timesteps=100)
    before = (dict(scheduler.config), scheduler.timesteps.clone(), scheduler.num_inference_steps)

    def run(seed):
        return sample(unet_denoiser(unet), scheduler, (2, 1, 8, 8), 5, generator=torch.Generator().manual_seed(seed))

    first = run(0)
    assert first.shape == (2, 1, 8, 8) and torch.isfinite(first).all()
    assert torch.equal(run(0), first)
    assert not torch.allclose(run(1), first)
    after = (dict(scheduler.config), scheduler.timesteps, scheduler.num_inference_steps)
    assert before[0] == after[0] and torch.equal(before[1], after[1]) and before[2] == after[2]


def test_the_generator_also_seeds_the_stochastic_steps(unet):
    """Same initial latents, different generators: DDPM's steps draw noise, DDIM's (eta 0) do not."""
    latents = torch.randn(1, 1, 8, 8)

    def run(scheduler, seed):
        return sample(unet_denoiser(unet), scheduler, latents.shape, 4, latents=latents,
                      generator=torch.Generator().manual_seed(seed))

    ddpm, ddim = diffusers.DDPMScheduler(num_train_timesteps=100), diffusers.DDIMScheduler(num_train_timesteps=100)
    assert not torch.allclose(run(ddpm, 0), run(ddpm, 1))
    assert torch.equal(run(ddpm, 0), run(ddpm, 0))
    assert torch.equal(run(ddim, 0), run(ddim, 1))


def test_guidance_combines_conditional_and_unconditional_passes():
    """A linear toy denoiser f(x, c) = 0.5 x + c: guided sampling with (c, u) equals plain
    sampling with the guided condition u + g (c - u); at g = 1 no unconditional pass runs."""
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=100)
    cond, uncond = torch.randn(2, 1, 8, 8), torch.zeros(2, 1, 8, 8)
    calls = []

    def denoise(x, t, c):
        calls.append((x.shape[0], c))
        return 0.5 * x + c

    kwargs = dict(generator=torch.Generator().manual_seed(3))
    guided = sample(denoise, scheduler, (2, 1, 8, 8), 4, cond=cond, uncond=uncond, guidance=3.0, **kwargs)
    assert [n for n, _ in calls] == [4] * 4 and torch.equal(calls[0][1], torch.cat([cond, uncond]))
    kwargs["generator"].manual_seed(3)
    merged = sample(denoise, scheduler, (2, 1, 8, 8), 4, cond=uncond + 3.0 * (cond - uncond), **kwargs)
    assert torch.allclose(guided, merged, atol=1e-5)

    calls.clear()
    kwargs["generator"].manual_seed(3)
    plain = sample(denoise, scheduler, (2, 1, 8, 8), 4, cond=cond, **kwargs)
    kwargs["generator"].manual_seed(3)
    one = sample(denoise, scheduler, (2, 1, 8, 8), 4, cond=cond, uncond=uncond, guidance=1.0, **kwargs)
    assert torch.equal(plain, one) and [n for n, _ in calls] == [2] * 8
    with pytest.raises(ValueError, match="uncond"):
        sample(denoise, scheduler, (2, 1, 8, 8), 4, cond=cond, guidance=2.0)


def test_progress_is_called_once_per_step(unet):
    seen = []
    sample(unet_denoiser(unet), diffusers.DPMSolverMultistepScheduler(num_train_timesteps=100), (1, 1, 8, 8), 6,
           progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 6) for i in range(1, 7)]


def test_make_scheduler_keeps_the_training_noise_schedule():
    trained = diffusers.DDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2",
                                      prediction_type="v_prediction")
    for name, cls in SCHEDULERS.items():
        made = make_scheduler(name, trained)
        assert type(made) is cls and made.config.prediction_type == "v_prediction"
        assert torch.equal(made.alphas_cumprod, trained.alphas_cumprod)
    assert make_scheduler("dpm", trained.config).config.algorithm_type == "dpmsolver++"
    with pytest.raises(ValueError, match="ddpm, ddim, dpm"):
        make_scheduler("euler", trained)


# -- the Generator --------------------------------------------------------------------------
def test_generator_learns_a_fixed_batch(tmp_path):
    """Through a Lightning Trainer: the fixed-seed validation loss falls well below its start."""
    model = make_model(lr=3e-3, ema_decay=None, min_snr_gamma=5.0)
    data = loader(images(8), batch_size=8)
    before = trainer(tmp_path).validate(model, data, verbose=False)[0]["val/loss"]
    assert trainer(tmp_path).validate(model, data, verbose=False)[0]["val/loss"] == before  # fixed draws
    trainer(tmp_path, max_steps=30).fit(model, data)
    after = trainer(tmp_path).validate(model, data, verbose=False)[0]["val/loss"]
    assert after < 0.3 * before, (before, after)  # measured: 0.70 -> 0.10


def test_ema_update_rule():
    live = torch.nn.Linear(3, 3)
    ema = EMA({"layer": live}, decay=0.9, start_step=1)
    weights, averages = [], []
    for _ in range(4):
        with torch.no_grad():
            live.weight.add_(1.0)
        ema.update({"layer": live})
        weights.append(live.weight.detach().clone())
        averages.append(ema.averaged["layer"].weight.clone())
    assert torch.equal(averages[0], weights[0]) and ema.num_updates == 4  # update 1 <= start_step: a copy
    for k in (1, 2, 3):
        assert torch.allclose(averages[k], 0.9 * averages[k - 1] + 0.1 * weights[k], atol=1e-6)
    assert not torch.allclose(averages[-1], weights[-1]) and not ema.averaged["layer"].weight.requires_grad
    with pytest.raises(ValueError):
        EMA({"layer": live}, decay=1.0)


def test_generator_ema_follows_the_optimiser_steps_and_is_sampled_with(tmp_path):
    decay, start = 0.8, 2
    model = make_model(lr=3e-3, ema_decay=decay, ema_start_step=start, condition_dropout=0.5)
    expected = {k: v.clone() for k, v in model.unet.state_dict().items()}

    class Follow(L.Callback):
        def on_train_batch_end(self, trainer, module, *args):
            w = module.unet.state_dict()
            for k in expected:
                expected[k] = w[k].clone() if trainer.global_step <= start else decay * expected[k] + (1 - decay) * w[k]

    trainer(tmp_path, max_steps=6, callbacks=[Follow()]).fit(model, loader(images(8)))
    averaged = model.ema.averaged["unet"].state_dict()
    assert all(torch.allclose(averaged[k], expected[k], atol=1e-6) for k in expected)
    assert not torch.allclose(averaged["conv_in.weight"], model.unet.conv_in.weight)

    outside = model.weights_hash()  # of the EMA weights, also while they are swapped in for sampling
    with model.sampling():
        model._weights_hash = None
        assert model.weights_hash() == outside and not model.training
        with model.sampling():  # nested: still the EMA weights
            assert torch.equal(model.unet.conv_in.weight, averaged["conv_in.weight"])

    cond = coarse(images(2, seed=5))
    pipe = model.pipeline("ddim")
    ema_samples = pipe(cond, num_steps=4, seed=0).samples
    live_weights = model.unet.conv_in.weight.clone()
    model.ema = None  # the same model sampling with its live weights
    assert not torch.allclose(pipe(cond, num_steps=4, seed=0).samples, ema_samples)
    assert torch.equal(model.unet.conv_in.weight, live_weights) and model.training  # restored


def test_checkpoint_and_export_round_trip_the_ema_and_sample_identically(tmp_path):
    model = make_model(lr=3e-3, ema_decay=0.5, scheduler=diffusers.DDIMScheduler(num_train_timesteps=100),
                       prediction_type="v_prediction", min_snr_gamma=5.0, condition_dropout=0.2)
    assert model.scheduler.config.prediction_type == "v_prediction"
    spec = model.spec()
    assert spec["init_args"]["unet"]["class_path"] == "diffusers.UNet2DModel"
    assert spec["init_args"]["scheduler"]["class_path"] == "diffusers.DDIMScheduler"
    json.dumps(spec)
    fit = trainer(tmp_path, max_steps=4)
    fit.fit(model, loader(images(8)))
    ckpt = tmp_path / "model.ckpt"
    fit.save_checkpoint(ckpt)
    exported = model.export(tmp_path / "export")
    assert json.loads((exported / "config.json").read_text())["spec"]["init_args"]["ema_decay"] is None

    cond = coarse(images(3, seed=7))
    pipe = model.pipeline()
    want = pipe(cond, num_steps=5, seed=11, guidance=2.0)
    assert isinstance(want, GeneratorOutput) and want.samples.shape == (3, 1, 8, 8)
    from_ckpt, from_export = codecgen.load(ckpt), codecgen.load(exported)
    assert isinstance(from_ckpt.scheduler, diffusers.DDIMScheduler) and from_export.ema is None
    for name, tensor in model.ema.averaged.state_dict().items():
        assert torch.equal(from_ckpt.ema.averaged.state_dict()[name], tensor)
        assert torch.equal(from_export.state_dict()[name], tensor)  # the EMA weights under the live names
    for loaded in (from_ckpt, from_export):
        assert loaded.weights_hash() == model.weights_hash()
        assert loaded.prediction_type == "v_prediction"
        assert torch.equal(loaded.pipeline()(cond, num_steps=5, seed=11, guidance=2.0).samples, want.samples)
    seen = []
    dpm = from_export.pipeline("dpm")(cond, num_steps=3, seed=11, progress=lambda *p: seen.append(p))
    assert isinstance(dpm.samples, torch.Tensor) and seen[-1] == (3, 3)
    with pytest.raises(ValueError, match="condition"):
        from_export.pipeline()(None, batch_size=2, num_steps=2, guidance=2.0)


def test_generator_resumes_exactly(tmp_path, monkeypatch):
    """A: 2N steps straight, checkpointing at step N; B: A's step-N checkpoint resumed to 2N
    (as tests/test_resume.py does for the codecs). B ends bit-identical to A: weights, EMA
    (which switches from copying to averaging inside the window), optimiser state, with
    condition dropout drawing on every step. N batches an epoch: a plain DataLoader
    restarts its epoch on resume."""
    monkeypatch.setenv("PL_GLOBAL_SEED", "0")  # codecgen.seeding: per-batch seeds, as in a seeded run
    n, data = 2, images(8)

    class Steps(L.Callback):
        def __init__(self):
            self.seen = []

        def on_train_batch_start(self, trainer, *args):
            self.seen.append(trainer.global_step)

    def run(root, callbacks, ckpt=None):
        model, steps = make_model(lr=3e-3, ema_decay=0.7, ema_start_step=1, condition_dropout=0.5), Steps()
        fit = trainer(root, max_steps=2 * n, callbacks=[steps, *callbacks], enable_checkpointing=True)
        fit.fit(model, loader(data, batch_size=len(data) // n), ckpt_path=ckpt)
        return fit, model, steps.seen

    every = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "steps", filename="{step}", save_top_k=-1,
                                                every_n_train_steps=n)
    a, model_a, _ = run(tmp_path / "a", [every])
    b, model_b, seen = run(tmp_path / "b", [], tmp_path / "steps" / f"step={n}.ckpt")
    assert seen == list(range(n, 2 * n)), "B must train on from step n"
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert state_a.keys() == state_b.keys() and int(state_a["ema.num_updates"]) == 2 * n
    assert [k for k in state_a if not torch.equal(state_a[k], state_b[k])] == []
    opt_a, opt_b = a.optimizers[0].state_dict()["state"], b.optimizers[0].state_dict()["state"]
    assert all(torch.equal(opt_a[i]["exp_avg_sq"], opt_b[i]["exp_avg_sq"]) for i in opt_a)
    assert not torch.equal(state_a["ema.averaged.unet.conv_in.weight"], state_a["unet.conv_in.weight"])
