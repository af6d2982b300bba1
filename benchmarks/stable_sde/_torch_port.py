"""A PyTorch port of the official stable neural SDE classifier, for the benchmark's peer and
the copied-weights test.

Written anew after the structure of the authors' UEA pipeline (yongkyung-oh/Stable-Neural-SDEs,
`torch-ists`: `Diffusion_model` as the vector field, `NeuralSDE` for `z0`, the solve and its
output map, `ists_classifier` for the batch-norm head and its initialisation):

- vector field `(input_option, noise_option)`: LSDE (2, 16), LNSDE (4, 17), GSDE (6, 17) with
  the drift factor `tanh(u * tanh(z))` (the code since November 2024; `"logistic"` for the
  earlier `1 - sigmoid(z)`), naive SDE (3, 18);
- `z0 = Linear(X(t0))`, Euler-Maruyama on the observation grid, the output map
  `Tanh -> Linear -> ReLU -> Linear` on z, the head `Linear -> BatchNorm1d -> ReLU ->
  Dropout(0.1) -> Linear` on the last step, the head's `Linear`s xavier-uniform with bias 0.01,
  and its last layer's gradients multiplied by 100 (the reference's hooks);
- the solve either through `torchsde.sdeint(method="euler", dt=max(min dt, 1e-3))` as the
  reference does, or as a plain PyTorch Euler-Maruyama loop on the grid (no torchsde
  overhead, the same arithmetic).

Requires torch, torchsde and torchcde; import it only where they are installed.
"""

import numpy as np
import torch
import torchcde
import torchsde


# model name -> (input_option, noise_option) of the reference code
OPTIONS = {"LSDE": (2, 16), "LNSDE": (4, 17), "GSDE": (6, 17), "naive SDE": (3, 18)}


def _tau(t, y):
    """[sin t, cos t] per batch row."""
    if not torch.is_tensor(t) or t.dim() == 0:
        t = torch.full_like(y[:, :1], float(t))
    return torch.cat([torch.sin(t), torch.cos(t)], dim=-1)


class VectorField(torch.nn.Module):
    """Drift `f` and diagonal diffusion `g` of the reference's `Diffusion_model`."""

    sde_type = "ito"
    noise_type = "diagonal"

    def __init__(self, d_in, h, layers, input_option, noise_option, gsde_factor="tanh"):
        super().__init__()
        self.input_option, self.noise_option = input_option, noise_option
        self.gsde_factor = gsde_factor
        # present in every option, as in the reference (unused by options 1, 3, 5)
        self.initial_network = torch.nn.Linear(d_in, h)
        use_time = input_option in (3, 4, 5, 6)
        self.linear_in = torch.nn.Linear(h + (2 if use_time else 0), h)
        if input_option in (2, 4, 6):
            self.emb = torch.nn.Linear(2 * h, h)
        self.linears = torch.nn.ModuleList(torch.nn.Linear(h, h) for _ in range(layers - 1))
        self.linear_out = torch.nn.Linear(h, h)
        self.theta = torch.nn.Parameter(torch.tensor([[1.0]]))
        if noise_option in (16, 17):
            self.noise_t = torch.nn.Sequential(
                torch.nn.Linear(2, h), torch.nn.ReLU(), torch.nn.Linear(h, h)
            )
        elif noise_option == 18:
            self.noise_y = torch.nn.Sequential(
                torch.nn.Linear(h + 2, h), torch.nn.ReLU(), torch.nn.Linear(h, h)
            )
        else:
            raise ValueError(f"noise option {noise_option} is not ported")
        self.X = None

    def f(self, t, y):
        if self.input_option in (3, 4, 5, 6):
            yy = self.linear_in(torch.cat([_tau(t, y), y], dim=-1))
        else:
            yy = self.linear_in(y)
        if self.input_option in (2, 4, 6):
            z = self.emb(torch.cat([yy, self.initial_network(self.X.evaluate(t))], dim=-1))
        else:
            z = yy
        z = z.relu()
        for layer in self.linears:
            z = layer(z).relu()
        z = self.linear_out(z)
        if self.input_option in (5, 6):
            if self.gsde_factor == "tanh":
                z = z * y.tanh()
            else:
                z = z * (1 - torch.nan_to_num(y).sigmoid())
        return z.tanh()

    def g(self, t, y):
        if self.noise_option == 16:
            noise = self.noise_t(_tau(t, y)).relu()
        elif self.noise_option == 17:
            noise = self.noise_t(_tau(t, y)).relu() * y
        else:
            noise = self.noise_y(torch.cat([_tau(t, y), y], dim=-1)).relu()
        return (self.theta.sigmoid() * torch.nan_to_num(noise)).tanh()


class GridBrownian(torchsde.BaseBrownian):
    """A fixed Brownian sample on a grid (linear between grid points), for torchsde."""

    def __init__(self, ts, increments):
        self.ts = ts
        self.ws = torch.cat([torch.zeros_like(increments[:1]), increments.cumsum(0)])

    def _at(self, t):
        t = float(t)
        i = int(np.clip(np.searchsorted(self.ts.numpy(), t, side="right") - 1, 0, len(self.ts) - 2))
        frac = (t - float(self.ts[i])) / float(self.ts[i + 1] - self.ts[i])
        return self.ws[i] + frac * (self.ws[i + 1] - self.ws[i])

    def __call__(self, ta, tb=None, return_U=False, return_A=False):
        return self._at(ta) if tb is None else self._at(tb) - self._at(ta)

    def __repr__(self):
        return "GridBrownian()"

    @property
    def dtype(self):
        return self.ws.dtype

    @property
    def device(self):
        return self.ws.device

    @property
    def shape(self):
        return self.ws.shape[1:]

    @property
    def levy_area_approximation(self):
        return "none"


