"""utils/job_pool.sh, the recipes' pool of background jobs (run.sh/asr.sh --jobs): at most N jobs at once,
each with its own log; a failed job fails pool_wait (with its log's tail) without stopping the others;
pool_wait_file waits for a file a running job makes; pool_init 1 runs every job in the foreground."""
from __future__ import annotations

import subprocess
from pathlib import Path

POOL = Path(__file__).resolve().parents[1] / "utils" / "job_pool.sh"


def bash(script: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f"set -euo pipefail\n. {POOL}\n{script}"], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


# a job: appends "start NAME" and "end NAME" to events (the file shows how many ran at once)
JOB = 'job() { echo "start $1" >> events; sleep "$2"; echo "end $1" >> events; [ "$1" != bad ]; }\n'


def max_concurrent(events: list[str]) -> int:
    running = peak = 0
    for line in events:
        running += 1 if line.startswith("start") else -1
        peak = max(peak, running)
    return peak


def test_pool_runs_at_most_n_jobs_at_once_each_with_its_log(tmp_path):
    proc = bash(JOB + "pool_init 2\nfor i in 1 2 3 4 5; do pool_run logs/$i.log job $i 0.3; done\npool_wait\n"
                "echo done", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "done"
    events = (tmp_path / "events").read_text().splitlines()
    assert sorted(events) == sorted([f"start {i}" for i in range(1, 6)] + [f"end {i}" for i in range(1, 6)])
    assert max_concurrent(events) == 2
    assert all((tmp_path / f"logs/{i}.log").is_file() for i in range(1, 6))


def test_many_short_jobs_are_all_collected(tmp_path):
    # jobs that end while the next one starts leave bash's job table unseen by `wait -n` (a pool that
    # relied on it alone hung on a loaded CI machine); pool_wait must still collect every one
    proc = bash(JOB + "pool_init 2\nfor i in $(seq 1 40); do pool_run logs/$i.log job $i 0.0$((i % 4)); done\n"
                "pool_wait\necho done", tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr
    events = (tmp_path / "events").read_text().splitlines()
    assert len(events) == 80 and max_concurrent(events) <= 2


def test_a_failed_job_fails_pool_wait_after_the_others_end(tmp_path):
    proc = bash(JOB + "pool_init 2\npool_run bad.log job bad 0.1\npool_run good.log job good 0.5\n"
                "pool_wait || { echo failed; exit 3; }", tmp_path)
    assert proc.returncode == 3 and proc.stdout.strip() == "failed"
    assert "end good" in (tmp_path / "events").read_text()  # the other job was not killed
    assert "exit status 1 of the job logged in bad.log" in proc.stderr


def test_pool_wait_file_waits_for_the_job_that_makes_it(tmp_path):
    proc = bash(JOB + "pool_init 2\npool_run a.log bash -c 'sleep 0.5; touch a.done'\n"
                "pool_wait_file a.done && echo seen\npool_wait_file never.done || echo missing\npool_wait", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["seen", "missing"]


def test_one_job_runs_in_the_foreground(tmp_path):
    # pool_init 1: the job's output is the script's (no log file), and set -e stops at a failure as before
    proc = bash(JOB + "pool_init 1\npool_run one.log job 1 0\necho after", tmp_path)
    assert proc.returncode == 0 and proc.stdout.split() == ["after"]
    assert not (tmp_path / "one.log").exists()
    proc = bash(JOB + "pool_init 1\npool_run one.log job bad 0\necho after", tmp_path)
    assert proc.returncode != 0 and "after" not in proc.stdout
    assert bash("pool_init 0", tmp_path).returncode != 0
