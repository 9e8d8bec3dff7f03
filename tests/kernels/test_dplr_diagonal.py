"""The DPLR kernel's 'diagonal' step realization (eigenbasis of A) is offered only where it is accurate.

A 2-state DPLR system ``A = w - p p^*`` (over the conjugate pair) with ``Re w = 0``, ``Im w = p^2 = 1`` has the
real form [[-2, -1], [1, 0]]: one eigenvalue -1 with a Jordan block, so no eigenbasis exists and the computed
one is meaningless.  Moving ``Im w`` away from 1 makes the eigenvalues distinct and the basis usable.
"""

import pytest
import torch

from statespaces.kernels import DPLRKernel
from statespaces.kernels.dplr import NumericalError

from .dense import dense_run


def _two_state(imag: float) -> DPLRKernel:
    kernel = DPLRKernel(1, d_state=2, init="dplr-lin", real_transform="none", imag_transform="none", dt_min=0.05, dt_max=0.05, l_max=256).double()
    with torch.no_grad():
        kernel.raw_A_real.fill_(0.0)
        kernel.raw_A_imag.fill_(imag)
        for t in (kernel.P, kernel.B, kernel.C):
            t.zero_()
            t[..., 0] = 1.0
    return kernel


def _steps(kernel: DPLRKernel, u: torch.Tensor, realization: str, **options) -> torch.Tensor:
    kernel.setup_step(realization, **options)
    state, ys = kernel.default_state(u.shape[0]), []
    for t in range(u.shape[-1]):
        y, state = kernel.step(u[..., t], state)
        ys.append(y)
    return torch.stack(ys, -1)


def test_the_steps_of_every_accepted_realization_match_the_dense_recurrence():
    kernel = _two_state(1.001)  # distinct eigenvalues, a basis of condition ~20
    u = torch.randn(2, 1, 256, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected, _ = dense_run(kernel, u, torch.zeros(2, 1, 2, dtype=torch.complex128))
    for realization in ("linear", "dense", "diagonal"):
        torch.testing.assert_close(_steps(kernel, u, realization), expected, rtol=1e-9, atol=1e-10, msg=realization)


def test_a_defective_matrix_is_refused_at_the_default_tolerance_and_would_have_been_wrong():
    # breakages: the accuracy check skipped, or tol compared the wrong way round
    kernel = _two_state(1.0)
    with pytest.raises(NumericalError, match="realization=.linear.") as err:
        kernel.setup_step("diagonal")
    assert "realization='linear'" in str(err.value) and kernel._step_mode is None
    u = torch.randn(2, 1, 256, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected, _ = dense_run(kernel, u, torch.zeros(2, 1, 2, dtype=torch.complex128))
    torch.testing.assert_close(_steps(kernel, u, "linear"), expected, rtol=1e-9, atol=1e-10)
    forced = _steps(kernel, u, "diagonal", tol=float("inf"))  # what the refusal saves the user from
    assert ((forced - expected).abs().max() / expected.abs().max()).item() > 1e-2


def test_the_error_estimate_counts_the_cancellation_of_an_ill_conditioned_basis():
    # Im w = 1 + 1e-8: the kernel computed in the eigenbasis is right to ~1e-14, but its terms are ~1e4 times
    # the kernel, so the steps lose ~1e-12 to cancellation (breakage: the cancellation term dropped)
    kernel = _two_state(1.0 + 1e-8)
    kernel.setup_step("diagonal", tol=1e-10)
    with pytest.raises(NumericalError, match="cancellation"):
        kernel.setup_step("diagonal", tol=1e-12)


def test_hippo_legs_is_accepted_and_its_eigenbasis_steps_are_accurate():
    kernel = DPLRKernel(2, d_state=32, init="legs", l_max=512).double()
    u = torch.randn(2, 2, 512, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(_steps(kernel, u, "diagonal"), _steps(kernel, u, "linear"), rtol=1e-6, atol=1e-6)
