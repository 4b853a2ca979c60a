"""Every flag of every study, tried with 0, -1, 1, a huge value and a non-number.

The flags are read from each study's own parser (``build_parser()``), so a new
study or flag is tried as soon as it exists; :data:`VALID` says which of the five
values each flag accepts, and a flag missing from it fails the test until its
author says. A value refused must give exit status 2, a message naming the flag
as typed, no traceback, and no folder; a value accepted must pass the study's
parser and its ``check`` (the study is not run: too slow for every flag).
Booleans and choices are treated apart (see their tests).
"""

import contextlib
import importlib
import io

import pytest

from lossvar import cli, studies

HUGE = str(10**12)
VALUES = ("0", "-1", "1", HUGE, "abc")

#: Which of VALUES each flag accepts (with the study's full defaults for the others).
#: The flags every study shares:
COMMON = {"--seed": {"0", "1", HUGE}, "--workers": {"-1", "1"}, "--dpi": {"1"}}
VALID = {
    "variance_scaling": {  # replicates >= 21; sizes: 3 below each N; --n 1 leaves none
        "--replicates": set(), "--batch-sizes": set(), "--n": set(),
        "--noise-std": {"0", "1", HUGE}, "--data": set(), "--confidence": set(), "--network": set()},
    "sgd_vs_batch": {  # --base-size >= --dim = 5; --dim >= 2 and at most --base-size = 50
        "--replicates": set(), "--epochs": {"1"}, "--base-size": set(), "--dim": set(),
        "--noise-std": {"0", "1", HUGE}, "--copies": {"1"}, "--diversity": {"0", "1", HUGE},
        "--minibatch": {"1"}, "--confidence": set(), "--network": set()},
    "erm_spread": {  # --sizes needs 3 entries; --dim 10^12 exceeds the sizes
        "--replicates": set(), "--sizes": set(), "--noise-std": {"1", HUGE}, "--dim": {"1"},
        "--confidence": set()},
    "robbins_monro": {  # --steps >= 15; --mu or --c of 10^12 overflows (w - w*)^2
        "--replicates": set(), "--steps": set(), "--mu": {"1"}, "--noise-std": {"1", HUGE},
        "--w0": {"0", "-1", "1", HUGE}, "--c": {"1"}, "--confidence": set(), "--network": set(),
        "--network-replicates": set(), "--network-steps": set()},
    "trend_optimizers": {  # --steps 1 leaves the transient; --condition 10^12 never settles
        "--replicates": set(), "--steps": set(), "--condition": {"1"}, "--noise-std": {"1", HUGE},
        "--data": set(), "--batch-size": {"1"}, "--real-replicates": set(), "--epochs": {"1"},
        "--confidence": set(), "--network": set()},
    "critical_batch": {  # ladders need 3 sizes; --bootstrap >= 40 at 95%; --lr-factor in (1, 10]
        "--replicates": set(), "--tune-replicates": {"1"}, "--onestep-replicates": set(),
        "--noise-replicates": set(), "--batch-sizes": set(), "--softmax-batch-sizes": set(),
        "--lr-factor": set(), "--target": set(), "--n": set(), "--dim": {"1"}, "--data": set(),
        "--softmax-data": set(), "--softmax-target": set(),
        "--softmax-onestep-replicates": {"0"}, "--bootstrap": set(), "--confidence": set(),
        "--network": set(), "--network-target": set(), "--network-batch-sizes": set()},
    "variance": {  # with --data breast_cancer (N = 569)
        "--data": set(), "--batch-sizes": {"1"}, "--replicates": set(), "--confidence": set()},
}
#: Options a study requires, with a valid value, given before the flag tried.
REQUIRED = {"variance": ["--data", "breast_cancer"]}
#: Cases that fail for a reason outside the study modules, with the fix they wait for.
PENDING: dict = {}
#: --out is the destination itself (tests/test_results.py tries its rules).
SKIP = {"--out", "--help"}


def _actions(name):
    module = importlib.import_module(f"lossvar.studies.{name}")
    return module, [a for a in module.build_parser()._actions if a.option_strings]


