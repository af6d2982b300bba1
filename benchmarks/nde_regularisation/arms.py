"""The arms of each task: a name and a tuple of `scimlx.nde` regularisers (empty: vanilla)."""

import jax.numpy as jnp

import scimlx.nde as nde


def W(x):
    """A regularisation weight as a float64 array: a traced leaf, so every weight of one
    regulariser type shares one compiled training step."""
    return jnp.asarray(x, jnp.float64)


def arms_b1(quick):
    return [
        ("vanilla", ()),
        ("global error", (nde.GlobalErrorEstimate(weight=W(0.03)),)),
        ("global error", (nde.GlobalErrorEstimate(weight=W(0.1)),)),
        ("global error", (nde.GlobalErrorEstimate(weight=W(0.3)),)),
        ("global stiffness", (nde.GlobalStiffness(weight=W(0.03)),)),
        (
            "error+stiffness",
            (nde.GlobalErrorEstimate(weight=W(0.1)), nde.GlobalStiffness(weight=W(0.03))),
        ),
        ("local unbiased", (nde.LocalErrorEstimate(weight=W(0.1)),)),
        ("local unbiased", (nde.LocalErrorEstimate(weight=W(0.3)),)),
        ("local biased", (nde.LocalErrorEstimate(weight=W(0.1), sampling="biased"),)),
        (
            "local unbiased initial-dt",
            (nde.LocalErrorEstimate(weight=W(0.3), step_size="initial"),),
        ),
        ("STEER", (nde.RandomEndTime(half_width=0.5),)),
        ("RNODE", (nde.KineticJacobian(weight_kinetic=W(0.01), weight_jacobian=W(0.01)),)),
        ("TayNODE", (nde.TaylorRegulariser(weight=W(1e-3), order=2),)),
    ]


def arms_b1_loose(quick):
    """B1 at the loose tolerance: vanilla and one weight of each heuristic regulariser."""
    return [
        ("vanilla", ()),
        ("global error", (nde.GlobalErrorEstimate(weight=W(0.1)),)),
        ("local unbiased", (nde.LocalErrorEstimate(weight=W(0.1)),)),
    ]


def arms_b2(quick):
    return [
        ("vanilla", ()),
        ("global error", (nde.GlobalErrorEstimate(weight=W(1.0)),)),
        ("global error", (nde.GlobalErrorEstimate(weight=W(10.0)),)),
        ("local unbiased", (nde.LocalErrorEstimate(weight=W(10.0)),)),
        ("local biased", (nde.LocalErrorEstimate(weight=W(10.0), sampling="biased"),)),
        ("STEER", (nde.RandomEndTime(half_width=0.5),)),
    ]


def arms_b3(quick):
    # A finer sweep than B1: on the spiral the heuristic regularisers switch from "no
    # effect" to "collapse to a trivial field" within a factor of ~3 in weight.
    return [
        ("vanilla", ()),
        ("global error", (nde.GlobalErrorEstimate(weight=W(0.01)),)),
        ("global error", (nde.GlobalErrorEstimate(weight=W(0.03)),)),
        ("global error", (nde.GlobalErrorEstimate(weight=W(0.05)),)),
        ("global error", (nde.GlobalErrorEstimate(weight=W(0.1)),)),
        ("global stiffness", (nde.GlobalStiffness(weight=W(0.1)),)),
        ("global stiffness", (nde.GlobalStiffness(weight=W(0.01)),)),
        *(
            (
                "error+stiffness",
                (nde.GlobalErrorEstimate(weight=W(e)), nde.GlobalStiffness(weight=W(k))),
            )
            for e, k in ((0.03, 0.1), (0.01, 0.01), (0.03, 0.01), (0.05, 0.01))
        ),
        ("local unbiased", (nde.LocalErrorEstimate(weight=W(0.03)),)),
        ("local unbiased", (nde.LocalErrorEstimate(weight=W(0.1)),)),
        ("local unbiased", (nde.LocalErrorEstimate(weight=W(0.3)),)),
        ("local biased", (nde.LocalErrorEstimate(weight=W(0.1), sampling="biased"),)),
        ("STEER", (nde.RandomEndTime(half_width=0.1),)),
        ("RNODE", (nde.KineticJacobian(weight_kinetic=W(1e-3), weight_jacobian=W(1e-3)),)),
        ("TayNODE", (nde.TaylorRegulariser(weight=W(1e-4), order=2),)),
    ]


def arms_b3_loose(quick):
    """B3 at the loose tolerance: vanilla, a global-error sweep, one local-error weight."""
    return [
        ("vanilla", ()),
        *(
            ("global error", (nde.GlobalErrorEstimate(weight=W(w)),))
            for w in ((0.03,) if quick else (0.01, 0.03, 0.05, 0.1))
        ),
        ("local unbiased", (nde.LocalErrorEstimate(weight=W(0.1)),)),
    ]


def weight_label(regs):
    """The arm's weights as the rows show them (`-` for vanilla, `b=` for STEER)."""
    if not regs:
        return "-"
    parts = []
    for r in regs:
        if isinstance(r, nde.KineticJacobian):
            parts.append(f"{float(r.weight_kinetic):g}/{float(r.weight_jacobian):g}")
        elif isinstance(r, nde.RandomEndTime):
            parts.append(f"b={r.half_width:g}")
        else:
            parts.append(f"{float(r.weight):g}")
    return "+".join(parts)
