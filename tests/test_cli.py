import subprocess
import sys

from ldc.cli import main


def test_usage_lists_commands(capsys):
    assert main(["--help"]) == 0
    assert "sim" in capsys.readouterr().out


def test_unknown_command_names_the_choices(capsys):
    assert main(["nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'nope'" in err and "sim" in err


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "ldc.cli", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("ldc ")


def test_usage_says_the_demo_starts_a_feeder_per_venue(capsys):
    assert main(["--help"]) == 0
    demo = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("demo "))
    assert "a feeder per venue" in demo
