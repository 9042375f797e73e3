import numpy as np
import pytest
import torch

from skdiffmic._diffusion import (
    RESIDUAL_TYPES,
    NoiseSchedule,
    antithetic_timesteps,
    inference_timesteps,
    logit_residual_y0,
    make_betas,
    reverse_chain,
)


@pytest.fixture
def schedule():
    return NoiseSchedule.create("linear", 1000)


def _tensors(b=5, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y0 = torch.eye(k, dtype=torch.float64)[torch.randint(0, k, (b,), generator=g)]
    prior = torch.rand(b, k, generator=g, dtype=torch.float64).softmax(-1)
    eps = torch.randn(b, k, generator=g, dtype=torch.float64)
    return y0, prior, eps


def test_linear_betas_match_the_paper():
    betas = make_betas("linear", 1000).numpy()
    assert betas.shape == (1000,)
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
    assert np.all(np.diff(betas) > 0)


def test_cosine_schedule_is_a_valid_schedule():
    s = NoiseSchedule.create("cosine", 200)
    abar = s.alphas_cumprod.numpy()
    assert np.all((s.betas.numpy() > 0) & (s.betas.numpy() <= 0.999))
    assert np.all(np.diff(abar) < 0) and abar[0] > 0.99 and abar[-1] < 1e-3


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="Unknown beta schedule"):
        make_betas("quadratic", 10)


def test_q_sample_equals_closed_form(schedule):
    y0, prior, eps = _tensors()
    t = torch.tensor([0, 10, 250, 700, 999])
    betas = np.linspace(1e-4, 0.02, 1000)
    abar = np.cumprod(1 - betas)[t.numpy()][:, None]
    expected = (
        np.sqrt(abar) * y0.numpy()
        + (1 - np.sqrt(abar)) * prior.numpy()
        + np.sqrt(1 - abar) * eps.numpy()
    )
    got = schedule.q_sample(y0, prior, t, eps).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_chain_starts_at_the_prior(schedule):
    # At t = T the forward process has forgotten y_0: y_T ~ N(p, I).
    y0, prior, eps = _tensors()
    t = torch.full((5,), 999)
    y_t = schedule.q_sample(y0, prior, t, eps)
    np.testing.assert_allclose(y_t.numpy(), (prior + eps).numpy(), atol=0.02)


@pytest.mark.parametrize("kind", ["epsilon", "sample", "v_prediction"])
def test_split_output_inverts_the_training_target(schedule, kind):
    # Fed its exact training target, each parameterisation gives back y_0 and
    # the noise that made y_t.
    y0, prior, eps = _tensors()
    t = torch.tensor([3, 30, 300, 600, 999])
    y_t = schedule.q_sample(y0, prior, t, eps)
    target = schedule.target(y0, prior, t, eps, kind)
    y0_hat, eps_hat = schedule.split_output(y_t, prior, t, target, kind)
    np.testing.assert_allclose(y0_hat, y0, atol=1e-9)
    np.testing.assert_allclose(eps_hat, eps, atol=1e-9)


@pytest.mark.parametrize("kind", RESIDUAL_TYPES)
def test_residual_prediction_of_zero_returns_the_prior_through_the_chain(
    schedule, kind
):
    # "sample" outputs y_0 - p, "logit_residual" a correction of log p: an
    # untrained (zero) head reproduces the prior.
    _, prior, _ = _tensors(b=6, k=4)
    noise = torch.randn(6, 12, 4, generator=torch.Generator().manual_seed(3))
    noise = noise.double()
    for kwargs in ({}, {"eta": 1.0}, {"n_steps": 3}):
        out = reverse_chain(
            schedule,
            lambda y, t: torch.zeros_like(y),
            prior,
            noise,
            prediction_type=kind,
            **kwargs,
        )
        np.testing.assert_allclose(out.numpy(), prior.numpy(), atol=1e-9)