def _cases(kind):
    out = []
    for name in studies.STUDIES:
        _, actions = _actions(name)
        for action in actions:
            flag = action.option_strings[0]
            if SKIP & set(action.option_strings):
                continue
            boolean = action.nargs == 0
            if kind == "boolean" and boolean:
                out.append(pytest.param(name, action.option_strings, id=f"{name}{flag}"))
            elif kind == "choice" and not boolean and action.choices:
                out.append(pytest.param(name, flag, list(action.choices), id=f"{name}{flag}"))
            elif kind == "value" and not boolean and not action.choices:
                for value in VALUES:
                    marks = ([pytest.mark.xfail(reason=PENDING[name, flag, value], strict=True)]
                             if (name, flag, value) in PENDING else [])
                    out.append(pytest.param(name, flag, value, marks=marks,
                                            id=f"{name}{flag}={value}"))
    return out


def _valid(name, flag):
    if flag in COMMON:
        return COMMON[flag]
    if flag not in VALID.get(name, {}):
        pytest.fail(f"say in VALID which of {VALUES} the flag {flag} of study {name!r} accepts")
    return VALID[name][flag]


def _run(name, argv, tmp_path, monkeypatch):
    """``lossvar run NAME ARGV --out DIR``: (exit status, stdout + stderr, folder made?).
    The study's compute is replaced, so a value wrongly accepted fails at once."""
    module = importlib.import_module(f"lossvar.studies.{name}")

    def ran(*_):
        raise AssertionError(f"the study ran with {argv}")

    monkeypatch.setattr(module, "compute", ran)
    out, err = io.StringIO(), io.StringIO()
    folder = tmp_path / "x"
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli.main(["run", name, *REQUIRED.get(name, []), *argv, "--out", str(folder)])
        except SystemExit as exc:  # argparse's exit, status 2
            status = exc.code
    return status, out.getvalue() + err.getvalue(), folder.exists()


def _accepted(name, argv):
    """Parse ``argv`` as the study does, fill the defaults and run its ``check``."""
    module = importlib.import_module(f"lossvar.studies.{name}")
    args = module.build_parser().parse_args([*REQUIRED.get(name, []), *argv])
    studies.resolve(args, module.FULL, module.QUICK)
    if hasattr(module, "check"):
        module.check(args)


@pytest.mark.parametrize(("name", "flag", "value"), _cases("value"))
def test_every_flag_refuses_by_name_or_accepts(name, flag, value, tmp_path, monkeypatch):
    if value in _valid(name, flag):
        _accepted(name, [flag, value])
        return
    status, text, made = _run(name, [flag, value], tmp_path, monkeypatch)
    assert status == 2, text
    assert flag in text, text
    assert "Traceback" not in text and not made, text


@pytest.mark.parametrize(("name", "flags"), _cases("boolean"))
def test_boolean_flags_take_no_value(name, flags, tmp_path, monkeypatch):
    # Alone each is accepted; followed by a value, argparse refuses the value by name.
    for flag in flags:
        _accepted(name, [flag])
        status, text, made = _run(name, [flag, "1"], tmp_path, monkeypatch)
        assert status == 2 and "unrecognized arguments: 1" in text, text
        assert "Traceback" not in text and not made, text


@pytest.mark.parametrize(("name", "flag", "choices"), _cases("choice"))
def test_choice_flags_accept_their_choices_only(name, flag, choices, tmp_path, monkeypatch):
    for choice in choices:
        _accepted(name, [flag, choice])
    for value in VALUES:
        status, text, made = _run(name, [flag, value], tmp_path, monkeypatch)
        assert status == 2 and flag in text and "invalid choice" in text, text
        assert "Traceback" not in text and not made, text


def test_every_study_and_flag_is_classified():
    for name in studies.STUDIES:
        _, actions = _actions(name)
        flags = {a.option_strings[0] for a in actions
                 if a.nargs != 0 and not a.choices and not SKIP & set(a.option_strings)}
        unknown = flags - set(COMMON) - set(VALID.get(name, {}))
        assert not unknown, f"classify in VALID the flags {sorted(unknown)} of {name}"
        gone = set(VALID.get(name, {})) - flags
        assert not gone, f"VALID lists flags {sorted(gone)} that {name} no longer has"


