"""A real one-node SLURM cluster on localhost, for the cluster test.

Debian's ``slurm-wlm`` and ``munge`` (installed with apt-get when missing),
started as root in the foreground (children of this process) with everything
they write in one temporary folder: a private ``munged`` (own key and socket),
``slurmctld`` and ``slurmd`` with count-only fake GPUs (``gres.conf`` entries
backed by ``/dev/null`` and ``/dev/zero``), so ``--gpus=1`` takes the real
submission path and jobs see ``CUDA_VISIBLE_DEVICES``. No accounting database:
finished jobs stay visible to ``squeue``/``scontrol`` for ``MinJobAge`` seconds.

The configuration has to be ``/etc/slurm/slurm.conf``: the jobstep executor
inside each job drops ``SLURM_CONF`` before its nested ``srun``. One cluster
at a time per machine (a file lock), the files carry a marker, and a
configuration this module did not write is never overwritten. Daemons are
stopped by their pid files, after every job is cancelled.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SLURM_ETC = Path("/etc/slurm")
MARKER = "# written by phenoface tests/integration/slurm_cluster.py; removed when the test ends"
LOCK = Path(tempfile.gettempdir()) / "phenoface-slurm-cluster.lock"
PACKAGES = ("slurm-wlm", "munge")
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")
SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"
# Finished jobs stay queryable this long; the test reads every record at its end.
MIN_JOB_AGE_S = 3600
# The node offers at least this many CPUs and these fake GPUs, whatever the machine has
# (SlurmdParameters=config_overrides): jobs of one workflow level run side by side instead of
# queueing behind each other, since most of a small job's time is waiting, not computing.
NODE_MIN_CPUS = 4
FAKE_GPU_FILES = ("/dev/null", "/dev/zero")


class ClusterUnavailable(RuntimeError):
    """This machine cannot run the local cluster; the message says why."""


@dataclass(frozen=True)
class JobRecord:
    """One SLURM job as ``scontrol show job`` reports it."""

    job_id: int
    name: str
    comment: str
    state: str
    gpus: int
    cpus: int
    batch_host: str

    @property
    def rule(self) -> str:
        """The rule (or ``group_<name>``) the executor plugin wrote into the comment."""
        return self.comment.removeprefix("rule_").split("_wildcards_")[0]


def _which(program: str) -> str | None:
    return shutil.which(program, path=f"{os.environ.get('PATH', '')}{os.pathsep}{SBIN_PATH}")


def install_slurm() -> None:
    """Install ``slurm-wlm`` and ``munge`` with apt-get unless they are there.

    Raises
    ------
    ClusterUnavailable
        When a program is missing and this process cannot install it (not root, no apt-get).
    """
    if all(_which(program) for program in PROGRAMS):
        return
    if os.geteuid() != 0:
        raise ClusterUnavailable("slurm-wlm/munge are not installed and installing them needs root")
    if not _which("apt-get"):
        raise ClusterUnavailable("slurm-wlm/munge are not installed and there is no apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with _locked(LOCK.with_suffix(".install")):
        if all(_which(program) for program in PROGRAMS):
            return
        for command in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
        ):
            done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    missing = [program for program in PROGRAMS if not _which(program)]
    if missing:
        raise RuntimeError(f"apt-get installed {PACKAGES} but {missing} are still missing")


@contextlib.contextmanager
def _locked(path: Path):
    """Hold an exclusive lock on ``path`` (other test runs on this machine wait)."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _node_memory_mb() -> int:
    """90% of the memory slurmd detects (what the node may hand out to jobs)."""
    probe = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, check=True)
    found = re.search(r"RealMemory=(\d+)", probe.stdout)
    return int(int(found.group(1)) * 0.9) if found else 4000


