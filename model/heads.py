"""Projection MLPs and the probabilistic (mean, log-variance) heads."""

from __future__ import annotations

from torch import Tensor, nn

from model.gaussian import GaussianEmbedding

# The reference initialises both std-head biases to -4 so training starts near-deterministic.
STD_HEAD_BIAS_INIT = -4.0


class Projector(nn.Module):
    """Linear -> GELU -> Linear (reference `Projector`, key names linear1/linear2)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(in_dim, out_dim)
        self.act = nn.GELU()
        self.linear2 = nn.Linear(out_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """Project x."""
        return self.linear2(self.act(self.linear1(x)))


class ProbabilisticHead(nn.Module):
    """mean_head and std_head on a shared input; std_head outputs log sigma^2.

    They map the tower's width to the embedding width (the reference's `Projector(512, fc_dim)`
    on a CLAP projection), so the two need not be equal.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.mean_head = Projector(in_dim, out_dim)
        self.std_head = Projector(in_dim, out_dim)
        nn.init.constant_(self.std_head.linear1.bias, STD_HEAD_BIAS_INIT)
        nn.init.constant_(self.std_head.linear2.bias, STD_HEAD_BIAS_INIT)

    def forward(self, x: Tensor) -> GaussianEmbedding:
        """Gaussian embedding of x."""
        return GaussianEmbedding.from_head(self.mean_head(x), self.std_head(x))


class DeterministicHead(nn.Module):
    """InfoNCE baseline head: a Projector (audio/text) or identity (image), zero variance."""

    def __init__(self, in_dim: int, out_dim: int, project: bool) -> None:
        super().__init__()
        if not project and in_dim != out_dim:
            raise ValueError(f"an unprojected head keeps its width: {in_dim} != {out_dim}")
        self.head = Projector(in_dim, out_dim) if project else nn.Identity()

    def forward(self, x: Tensor) -> GaussianEmbedding:
        """Point embedding of x."""
        return GaussianEmbedding.point(self.head(x))


def make_head(in_dim: int, out_dim: int, probabilistic: bool, project: bool = True) -> nn.Module:
    """The head for one modality: from the tower's width to the embedding width."""
    if probabilistic:
        return ProbabilisticHead(in_dim, out_dim)
    return DeterministicHead(in_dim, out_dim, project)
