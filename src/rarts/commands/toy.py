"""`rarts toy`: the paper's solvable bilevel model (section 3.3). `run` iterates one method, `figure` draws Figure 1."""

from __future__ import annotations

import argparse

from rarts.toy import METHODS, SWEEPS  # a light module: the maths is plain floats, numpy and matplotlib load on use


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "toy",
        help="the solvable bilevel model: every method's iteration, closed-form limits, Figure 1",
        description="The solvable model L_val = alpha*w - 2*alpha + 1, L_train = (w - alpha)^2, start (2, -2).",
    )
    sub = p.add_subparsers(dest="toy_command", metavar="SUBCOMMAND", parser_class=type(p))
    sub.required = True

    r = sub.add_parser("run", help="iterate one method and compare its end point with the closed-form limit")
    r.add_argument("--method", choices=METHODS, default="rarts", help="search method (default: rarts)")
    r.add_argument("--lam", type=float, help="lambda, weight of L_train in eq. (2) and MiLeNAS (default: 10)")
    r.add_argument("--beta", type=float, help="beta, the penalty on (y - w)^2 in eq. (2) (default: 10)")
    r.add_argument("--y0", type=float, help="RARTS's starting y (default: 0)")
    r.add_argument("--xi", type=float, help="DARTS 2nd order's virtual step (default: the w learning rate)")
    r.add_argument("--lr", type=float, help="learning rate of every block (default: 0.01)")
    r.add_argument("--lr-w", dest="lr_w", type=float, help="learning rate of w (default: --lr)")
    r.add_argument("--lr-y", dest="lr_y", type=float, help="learning rate of y (default: --lr)")
    r.add_argument("--lr-alpha", dest="lr_alpha", type=float, help="learning rate of alpha (default: --lr)")
    r.add_argument("--steps", type=int, help="number of steps (default: 20000)")
    r.add_argument(
        "--sweep",
        choices=SWEEPS,
        help="rarts only: gauss-seidel (eq. 4, each line with the values just updated; default) or jacobi "
        "(every direction at the current point)",
    )
    r.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    r.set_defaults(func=run_command)

    f = sub.add_parser("figure", help="Figure 1 as PNG and SVG, plus the endpoint table as CSV and Markdown")
    f.add_argument("--out", required=True, help="output folder")
    f.add_argument("--lr", type=float, default=0.01, help="learning rate (default: 0.01)")
    f.add_argument("--steps", type=int, default=20000, help="steps per trajectory (default: 20000)")
    f.set_defaults(func=figure_command)


def run_command(args: argparse.Namespace) -> int:
    import json

    from rarts.config import build_config
    from rarts.toy import ToySettings, run, summarize

    flags = {k: getattr(args, k) for k in ("method", "lam", "beta", "y0", "xi", "lr", "lr_w", "lr_y", "lr_alpha")}
    flags["steps"] = args.steps
    flags["sweep"] = args.sweep
    settings = build_config(ToySettings, flags)
    result = summarize(run(settings))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result))
    return 0


def _radius(rho: float | None) -> str:
    return "overflows float64" if rho is None else f"{rho:.6f}" if rho < 1e6 else f"{rho:.6g}"


def format_table(result: dict) -> str:
    """A short readable report of one run."""
    from rarts.toy import METHOD_NAMES

    s = result["settings"]
    head = f"{METHOD_NAMES[result['method']]}: lr={s['lr']:g}"
    for block in ("w", "y", "alpha"):
        if s[f"lr_{block}"] is not None:
            head += f", lr_{block}={s[f'lr_{block}']:g}"
    head += f", steps={result['steps']}"
    if result["method"] in ("milenas", "rarts"):
        head += f", lam={s['lam']:g}"
    if result["method"] == "rarts":
        head += f", beta={s['beta']:g}, y0={s['y0']:g}, sweep={s['sweep']}"
    if result["method"] == "darts2":
        head += f", xi={s['xi']:g}"

    def num(v: float) -> str:
        return f"{v:>16.9f}" if abs(v) < 1e5 else f"{v:>16.6e}"

    keys = ("alpha", "w", "y") if result["method"] == "rarts" else ("alpha", "w")
    eq = result["equilibrium"]
    lines = [head, f"{'':<14}" + "".join(f"{k:>16}" for k in keys)]
    lines.append(f"{'end point':<14}" + "".join(num(result[k]) for k in keys))
    if eq is None:
        lines.append(f"{'equilibrium':<14}  none unique (4*lam*beta - 2*lam - beta = 0)")
    else:
        lines.append(f"{'equilibrium':<14}" + "".join(num(eq[k]) for k in keys))
    status = "DIVERGED" if result["diverged"] else ("converged" if result["converged"] else "not converged")
    lines.append(
        f"status: {status} (residual {result['residual']:.2e}, spectral radius {_radius(result['spectral_radius'])})"
    )
    if result["lagrangian_monotone"] is not None:
        lines.append(f"Lagrangian (eq. 2) descended at every step: {'yes' if result['lagrangian_monotone'] else 'no'}")
    b = result["lr_bounds"]
    if b is not None:
        bounds = ", ".join(
            f"eta_{blk} < {c} = {'none' if b[c] is None else format(b[c], '.6g')}"
            for c, blk in (("c1", "w"), ("c2", "y"), ("c3", "alpha"))
        )
        lines.append(f"Theorem 1 bounds: {bounds} ({'satisfied' if b['satisfied'] else 'violated'})")
    if result["divergence_reason"]:
        lines.append(f"why: {result['divergence_reason']}")
    return "\n".join(lines)


def figure_command(args: argparse.Namespace) -> int:
    from rarts.errors import UsageError
    from rarts.toy import figure1

    if not args.lr > 0:
        raise UsageError(f"--lr must be positive, got {args.lr}")
    if args.steps <= 0:
        raise UsageError(f"--steps must be a positive integer, got {args.steps}")
    for path in figure1(args.out, lr=args.lr, steps=args.steps):
        print(path)
    return 0
