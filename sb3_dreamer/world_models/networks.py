"""The three parts of World Models (Ha & Schmidhuber 2018, Sec. 2): V, a VAE that compresses each
frame into ``z``; M, an MDN-RNN that predicts ``p(z_{t+1} | a_t, z_t, h_t)`` as a mixture of
Gaussians; C, a linear controller ``a_t = W [z_t, h_t] + b``."""

from __future__ import annotations

import math

import torch as th
from torch import nn

from sb3_dreamer.common.encoders import ObservationDecoder, ObservationEncoder
from sb3_dreamer.common.networks import NetStyle
from sb3_dreamer.common.observations import ObsPart


class VAE(nn.Module):
    """V: ``q(z | x) = N(mu(x), sigma(x))`` over the observation's images (our CNN encoder, any
    size from 5x5) and the decoder ``p(x | z)`` (paper Sec. 2.1; Bernoulli planes for binary
    observations, a unit Gaussian, i.e. the paper's L2 loss, otherwise)."""

    def __init__(self, parts: list[ObsPart], z_size: int, cnn_depth: int, style: NetStyle) -> None:
        super().__init__()
        self.encoder = ObservationEncoder(parts, cnn_depth, 1, 64, style, cnn_padding="same")
        self.head = nn.Linear(self.encoder.out_dim, 2 * z_size)
        self.decoder = ObservationDecoder(z_size, self.encoder, 1, 64)
        self.z_size = z_size

    def encode(self, inputs: dict[str, th.Tensor]) -> tuple[th.Tensor, th.Tensor]:
        """(mu, log sigma) of ``q(z | x)``."""
        mean, log_std = self.head(self.encoder(inputs)).chunk(2, -1)
        return mean, log_std.clamp(-10.0, 2.0)

    def loss(self, inputs: dict[str, th.Tensor], kl_tolerance: float) -> tuple[th.Tensor, dict[str, th.Tensor]]:
        """``-ln p(x | z) + max(KL[q(z | x) || N(0, I)], kl_tolerance z_size)`` with ``z`` the
        reparameterised sample (paper Sec. 2.1; the KL floor is the paper code's ``kl_tolerance``)."""
        mean, log_std = self.encode(inputs)
        z = mean + log_std.exp() * th.randn_like(mean)
        reconstruction = self.decoder.nll(z, inputs).mean()
        kl = (0.5 * (mean**2 + (2 * log_std).exp() - 1.0) - log_std).sum(-1).mean()
        loss = reconstruction + kl.clamp(min=kl_tolerance * self.z_size)
        return loss, {"vae_loss": loss.detach(), "vae_reconstruction": reconstruction.detach(), "vae_kl": kl.detach()}


class MDNRNN(nn.Module):
    """M: an LSTM over ``[z_t, a_t]`` whose output gives a mixture of ``mixtures`` diagonal
    Gaussians for ``z_{t+1}`` (paper Sec. 2.2, Figure 6), and (as the paper's Doom model) the
    reward and a "done" logit."""

    def __init__(self, z_size: int, action_dim: int, hidden_size: int, mixtures: int) -> None:
        super().__init__()
        self.z_size, self.mixtures, self.hidden_size = z_size, mixtures, hidden_size
        self.lstm = nn.LSTM(z_size + action_dim, hidden_size, batch_first=True)
        self.mdn = nn.Linear(hidden_size, mixtures * (1 + 2 * z_size) + 2)

    def initial(self, batch: int, device: th.device) -> tuple[th.Tensor, th.Tensor]:
        zeros = th.zeros(1, batch, self.hidden_size, device=device)
        return zeros, zeros.clone()

    def forward(
        self, z: th.Tensor, action: th.Tensor, state: tuple[th.Tensor, th.Tensor] | None = None
    ) -> tuple[tuple[th.Tensor, ...], tuple[th.Tensor, th.Tensor], th.Tensor]:
        """``z`` (B, T, Z) and ``action`` (B, T, A) -> ((log pi, mu, log sigma) of z_{t+1}, reward,
        done logit), the new (h, c), and the LSTM outputs ``h_{t+1}`` (B, T, H)."""
        out, state = self.lstm(th.cat([z, action], -1), state)
        k, zs = self.mixtures, self.z_size
        params = self.mdn(out)
        logit_pi = params[..., :k]
        mean = params[..., k : k + k * zs].unflatten(-1, (k, zs))
        log_std = params[..., k + k * zs : k + 2 * k * zs].unflatten(-1, (k, zs)).clamp(-10.0, 2.0)
        reward, done = params[..., -2], params[..., -1]
        return (logit_pi.log_softmax(-1), mean, log_std, reward, done), state, out

    @staticmethod
    def nll(log_pi: th.Tensor, mean: th.Tensor, log_std: th.Tensor, target: th.Tensor) -> th.Tensor:
        """``-ln sum_k pi_k N(target | mu_k, sigma_k)``, summed over the dimensions of ``z``
        (per dimension with a shared mixture weight, as the paper's model), per step."""
        target = target.unsqueeze(-2)  # (..., 1, Z)
        log_normal = -0.5 * ((target - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
        return -th.logsumexp(log_pi.unsqueeze(-1) + log_normal, -2).sum(-1)

    @staticmethod
    def sample(log_pi: th.Tensor, mean: th.Tensor, log_std: th.Tensor, temperature: float) -> th.Tensor:
        """A draw of ``z_{t+1}`` at ``temperature`` tau: the mixture weights' logits divided by tau and
        every sigma scaled by sqrt(tau) (the paper's Sec. 4.4 and its code)."""
        pi = (log_pi / temperature).softmax(-1)  # (B, K)
        k = th.multinomial(pi, 1).squeeze(-1)  # (B,)
        rows = th.arange(len(k), device=k.device)
        std = log_std[rows, k].exp() * math.sqrt(temperature)
        return mean[rows, k] + std * th.randn_like(std)


class Controller(nn.Module):
    """C: ``a_t = W_c [z_t, h_t] + b_c`` (paper Sec. 2.3, Eq. 1), then ``tanh`` for Box actions or
    argmax over the outputs for Discrete ones. Its parameters are what CMA-ES searches."""

    def __init__(self, in_dim: int, action_dim: int, discrete: bool) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, action_dim)
        self.discrete = discrete
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, z: th.Tensor, h: th.Tensor) -> th.Tensor:
        """The action in the actor's format: one-hot (Discrete) or in [-1, 1] (Box)."""
        out = self.linear(th.cat([z, h], -1))
        if self.discrete:
            return nn.functional.one_hot(out.argmax(-1), out.shape[-1]).float()
        return th.tanh(out)

    def vector(self) -> th.Tensor:
        return nn.utils.parameters_to_vector(self.parameters()).detach()

    def load_vector(self, vector: th.Tensor) -> None:
        nn.utils.vector_to_parameters(
            th.as_tensor(vector, dtype=th.float32, device=self.linear.weight.device), self.parameters()
        )
