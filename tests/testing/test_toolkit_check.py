"""check_estimator: every registered estimator passes the checks of its claim, and known bugs fail them, each with a
message that names what failed.  Seeds are fixed; each call's false-alarm rate is its alpha (1e-3)."""
import numpy as np
import pytest

from tinydgm import estimators, ops
from tinydgm.estimators import NVIL, Objective, Reinforce, ReweightedWakeSleep, RunningMean, ScoreFunction, VIMCO, \
    discrete, total
from tinydgm.testing import check, check_estimator, hold, linear_gaussian, linear_gaussian_cases, sbn_cases, stats
from tinydgm.testing.models import sigmoid_belief_net


@pytest.mark.parametrize("name", estimators.names("discrete"))
def test_every_registered_discrete_estimator_passes_its_claims_check(name):
    """unbiased (reinforce, nvil, vimco): gradient and bound = exact; consistent (rws): the bias falls with K and the
    bound stays below log p(x), rising with K; biased (ws, relaxed, straight-through): finite and deterministic."""
    fewer = {"ks": (1, 3, 9), "repeats": 50} if name == "rws" else {}
    report = check_estimator(name, examples=2, **fewer)
    assert report.claim == estimators.make(name, sigmoid_belief_net((2, 1))).claim
    assert len(report.examples) >= 2
    for case in report.examples:
        assert case["cupy"] == "same" or case["cupy"].startswith("skipped")
        if report.claim in ("unbiased", "consistent"):
            assert isinstance(case["gradient"], stats.Outcome) and isinstance(case["bound"], stats.Outcome)
        else:
            assert "gradient" not in case


@pytest.mark.parametrize("name", estimators.names("continuous"))
def test_continuous_estimators_pass_on_linear_gaussian_models(name):
    """The reparameterised ELBO, the score function (with its running-mean baseline held at b = −3 nats, check.PREPARE)
    against the closed-form ELBO of a linear-Gaussian model; IWAE against L_K by quadrature (one latent dimension)."""
    report = check_estimator(name, examples=2)
    assert report.target == ("L_K" if name == "iwae" else "elbo")
    assert all(case["model"].startswith("LinearGaussian(latent=1" if name == "iwae" else "LinearGaussian")
               for case in report.examples)


def test_an_estimator_without_an_oracle_for_its_target_is_refused():
    relaxed_but_claimed = estimators.Relaxed(0.5)
    relaxed_but_claimed.claim = "unbiased"
    with pytest.raises(ValueError, match="no oracle for .*'relaxed elbo'"):
        check_estimator(relaxed_but_claimed)


# =============================================================================================
# Bugs it must catch
# =============================================================================================

class FlippedReinforce(Reinforce):
    """REINFORCE with the learning signal's sign flipped: λ's gradient points the wrong way."""
    name = "reinforce-flipped"

    def objective(self, model, x, rng):
        hs, q_terms = discrete.sample_q(model, x, rng)
        log_p, log_q = total(model.log_joint_terms(x, hs)[::-1]), total(q_terms)
        signal = log_p.data - log_q.data
        return Objective(ops.mean(log_p) + estimators.score_function_surrogate(-signal, log_q), signal)


class ScaledReinforce(Reinforce):
    """REINFORCE's gradient times 1.03: a bias of 3% of the exact gradient."""
    name = "reinforce-scaled"

    def objective(self, model, x, rng):
        o = super().objective(model, x, rng)
        return Objective(o.surrogate * 1.03, o.bound)


class UniformWakeSleep(ReweightedWakeSleep):
    """RWS with the importance weights replaced by 1/K (wake-sleep's wake phase on K samples): its bias stays."""
    name = "rws-uniform"

    def objective(self, model, x, rng):
        hs, q_terms = discrete.sample_q(model, x, rng, self.k)
        log_p, log_q = total(model.log_joint_terms(x, hs)[::-1]), total(q_terms)
        return Objective(ops.sum(log_p) / (self.k * len(x)), (log_p.data - log_q.data).mean(0))


class OffByOneIWAE(estimators.IWAE):
    """Says K but draws K − 1 samples: its bound and gradient are L_{K−1}'s."""
    name = "iwae-off-by-one"

    def objective(self, model, x, rng):
        values = model.iwae_bound(x, self.k - 1, rng=rng)
        return Objective(ops.mean(values), values.data)


class GlobalRandomVIMCO(VIMCO):
    """Draws from NumPy's global generator instead of the one it is given."""
    name = "vimco-global-random"

    def objective(self, model, x, rng):
        return super().objective(model, x, np.random.default_rng(np.random.randint(1 << 30)))


class NaiveBoundVIMCO(VIMCO):
    """Reports L̂_K as log mean exp(log w) without subtracting the largest log w first: −inf once the weights underflow."""
    name = "vimco-naive-bound"

    def objective(self, model, x, rng):
        hs, q_terms = discrete.sample_q(model, x, rng, self.k)
        log_q = total(q_terms)
        log_w = total(model.log_joint_terms(x, hs)[::-1]) - log_q
        with np.errstate(divide="ignore", under="ignore"):
            bound = np.log(np.exp(log_w.data).mean(0))
        return Objective(estimators.vimco_surrogate(log_w, log_q) / len(x), bound)


