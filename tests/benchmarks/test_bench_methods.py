"""benchmarks/bench_methods.py end to end: the scripts it times run in a scratch folder, so data
paths given relative to where it is called from must still find the data."""
import os
import re
import subprocess
import sys

from conftest import REPO, script_env


def test_relative_data_paths_reach_the_timed_scripts(syn, tmp_path):
    caller = tmp_path / "caller"
    caller.mkdir()
    root, train_list = os.path.relpath(syn.root, caller), os.path.relpath(syn.train_list, caller)
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_methods.py"), "--dataset_name", "Synthetic",
                           "--root_path", root, "--train_list", train_list, "--labelnum", "2", "--iterations", "3",
                           "--methods", "SUP", "--extra=--patch_size 32 32 16"],
                          cwd=caller, env=script_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^SUP\s+[0-9.]+ s/iteration \(data wait [0-9.]+\)$", proc.stdout, re.M), proc.stdout


def test_a_script_that_fails_fails_the_benchmark(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_methods.py"), "--dataset_name", "Synthetic",
                           "--root_path", tmp_path / "missing", "--iterations", "3", "--methods", "SUP"],
                          cwd=tmp_path, env=script_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1
    assert re.search(r"^SUP: failed \(exit 2\): error: .*missing", proc.stdout, re.M), proc.stdout
