"""The first process inside the code sandbox's namespaces: hide, lock, drop privileges, run.

``rewards.sandbox`` runs it as ``unshare [--user --map-root-user] --net --pid --mount --fork
--kill-child --mount-proc -- python3 -I -S sandbox_init.py MODE BOX UID NPROC N HIDE_1 ... HIDE_N
/abs/program ARGS...`` with the system interpreter and the box (the program's directory) as
working directory. It imports only the standard library, all at start (the project and its
environment may be hidden once it runs), and only what it needs: it starts once per program run,
and ``json`` and ``re`` alone would double its imports' time. In order, it

1. covers the N paths HIDE_i (/tmp, /dev/shm, /run, home, the project, the other boxes) with
   empty tmpfs;
2. puts the box back at its path, a bind mount of the working directory: the one writable place;
3. makes every other mount read-only (a program cannot write outside its box, even where its
   user could: the shared /tmp, /var/tmp, the user's own files);
4. drops privileges: as root (MODE ``root``) to UID, its box's own uid (see ``rewards.sandbox``),
   and group ``nogroup``; in a user namespace every capability (bounding set, securebits
   "noroot", no_new_privs), so the program cannot unmount what hides the rest; ``RLIMIT_NPROC``
   is set here, where it counts only the sandbox's processes (its box's uid as root, its user
   namespace's otherwise);
5. runs the program as its child and waits for it; then kills what the program left running
   and reaps every process, so that the CPU time of all of them reaches ``rewards.sandbox``
   (the rusage of a process counts only the children reaped: processes left behind when a
   namespace's first process exits are reaped by the kernel, uncounted); exits with the
   program's status, ``128 + signal`` if a signal ended it.

Any failure exits with status 125 and the reason on stderr: the run is then a runtime error,
never a run without isolation.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND = 32, 4096
_OPTION_FLAGS = {
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "nosymfollow": 256,
    "noatime": 1024,
    "nodiratime": 2048,
    "relatime": 1 << 21,
    "strictatime": 1 << 24,
}
PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 24, 28, 38, 47
SECBIT_NOROOT_AND_LOCKED = 0b11
SETUP_FAILED = 125
_LIBC = ctypes.CDLL(None, use_errno=True)


def _bytes(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str) -> None:
    if _LIBC.mount(_bytes(source), _bytes(target), _bytes(fstype), flags, _bytes(data)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"mount {target}: {os.strerror(code)}")


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _unescape(field: str) -> str:
    """A mountinfo path: the kernel writes space, tab, newline and backslash as ``\\ooo``
    (anything else after a backslash is kept as it is)."""
    head, *escaped = field.split("\\")
    return head + "".join(
        chr(int(part[:3], 8)) + part[3:]
        if len(part) >= 3 and all(c in "01234567" for c in part[:3])
        else "\\" + part
        for part in escaped
    )


def _mounts() -> list[tuple[str, set[str]]]:
    """(mount point, per-mount options) of every mount, from /proc/self/mountinfo."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as info:
        for line in info:
            fields = line.split(" ")  # one space apart; split() would also cut at \r, \f...
            found.append((_unescape(fields[4]), set(fields[5].split(","))))
    return found


def _read_only_everywhere(box: str, hidden: list[str]) -> None:
    """Remount every mount but the box read-only, keeping its other flags (a user namespace may
    not clear flags such as nosuid on mounts it inherited)."""
    for point, options in _mounts():
        shadowed = any(_under(point, h) and point != h for h in hidden)
        if point == box or _under(point, "/proc") or shadowed:
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        flags |= sum(flag for name, flag in _OPTION_FLAGS.items() if name in options)
        try:
            _mount(None, point, None, flags, "")
        except OSError as error:
            if error.errno not in (errno.EINVAL, errno.ENOENT):  # no longer a mount point
                raise


def _drop_privileges(as_root: bool, uid: int) -> None:
    """No capability survives exec; as root, become ``uid`` (then RLIMIT_NPROC binds, counting
    that uid's processes: only the box's own)."""
    last = int(open("/proc/sys/kernel/cap_last_cap").read())  # noqa: SIM115
    for capability in range(last + 1):
        _LIBC.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)
    _LIBC.prctl(PR_CAP_AMBIENT, 4, 0, 0, 0)  # PR_CAP_AMBIENT_CLEAR_ALL
    if as_root:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(uid)
    elif _LIBC.prctl(PR_SET_SECUREBITS, SECBIT_NOROOT_AND_LOCKED, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "cannot set securebits noroot")
    if _LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "cannot set no_new_privs")


def _set_up(mode: str, box: str, uid: int, processes: int, hidden: list[str]) -> None:
    for path in hidden:
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
    os.makedirs(box, exist_ok=True)
    _mount("/proc/self/cwd", box, None, MS_BIND, "")  # the box we were started in
    os.chdir(box)
    _read_only_everywhere(box, hidden)
    # one more: this process stays, as the program's parent
    resource.setrlimit(resource.RLIMIT_NPROC, (processes + 1, processes + 1))
    _drop_privileges(as_root=mode == "root", uid=uid)


def main(argv: list[str]) -> None:
    """``sandbox_init.py MODE BOX UID NPROC N HIDE_1..HIDE_N PROGRAM...``: set up, then run the
    program and exit with its status."""
    try:
        mode, box = argv[1], argv[2]
        uid, processes, count = (int(value) for value in argv[3:6])
        if not 0 <= count <= len(argv) - 7:  # N paths to hide and a program after them
            raise ValueError(f"{count} paths to hide in {len(argv) - 6} arguments")
        hidden, program = argv[6 : 6 + count], argv[6 + count :]
        if not program:
            raise ValueError("no program to run")
        _set_up(mode, box, uid, processes, hidden)
    except (OSError, ValueError, IndexError) as error:
        print(f"sandbox setup failed: {error}", file=sys.stderr)
        sys.exit(SETUP_FAILED)
    sys.exit(_run_and_reap(program))


def _run_and_reap(program: list[str]) -> int:
    """Run ``program`` as a child; once it ends, kill and reap every process left (this is the
    namespace's first process: ``kill(-1)`` reaches all of them). Returns its exit status."""
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(program[0], program)  # no PATH search: it would import modules now hidden
        except OSError as error:
            print(f"sandbox: cannot run {program[0]}: {error}", file=sys.stderr)
        os._exit(127)
    _, status = os.waitpid(pid, 0)
    try:  # noqa: SIM105 (contextlib would add an import to every program's start)
        os.kill(-1, 9)  # SIGKILL
    except ProcessLookupError:  # nothing left
        pass
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


if __name__ == "__main__":
    main(sys.argv)