@pytest.mark.parametrize("estimator, message, options", [
    (FlippedReinforce(), r"evidence of a bias .*Worst recognition\.\d\.(weight|bias)\[.*z = ", {}),
    (ScaledReinforce(), r"reinforce-scaled's gradients on sigmoid_belief_net.*evidence of a bias", {}),
    (UniformWakeSleep(), r"rws-uniform's gradients .* does not fall with K", {"ks": (1, 3)}),
    (OffByOneIWAE(2), r"iwae-off-by-one's (gradients|bound estimates) on LinearGaussian.*evidence of a bias",
     {"models": linear_gaussian_cases(latent=(1, 1))}),
    (GlobalRandomVIMCO(3), r"not deterministic given the seed", {}),
    (NaiveBoundVIMCO(3), r"not finite with parameters up to ±1000 .*bound -inf", {}),
])
def test_each_bug_fails_with_a_message_naming_it(estimator, message, options):
    with pytest.raises(AssertionError, match=message):
        check_estimator(estimator, examples=2, **options)


def test_it_refuses_to_pass_when_the_draws_cannot_see_the_stated_bias():
    with pytest.raises(stats.UnderpoweredError, match=r"refuses to pass.*draws would do"):
        check_estimator("reinforce", detect=0.005, max_draws=100, examples=1)


def test_the_models_strategy_and_seed_are_the_callers():
    """A user's strategy (here: one-layer nets with 4 visible units) is what gets drawn; the same seed, the same cases."""
    one = check_estimator("reinforce", sbn_cases(depth=(1, 1), visible=(4, 4)), examples=2, seed=5, repeats=20)
    two = check_estimator("reinforce", sbn_cases(depth=(1, 1), visible=(4, 4)), examples=2, seed=5, repeats=20)
    assert [c["model"] for c in one.examples] == [c["model"] for c in two.examples]
    assert all(c["model"].startswith("sigmoid_belief_net(layers=(4, ") for c in one.examples)
    assert [c["gradient"] for c in one.examples] == [c["gradient"] for c in two.examples]


def test_same_on_cupy_or_skipped():
    """With a GPU: VIMCO's gradient on CuPy equals NumPy's from the same host generator; without: 'skipped'."""
    model, x = sigmoid_belief_net((3, 2), scale=1.0, seed=1), np.array([[1.0, 0.0, 1.0]])
    out = check.check_same_on_cupy(VIMCO(3), model, x, 0, ("theta", "lambda"), {})
    assert out == "same" or out.startswith("skipped: no usable CuPy")


# =============================================================================================
# The hook that holds an estimator's own statistics
# =============================================================================================

def test_hold_statistics_stops_nvil_and_the_running_baseline_from_moving_until_released():
    model, x = sigmoid_belief_net((3, 2, 1), seed=1), np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    nvil = NVIL(model.layers[:-1], hidden=3, rng=0, dtype=np.float64).hold_statistics(c=[-3.0, 1.0], v=0.5)
    assert nvil.held and list(nvil.c) == [-3.0, 1.0] and list(nvil.v) == [0.5, 0.5] and nvil.steps == 1
    nvil.objective(model, x, np.random.default_rng(0))
    assert list(nvil.c) == [-3.0, 1.0] and nvil.steps == 1
    nvil.release_statistics().objective(model, x, np.random.default_rng(0))
    assert list(nvil.c) != [-3.0, 1.0] and nvil.steps == 2
    lg = linear_gaussian(seed=0)
    sf = ScoreFunction(baseline=True).hold_statistics(baseline=-3.0)
    assert sf.baseline.value == pytest.approx(-3.0)
    sf.update(sf.objective(lg, np.zeros((2, 3)), np.random.default_rng(0)))
    assert sf.baseline.value == pytest.approx(-3.0)
    with pytest.raises(TypeError, match="no running baseline"):
        ScoreFunction(baseline=False).hold_statistics(baseline=1.0)
    with pytest.raises(TypeError, match="keeps no running statistics"):
        VIMCO(3).hold_statistics(c=1.0)


class RunningReinforce(Reinforce):
    """A user's REINFORCE with a running-mean baseline folded in by `objective` itself and kept out of state_dict:
    without holding it, each draw would come from a different baseline."""
    name = "reinforce-running"
    held_calls = []

    def __init__(self):
        self.running = RunningMean()
        self.running.start_at(-2.0)

    def hold_statistics(self, **values):
        RunningReinforce.held_calls.append(values)
        return super().hold_statistics(**values)

    def objective(self, model, x, rng):
        hs, q_terms = discrete.sample_q(model, x, rng)
        log_p, log_q = total(model.log_joint_terms(x, hs)[::-1]), total(q_terms)
        signal = log_p.data - log_q.data
        surrogate = ops.mean(log_p) + estimators.score_function_surrogate(signal, log_q, self.running.value)
        if not self.held:
            self.running.update(signal)
        return Objective(surrogate, signal)


def test_check_estimator_holds_a_users_estimator_through_its_hook():
    """check_estimator calls hold_statistics() on the user's estimator (no PREPARE entry), or `prepare` if given."""
    RunningReinforce.held_calls.clear()
    check_estimator(RunningReinforce(), examples=1, repeats=20)
    assert RunningReinforce.held_calls and all(v == {} for v in RunningReinforce.held_calls)
    with pytest.raises(TypeError, match="keeps no running statistics"):
        check_estimator(RunningReinforce(), examples=1, prepare=hold(c=1.0))
