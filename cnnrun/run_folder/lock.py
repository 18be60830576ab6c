"""`run.lock`: one process at a time writes a run folder.

Two `cnnrun resume`s of one run folder at once would interleave its history, state and checkpoints. So a process
that writes a run folder first creates `run.lock`, holding its PID, host and start time, and removes it when it
ends (also on an exception or Ctrl-C). A second process finds the lock and is refused in one line naming the
holder. A lock left by a process that no longer runs (killed with SIGKILL, a power cut) is stale: the next
process on the same host sees that the PID is gone, or now belongs to a process started at another time, and
takes the lock over. A lock from another host cannot be checked from here and is respected; its message says
which file to delete if that process is gone.

The lock is created whole in one step (written beside, then hard-linked into place, which fails if it exists),
so a reader never sees a half-written lock.

Example:
>>> with hold_folder(Path("outputs/quickstart/20260101-120000")):
...     ...  # write the run folder
"""

import contextlib
import json
import os
import secrets
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from cnnrun.atomic import os_error_reason
from cnnrun.errors import UserError
from cnnrun.run_folder.files import LOCK as LOCK_NAME


@dataclass(frozen=True)
class Holder:
    """Who holds a run folder: `pid` on `host`, started at `start` (clock ticks since boot, from /proc, when
    the system has it), holding the lock `since` (ISO time); `token` tells this holder's lock from any other."""

    pid: int
    host: str
    since: str
    start: str | None
    token: str

    @classmethod
    def me(cls) -> "Holder":
        return cls(pid=os.getpid(), host=socket.gethostname(), start=process_start(os.getpid()),
                   since=datetime.now().astimezone().isoformat(timespec="seconds"), token=secrets.token_hex(8))

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self)) + "\n").encode("utf-8")

    def alive(self) -> bool:
        """Whether the holder may still run: a PID on this host that exists and started when the lock says.

        A holder on another host is taken to be alive (it cannot be checked from here).
        """
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # it exists, under another user
        with contextlib.suppress(OSError, IndexError):
            if Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
                return False  # a zombie: it has ended, and waits only for its parent to collect it
        started = process_start(self.pid)
        return self.start is None or started is None or started == self.start


def process_start(pid: int) -> str | None:
    """When process `pid` started, in clock ticks since boot (Linux /proc), or None where unknown.

    A PID is reused once its process has ended; the start time tells the lock's process from a new one.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the command name, in parentheses, may hold spaces
    return fields[19] if len(fields) > 19 else None


def parse_holder(content: bytes) -> Holder:
    """The holder a lock file's `content` names; ValueError when it is not a cnnrun lock."""
    try:
        data = json.loads(content)
        return Holder(**{key: data[key] for key in ("pid", "host", "since", "start", "token")})
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"not a cnnrun lock ({e})") from e


def _link_into_place(lock: Path, content: bytes) -> None:
    """Create `lock` holding `content` in one step; FileExistsError when it exists."""
    beside = lock.with_name(f".{lock.name}.{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(beside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(beside, lock)
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: create it exclusively and write it
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "wb") as f:
                f.write(content)
    finally:
        beside.unlink(missing_ok=True)


def _take_over(lock: Path, stale: bytes) -> None:
    """Remove the stale `lock` whose content was `stale`, unless another process replaced it meanwhile."""
    aside = lock.with_name(f".{lock.name}.{os.getpid()}-{secrets.token_hex(4)}.stale")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return  # another process took it over first
    try:
        if aside.read_bytes() != stale:  # a live process's fresh lock: put it back
            with contextlib.suppress(FileExistsError):
                os.link(aside, lock)
    finally:
        aside.unlink(missing_ok=True)


def acquire(folder: Path) -> Holder:
    """Create `folder/run.lock` for this process and return what it holds.

    Raises:
        UserError: another live process holds the folder (the message names it), or the folder cannot be
            written (the message says why).
    """
    lock, me = folder / LOCK_NAME, Holder.me()
    for _ in range(5):
        try:
            _link_into_place(lock, me.to_bytes())
            return me
        except FileExistsError:
            pass
        except OSError as e:
            raise UserError(f"{folder}: cannot write in the run folder ({os_error_reason(e)})") from e
        try:
            content = lock.read_bytes()
        except FileNotFoundError:
            continue  # released meanwhile: try again
        try:
            holder: Holder | None = parse_holder(content)
        except ValueError:
            holder = None  # a damaged lock: no process can be holding it
        if holder is not None and holder.alive():
            raise UserError(_held_message(folder, holder))
        _take_over(lock, content)
    raise UserError(f"{folder}: could not take {LOCK_NAME}; other processes keep taking it")


def _held_message(folder: Path, holder: Holder) -> str:
    if holder.host != socket.gethostname():
        return (f"{folder}: in use by process {holder.pid} on {holder.host} since {holder.since}; "
                f"if that process has ended, delete {folder / LOCK_NAME}")
    return (f"{folder}: in use by process {holder.pid} since {holder.since}; "
            f"one process at a time writes a run folder: wait for it to end or stop it")


def release(folder: Path, holder: Holder) -> None:
    """Remove `folder/run.lock` if it is still `holder`'s (a lock taken over by another process stays)."""
    lock = folder / LOCK_NAME
    try:
        current = parse_holder(lock.read_bytes())
    except (OSError, ValueError):
        return
    if current.token == holder.token:
        lock.unlink(missing_ok=True)


def held(folder: Path) -> bool:
    """Whether a process that may still run holds `folder` now: its `run.lock` names a live process on this host,
    or a process on another host (which cannot be checked from here). No lock, or a damaged one, is not held."""
    try:
        holder = parse_holder((folder / LOCK_NAME).read_bytes())
    except (OSError, ValueError):
        return False
    return holder.alive()


@contextlib.contextmanager
def hold_folder(folder: Path) -> Iterator[Holder]:
    """Hold `folder` for this process while the block runs: see the module's docstring.

    Args:
        folder: the run folder.
    """
    holder = acquire(folder)
    try:
        yield holder
    finally:
        release(folder, holder)