# The reproductions of issue 19 and the relations between flags: each refused by name.
RELATIONS = [
    ("sgd_vs_batch", ["--minibatch", "100000"], "--minibatch"),
    ("sgd_vs_batch", ["--minibatch", "0"], "--minibatch"),
    ("sgd_vs_batch", ["--base-size", "4", "--dim", "5"], "--base-size"),
    ("trend_optimizers", ["--batch-size", "100000"], "--batch-size"),
    ("trend_optimizers", ["--batch-size", "0"], "--batch-size"),
    ("trend_optimizers", ["--epochs", "0"], "--epochs"),
    ("trend_optimizers", ["--steps", "100"], "--steps"),
    ("trend_optimizers", ["--replicates", "1"], "--replicates"),
    ("erm_spread", ["--dim", "0"], "--dim"),
    ("erm_spread", ["--dim", "9", "--sizes", "10,20,40"], "--sizes"),
    ("erm_spread", ["--replicates", "1"], "--replicates"),
    ("robbins_monro", ["--mu", "-1"], "--mu"),
    ("robbins_monro", ["--mu", "100"], "--mu"),
    ("variance_scaling", ["--n", "1"], "--n"),
    ("variance_scaling", ["--n", "4"], "--batch-sizes"),
    ("variance_scaling", ["--batch-sizes", "1,4,4"], "--batch-sizes"),
    ("variance_scaling", ["--batch-sizes", "1000,4,16,64,full"], "--batch-sizes"),
    ("variance_scaling", ["--batch-sizes", "-3,4"], "--batch-sizes"),
    ("sgd_vs_batch", ["--replicates", "1"], "--replicates"),
    ("sgd_vs_batch", ["--copies", "-3,4"], "--copies"),
    ("critical_batch", ["--bootstrap", "100", "--confidence", "0.99"], "--bootstrap"),
    ("critical_batch", ["--n", "6"], "--n"),
    ("critical_batch", ["--batch-sizes", "1,600,700", "--n", "500"], "--batch-sizes"),
    ("critical_batch", ["--softmax-batch-sizes", "1,2,4000"], "--softmax-batch-sizes"),
    # --network: widths from digits' 64 pixels to its 10 classes, at most 512 hidden units
    ("variance_scaling", ["--network", "64-32-9"], "--network"),
    ("sgd_vs_batch", ["--network", "63-32-10"], "--network"),
    ("robbins_monro", ["--network", "64-0-10"], "--network"),
    ("robbins_monro", ["--network", "64-32x-10"], "--network"),
    ("trend_optimizers", ["--network", "64-400-113-10"], "--network"),
    ("critical_batch", ["--network", "64--10"], "--network"),
    ("trend_optimizers", ["--data", "none", "--batch-size", "1798"], "--batch-size"),
    ("critical_batch", ["--network-batch-sizes", "1,2,4000"], "--network-batch-sizes"),
]


@pytest.mark.parametrize(("name", "argv", "flag"), RELATIONS,
                         ids=[f"{n}{' '.join(a)}" for n, a, _ in RELATIONS])
def test_relations_between_flags_are_refused_by_name(name, argv, flag, tmp_path, monkeypatch):
    status, text, made = _run(name, argv, tmp_path, monkeypatch)
    assert status == 2 and flag in text, text
    assert "Traceback" not in text and not made, text


@pytest.mark.parametrize(("name", "argv"), [
    ("variance_scaling", ["--replicates", "21", "--n", "5", "--batch-sizes", "1,2,4"]),
    ("robbins_monro", ["--steps", "15", "--replicates", "2"]),
    ("trend_optimizers", ["--steps", "194"]),
    ("critical_batch", ["--bootstrap", "40"]),
    ("sgd_vs_batch", ["--minibatch", "800", "--base-size", "50", "--copies", "16"]),
    ("variance_scaling", ["--network", "64-10"]),
    ("trend_optimizers", ["--network", "64-400-112-10", "--data", "none", "--batch-size", "1797"]),
    ("robbins_monro", ["--network", "none"]),
    ("critical_batch", ["--network", "none", "--network-batch-sizes", "1,2,4000"]),
])
def test_the_edges_of_the_relations_are_accepted(name, argv):
    _accepted(name, argv)


def test_huge_value_is_refused_before_any_work():
    # The memory a run would hold is judged from the flags, not found out by running.
    for name, flag in [("variance_scaling", "--n"), ("robbins_monro", "--steps"),
                       ("sgd_vs_batch", "--epochs")]:
        with pytest.raises(ValueError, match=f"{flag} .* GiB"):
            _accepted(name, [flag, str(10**9)])
    with pytest.raises(SystemExit):
        _accepted("erm_spread", ["--replicates", str(10**9 + 1)])
