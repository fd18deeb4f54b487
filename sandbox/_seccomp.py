"""The sandbox's seccomp profile (`sandbox/seccomp.json`), for both isolating backends.

The profile is written in Docker's seccomp JSON format: a deny list on top of an allowing
default. The docker backend hands the JSON to the engine as it is (`security_opt`); the bwrap
backend compiles it here to a classic BPF program with libseccomp (through ctypes, since the
Python bindings are rarely installed) and gives it to `bwrap --seccomp FD`, which loads it
right before exec'ing the command: bwrap's own set-up (mount, pivot_root, unshare) is not
filtered, the command and everything it starts are.

Only what the profile uses is supported: the actions SCMP_ACT_ALLOW and SCMP_ACT_ERRNO (with
`errnoRet`, EPERM when absent) and argument comparisons. Unknown syscall names are skipped,
as Docker does (a name that exists on another architecture only, such as `vm86`). The filter
is built for the native architecture; a syscall made through another ABI (32-bit `int 0x80`
on x86-64) kills the process, so the deny list cannot be bypassed through a second syscall
table.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

PROFILE_PATH = Path(__file__).with_name("seccomp.json")
LABEL = "seccomp:mlgrade"  # the RunResult.enforced entry of a run under this profile

_ACT_ALLOW = 0x7FFF0000
_ACT_ERRNO = 0x00050000
_ACT_KILL_PROCESS = 0x80000000
_FLTATR_ACT_BADARCH = 2  # enum scmp_filter_attr
_NR_SCMP_ERROR = -1
_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
        "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}


class SeccompUnavailable(Exception):
    """The profile cannot be compiled here (no libseccomp, or it refused the profile)."""


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


@lru_cache(maxsize=1)
def profile_text() -> str:
    """The profile as compact JSON (what Docker's `seccomp=` security option takes)."""
    return json.dumps(json.loads(PROFILE_PATH.read_text()), separators=(",", ":"))


def profile() -> dict:
    return json.loads(profile_text())


def denied_names() -> list[str]:
    """Every syscall name the profile refuses, always or for some arguments."""
    return sorted({name for rule in profile()["syscalls"] if rule["action"] != "SCMP_ACT_ALLOW"
                   for name in rule["names"]})


def _action(name: str, errno_ret: int | None) -> int:
    if name == "SCMP_ACT_ALLOW":
        return _ACT_ALLOW
    if name == "SCMP_ACT_ERRNO":
        return _ACT_ERRNO | ((errno.EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    raise SeccompUnavailable(f"{PROFILE_PATH.name}: action {name} is not supported by the bwrap compiler")


def _libseccomp() -> ctypes.CDLL:
    names = [ctypes.util.find_library("seccomp"), "libseccomp.so.2"]
    for name in filter(None, names):
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError:
            continue
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                               ctypes.POINTER(_ArgCmp)]
        lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        return lib
    raise SeccompUnavailable("libseccomp (libseccomp.so.2) cannot be loaded: apt-get install libseccomp2")


@lru_cache(maxsize=1)
def _compiled() -> bytes:
    lib = _libseccomp()
    spec = profile()
    ctx = lib.seccomp_init(_action(spec["defaultAction"], spec.get("defaultErrnoRet")))
    if not ctx:
        raise SeccompUnavailable("seccomp_init failed")
    try:
        if lib.seccomp_attr_set(ctx, _FLTATR_ACT_BADARCH, _ACT_KILL_PROCESS) != 0:
            raise SeccompUnavailable("libseccomp refused the bad-architecture action")
        for rule in spec["syscalls"]:
            action = _action(rule["action"], rule.get("errnoRet"))
            args = rule.get("args") or []
            array = (_ArgCmp * max(len(args), 1))(*[
                _ArgCmp(a["index"], _OPS[a["op"]], a.get("value", 0), a.get("valueTwo", 0)) for a in args])
            for name in rule["names"]:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr == _NR_SCMP_ERROR:
                    continue  # unknown to this libseccomp: Docker skips these too
                rc = lib.seccomp_rule_add_array(ctx, action, nr, len(args), array)
                if rc != 0:
                    raise SeccompUnavailable(f"libseccomp refused the rule for {name}: {os.strerror(-rc)}")
        with tempfile.TemporaryFile() as out:
            rc = lib.seccomp_export_bpf(ctx, out.fileno())
            if rc != 0:
                raise SeccompUnavailable(f"seccomp_export_bpf failed: {os.strerror(-rc)}")
            out.seek(0)
            return out.read()
    finally:
        lib.seccomp_release(ctx)


def bpf_program() -> bytes:
    """The profile as a classic BPF program for the native architecture (cached per process).

    Raises SeccompUnavailable when libseccomp is missing or refuses the profile.
    """
    return _compiled()


def unavailable_reason() -> str | None:
    """None when the bwrap backend can apply the profile here, else why not."""
    try:
        bpf_program()
    except SeccompUnavailable as exc:
        return str(exc)
    return None