def test_logit_residual_corrects_the_prior_in_log_space(schedule):
    # y0_hat = softmax(log p + output): the output that turns p into q is
    # log q - log p (up to a constant); the training pair compares y0_hat
    # with the clean label, whatever t and the noise.
    y0, prior, eps = _tensors()
    q = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64).expand_as(prior)
    t = torch.tensor([3, 30, 300, 600, 999])
    y_t = schedule.q_sample(y0, prior, t, eps)
    output = q.log() - prior.log() + 2.0
    y0_hat, eps_hat = schedule.split_output(y_t, prior, t, output, "logit_residual")
    np.testing.assert_allclose(y0_hat, q, atol=1e-12)
    a = schedule.alphas_cumprod[t][:, None]
    rebuilt = a.sqrt() * y0_hat + (1 - a.sqrt()) * prior + (1 - a).sqrt() * eps_hat
    np.testing.assert_allclose(rebuilt, y_t, atol=1e-9)
    pred, goal = schedule.training_pair(output, y0, prior, t, eps, "logit_residual")
    np.testing.assert_allclose(pred, q, atol=1e-12)
    np.testing.assert_array_equal(goal, y0)
    # It trains on the log-loss of y0_hat, whose gradient is y0_hat - y_0.
    output.requires_grad_(True)
    loss = schedule.training_loss(output, y0, prior, t, eps, "logit_residual")
    np.testing.assert_allclose(loss.detach(), -(y0 * q.log()).sum(-1), atol=1e-12)
    loss.sum().backward()
    np.testing.assert_allclose(output.grad, q - y0, atol=1e-12)
    # The other types: the squared error against their target.
    out = torch.zeros_like(y0)
    for kind in ("epsilon", "sample"):
        goal = schedule.target(y0, prior, t, eps, kind)
        loss = schedule.training_loss(out, y0, prior, t, eps, kind)
        np.testing.assert_allclose(loss, goal.pow(2).mean(-1), atol=1e-12)
    # A correction of the same size moves a confident prior less.
    sure = torch.tensor([[0.99, 0.01], [0.6, 0.4]], dtype=torch.float64)
    moved = logit_residual_y0(sure, torch.tensor([[-0.5, 0.5]] * 2).double())
    change = (moved - sure).abs()[:, 0]
    assert change[0] < 0.02 and change[1] > 0.2


def test_epsilon_error_is_amplified_at_the_start_of_the_chain(schedule):
    # The motivation for "sample": the same output error of 0.1 moves y0_hat by
    # 0.1 * sqrt((1 - abar_T) / abar_T) ~ 16 under "epsilon", by 0.1 under "sample".
    y0, prior, eps = _tensors()
    t = 999
    y_t = schedule.q_sample(y0, prior, torch.full((5,), t), eps)
    for kind in ("epsilon", "sample"):
        target = schedule.target(y0, prior, t, eps, kind)
        y0_hat, _ = schedule.split_output(y_t, prior, t, target + 0.1, kind)
        error = (y0_hat - y0).abs().max().item()
        assert (error > 10) if kind == "epsilon" else error == pytest.approx(0.1)


def test_unknown_prediction_type_is_refused(schedule):
    y0, prior, eps = _tensors()
    with pytest.raises(ValueError, match="Unknown prediction_type"):
        schedule.target(y0, prior, 3, eps, "score")
    with pytest.raises(ValueError, match="Unknown prediction_type"):
        schedule.split_output(y0, prior, 3, eps, "score")


@pytest.mark.parametrize("n_steps", [1, 10, 50])
def test_ddim_fed_the_true_noise_recovers_y0(schedule, n_steps):
    y0, prior, eps = _tensors(b=6, k=4)
    y_T = schedule.q_sample(y0, prior, torch.full((6,), 999), eps)
    noise = (y_T - prior)[:, None, :]  # makes the chain start exactly at y_T
    out = reverse_chain(
        schedule, lambda y, t: eps, prior, noise, sampler="ddim", n_steps=n_steps
    )
    np.testing.assert_allclose(out.numpy(), y0.numpy(), atol=1e-4)