class Classifier(torch.nn.Module):
    """The reference's UEA classifier: z0, Euler-Maruyama, output map, batch-norm head."""

    def __init__(self, d_in, h, n_classes, layers=2, model="LNSDE", gsde_factor="tanh"):
        super().__init__()
        self.func = VectorField(d_in, h, layers, *OPTIONS[model], gsde_factor=gsde_factor)
        self.initial_network = torch.nn.Linear(d_in, h)
        self.linear = torch.nn.Sequential(
            torch.nn.Tanh(), torch.nn.Linear(h, h), torch.nn.ReLU(), torch.nn.Linear(h, h)
        )
        self.fc = torch.nn.Sequential(
            torch.nn.Linear(h, h),
            torch.nn.BatchNorm1d(h),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.1),
            torch.nn.Linear(h, n_classes),
        )
        for m in self.fc:
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(m.weight)
                m.bias.data.fill_(0.01)
        self.fc[-1].weight.register_hook(lambda grad: 100 * grad)
        self.fc[-1].bias.register_hook(lambda grad: 100 * grad)

    def latent(self, times, coeffs, *, solver="loop", increments=None):
        """Latent states `(L, B, h)` on the grid `times`. `solver`: `"loop"` (a plain
        Euler-Maruyama loop) or `"torchsde"` (`torchsde.sdeint`, Euler, the reference's dt).
        `increments`: a fixed Brownian sample `(L - 1, B, h)` (default: a fresh one)."""
        self.func.X = torchcde.CubicSpline(coeffs, times)
        z = self.initial_network(self.func.X.evaluate(times[0]))
        dts = times[1:] - times[:-1]
        if solver == "torchsde":
            dt = max(float(dts.min()), 1e-3)
            bm = None if increments is None else GridBrownian(times, increments)
            return torchsde.sdeint(self.func, z, times, method="euler", dt=dt, bm=bm)
        if solver != "loop":
            raise ValueError(f"`solver` must be 'loop' or 'torchsde', got {solver!r}")
        if increments is None:
            increments = torch.randn(len(times) - 1, *z.shape) * dts.sqrt()[:, None, None]
        zs = [z]
        for k in range(len(times) - 1):
            t = times[k]
            z = z + self.func.f(t, z) * dts[k] + self.func.g(t, z) * increments[k]
            zs.append(z)
        return torch.stack(zs)

    def forward(self, times, coeffs, lengths, *, solver="loop", increments=None):
        zs = self.latent(times, coeffs, solver=solver, increments=increments)
        zT = zs[lengths - 1, torch.arange(zs.shape[1])]
        return self.fc(self.linear(zT))


def coefficients(times, values):
    """torchcde Hermite (backward differences) coefficients of `[t, values]` per series
    (`times` `(L,)` shared, `values` `(B, L, C)` with NaNs), as the reference builds them."""
    times = np.asarray(times, np.float32)
    x = np.asarray(values, np.float32)
    tt = np.broadcast_to(times[None, :, None], x.shape[:2] + (1,))
    xt = torch.from_numpy(np.concatenate([tt, x], axis=-1))
    return torchcde.hermite_cubic_coefficients_with_backward_differences(
        xt, torch.from_numpy(times)
    )


def _set(linear, jax_linear):
    linear.weight.data = torch.from_numpy(np.asarray(jax_linear.weight, np.float32).copy())
    linear.bias.data = torch.from_numpy(np.asarray(jax_linear.bias, np.float32).copy())


def copy_weights(port: Classifier, model) -> Classifier:
    """Copy the weights of a scimlx LSDE / LNSDE / GSDE / NaiveSDE with the `"official"`
    readout into the port (in place; returns it). The readout's stored batch-norm statistics
    become the port's running statistics (used in `eval()` mode)."""
    f = port.func
    _set(port.initial_network, model.encoder)
    if hasattr(model, "drift_net"):
        d = model.drift_net
        _set(f.initial_network, d.x_embed)
        _set(f.linear_in, d.lin_in)
        _set(f.emb, d.emb)
        mlp = d.mlp
        _set(f.noise_t[0], model.noise.l1)
        _set(f.noise_t[2], model.noise.l2)
    else:  # NaiveSDE (no control in the drift)
        _set(f.linear_in, model.lin_in)
        mlp = model.mlp
        _set(f.noise_y[0], model.noise1)
        _set(f.noise_y[2], model.noise2)
    for layer, src in zip(f.linears, mlp.hidden_layers):
        _set(layer, src)
    _set(f.linear_out, mlp.out)
    f.theta.data = torch.tensor([[float(model.theta)]])
    head = model.readout
    if head.kind != "official":
        raise ValueError(f"the port has the 'official' readout, got {head.kind!r}")
    _set(port.linear[1], head.pre[0])
    _set(port.linear[3], head.pre[1])
    _set(port.fc[0], head.layers[0])
    _set(port.fc[4], head.layers[1])
    bn = port.fc[1]
    bn.weight.data = torch.from_numpy(np.asarray(head.bn_scale, np.float32).copy())
    bn.bias.data = torch.from_numpy(np.asarray(head.bn_shift, np.float32).copy())
    bn.running_mean.data = torch.from_numpy(np.asarray(head.running_mean, np.float32).copy())
    bn.running_var.data = torch.from_numpy(np.asarray(head.running_var, np.float32).copy())
    return port


def num_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