class LocalCluster:
    """munged + slurmctld + slurmd on 127.0.0.1, state under ``state_dir``.

    Use as a context manager: entering installs (if needed), locks and starts;
    leaving cancels every job and stops the daemons by their pid files, also
    when the body failed.
    """

    def __init__(self) -> None:
        self.cpus = max(NODE_MIN_CPUS, os.cpu_count() or 1)
        self.state_dir: Path | None = None
        self._processes: dict[str, subprocess.Popen] = {}
        self._lock = None

    # -- lifecycle -----------------------------------------------------------
    def __enter__(self) -> LocalCluster:
        install_slurm()
        # Stop the daemons however this process ends: normally, by an exception, or by SIGTERM
        # (a CI time limit); stop() is idempotent.
        atexit.register(self.stop)
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        self._lock = open(LOCK, "a")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            self._claim_etc()
            self.state_dir = Path(tempfile.mkdtemp(prefix="phenoface-slurm-"))
            # munged wants every folder above its socket searchable and none group/world-writable.
            self.state_dir.chmod(0o755)
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _claim_etc(self) -> None:
        for name in ("slurm.conf", "gres.conf"):
            path = SLURM_ETC / name
            if path.exists() and MARKER not in path.read_text(errors="replace"):
                raise ClusterUnavailable(
                    f"{path} exists and was not written by this test: a real SLURM install; not overwriting it"
                )

    def _start(self) -> None:
        state = self.state_dir
        for sub in ("munge", "ctld", "spool", "log"):
            (state / sub).mkdir(mode=0o755)
        key = state / "munge" / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o600)
        self.munge_socket = state / "munge" / "munge.socket"
        self._daemon(
            [
                _which("munged"),
                "--foreground",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={self.pid_files['munged']}",
                f"--log-file={state / 'log' / 'munged.log'}",
                f"--seed-file={state / 'munge' / 'munged.seed'}",
            ],
            "munged",
        )
        SLURM_ETC.mkdir(parents=True, exist_ok=True)
        (SLURM_ETC / "slurm.conf").write_text(self._slurm_conf(), encoding="utf-8")
        gres = "".join(f"NodeName=localhost Name=gpu File={device}\n" for device in FAKE_GPU_FILES)
        (SLURM_ETC / "gres.conf").write_text(f"{MARKER}\n{gres}", encoding="utf-8")
        self._daemon([_which("slurmctld"), "-D"], "slurmctld")
        self._daemon([_which("slurmd"), "-D", "-N", "localhost"], "slurmd")
        deadline = time.monotonic() + 60
        while self.node_state() != "idle":
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the node never became idle (state {self.node_state()!r}):\n{self.logs()}"
                )
            time.sleep(0.3)

    @property
    def pid_files(self) -> dict[str, Path]:
        """Pid file of each daemon, in stop order."""
        state = self.state_dir
        return {
            "slurmd": state / "slurmd.pid",
            "slurmctld": state / "slurmctld.pid",
            "munged": state / "munge" / "munged.pid",
        }

    def _slurm_conf(self) -> str:
        state = self.state_dir
        settings = {
            "ClusterName": "phenoface",
            "SlurmctldHost": "localhost",
            "SlurmctldPort": _free_port(),
            "SlurmdPort": _free_port(),
            "SlurmUser": "root",
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={self.munge_socket}",
            "StateSaveLocation": state / "ctld",
            "SlurmdSpoolDir": state / "spool",
            "SlurmctldPidFile": self.pid_files["slurmctld"],
            "SlurmdPidFile": self.pid_files["slurmd"],
            "SlurmctldLogFile": state / "log" / "slurmctld.log",
            "SlurmdLogFile": state / "log" / "slurmd.log",
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core_Memory",
            "ReturnToService": 2,
            "MpiDefault": "none",
            "AccountingStorageType": "accounting_storage/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "JobCompType": "jobcomp/none",
            "MinJobAge": MIN_JOB_AGE_S,
            "GresTypes": "gpu",
            "SlurmdParameters": "config_overrides",
        }
        lines = [MARKER, *(f"{key}={value}" for key, value in settings.items())]
        lines.append(
            f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} "
            f"RealMemory={_node_memory_mb()} Gres=gpu:{len(FAKE_GPU_FILES)} State=UNKNOWN"
        )
        lines.append("PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
        return "\n".join(lines) + "\n"

    def _daemon(self, command: list[str], name: str) -> None:
        """Start a daemon in the foreground (a child of this process, reaped when stopped)."""
        with open(self.state_dir / "log" / f"{name}.out", "w") as output:
            self._processes[name] = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        pid_file = self.pid_files[name]
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text().strip():
            if self._processes[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start ({self._processes[name].poll()}):\n{self.logs()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Cancel every job, stop the daemons by their pid files, remove the configuration."""
        if self._lock is None:
            return  # never started, or stopped already: /etc/slurm may be another run's now
        try:
            if self.state_dir is not None and self.pid_files["slurmctld"].exists():
                self._cancel_all_jobs()
            if self.state_dir is not None:
                for name, pid_file in self.pid_files.items():
                    _stop_pid_file(pid_file, name)
                    if name in self._processes:
                        _reap(self._processes.pop(name))
            for name in ("slurm.conf", "gres.conf"):
                path = SLURM_ETC / name
                if path.exists() and MARKER in path.read_text(errors="replace"):
                    path.unlink()
        finally:
            if self.state_dir is not None:
                shutil.rmtree(self.state_dir, ignore_errors=True)
                self.state_dir = None
            if self._lock is not None:
                fcntl.flock(self._lock, fcntl.LOCK_UN)
                self._lock.close()
                self._lock = None

    def _cancel_all_jobs(self) -> None:
        """scancel every job and wait until none runs (slurmd's steps outlive slurmd otherwise)."""
        subprocess.run([_which("scancel"), "--user", "root"], capture_output=True, timeout=30)
        deadline = time.monotonic() + 30
        while self.active_jobs() and time.monotonic() < deadline:
            time.sleep(0.5)

    # -- inspection ----------------------------------------------------------
    def node_state(self) -> str:
        done = subprocess.run([_which("sinfo"), "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
        return done.stdout.strip()

    def active_jobs(self) -> list[int]:
        """Ids of jobs pending, running or completing."""
        done = subprocess.run(
            [_which("squeue"), "-h", "-t", "PENDING,RUNNING,COMPLETING", "-o", "%i"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return [int(line) for line in done.stdout.split()]

    def jobs(self) -> list[JobRecord]:
        """Every job the controller still knows (all of this cluster's, given MinJobAge)."""
        done = subprocess.run(
            [_which("scontrol"), "show", "job", "--oneliner"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        records = []
        for line in done.stdout.splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            if "JobId" not in fields:
                continue
            gpus = re.search(
                r"gpu(?::\w+)?:(\d+)", fields.get("TresPerJob", "") + fields.get("TresPerNode", "")
            )
            records.append(
                JobRecord(
                    job_id=int(fields["JobId"]),
                    name=fields.get("JobName", ""),
                    comment=fields.get("Comment", ""),
                    state=fields.get("JobState", ""),
                    gpus=int(gpus.group(1)) if gpus else 0,
                    cpus=int(fields.get("NumCPUs", "0")),
                    batch_host=fields.get("BatchHost", ""),
                )
            )
        return sorted(records, key=lambda record: record.job_id)

    def cancel(self, job_id: int) -> None:
        subprocess.run([_which("scancel"), str(job_id)], check=True, capture_output=True, timeout=30)

    def logs(self) -> str:
        """The daemons' log tails, for failure messages."""
        if self.state_dir is None:
            return ""
        parts = []
        for path in sorted((self.state_dir / "log").glob("*.log")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)


def _stop_pid_file(pid_file: Path, name: str, timeout_s: float = 20) -> None:
    """SIGTERM the process named in ``pid_file`` (if it is still ``name``), SIGKILL after ``timeout_s``."""
    try:
        pid = int(pid_file.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return
    if name.encode() not in cmdline:
        return  # stale pid file: the number now belongs to someone else
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for a parent that never reaps it does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _reap(process: subprocess.Popen, timeout_s: float = 20) -> None:
    """Wait for a daemon child to exit (killing it if its pid file failed to stop it)."""
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout_s)