def test_ddpm_posterior_mean_matches_card_coefficients(schedule):
    # CARD eq. 5-6: mean = g0 * y0 + g1 * y_t + g2 * p.
    y0, prior, eps = _tensors()
    t = 400
    y_t = schedule.q_sample(y0, prior, torch.full((5,), t), eps)
    a = schedule.alphas_cumprod[t]
    a_prev = schedule.alphas_cumprod[t - 1]
    beta = schedule.betas[t]
    alpha = 1 - beta
    g0 = beta * a_prev.sqrt() / (1 - a)
    g1 = (1 - a_prev) * alpha.sqrt() / (1 - a)
    g2 = 1 + (a.sqrt() - 1) * (alpha.sqrt() + a_prev.sqrt()) / (1 - a)
    expected = g0 * y0 + g1 * y_t + g2 * prior
    got = schedule.ddpm_step(y_t, prior, t, y0, noise=None)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-10)


@pytest.mark.parametrize("t", [1, 20, 500, 999])
def test_ddim_with_eta_one_and_unit_stride_is_ddpm(schedule, t):
    # The limit case: DDIM (eta = 1) stepping t -> t-1 has DDPM's mean and
    # variance, so with the same noise it takes the same step.
    y0, prior, eps_true = _tensors(seed=t)
    y_t = schedule.q_sample(y0, prior, torch.full((5,), t), eps_true)
    eps_hat = eps_true + 0.1
    noise = torch.randn(
        5, 3, generator=torch.Generator().manual_seed(1), dtype=y_t.dtype
    )
    y0_hat, eps_hat = schedule.split_output(y_t, prior, t, eps_hat)
    ddpm = schedule.ddpm_step(y_t, prior, t, y0_hat, noise=noise)
    ddim = schedule.ddim_step(
        y_t, prior, t, t - 1, y0_hat, eps_hat, eta=1.0, noise=noise
    )
    np.testing.assert_allclose(ddim.numpy(), ddpm.numpy(), atol=1e-10)


def test_full_ddpm_chain_with_oracle_noise_recovers_y0(schedule):
    # An oracle denoiser that knows y_0 returns the noise consistent with y_t.
    y0, prior, _ = _tensors(b=4, k=2)

    def oracle(y, t):
        a = schedule.alphas_cumprod[t]
        return (y - a.sqrt() * y0 - (1 - a.sqrt()) * prior) / (1 - a).sqrt()

    noise = torch.randn(
        4, 1001, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    out = reverse_chain(schedule, oracle, prior, noise, sampler="ddpm")
    np.testing.assert_allclose(out.numpy(), y0.numpy(), atol=1e-6)


def test_inference_timesteps():
    steps = inference_timesteps(1000, 10)
    assert len(steps) == 10 and steps[0] == 999 and steps[-1] == 0
    assert all(a > b for a, b in zip(steps, steps[1:]))
    assert inference_timesteps(50, None) == list(range(49, -1, -1))
    assert inference_timesteps(50, 50) == list(range(49, -1, -1))
    with pytest.raises(ValueError, match="n_inference_steps=80 is larger than"):
        inference_timesteps(50, 80)


def test_antithetic_timesteps_come_in_pairs():
    t = antithetic_timesteps(8, 1000, torch.Generator().manual_seed(0))
    assert t.shape == (8,)
    np.testing.assert_array_equal(t[:4] + t[4:8], np.full(4, 999))
    assert antithetic_timesteps(7, 10, torch.Generator().manual_seed(0)).shape == (7,)


def test_reverse_chain_rejects_unknown_sampler(schedule):
    y0, prior, eps = _tensors()
    with pytest.raises(ValueError, match="Unknown sampler"):
        reverse_chain(schedule, lambda y, t: eps, prior, eps[:, None], sampler="euler")
