"""``unlearn-bench``: one console script, one subcommand per pipeline stage, plus plugin tools.

Every stage reads ``params.yaml`` from the working directory (``--params PATH``, before the subcommand,
to change it) and is what ``dvc.yaml`` runs; ``dvc repro`` is the usual entry point. ``--params`` always
names that file; a method's parameters are overridden with ``check-plugin NAME --set KEY=VALUE``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from benchmark.config import EXECUTOR_KINDS, ConfigError, Params, load_params
from benchmark.runner.executor import UnitsFailed


def _suites(params: Params, name: str | None) -> list[str]:
    if name is None:
        return list(params.suites)
    params.suite(name)  # raises ConfigError naming it
    return [name]


def cmd_fetch(args: argparse.Namespace, params: Params) -> None:
    from benchmark.data import dvcfile
    from benchmark.runner.artifacts import Layout
    from benchmark.runner.prepare import fetch_dataset

    if args.check:
        print(dvcfile.check(args.root))
        return
    names = [args.dataset] if args.dataset else list(params.datasets)
    for name in names:
        manifest = fetch_dataset(params, name, Layout(args.root))
        print(f"{name}: {manifest['n_train']} train / {manifest['n_test']} test from {manifest['source']}")
    if not args.dataset:  # every snapshot rebuilt: verify against datasets.dvc (or record it)
        print(dvcfile.sync(params, args.root))


def _with_executor(args: argparse.Namespace, params: Params) -> Params:
    """``params`` with its ``executor:`` section overridden by ``--executor/--address/--num-cpus``."""
    from dataclasses import replace

    kind, address, num_cpus = (getattr(args, k, None) for k in ("executor", "address", "num_cpus"))
    if kind is None and address is None and num_cpus is None:
        return params
    if address is not None and kind == "local":
        raise ConfigError("--address: only valid with --executor ray")
    if address is not None and num_cpus is not None:
        raise ConfigError("--num-cpus: the cluster's own when joining one (--address)")
    cfg = params.executor
    if kind is not None:  # the file's cluster address is dropped when switching to local
        cfg = replace(cfg, kind=kind, address=cfg.address if kind == "ray" else None)
    if address is not None:
        cfg = replace(cfg, kind="ray", address=address, num_cpus=None)
    if num_cpus is not None:  # a private local instance of that size
        cfg = replace(cfg, address=None, num_cpus=num_cpus)
    return replace(params, executor=cfg)


def _each_suite(fn: Callable, label: str) -> Callable[[argparse.Namespace, Params], None]:
    def run(args: argparse.Namespace, params: Params) -> None:
        from benchmark.runner.suite import open_suite

        params = _with_executor(args, params)
        for suite in _suites(params, args.suite):
            out = fn(open_suite(params, suite, args.root), args)
            print(f"{suite}: {label}: {out}")

    return run


def cmd_method_code(args: argparse.Namespace, params: Params) -> None:
    from benchmark.runner.method_code import write_method_codes

    for suite in _suites(params, args.suite):
        path, changed = write_method_codes(params, suite, Path(args.root))
        print(f"{suite}: method code: {path} {'updated' if changed else 'unchanged'}")


def _memorize(run, args):  # noqa: ANN001
    from benchmark.runner.memorization import estimate_memorization

    out = estimate_memorization(run)
    return f"{out['models']} models" if out.get("needed") else "not needed (no memorized protocol)"


def _population(run, args):  # noqa: ANN001
    from benchmark.runner.population import train_population

    if run.suite.population is None:  # the stage's output still exists, so `dvc repro` records it
        run.layout.population_dir(run.suite.name).mkdir(parents=True, exist_ok=True)
        return "no population configured"
    counts = train_population(run)
    return f"{counts['run']} members trained, {counts['cached']} reused"


def _protocols(run, args):  # noqa: ANN001
    from benchmark.runner.prepare import write_protocols

    return f"{len(write_protocols(run))} forget-set files"


def _train(run, args):  # noqa: ANN001
    from benchmark.runner.training import train_originals

    return f"{train_originals(run)} trained"


def _gold(run, args):  # noqa: ANN001
    from benchmark.runner.training import train_gold

    return f"{train_gold(run)} retrained"


def _tune(run, args):  # noqa: ANN001
    from benchmark.runner.population import write_population_plan
    from benchmark.runner.tuning import run_tuning

    if run.params.tuning is None:  # `tuning: null`: record that the methods run untuned
        from benchmark.runner.tuning import write_untuned

        path = write_untuned(run)
        write_population_plan(run)
        untuned = "each method runs what methods: lists, else its default"
        return f"tuning disabled (tuning: null): {untuned} -> {path}"
    for m in args.method or []:
        if m not in run.suite.methods:
            known = ", ".join(run.suite.methods)
            raise ConfigError(f"--method {m}: not a method of suite {run.suite.name}; its methods: {known}")
    counts = run_tuning(run, args.method)
    write_population_plan(run)  # the population stage's input: its members' keys under these selections
    path = run.layout.tuning_path(run.suite.name)
    done = f"{counts['computed']} trials run, {counts['cached']} reused"
    if counts["committed"]:
        done += f" ({counts['committed']} studies as committed: their inputs unchanged"
        if counts["foreign"]:
            done += (f"; {counts['foreign']} of them made from tuning originals with other bits (another CPU"
                     f"; delete {path} to re-tune them here)")
        done += ")"
    return f"{counts['studies']} studies, {done} -> {path}"


def _unlearn(run, args):  # noqa: ANN001
    from benchmark.runner.cells import run_unlearning

    for m in args.method or []:
        if m not in run.suite.methods:
            known = ", ".join(run.suite.methods)
            raise ConfigError(f"--method {m}: not a method of suite {run.suite.name}; its methods: {known}")

    counts = run_unlearning(run, args.method, retry_failed=args.retry_failed)
    return f"{counts['run']} cells run, {counts['cached']} reused"


def _evaluate(run, args):  # noqa: ANN001
    from benchmark.runner.evaluate import write_results
    from benchmark.runner.evaluate_units import Judged, judge_pending
    from benchmark.runner.population_scores import write_population_results

    # the cells to judge as units on the executor first (both cores); the table is then assembled from the
    # evaluation cache, byte-identical to judging them here one after another
    executor = run.params.executor
    pre = judge_pending(run, executor) if executor.kind != "local" else Judged()
    df = write_results(run)
    pop = write_population_results(run)
    extra = f"; {len(pop)} population rows" if pop is not None else ""
    n = df.attrs["counts"]
    cells, cached = n["judged"] + pre.cells, n["cached"] - pre.cells
    read = n["references_read"] + pre.references_read
    computed = n["references_computed"] + pre.references_computed
    judged = (f" ({cells} cells judged, {cached} read from the evaluation cache; "
              f"gold references: {read} read, {computed} computed)")  # fmt: skip
    return f"{len(df)} rows -> {run.layout.results_path(run.suite.name)}{judged}{extra}"


def cmd_leaderboard(args: argparse.Namespace, params: Params) -> None:
    import pandas as pd

    from benchmark.leaderboard import read_population, read_results, write_leaderboard
    from benchmark.provenance import provenance
    from benchmark.runner.artifacts import Layout

    layout = Layout(args.root)
    frames = []
    for suite in params.suites:
        path = layout.results_path(suite)
        if not path.exists():
            raise ConfigError(f"suites.{suite}: no results at {path}; run `unlearn-bench evaluate` first")
        frames.append(read_results(path))  # the status "nan" stays a string
    population, examples = read_population(path.parent, params.suites)  # optional <suite>_population*.csv
    paths = write_leaderboard(pd.concat(frames, ignore_index=True), layout.leaderboard_dir, provenance(),
                              population=population, population_examples=examples)
    print(f"leaderboard: {len(paths)} files in {layout.leaderboard_dir}")


def cmd_preset(args: argparse.Namespace, params: Params | None) -> None:
    import yaml

    from benchmark.presets import apply_preset

    merged = apply_preset(args.name, args.params, args.root)
    out = args.out or args.params
    Path(out).write_text(yaml.safe_dump(merged, sort_keys=False, width=110))
    print(f"{out}: params.yaml + presets/{args.name}.yaml (restore the default with `git checkout {out}`)")


def cmd_methods(args: argparse.Namespace, params: Params | None) -> None:
    from benchmark.unlearners.base import available_unlearners, plugin_errors

    print(f"{'method':<22} {'origin':<28} {'code hash':<17} parameters")
    for name, cls in available_unlearners().items():
        grid = ", ".join(f"{k}={v}" for k, v in sorted(cls.params.items())) or "-"
        print(f"{name:<22} {cls.origin:<28} {cls.code_hash():<17} {grid}")
    for name, err in plugin_errors().items():
        print(f"{name:<22} {'BROKEN PLUGIN':<28} {'-':<17} {err}")


def cmd_validate(args: argparse.Namespace, params: Params) -> None:
    print(f"{args.params}: OK ({len(params.suites)} suites: {', '.join(params.suites)})")


def cmd_check_plugin(args: argparse.Namespace, params: Params | None) -> None:
    import yaml

    from benchmark.plugins import format_results, run_conformance

    if args.deprecated_params:
        print(
            "unlearn-bench: warning: `check-plugin --params KEY=VALUE` is deprecated, use `--set KEY=VALUE` "
            "(--params names the params.yaml file everywhere else)",
            file=sys.stderr,
        )
    overrides = {}
    for item in ",".join((args.method_params or []) + (args.deprecated_params or [])).split(","):
        if item.strip():
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
            overrides[key.strip()] = yaml.safe_load(value)
    results = run_conformance(args.name, overrides)
    print(format_results(args.name, results))
    if not all(r.passed for r in results):
        raise SystemExit(1)


def cmd_new_method(args: argparse.Namespace, params: Params | None) -> None:
    from benchmark.plugins import scaffold_method, scaffold_package

    if args.package is not None:
        files = scaffold_package(args.name, args.package)
        print("wrote " + ", ".join(str(f) for f in files))
        print(f"next: cd {args.package} && pip install -e . && pytest && "
              f"unlearn-bench check-plugin {args.name}")
        return
    method_file, test_file = scaffold_method(args.name, args.dir, args.tests_dir)
    print(f"wrote {method_file} and {test_file}")
    print(f"next: edit {method_file}, then `unlearn-bench check-plugin {args.name}` and `pytest {test_file}`")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unlearn-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="config file (params.yaml)")
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root for inputs and outputs")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, help_: str, fn: Callable, suite: bool = False, grid: bool = False
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        if suite:
            p.add_argument("--suite", help="one suite from params.yaml (default: all)")
        if grid:
            g = p.add_argument_group("executor (overrides params.yaml's executor: section)")
            g.add_argument("--executor", choices=EXECUTOR_KINDS, help="run units in-process or as Ray tasks")
            g.add_argument(
                "--address", help="join this Ray cluster (auto or HOST:PORT); implies --executor ray"
            )
            g.add_argument(
                "--num-cpus", type=int, help="CPUs of the private local Ray instance (default: all)"
            )
        p.set_defaults(fn=fn)
        return p

    p = add(
        "fetch",
        "Snapshot datasets into datasets/<name>/ (parquet + manifest with sha256); verify them against "
        "datasets.dvc.",
        cmd_fetch,
    )
    p.add_argument(
        "--dataset", help="one dataset from params.yaml (default: all, then verified against datasets.dvc)"
    )
    p.add_argument(
        "--check", action="store_true", help="only verify datasets/ against the hash in datasets.dvc"
    )
    add(
        "method-code",
        "Write runs/method_code/<suite>.json, the code hash of each method the suite runs (a DVC stage that "
        "always runs: the stages that run method code depend on the file).",
        cmd_method_code,
        suite=True,
    )
    add(
        "memorize",
        "Estimate per-example memorisation (models on random halves) for the memorized protocol.",
        _each_suite(_memorize, "memorization"),
        suite=True,
        grid=True,
    )
    add(
        "protocols",
        "Write the K forget sets of every protocol and seed of a suite.",
        _each_suite(_protocols, "protocols"),
        suite=True,
    )
    add(
        "train",
        "Train the original models (one per seed) on the full training set.",
        _each_suite(_train, "originals"),
        suite=True,
        grid=True,
    )
    add(
        "gold",
        "Retrain gold models on D minus requests 1..k for every protocol, seed and step.",
        _each_suite(_gold, "gold"),
        suite=True,
        grid=True,
    )
    add(
        "population",
        "Train the populations (originals, retrains, unlearned models) for KLoM and the NeurIPS score.",
        _each_suite(_population, "population"),
        suite=True,
        grid=True,
    )
    p = add(
        "tune",
        "Select each method's configuration per protocol on tuning seeds and a validation split "
        "(tuning/<suite>.yaml; trials cached).",
        _each_suite(_tune, "tune"),
        suite=True,
        grid=True,
    )
    p.add_argument("--method", action="append", help="restrict to this method (repeatable)")
    p = add(
        "unlearn",
        "Run every method's cells (cached per cell: only new or changed cells run).",
        _each_suite(_unlearn, "unlearn"),
        suite=True,
        grid=True,
    )
    p.add_argument("--method", action="append", help="restrict to this method (repeatable)")
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="also re-run cached cells that ended failed, nan or timeout (changed methods re-run anyway)",
    )
    add(
        "evaluate",
        "Judge every cell against the gold models; write results/<suite>.csv.",
        _each_suite(_evaluate, "evaluate"),
        suite=True,
        grid=True,  # the cells and gold references it judges are units on the executor (evaluate_units)
    )
    add(
        "leaderboard",
        "Collect results into leaderboards/ (README.md, CSV, metrics, plots, HTML).",
        cmd_leaderboard,
    )
    add("methods", "List every discovered unlearning method with its origin and code hash.", cmd_methods)
    add("validate", "Check params.yaml and report the first bad key.", cmd_validate)
    p = add("preset", "Rewrite params.yaml with a named preset (presets/NAME.yaml) merged in.", cmd_preset)
    p.add_argument("name", help="preset name, e.g. full")
    p.add_argument("--out", type=Path, help="write here instead of over params.yaml")
    p = add(
        "check-plugin", "Run the conformance checks on one method (exit 1 if any fails).", cmd_check_plugin
    )
    p.add_argument("name", help="registered method name (built-in or entry-point plugin)")
    p.add_argument(
        "--set",
        dest="method_params",
        action="append",
        metavar="KEY=VALUE[,...]",
        help="override the method's test_params (values parsed as YAML; repeatable)",
    )
    # deprecated spelling of --set (kept for existing scripts; --params is the params.yaml path elsewhere)
    p.add_argument("--params", dest="deprecated_params", action="append", help=argparse.SUPPRESS)
    p = add(
        "new-method", "Scaffold a method file and its conformance test (never overwrites).", cmd_new_method
    )
    p.add_argument("name", help="new method name: a lowercase python identifier")
    p.add_argument("--dir", type=Path, default=Path("benchmark/unlearners"), help="where the method goes")
    p.add_argument("--tests-dir", type=Path, default=Path("tests/unit"), help="where its test goes")
    p.add_argument("--package", type=Path, default=None, metavar="DIR",
                   help="write an installable plugin package (pyproject with the entry point, src layout, "
                        "tests) into DIR instead")  # fmt: skip
    return parser


# plugin tools work outside a checkout; preset reads params.yaml itself
NO_PARAMS_COMMANDS = ("methods", "check-plugin", "new-method", "preset")


def set_threads() -> int:
    """Intra-op threads for torch: ``UNLEARN_BENCH_THREADS`` (default 1).

    The default suites use small models, for which extra threads only add synchronisation (measured on a
    2-core VM: a digits MLP trains in 0.35 s on one thread and up to 150 s on two), and one thread keeps
    float reductions, hence results, identical across machines with different core counts.
    """
    threads = int(os.environ.get("UNLEARN_BENCH_THREADS", "1"))
    torch.set_num_threads(threads)
    return threads


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_threads()
    try:
        params = None if args.command in NO_PARAMS_COMMANDS else load_params(args.params)
        args.fn(args, params)
    except ConfigError as exc:
        print(f"unlearn-bench: error: {exc}", file=sys.stderr)
        return 2
    except UnitsFailed as exc:  # the rest of the grid finished and is kept; a re-run retries only these
        print(f"unlearn-bench: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # one line for the user; --debug shows the traceback
        if args.debug:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        msg = f"unlearn-bench: error: {type(exc).__name__}: {first} (--debug for the traceback)"
        print(msg, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("unlearn-bench: interrupted; finished work is kept and a re-run resumes", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
