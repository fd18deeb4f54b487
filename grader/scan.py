"""Static scan of a submission for code that tampers with the grader (issue 8).

Candidate code is imported into the same process as pytest, our plugin (mlgrade_plugin, which
writes test events to the file named by MLGRADE_EVENTS) and the exercise's tests, so it could
patch any of them. This scan reads the submission on the host and shows the grader what it
finds. It never executes submission code: files are read as bytes, Python files are parsed
with ast.parse (parsing runs nothing) and every file is also searched as text. Symlinks are
not followed, files over 2 MiB are not read, and files that do not parse (SyntaxError, NUL
bytes, nesting too deep, bad encoding) fall back to the text search.

Two severities. "tamper" is a clear attempt on the grader and costs the verdict, so it is
only given to code that honest submissions (data loaders, training loops, evaluation code,
Triton kernels, torch.compile, the candidate's own pytest files) have no reason to contain.
"review" is unusual code that is shown to the grader and costs nothing.

Lenient files: a candidate's own test files (test_*.py, *_test.py, conftest.py, or anything
under a tests/, test/ or testing/ folder) are never loaded by the grader, so unless another
scanned file imports them, their findings are review, except the "always" ones marked (A)
below. monkeypatch.setattr / mock.patch in lenient files count as review too (unless they
target mlgrade_plugin or a harness module).

This is a static, heuristic scan: it raises the cost of tampering and shows what it sees, but
code that hides its target well enough (a module passed as a function argument, names built at
run time from data) can get past it; the runner's other defences do not rely on it.

Names are resolved through imports and aliases (import torch as T; from torch import testing
as tt; x = sys.modules["torch"]; importlib.import_module(...); getattr(mod, "na" + "me")), and
string expressions built from constants (concatenation, join, reversal, chr, %, format,
bytes.fromhex, base64/binascii/zlib/bz2/lzma/codecs decoding) are folded before they are
checked, so aliased and simply obfuscated forms are caught. Code passed to exec/eval/compile
that folds to a constant is parsed and scanned too (findings on the exec line).

"Patch" below means an assignment, augmented assignment or del of an attribute
(`x.attr = ...`), setattr/delattr/object.__setattr__, `x.__dict__[...] = ...`,
`vars(x)[...] = ...`, `x.__dict__.update(...)`, monkeypatch.setattr/delattr or mock.patch*
whose target resolves to the named owner.

Rules (T = tamper, R = review):
- pytest-internals: T import of _pytest; T strings naming _pytest, call_and_report, runtestprotocol, pytest_runtest_*, pytest_collection*, pluginmanager; T use of `.pluginmanager`; T patch of pytest/_pytest/pluggy (A); T `.force_result()`/`.force_exception()` and setting `.outcome`/`.longrepr` in a pytest_* function (A); T shipping pytest.py, _pytest, pluggy; R hook definitions (pytest_*), pytest_plugins, import of pluggy, strings PYTEST_CURRENT_TEST / TestReport / CallInfo, pytest.skip/xfail/fail/exit outside test files.
- comparison-patch: T patch of a comparison or assertion (torch.equal/allclose/isclose/eq, torch.testing.*, numpy.testing.*, numpy.array_equal/allclose, math.isclose, operator.eq, Tensor/ndarray __eq__ and friends, unittest assert*, pytest.approx) (A, but monkeypatch/mock in lenient files is R).
- events-channel: T (A) mlgrade_plugin (import, string, patch, a shipped mlgrade_plugin.py), MLGRADE_EVENTS / MLGRADE_OUT / /mlgrade/out strings, patch of a harness module (runner, probe, cpu_timing, gpu_timing, kernel_trace, wire) the submission does not ship; T a forged event or result line: a dict (literal or dict(...)) with keys event+nodeid or nodeid+outcome, or JSON text with them; R import of such a harness module.
- hidden-tests: T (A) strings /mlgrade/tests, tests/hidden, hidden/test_; T a path joined onto the working folder (os.getcwd(), Path.cwd(), or a name bound to it) that goes into hidden/ (or into reference/ from a parent of it); R open/listdir/glob of a relative path under hidden/.
- grader-env: T (A) any other upper-case MLGRADE string or /mlgrade path; R a lower-case "mlgrade" in a code string; R any mlgrade/_pytest mention in comments, docstrings or non-Python files.
- test-patch: T patch of a test module (test_*, *_test, conftest) or of the exercise's spec or baseline module.
- clock-patch: T patch of time.*, timeit.*, torch.cuda.Event / synchronize, torch.utils.benchmark, triton.testing (do_bench), or any perf_counter/monotonic/elapsed_time attribute.
- library-patch: T patch of torch (not *.config / backends / knobs), numpy, triton, unittest, os, sys, gc, inspect, json, math, random, operator, importlib, types, traceback, hmac, hashlib, threading, multiprocessing, subprocess, signal, atexit, functools; T mutation of a module reached through sys.modules (item, iteration, .get); R sys.stdout/stderr/stdin/argv/path and numpy's removed aliases (np.float = float).
- builtins-patch: T replacing an existing builtin (builtins.X, __builtins__[X], setattr(builtins, ...)) or patching a builtin type (AssertionError, Exception, ...); T forbiddenfruit; R builtins.print/input/help replaced, new builtin names added (builtins.profile = ...).
- import-system: T sys.modules assignment/update/setdefault/clear, and del/pop of a protected module's entry (assignment of a module_from_spec module, or under __name__, is R); T sys.meta_path / sys.path_hooks / sys.path_importer_cache changed; T builtins.__import__ replaced; T shipping sitecustomize/usercustomize; R reads of sys.modules / sys.meta_path, __import__/importlib.import_module with a computed name, import finder/loader classes, files that shadow torch, numpy, stdlib or harness modules.
- introspection: T sys.settrace/setprofile, threading.settrace/setprofile, sys.addaudithook, sys.monitoring, sys.call_tracing; T reading or writing .f_locals/.f_globals/.f_builtins, setting .f_trace/.f_lineno; T gc.get_referrers/get_referents; T modifying an object that came from gc.get_objects or a frame; R sys._getframe, sys._current_frames, inspect.currentframe/stack/getouterframes/trace, traceback.walk_stack, .f_back/.tb_frame/.gi_frame/.cr_frame, __globals__/__closure__, gc.get_objects, __subclasses__, __class__ assignment.
- dynamic-code: T exec/eval/compile, __import__ or importlib.import_module of an obfuscated argument (decoded, decompressed, reversed, chr-built, concatenated constants); T marshal.loads, types.CodeType, .replace(co_code=...), __code__ assignment; T unchecked-hash .pyc; R exec/eval/compile of a constant or a plain variable or file text, types.FunctionType, runpy, decoding of constant blobs, .pyc files, unusual source encodings, codecs.register.
- native-code: T ctypes.pythonapi; R import of ctypes/cffi, shared objects and ELF files.
- process-exit: T os.kill of the parent process (os.getppid()); R os._exit, os.fork, os.kill/killpg, os.abort, os.exec*, os.setsid/setpgid, signal.signal/alarm/setitimer, atexit.register, os.register_at_fork, sys.excepthook / threading.excepthook replaced.
- filesystem: T a /proc path built from os.getppid() or naming /mem; R other /proc paths, open/listdir/walk/glob of absolute paths outside /tmp and /dev/{null,shm,zero,urandom}.
- unparsed: R a .py file that does not parse (then only the text search ran: strong tokens outside comments are still T), or a .py file over 2 MiB that was not read.

Findings are deduplicated per (file, line, rule), keeping the higher severity; when there are
more than max_findings, tamper findings are kept first; the result is sorted by (file, line).
Line 0 means the file as a whole (its excerpt then describes the file).
"""
from __future__ import annotations

import ast
import base64
import binascii
import builtins
import codecs
import gc
import io
import os
import re
import stat
import sys
import threading
import tokenize
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

TAMPER, REVIEW = "tamper", "review"
MAX_FILE_BYTES = 2 * 1024 * 1024
PARSE_BUDGET_BYTES = 8 * 1024 * 1024  # Python parsed per submission (about 15 s at worst); the rest is text-searched
MAX_FILES = 10_000            # files scanned per submission (intake allows 2000)
EXCERPT_CHARS = 160
FOLD_MAX = 256 * 1024         # longest string built while folding constants
FOLD_BUDGET = 8 * 1024 * 1024  # characters folded per file, all expressions together
DECODE_MAX = 1024 * 1024      # most bytes a decompression may produce while folding
MAX_DEPTH = 60                # recursion depth of resolve/fold (independent of the tree's depth)
MAX_EXEC_NESTING = 3          # exec(decode(...)) payloads scanned this deep
DEEP_RECURSION_LIMIT = 50_000  # recursion limit for parsing deeply nested files again
DEEP_STACK_BYTES = 512 * 1024 * 1024  # thread stack for that parse (virtual memory, used lazily)
TEXT_HITS_PER_FILE = 200

# ----------------------------------------------------------------------------- tables

# Module dunders (__name__, __spec__, __doc__, ...) are the module's own globals, not builtins.
_BUILTIN_NAMES = frozenset(n for n in dir(builtins)
                           if not (n.startswith("__") and n.endswith("__")) or n in ("__import__", "__build_class__"))
_HARMLESS_BUILTINS = {"print", "input", "help", "exit", "quit", "copyright", "credits", "license"}

_PYTEST_TOPS = {"pytest", "_pytest", "pluggy"}
_HARNESS_MODULES = {"runner", "probe", "cpu_timing", "gpu_timing", "kernel_trace", "wire"}
_EXERCISE_MODULES = {"spec", "baseline"}
_LIBRARY_TOPS = {
    "torch", "numpy", "triton", "unittest", "builtins", "sys", "os", "time", "gc", "inspect",
    "json", "math", "cmath", "random", "operator", "importlib", "types", "traceback", "hmac",
    "hashlib", "timeit", "threading", "multiprocessing", "subprocess", "signal",
    "atexit", "functools", "posixpath", "_thread",
}
_CONFIG_SEGMENTS = {"config", "backends", "knobs", "_config"}
_NUMPY_REMOVED_ALIASES = {"float", "int", "bool", "object", "str", "long", "unicode", "complex"}
_SYS_REVIEW_ATTRS = {"stdout", "stderr", "stdin", "argv", "path", "dont_write_bytecode",
                     "tracebacklimit", "ps1", "ps2", "displayhook", "breakpointhook"}
_SYS_IMPORT_ATTRS = {"modules", "meta_path", "path_hooks", "path_importer_cache"}
_SYS_TRACE_ATTRS = {"settrace", "setprofile", "_getframe", "gettrace", "getprofile",
                    "addaudithook", "audit", "monitoring", "call_tracing", "_current_frames"}
_COMPARISON_ATTRS = {
    "equal", "allclose", "isclose", "eq", "ne", "array_equal", "array_equiv", "approx",
    "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__bool__", "__contains__",
    "all", "any", "item", "tolist", "isnan", "isinf", "isfinite", "testing", "raises", "fail",
}
_COMPARISON_TOPS = {"torch", "numpy", "math", "cmath", "operator", "unittest", "pytest", "_pytest",
                    "builtins", "triton"}
_CLOCK_ATTRS = {"perf_counter", "perf_counter_ns", "monotonic", "monotonic_ns", "process_time",
                "process_time_ns", "thread_time", "thread_time_ns", "elapsed_time", "do_bench",
                "do_bench_cudagraph", "synchronize"}
_CLOCK_PREFIXES = ("torch.cuda.Event", "torch.cuda.synchronize", "torch.utils.benchmark", "triton.testing")

_TRACE_CALLS = {"sys.settrace", "sys.setprofile", "threading.settrace", "threading.setprofile",
                "threading.settrace_all_threads", "threading.setprofile_all_threads",
                "sys.addaudithook", "sys.call_tracing", "_thread.settrace"}
_GC_REACH = {"gc.get_referrers", "gc.get_referents"}
_FRAME_CALLS = {"sys._getframe", "sys._current_frames", "inspect.currentframe", "inspect.stack",
                "inspect.getouterframes", "inspect.getinnerframes", "inspect.trace",
                "traceback.walk_stack", "traceback.walk_tb"}
_FRAME_ATTRS = {"f_back", "tb_frame", "gi_frame", "cr_frame", "ag_frame"}
_FRAME_DATA_ATTRS = {"f_locals", "f_globals", "f_builtins"}
_MUTATING_METHODS = {"update", "setdefault", "pop", "popitem", "clear", "__setitem__", "__delitem__",
                     "__setattr__", "__delattr__", "append", "extend", "insert", "remove", "write",
                     "writelines", "truncate", "close"}
_EXEC_CALLS = {"builtins.exec", "builtins.eval", "builtins.compile"}
_IMPORT_CALLS = {"importlib.import_module", "builtins.__import__", "importlib.__import__"}
_PROCESS_CALLS = {
    "os._exit", "os.fork", "os.forkpty", "os.kill", "os.killpg", "os.abort", "os.setsid",
    "os.setpgid", "os.setpgrp", "os.execv", "os.execve", "os.execl", "os.execle", "os.execlp",
    "os.execlpe", "os.execvp", "os.execvpe", "os.register_at_fork", "signal.signal",
    "signal.setitimer", "signal.alarm", "signal.pthread_kill", "signal.raise_signal",
    "atexit.register",
}
_FS_CALLS = {"builtins.open", "io.open", "os.open", "os.listdir", "os.scandir", "os.walk",
             "glob.glob", "glob.iglob", "pathlib.Path", "os.stat", "os.readlink", "shutil.copy",
             "shutil.copyfile", "shutil.copytree", "os.path.exists", "os.path.isfile"}
_FS_ALLOWED = ("/tmp", "/dev/null", "/dev/shm", "/dev/zero", "/dev/urandom", "/dev/random")
_DECODERS = {
    "base64.b64decode", "base64.standard_b64decode", "base64.urlsafe_b64decode", "base64.b32decode",
    "base64.b16decode", "base64.a85decode", "base64.b85decode", "base64.decodebytes",
    "binascii.unhexlify", "binascii.a2b_hex", "binascii.a2b_base64", "zlib.decompress",
    "gzip.decompress", "bz2.decompress", "lzma.decompress", "codecs.decode", "codecs.encode",
    "bytes.fromhex", "bytearray.fromhex", "builtins.bytes.fromhex", "builtins.bytearray.fromhex",
}
_OBFUSCATION_CALLS = _DECODERS | {"builtins.chr", "builtins.reversed", "marshal.loads",
                                  "builtins.bytes", "builtins.bytearray"}
_FOLDABLE_CALLS = _DECODERS | {
    "builtins.chr", "builtins.bytes", "builtins.bytearray", "builtins.str", "builtins.reversed",
    "builtins.list", "builtins.tuple", "builtins.map", "os.path.join", "posixpath.join", "pathlib.Path",
    "pathlib.PurePath", "pathlib.PurePosixPath", "pathlib.PosixPath"}
_INTERESTING_ATTRS = (_FRAME_DATA_ATTRS | _FRAME_ATTRS | _SYS_IMPORT_ATTRS
                      | {"__globals__", "__closure__", "cell_contents", "__subclasses__", "pluginmanager",
                         "pythonapi", "hookimpl"})
_MOCK_PATCH = {"unittest.mock.patch", "mock.patch"}
_MOCK_OBJECT = {"unittest.mock.patch.object", "mock.patch.object"}
_MOCK_DICT = {"unittest.mock.patch.dict", "mock.patch.dict"}
_MOCK_MULTIPLE = {"unittest.mock.patch.multiple", "mock.patch.multiple"}
_ITEM_CALLS = frozenset({"operator.setitem", "operator.delitem", "builtins.dict.__setitem__",
                         "builtins.dict.__delitem__", "builtins.dict.setdefault"})
_SETATTR_CALLS = {"builtins.setattr", "builtins.delattr", "builtins.object.__setattr__",
                  "builtins.object.__delattr__", "builtins.type.__setattr__", "builtins.type.__delattr__"}
_CALL_QUALS = frozenset(
    _SETATTR_CALLS | _MOCK_PATCH | _MOCK_OBJECT | _MOCK_DICT | _MOCK_MULTIPLE | _TRACE_CALLS | _GC_REACH
    | _FRAME_CALLS | _EXEC_CALLS | _IMPORT_CALLS | _DECODERS | _PROCESS_CALLS | _FS_CALLS
    | {"gc.get_objects", "gc.callbacks.append", "marshal.loads", "marshal.load", "types.CodeType",
       "types.FunctionType", "runpy.run_path", "runpy.run_module", "codecs.register", "zipimport.zipimporter",
       "pytest.skip", "pytest.xfail", "pytest.exit", "pytest.fail", "pytest.importorskip", "builtins.dict"}
    | _ITEM_CALLS | {"os.path.join", "posixpath.join"})
_EVENT_KEYS = frozenset({"event", "nodeid"})      # a line of the plugin's events file
_RESULT_KEYS = frozenset({"nodeid", "outcome"})   # a line of the runner's results file
_CALL_METHODS = frozenset(_MUTATING_METHODS | {"setattr", "delattr", "setitem", "delitem", "force_result",
                                               "force_exception", "replace"})
_SCOPE_TYPES = {ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda}
_KEEP_TYPES = {
    ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef,
    ast.ExceptHandler, ast.For, ast.AsyncFor, ast.comprehension, ast.With, ast.AsyncWith, ast.Assign,
    ast.AnnAssign, ast.AugAssign, ast.NamedExpr, ast.Return, ast.Expr, ast.MatchAs, ast.MatchStar,
    ast.Delete, ast.Call, ast.Attribute, ast.BinOp, ast.JoinedStr, ast.Subscript, ast.Constant, ast.Name,
    ast.Dict,
}
_VISIT_TYPES = {
    ast.Constant, ast.Import, ast.ImportFrom, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete, ast.Call,
    ast.Attribute, ast.BinOp, ast.JoinedStr, ast.Subscript, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
    ast.Name, ast.Dict,
}
_STRING_METHODS = {"join", "decode", "encode", "replace", "upper", "lower", "strip", "lstrip", "rstrip",
                   "swapcase", "casefold", "title", "capitalize", "format", "fromhex"}
_TAINT_TYPES = {ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete, ast.For, ast.AsyncFor,
                ast.comprehension, ast.Call, ast.NamedExpr}
_FINDER_BASES = {"importlib.abc.MetaPathFinder", "importlib.abc.PathEntryFinder", "importlib.abc.Loader",
                 "importlib.abc.SourceLoader", "importlib.abc.FileLoader", "importlib.abc.InspectLoader",
                 "importlib.abc.ExecutionLoader", "importlib.machinery.SourceFileLoader",
                 "importlib.machinery.PathFinder", "importlib.machinery.FileFinder"}
_HOOKS_HARMLESS_IN_TESTS = {"pytest_addoption", "pytest_configure", "pytest_collection_modifyitems",
                            "pytest_generate_tests", "pytest_make_parametrize_id", "pytest_sessionstart",
                            "pytest_sessionfinish", "pytest_unconfigure"}
_SAFE_TEXT_ENCODINGS = {"utf-8", "utf8", "ascii", "latin-1", "latin1", "iso-8859-1", "utf_8", "us-ascii"}
_USUAL_SOURCE_ENCODINGS = {"utf-8", "utf-8-sig", "iso8859-1", "ascii", "cp1252", "latin-1"}

_SHADOW_TAMPER = {"pytest", "_pytest", "pluggy", "mlgrade_plugin", "sitecustomize", "usercustomize",
                  "iniconfig"}
_SHADOW_REVIEW = (_LIBRARY_TOPS | _HARNESS_MODULES | {"spec", "ctypes", "re", "io", "abc", "copy", "logging",
                  "warnings", "pathlib", "tempfile", "base64", "struct", "enum", "dataclasses",
                  "contextlib", "itertools", "collections", "pickle", "site", "encodings", "codecs",
                  "typing", "marshal", "zlib", "glob", "shutil"}) - {"builtins"}
_PYTEST_CONFIG_FILES = {"pytest.ini", ".pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml"}

# String tokens. Strong ones are tamper in code (string constants, folded strings, identifiers);
# weak ones are review. Everything found only as text (comments, docstrings, other files) is
# review, except in pytest config files and unparseable .py files (strong outside comments: T).
_STRONG_TOKENS: list[tuple[re.Pattern[str], str, bool]] = [  # (pattern, rule, always)
    (re.compile(r"mlgrade_plugin", re.I), "events-channel", True),
    (re.compile(r"MLGRADE_(?:EVENTS|OUT)(?![A-Z])|/mlgrade/out(?!\w)", re.I), "events-channel", True),
    (re.compile(r"/mlgrade/tests|(?<![\w])tests/hidden(?![\w])|(?<![\w])hidden/test_", re.I), "hidden-tests", True),
    (re.compile(r"[\"']nodeid[\"']\s*:.*[\"'](?:outcome|event)[\"']\s*:|[\"'](?:outcome|event)[\"']\s*:.*[\"']nodeid[\"']\s*:"),
     "events-channel", False),
    (re.compile(r"MLGRADE"), "grader-env", True),
    (re.compile(r"/mlgrade(?![\w-])", re.I), "grader-env", True),
    (re.compile(r"(?<![\w])_pytest(?![\w])"), "pytest-internals", False),
    (re.compile(r"\b(?:call_and_report|runtestprotocol|pytest_pyfunc_call|pytest_report_teststatus|"
                r"pluginmanager)\b|\bpytest_runtest_|\bpytest_collection"),
     "pytest-internals", False),
]
_WEAK_TOKENS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"mlgrade", re.I), "grader-env"),
    (re.compile(r"PYTEST_CURRENT_TEST|\b(?:TestReport|CallInfo)\b"), "pytest-internals"),
    (re.compile(r"(?<![\w])/proc/"), "filesystem"),
]
_TEXT_TRIGGER = re.compile(rb"(?i)mlgrade|_pytest|PYTEST_CURRENT_TEST|call_and_report|TestReport|"
                           rb"runtestprotocol|pytest_runtest_|pluginmanager|tests/hidden|hidden/test_")
_NEWLINE = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Finding:
    file: str        # path relative to the submission root (posix)
    line: int        # 1-based; 0 = the file as a whole
    rule: str        # short stable id (see the module docstring)
    severity: str    # "tamper" or "review"
    excerpt: str     # the source line, stripped, <= 160 characters, one printable line


# ----------------------------------------------------------------------------- helpers

def _printable(text: str) -> str:
    """One printable line: control, format (bidi, zero-width) and other unprintable characters
    escaped, at most EXCERPT_CHARS characters."""
    out = []
    size = 0
    for ch in text:
        piece = ch if (ch.isprintable() or ch == " ") else ch.encode("unicode_escape").decode("ascii")
        out.append(piece)
        size += len(piece)
        if size > EXCERPT_CHARS:
            break
    line = "".join(out)
    return line if len(line) <= EXCERPT_CHARS else line[:EXCERPT_CHARS - 3] + "..."


def _string_hits(value: str) -> list[tuple[str, str, int]]:
    """(rule, strength, position) for the tokens in value: strength "always", "strong" or "weak"."""
    hits = []
    strong_rules = set()
    for pattern, rule, always in _STRONG_TOKENS:
        if rule == "grader-env" and strong_rules & {"events-channel", "hidden-tests"}:
            continue  # the more specific rule already names it
        match = pattern.search(value) if rule not in strong_rules else None
        if match:
            hits.append((rule, "always" if always else "strong", match.start()))
            strong_rules.add(rule)
    for pattern, rule in _WEAK_TOKENS:
        if rule in strong_rules or (rule == "grader-env" and strong_rules & {"events-channel", "hidden-tests"}):
            continue
        match = pattern.search(value)
        if match:
            hits.append((rule, "weak", match.start()))
    return hits


def _as_text(value) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    return None


def _is_test_path(rel: str) -> bool:
    parts = rel.split("/")
    name = parts[-1]
    if name == "conftest.py" or (name.startswith("test_") and name.endswith(".py")) or name.endswith("_test.py"):
        return True
    return any(p in ("tests", "test", "testing") for p in parts[:-1])


def _module_names(rel: str) -> set[str]:
    """Names under which a .py file could be imported: its dotted path from the root and its
    stem (a folder put on sys.path)."""
    stem = rel[:-3] if rel.endswith(".py") else rel
    parts = stem.split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    names = set()
    for i in range(len(parts)):
        names.add(".".join(parts[i:]))
    return {n for n in names if n}


def _is_protected_module(name: str, shipped: set[str]) -> bool:
    top = name.split(".")[0]
    if top in _PYTEST_TOPS or top == "mlgrade_plugin" or top in _LIBRARY_TOPS:
        return True
    if top in _EXERCISE_MODULES or top == "conftest" or top.startswith("test_") or top.endswith("_test"):
        return True
    return top in _HARNESS_MODULES and top not in shipped


def _bounded_decompress(kind: str, data: bytes, wbits: int | None = None) -> bytes | None:
    try:
        if kind in ("zlib", "gzip"):
            obj = zlib.decompressobj(31 if kind == "gzip" else (wbits if wbits is not None else zlib.MAX_WBITS))
            return obj.decompress(data, DECODE_MAX)
        if kind == "bz2":
            import bz2
            return bz2.BZ2Decompressor().decompress(data, max_length=DECODE_MAX)
        if kind == "lzma":
            import lzma
            return lzma.LZMADecompressor().decompress(data, max_length=DECODE_MAX)
    except (zlib.error, OSError, ValueError, EOFError, ImportError, MemoryError):
        return None
    return None


def _apply_decoder(qual: str, args: list) -> object:
    """The result of a known decoding function on folded constant arguments, or None."""
    if not args:
        return None
    data = args[0]
    if isinstance(data, str) and qual not in ("codecs.decode", "codecs.encode"):
        if qual.endswith("fromhex"):
            try:
                return bytes.fromhex(data)
            except ValueError:
                return None
        try:
            data = data.encode("ascii")
        except UnicodeEncodeError:
            return None
    try:
        name = qual.split(".", 1)[1]
        if qual.startswith("base64."):
            func = {"b64decode": base64.b64decode, "standard_b64decode": base64.standard_b64decode,
                    "urlsafe_b64decode": base64.urlsafe_b64decode, "b32decode": base64.b32decode,
                    "b16decode": base64.b16decode, "a85decode": base64.a85decode,
                    "b85decode": base64.b85decode, "decodebytes": base64.decodebytes}[name]
            return func(data)
        if qual in ("binascii.unhexlify", "binascii.a2b_hex"):
            return binascii.unhexlify(data)
        if qual == "binascii.a2b_base64":
            return binascii.a2b_base64(data)
        if qual in ("zlib.decompress", "gzip.decompress", "bz2.decompress", "lzma.decompress"):
            wbits = args[1] if len(args) > 1 and isinstance(args[1], int) else None
            return _bounded_decompress(qual.split(".")[0], bytes(data), wbits)
        if qual in ("codecs.decode", "codecs.encode"):
            encoding = args[1] if len(args) > 1 and isinstance(args[1], str) else "utf-8"
            enc = encoding.lower().replace("-", "_")
            if enc in ("rot13", "rot_13"):
                return codecs.decode(data, "rot13") if isinstance(data, str) else None
            if enc in ("hex", "hex_codec", "base64", "base64_codec", "zip", "zlib", "zlib_codec"):
                raw = data.encode("ascii") if isinstance(data, str) else data
                if enc.startswith(("zip", "zlib")):
                    return _bounded_decompress("zlib", raw) if qual == "codecs.decode" else None
                return codecs.decode(raw, enc) if qual == "codecs.decode" else None
            if enc.replace("_", "-") in _SAFE_TEXT_ENCODINGS:
                if qual == "codecs.decode" and isinstance(data, (bytes, bytearray)):
                    return bytes(data).decode(enc)
                if qual == "codecs.encode" and isinstance(data, str):
                    return data.encode(enc)
            return None
        if qual.endswith("fromhex"):
            return bytes.fromhex(data.decode("ascii"))
    except (binascii.Error, ValueError, TypeError, LookupError, KeyError, UnicodeError, MemoryError):
        return None
    return None


# ----------------------------------------------------------------------------- the AST scan

class _Emitter:
    """Collects findings for one file: (line, rule) -> severity, tamper winning."""

    def __init__(self) -> None:
        self.found: dict[tuple[int, str], str] = {}

    def add(self, line: int, rule: str, severity: str) -> None:
        key = (line, rule)
        if self.found.get(key) != TAMPER:
            self.found[key] = severity


class _PyScan:
    def __init__(self, tree: ast.AST, emit: _Emitter, *, lenient: bool, shipped: set[str],
                 line_override: int | None = None, inherited: dict[str, set[str]] | None = None,
                 nesting: int = 0) -> None:
        self.tree = tree
        self.emit = emit
        self.lenient = lenient
        self.shipped = shipped
        self.line_override = line_override
        self.nesting = nesting
        self.aliases: dict[str, set[str]] = {k: set(v) for k, v in (inherited or {}).items()}
        self.hard_bound: set[str] = set()
        self.soft_bound: set[str] = set()
        self.const_values: dict[str, ast.AST] = {}
        self.func_returns: dict[str, list[ast.AST]] = {}
        self.obfuscated_names: set[str] = set()
        self.from_spec_names: set[str] = set()
        self.bare_strings: set[int] = set()
        self.fold_memo: dict[int, object] = {}
        self.resolve_memo: dict[int, frozenset[str]] = {}
        self.fold_budget = FOLD_BUDGET
        self.imported: set[str] = set()
        self.module_name_reads: set[int] = set()

    # -- reporting

    def _line(self, node: ast.AST) -> int:
        if self.line_override is not None:
            return self.line_override
        return getattr(node, "lineno", 0) or 0

    def report(self, node: ast.AST, rule: str, strength: str, line: int | None = None) -> None:
        """strength: "always" (tamper everywhere), "strict" (tamper unless lenient), "review"."""
        if strength == "always" or (strength == "strict" and not self.lenient):
            severity = TAMPER
        else:
            severity = REVIEW
        if line is None or self.line_override is not None:
            line = self._line(node)
        self.emit.add(line, rule, severity)

    # -- pre-pass: imports, aliases, bindings

    def flatten(self) -> None:
        """One iterative walk of the tree that keeps the nodes the rules look at, each with its
        enclosing function's name and its scope number (a function body or the module)."""
        kept: list[tuple[ast.AST, str | None, int]] = []
        stack: list[tuple[ast.AST, str | None, int, bool]] = [(self.tree, None, 0, False)]
        next_scope = 1
        keep_types = _KEEP_TYPES
        attr_names = _INTERESTING_ATTRS
        AST, BinOp, Constant, Name, Attribute = ast.AST, ast.BinOp, ast.Constant, ast.Name, ast.Attribute
        while stack:
            node, func, scope, in_binop = stack.pop()
            kind = type(node)
            child_func, child_scope = func, scope
            if kind in _SCOPE_TYPES:
                if kind is not ast.Lambda:
                    child_func = node.name
                child_scope = next_scope
                next_scope += 1
            if kind in keep_types:
                if kind is Constant:
                    if isinstance(node.value, (str, bytes)):
                        kept.append((node, func, scope))
                    continue
                if kind is Name:
                    if "mlgrade" in node.id.lower():
                        kept.append((node, func, scope))
                    continue
                if kind is Attribute:
                    if node.attr in attr_names:
                        kept.append((node, func, scope))
                elif kind is BinOp:
                    if not in_binop:  # not the left operand of an enclosing a + b: that one folds it
                        kept.append((node, func, scope))
                else:
                    kept.append((node, func, scope))
            add_chain = kind is BinOp and type(node.op) is ast.Add
            for field in node._fields:
                if field == "ctx":
                    continue
                value = getattr(node, field, None)
                if isinstance(value, list):
                    for item in value:
                        if isinstance(item, AST):
                            stack.append((item, child_func, child_scope, False))
                elif isinstance(value, AST):
                    stack.append((value, child_func, child_scope, add_chain and field == "left"))
        self.nodes = kept

    def prepass(self) -> None:
        assigns: list[tuple[ast.AST, ast.AST]] = []   # (target, value)
        loops: list[tuple[ast.AST, ast.AST]] = []     # (target, iterable)
        assign_count: dict[str, int] = {}
        for node, func, _ in self.nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self.imported.add(alias.name)
                    if alias.asname:
                        self._bind(alias.asname, {alias.name})
                        self.hard_bound.add(alias.asname)
                    else:
                        top = alias.name.split(".")[0]
                        self._bind(top, {top})
                        self.hard_bound.add(top)
            elif isinstance(node, ast.ImportFrom):
                base = ("." * node.level) + (node.module or "")
                if node.level == 0 and node.module:
                    self.imported.add(node.module)
                for alias in node.names:
                    if alias.name == "*":
                        continue
                    full = f"{base}.{alias.name}" if base and not base.endswith(".") else base + alias.name
                    if node.level == 0:
                        self.imported.add(full)
                    name = alias.asname or alias.name
                    self._bind(name, {full})
                    self.hard_bound.add(name)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.hard_bound.add(node.name)
                for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs:
                    self.hard_bound.add(a.arg)
                for a in (node.args.vararg, node.args.kwarg):
                    if a is not None:
                        self.hard_bound.add(a.arg)
            elif isinstance(node, ast.Lambda):
                for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs:
                    self.hard_bound.add(a.arg)
            elif isinstance(node, ast.ClassDef):
                self.hard_bound.add(node.name)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                self.hard_bound.add(node.name)
            elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
                loops.append((node.target, node.iter))
                for n in _names_in_target(node.target):
                    self.hard_bound.add(n)
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                for item in node.items:
                    if item.optional_vars is not None:
                        for n in _names_in_target(item.optional_vars):
                            self.hard_bound.add(n)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    assigns.append((target, node.value))
                    for n in _names_in_target(target):
                        if not (isinstance(node.value, ast.Name) and node.value.id == n):  # exec = exec
                            self.soft_bound.add(n)
                        assign_count[n] = assign_count.get(n, 0) + 1
                    if isinstance(target, ast.Name):
                        self.const_values[target.id] = node.value
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                if node.value is not None:
                    assigns.append((node.target, node.value))
                for n in _names_in_target(node.target):
                    self.soft_bound.add(n)
                    assign_count[n] = assign_count.get(n, 0) + 2  # never a constant
            elif isinstance(node, ast.NamedExpr):
                assigns.append((node.target, node.value))
                self.soft_bound.add(node.target.id)
                assign_count[node.target.id] = assign_count.get(node.target.id, 0) + 2
            elif isinstance(node, ast.Return) and node.value is not None and func and func != "<lambda>":
                self.func_returns.setdefault(func, []).append(node.value)
            elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) \
                    and isinstance(node.value.value, (str, bytes)):
                self.bare_strings.add(id(node.value))
            elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
                self.hard_bound.add(node.name)
        self.const_values = {k: v for k, v in self.const_values.items() if assign_count.get(k) == 1}

        # Aliases through assignments, loops over tuples of modules and function returns: a few
        # rounds reach a fixed point for any realistic chain.
        for _ in range(4):
            changed = False
            for target, value in assigns:
                changed |= self._bind_target(target, value)
            for target, iterable in loops:
                if isinstance(target, ast.Name) and isinstance(iterable, (ast.Tuple, ast.List, ast.Set)):
                    quals: set[str] = set()
                    for elt in iterable.elts:
                        quals |= self.resolve(elt, rhs=True)
                    if quals and self._bind(target.id, quals):
                        changed = True
            for name, values in self.func_returns.items():
                quals = set()
                for value in values:
                    quals |= self.resolve(value, rhs=True)
                key = f"{name}()"
                if quals and self._bind(key, quals):
                    changed = True
            if not changed:
                break
            self.resolve_memo.clear()
        self.resolve_memo.clear()
        self.fold_memo.clear()
        # Names whose every binding is an obfuscated expression (one step: no contagion through
        # other names, so an ordinary variable never becomes "obfuscated" by association).
        values_by_name: dict[str, list[ast.AST | None]] = {}
        for target, value in assigns:
            if isinstance(target, ast.Name):
                values_by_name.setdefault(target.id, []).append(value)
                if isinstance(value, ast.Call) and self.resolve(value.func, rhs=True) \
                        & {"importlib.util.module_from_spec"}:
                    self.from_spec_names.add(target.id)
            else:
                for name in _names_in_target(target):
                    values_by_name.setdefault(name, []).append(None)
        for target, _ in loops:
            for name in _names_in_target(target):
                values_by_name.setdefault(name, []).append(None)
        obfuscated = {name for name, values in values_by_name.items()
                      if all(v is not None and self._obfuscated(v) for v in values)}
        self.obfuscated_names = obfuscated
        self.resolve_memo.clear()
        self.fold_memo.clear()

    def _bind(self, key: str, quals: set[str]) -> bool:
        current = self.aliases.setdefault(key, set())
        before = len(current)
        current |= quals
        return len(current) != before

    def _bind_target(self, target: ast.AST, value: ast.AST) -> bool:
        if isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)) \
                and len(target.elts) == len(value.elts):
            changed = False
            for t, v in zip(target.elts, value.elts):
                changed |= self._bind_target(t, v)
            return changed
        key = _dotted(target)
        if key is None:
            return False
        quals = self.resolve(value, rhs=True)
        return bool(quals) and self._bind(key, set(quals))

    # -- resolution

    def resolve(self, node: ast.AST, depth: int = 0, rhs: bool = False) -> frozenset[str]:
        """Qualified names (module.attr...) that node may stand for, or empty."""
        if depth > MAX_DEPTH:
            return frozenset()
        if not rhs:
            memo = self.resolve_memo.get(id(node))
            if memo is not None:
                return memo
        result = self._resolve(node, depth, rhs)
        if not rhs:
            self.resolve_memo[id(node)] = result
        return result

    def _resolve(self, node: ast.AST, depth: int, rhs: bool) -> frozenset[str]:
        if isinstance(node, ast.Name):
            name = node.id
            if name == "__builtins__":
                return frozenset({"builtins"})
            if name in self.aliases:
                return frozenset(self.aliases[name])
            if name in _BUILTIN_NAMES and name not in self.hard_bound and name not in self.soft_bound:
                return frozenset({f"builtins.{name}"})
            return frozenset()
        if isinstance(node, ast.Attribute):
            key = _dotted(node)
            if key is not None and key in self.aliases:
                return frozenset(self.aliases[key])
            if node.attr == "__class__" and isinstance(node.value, ast.Call):
                return self._class_of_call(node.value, depth)
            base = self.resolve(node.value, depth + 1, rhs)
            if node.attr == "__dict__":
                return frozenset()
            return frozenset(f"{b}.{node.attr}" for b in base)
        if isinstance(node, ast.Call):
            funcs = self.resolve(node.func, depth + 1, rhs)
            if not funcs:
                if isinstance(node.func, ast.Name) and f"{node.func.id}()" in self.aliases:
                    return frozenset(self.aliases[f"{node.func.id}()"])
                return frozenset()
            args = node.args
            out: set[str] = set()
            if "builtins.getattr" in funcs and len(args) >= 2:
                name = self.fold(args[1], depth + 1)
                if isinstance(name, str) and name:
                    out |= {f"{b}.{name}" for b in self.resolve(args[0], depth + 1, rhs)}
            if funcs & _IMPORT_CALLS and args:
                name = self.fold(args[0], depth + 1)
                if isinstance(name, str) and name:
                    out.add(name)
            if "sys.modules.get" in funcs and args:
                name = self.fold(args[0], depth + 1)
                if isinstance(name, str) and name:
                    out.add(name)
            if "builtins.type" in funcs and len(args) == 1 and isinstance(args[0], ast.Call):
                out |= self._class_of_call(args[0], depth)
            if "builtins.vars" in funcs and len(args) == 1:
                out |= self.resolve(args[0], depth + 1, rhs)
            if isinstance(node.func, ast.Name) and f"{node.func.id}()" in self.aliases:
                out |= self.aliases[f"{node.func.id}()"]
            return frozenset(out)
        if isinstance(node, ast.Subscript):
            base = self.resolve(node.value, depth + 1, rhs)
            if "sys.modules" in base:
                name = self.fold(node.slice, depth + 1)
                if isinstance(name, str) and name:
                    return frozenset({name})
            owner = self._dict_owner(node.value, depth)
            if owner:
                key = self.fold(node.slice, depth + 1)
                if isinstance(key, str) and key:
                    return frozenset(f"{o}.{key}" for o in owner)
            return frozenset()
        if isinstance(node, ast.NamedExpr):
            return self.resolve(node.value, depth + 1, rhs)
        return frozenset()

    def _class_of_call(self, call: ast.Call, depth: int) -> frozenset[str]:
        funcs = self.resolve(call.func, depth + 1)
        out = set()
        for f in funcs:
            if f.startswith("torch."):
                out.add("torch.Tensor")
            elif f.startswith("numpy."):
                out.add("numpy.ndarray")
        return frozenset(out)

    def _dict_owner(self, node: ast.AST, depth: int) -> frozenset[str]:
        """Owners of a namespace dict: X.__dict__, vars(X), __builtins__ (a dict in modules)."""
        if isinstance(node, ast.Attribute) and node.attr == "__dict__":
            return self.resolve(node.value, depth + 1)
        if isinstance(node, ast.Call) and "builtins.vars" in self._call_quals(node) and len(node.args) == 1:
            return self.resolve(node.args[0], depth + 1)
        if isinstance(node, ast.Name) and node.id == "__builtins__":
            return frozenset({"builtins"})
        return frozenset()

    def _call_quals(self, node: ast.Call) -> frozenset[str]:
        return self.resolve(node.func)

    # -- constant folding

    def fold(self, node: ast.AST, depth: int = 0) -> object:
        """The constant value (str, bytes, int or tuple) node computes, or None."""
        key = id(node)
        if key in self.fold_memo:
            return self.fold_memo[key]
        if depth > MAX_DEPTH or self.fold_budget <= 0:
            return None
        try:
            value = self._fold(node, depth)
        except (ValueError, TypeError, OverflowError, IndexError, KeyError, UnicodeError, MemoryError):
            value = None
        if isinstance(value, (str, bytes)):
            if len(value) > FOLD_MAX:
                value = None
            elif not isinstance(node, ast.Constant):
                self.fold_budget -= len(value)
        elif isinstance(value, tuple) and len(value) > FOLD_MAX:
            value = None
        self.fold_memo[key] = value
        return value

    def _fold(self, node: ast.AST, depth: int) -> object:
        d = depth + 1
        if isinstance(node, ast.Constant):
            v = node.value
            return v if isinstance(v, (str, bytes, int)) and not isinstance(v, bool) else None
        if isinstance(node, ast.Name):
            value = self.const_values.get(node.id)
            return self.fold(value, d) if value is not None else None
        if isinstance(node, ast.JoinedStr):
            parts = []
            for part in node.values:
                if isinstance(part, ast.Constant):
                    parts.append(str(part.value))
                elif isinstance(part, ast.FormattedValue) and part.format_spec is None and part.conversion in (-1, 115):
                    v = self.fold(part.value, d)
                    if not isinstance(v, (str, int)):
                        return None
                    parts.append(str(v))
                else:
                    return None
            return "".join(parts)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return _concat([self.fold(o, d) for o in _add_chain(node)])
        if isinstance(node, ast.BinOp):
            left, right = self.fold(node.left, d), self.fold(node.right, d)
            if left is None or right is None:
                return None
            if isinstance(node.op, ast.Sub) and isinstance(left, int) and isinstance(right, int):
                return left - right if abs(left) < 1 << 64 and abs(right) < 1 << 64 else None
            if isinstance(node.op, ast.BitXor) and isinstance(left, int) and isinstance(right, int):
                return left ^ right if abs(left) < 1 << 64 and abs(right) < 1 << 64 else None
            if isinstance(node.op, ast.Mult):
                seq, n = (left, right) if isinstance(right, int) else (right, left)
                if isinstance(seq, (str, bytes, tuple)) and isinstance(n, int) and 0 <= n and len(seq) * n <= FOLD_MAX:
                    return seq * n
                return None
            if isinstance(node.op, ast.Mod) and isinstance(left, str):
                if re.search(r"%[^sdir%]", left):
                    return None
                return left % right
            return None
        if isinstance(node, (ast.Tuple, ast.List)):
            values = []
            for elt in node.elts:
                v = self.fold(elt, d)
                if v is None:
                    return None
                values.append(v)
            return tuple(values)
        if isinstance(node, ast.Subscript):
            base = self.fold(node.value, d)
            if not isinstance(base, (str, bytes, tuple)):
                return None
            sl = node.slice
            if isinstance(sl, ast.Slice):
                bounds = []
                for part in (sl.lower, sl.upper, sl.step):
                    if part is None:
                        bounds.append(None)
                        continue
                    v = self.fold(part, d)
                    if not isinstance(v, int) and not (isinstance(part, ast.UnaryOp) and isinstance(part.op, ast.USub)):
                        return None
                    if isinstance(part, ast.UnaryOp):
                        inner = self.fold(part.operand, d)
                        if not isinstance(inner, int):
                            return None
                        v = -inner
                    bounds.append(v)
                if bounds[2] == 0:
                    return None
                return base[slice(*bounds)]
            index = self.fold(sl, d)
            if isinstance(index, int) and -len(base) <= index < len(base):
                return base[index]
            return None
        if isinstance(node, (ast.GeneratorExp, ast.ListComp)):
            return self._fold_comprehension(node, d)
        if isinstance(node, ast.Call):
            return self._fold_call(node, d)
        return None

    def _fold_comprehension(self, node: ast.GeneratorExp | ast.ListComp, d: int) -> object:
        # chr(c) / chr(c + k) / chr(c ^ k) for c in <constant ints>
        if len(node.generators) != 1:
            return None
        gen = node.generators[0]
        if gen.ifs or not isinstance(gen.target, ast.Name):
            return None
        items = self.fold(gen.iter, d)
        if isinstance(items, (bytes, str)):
            items = tuple(items)
        if not isinstance(items, tuple) or not all(isinstance(i, int) for i in items):
            return None
        elt = node.elt
        if not (isinstance(elt, ast.Call) and len(elt.args) == 1 and "builtins.chr" in self._call_quals(elt)):
            return None
        arg = elt.args[0]
        var = gen.target.id
        op, k = None, 0
        if isinstance(arg, ast.BinOp) and isinstance(arg.left, ast.Name) and arg.left.id == var:
            kv = self.fold(arg.right, d)
            if not isinstance(kv, int):
                return None
            op, k = type(arg.op), kv
        elif not (isinstance(arg, ast.Name) and arg.id == var):
            return None
        out = []
        for i in items:
            if op is ast.Add:
                i += k
            elif op is ast.Sub:
                i -= k
            elif op is ast.BitXor:
                i ^= k
            elif op is not None:
                return None
            out.append(chr(i))
        return tuple(out)

    def _fold_call(self, node: ast.Call, d: int) -> object:
        func = node.func
        args = node.args
        if node.keywords and not all(k.arg in ("encoding", "errors", "wbits") for k in node.keywords):
            return None
        if isinstance(func, ast.Attribute):
            method = func.attr
            receiver_quals = self.resolve(func.value, d)
            if method == "fromhex" and receiver_quals & {"builtins.bytes", "builtins.bytearray"} and len(args) == 1:
                v = self.fold(args[0], d)
                return _apply_decoder("bytes.fromhex", [v]) if isinstance(v, str) else None
            if not receiver_quals:
                receiver = self.fold(func.value, d)
                if isinstance(receiver, (str, bytes)):
                    return self._fold_method(receiver, method, args, node.keywords, d)
        quals = self._call_quals(node)
        if not quals & _FOLDABLE_CALLS:
            return None
        folded = [self.fold(a, d) for a in args]
        for qual in quals:
            if qual in _DECODERS:
                if folded and folded[0] is not None:
                    kw = {k.arg: self.fold(k.value, d) for k in node.keywords}
                    extra = folded[1:] or ([kw["encoding"]] if "encoding" in kw else [])
                    return _apply_decoder(qual, [folded[0], *extra])
                return None
            if qual == "builtins.chr" and len(folded) == 1 and isinstance(folded[0], int) and 0 <= folded[0] < 0x110000:
                return chr(folded[0])
            if qual in ("builtins.bytes", "builtins.bytearray") and folded:
                v = folded[0]
                if isinstance(v, tuple) and all(isinstance(i, int) and 0 <= i < 256 for i in v):
                    return bytes(v)
                if isinstance(v, str) and len(folded) > 1 and isinstance(folded[1], str) \
                        and folded[1].lower() in _SAFE_TEXT_ENCODINGS:
                    return v.encode(folded[1])
                if isinstance(v, bytes):
                    return v
                return None
            if qual == "builtins.str" and len(folded) == 1 and isinstance(folded[0], (str, int)):
                return str(folded[0])
            if qual in ("builtins.reversed", "builtins.list", "builtins.tuple") and len(folded) == 1:
                v = folded[0]
                if isinstance(v, (str, bytes)):
                    v = tuple(v) if isinstance(v, str) else tuple(v)
                if isinstance(v, tuple):
                    return tuple(reversed(v)) if qual == "builtins.reversed" else v
                return None
            if qual == "builtins.map" and len(args) == 2 and "builtins.chr" in self.resolve(args[0], d):
                v = folded[1]
                if isinstance(v, (bytes,)):
                    v = tuple(v)
                if isinstance(v, tuple) and all(isinstance(i, int) and 0 <= i < 0x110000 for i in v):
                    return tuple(chr(i) for i in v)
                return None
            if qual in ("os.path.join", "posixpath.join") and folded and all(isinstance(v, str) for v in folded):
                return os.path.join(*folded) if sum(len(v) for v in folded) <= FOLD_MAX else None
            if qual in ("pathlib.Path", "pathlib.PurePath", "pathlib.PurePosixPath", "pathlib.PosixPath") \
                    and folded and all(isinstance(v, str) for v in folded):
                return os.path.join(*folded) if sum(len(v) for v in folded) <= FOLD_MAX else None
        return None

    def _fold_method(self, receiver: str | bytes, method: str, args: list[ast.AST],
                     keywords: list[ast.keyword], d: int) -> object:
        folded = [self.fold(a, d) for a in args]
        if any(v is None for v in folded):
            return None
        kw = {k.arg: self.fold(k.value, d) for k in keywords}
        if method == "join" and len(folded) == 1:
            items = folded[0]
            if isinstance(items, (str, bytes)):
                items = tuple(items) if isinstance(items, str) else tuple(bytes([b]) for b in items)
            if isinstance(items, tuple) and all(type(i) is type(receiver) for i in items):
                total = sum(len(i) for i in items) + len(receiver) * max(0, len(items) - 1)
                return receiver.join(items) if total <= FOLD_MAX else None
            return None
        if method == "decode" and isinstance(receiver, bytes):
            encoding = folded[0] if folded else kw.get("encoding", "utf-8")
            if isinstance(encoding, str) and encoding.lower() in _SAFE_TEXT_ENCODINGS:
                return receiver.decode(encoding, errors="replace")
            return None
        if method == "encode" and isinstance(receiver, str):
            encoding = folded[0] if folded else kw.get("encoding", "utf-8")
            if isinstance(encoding, str) and encoding.lower() in _SAFE_TEXT_ENCODINGS:
                return receiver.encode(encoding, errors="replace")
            return None
        if method == "replace" and len(folded) in (2, 3):
            old, new = folded[0], folded[1]
            if type(old) is not type(receiver) or type(new) is not type(receiver):
                return None
            count = receiver.count(old) if old else len(receiver) + 1
            if len(receiver) + count * len(new) > FOLD_MAX:
                return None
            return receiver.replace(old, new)
        if method in ("upper", "lower", "strip", "lstrip", "rstrip", "swapcase", "casefold", "title",
                      "capitalize") and not folded:
            return getattr(receiver, method)()
        if method == "format" and isinstance(receiver, str):
            if not all(isinstance(v, (str, int)) for v in folded):
                return None
            if re.search(r"\{(?!\d*\})|(?<!\{)\}(?<!\d\})", receiver.replace("{{", "").replace("}}", "")):
                return None
            if len(receiver) + sum(len(str(v)) for v in folded) > FOLD_MAX:
                return None
            return receiver.format(*folded)
        return None

    # -- obfuscation

    def _obfuscated(self, node: ast.AST) -> bool:
        """Whether node builds its value through decoding, reversal, chr or constant pieces."""
        stack = [node]
        seen = 0
        while stack and seen < 2000:
            n = stack.pop()
            seen += 1
            if isinstance(n, ast.Name) and n.id in self.obfuscated_names:
                return True
            if isinstance(n, ast.Call):
                quals = self.resolve(n.func, rhs=True)
                if quals & _OBFUSCATION_CALLS:
                    return True
                if isinstance(n.func, ast.Attribute):
                    if n.func.attr in ("fromhex", "b64decode", "decompress", "translate", "unhexlify"):
                        return True
                    if n.func.attr == "join" and n.args and isinstance(n.args[0], (ast.List, ast.Tuple)) \
                            and all(isinstance(e, ast.Constant) for e in n.args[0].elts):
                        return True
            if isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Slice) and n.slice.step is not None:
                step = n.slice.step
                if isinstance(step, ast.UnaryOp) and isinstance(step.op, ast.USub):
                    return True
            if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add) and isinstance(n.right, ast.Constant) \
                    and isinstance(n.right.value, (str, bytes)) and (isinstance(n.left, ast.BinOp) or (
                        isinstance(n.left, ast.Constant) and isinstance(n.left.value, (str, bytes)))):
                return True  # constant pieces glued together
            stack.extend(ast.iter_child_nodes(n))
        return False

    # -- the walk

    def run(self) -> None:
        self.flatten()
        self.prepass()
        scopes: dict[int, list[ast.AST]] = {}
        scope_has_source: set[int] = set()
        visit_types = _VISIT_TYPES
        for node, func, scope in self.nodes:
            kind = type(node)
            if kind in visit_types and self._visit(node, func):
                scope_has_source.add(scope)
            if kind in _TAINT_TYPES:
                scopes.setdefault(scope, []).append(node)
        for scope in scope_has_source:
            self._taint(scopes.get(scope, []))

    def imports(self, rel: str) -> set[str]:
        """Modules this file may import (for deciding which test files are reachable)."""
        if not hasattr(self, "nodes"):
            self.flatten()
        return _imports_of(self.nodes, rel)

    def _visit(self, node: ast.AST, func: str | None) -> bool:
        """Check one node; True when it is a source for the taint pass (gc, frames, sys.modules)."""
        source = False
        if isinstance(node, ast.Constant):
            if isinstance(node.value, (str, bytes)) and id(node) not in self.bare_strings:
                self._check_string(node, node.value)
            elif isinstance(node.value, (str, bytes)):
                self._check_string(node, node.value, text_only=True)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            self._check_import(node)
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for t in _flatten_targets(target):
                    if isinstance(t, ast.Name) and t.id == "pytest_plugins":
                        self.report(t, "pytest-internals", "review")
                    self._check_target(t, node.value, func, deleting=False)
        elif isinstance(node, ast.Delete):
            for target in node.targets:
                for t in _flatten_targets(target):
                    self._check_target(t, None, func, deleting=True)
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and f.attr == "get" and isinstance(f.value, ast.Attribute) \
                    and f.value.attr == "f_globals" and node.args and _is_const(node.args[0], "__name__"):
                self.module_name_reads.add(id(f.value))
            source = self._check_call(node, func)
            f = node.func
            if (isinstance(f, ast.Attribute) and f.attr in _STRING_METHODS) or self._call_quals(node) & _FOLDABLE_CALLS:
                self._check_folded(node)
        elif isinstance(node, ast.Attribute):
            source = self._check_attribute(node)
        elif isinstance(node, (ast.BinOp, ast.JoinedStr)):
            self._check_folded(node)
        elif isinstance(node, ast.Subscript):
            if isinstance(node.value, ast.Attribute) and node.value.attr == "f_globals" \
                    and _is_const(node.slice, "__name__") and isinstance(node.ctx, ast.Load):
                self.module_name_reads.add(id(node.value))
            self._check_folded(node)
            if "sys.modules" in self.resolve(node.value) and not _is_dunder_name(node.slice):
                source = True
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self._check_def(node)
        elif isinstance(node, ast.ClassDef):
            for base in node.bases:
                if self.resolve(base) & _FINDER_BASES:
                    self.report(node, "import-system", "review")
        elif isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
            if _EVENT_KEYS <= keys or _RESULT_KEYS <= keys:
                self.report(node, "events-channel", "strict")  # a forged test event / result line
        elif isinstance(node, ast.Name) and "mlgrade" in node.id.lower():
            self.report(node, "events-channel" if "plugin" in node.id.lower() else "grader-env",
                        "always" if "mlgrade_plugin" in node.id.lower() else "review")
        return source

    # strings

    def _check_string(self, node: ast.AST, value, text_only: bool = False) -> None:
        text = _as_text(value)
        if text is None:
            return
        multiline = isinstance(node, ast.Constant) and getattr(node, "end_lineno", None) != getattr(node, "lineno", None)
        for rule, strength, position in _string_hits(text):
            # a string over several lines: the line of the token (exact unless escapes join lines)
            line = node.lineno + text.count("\n", 0, position) if multiline and isinstance(value, str) else None
            if text_only or strength == "weak":
                self.report(node, rule, "review", line)
            elif strength == "always":
                self.report(node, rule, "always", line)
            else:
                self.report(node, rule, "strict", line)

    def _check_folded(self, node: ast.AST) -> None:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            # a chain a + b + c + ...: also check each run of constant pieces when the whole
            # does not fold (x + "_py" + "test")
            values = [self.fold(o) for o in _add_chain(node)]
            run: list = []
            for v in values + [None]:
                if isinstance(v, (str, bytes)) and (not run or type(v) is type(run[0])):
                    run.append(v)
                    continue
                if len(run) > 1:
                    joined = _concat(run)
                    if joined is not None:
                        self._check_string(node, joined)
                run = [v] if isinstance(v, (str, bytes)) else []
        value = self.fold(node)
        if isinstance(value, (str, bytes)):
            self._check_string(node, value)
            text = _as_text(value) or ""
            if "/proc/" in text and re.search(r"/proc/[^/]*/mem\b", text):
                self.report(node, "filesystem", "strict")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            self._check_cwd_join(node, node.left, [node.right])
        # f"/proc/{os.getppid()}/..." or "/proc/" + str(os.getppid()): the runner's /proc entry
        if isinstance(node, ast.JoinedStr):
            parts, rest = node.values, node.values
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
            parts, rest = [node.left, node.right], [node.left, node.right]
        else:
            return
        if any(isinstance(p, ast.Constant) and isinstance(p.value, str) and "/proc/" in p.value for p in parts) \
                and any(_small(r, 50) and any(isinstance(n, ast.Call) and "os.getppid" in self.resolve(n.func)
                                              for n in ast.walk(r)) for r in rest):
            self.report(node, "filesystem", "strict")

    def _cwd_depth(self, node: ast.AST, depth: int = 0) -> int | None:
        """0 when node is the working folder (the mounted tests folder during a run), n for its
        n-th parent, None when it is not derived from it."""
        if depth > 20 or node is None:
            return None
        d = depth + 1
        if isinstance(node, ast.Name):
            value = self.const_values.get(node.id)
            return self._cwd_depth(value, d) if value is not None else None
        if isinstance(node, ast.Attribute) and node.attr == "parent":
            inner = self._cwd_depth(node.value, d)
            return inner + 1 if inner is not None else None
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "parents":
            index = self.fold(node.slice)
            inner = self._cwd_depth(node.value.value, d)
            return inner + index + 1 if inner is not None and isinstance(index, int) and index >= 0 else None
        if isinstance(node, ast.Call):
            quals = self._call_quals(node)
            if quals & {"os.getcwd", "os.getcwdb", "pathlib.Path.cwd", "pathlib.PosixPath.cwd"}:
                return 0
            if isinstance(node.func, ast.Attribute) and node.func.attr in ("resolve", "absolute", "expanduser"):
                return self._cwd_depth(node.func.value, d)
            if quals & {"os.path.abspath", "os.path.realpath", "pathlib.Path", "pathlib.PosixPath"} and node.args:
                if self.fold(node.args[0]) in (".", "./"):
                    return 0
                return self._cwd_depth(node.args[0], d)
            if "os.path.dirname" in quals and node.args:
                inner = self._cwd_depth(node.args[0], d)
                return inner + 1 if inner is not None else None
        return None

    def _check_cwd_join(self, node: ast.AST, base: ast.AST, parts: list[ast.AST]) -> None:
        """Path.cwd() / "hidden" (the run's working folder is the mounted tests folder), or a
        parent of it / "reference"."""
        if not parts:
            return
        depth = self._cwd_depth(base)
        if depth is None:
            return
        segments: list[str] = []
        for part in parts:
            value = self.fold(part)
            if not isinstance(value, str):
                break
            segments += [s for s in value.split("/") if s not in ("", ".")]
        if "hidden" in segments or (depth >= 1 and "reference" in segments):
            self.report(node, "hidden-tests", "strict")

    # imports

    def _check_import(self, node: ast.Import | ast.ImportFrom) -> None:
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            top = name.split(".")[0]
            if top == "_pytest":
                self.report(node, "pytest-internals", "strict")
            elif top == "mlgrade_plugin":
                self.report(node, "events-channel", "always")
            elif top == "pluggy":
                self.report(node, "pytest-internals", "review")
            elif top in _HARNESS_MODULES and top not in self.shipped:
                self.report(node, "events-channel", "review")
            elif top in ("ctypes", "_ctypes", "cffi"):
                self.report(node, "native-code", "review")
            elif top == "forbiddenfruit":
                self.report(node, "builtins-patch", "strict")
            elif "mlgrade" in name.lower() and top not in self.shipped:
                self.report(node, "grader-env", "strict")

    # definitions

    def _check_def(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        if node.name.startswith("pytest_"):
            if not (self.lenient and node.name in _HOOKS_HARMLESS_IN_TESTS):
                self.report(node, "pytest-internals", "review")
        if node.name in ("find_spec", "find_module", "exec_module", "create_module", "load_module"):
            self.report(node, "import-system", "review")

    # assignments

    def _check_target(self, target: ast.AST, value: ast.AST | None, func: str | None, deleting: bool) -> None:
        if isinstance(target, ast.Attribute):
            attr = target.attr
            if attr == "__code__":
                self.report(target, "dynamic-code", "strict")
            elif attr in ("f_trace", "f_lineno", "f_trace_lines", "f_trace_opcodes"):
                self.report(target, "introspection", "strict")
            elif attr == "__class__":
                self.report(target, "introspection", "review")
            if attr in ("outcome", "longrepr", "wasxfail") and func and func.startswith("pytest_"):
                self.report(target, "pytest-internals", "always")
            for owner in self.resolve(target.value):
                self._patch(target, owner, attr, via="direct")
        elif isinstance(target, ast.Subscript):
            base = self.resolve(target.value)
            if "sys.modules" in base:
                self._modules_write(target, target.slice, value, deleting=deleting)
            if base & {"sys.meta_path", "sys.path_hooks", "sys.path_importer_cache"}:
                self.report(target, "import-system", "strict")
            owners = self._dict_owner(target.value, 0)
            if owners:
                key = self.fold(target.slice)
                attr = key if isinstance(key, str) else None
                for owner in owners:
                    self._patch(target, owner, attr, via="direct")

    def _modules_write(self, node: ast.AST, key_node: ast.AST | None, value: ast.AST | None, *,
                       deleting: bool = False, via: str = "direct") -> None:
        """A write (or delete) of a sys.modules entry."""
        if self.lenient:
            key = self.fold(key_node) if key_node is not None else None
            if isinstance(key, str) and key.split(".")[0] in ("mlgrade_plugin", "_pytest", "pytest", "pluggy"):
                self.report(node, "import-system", "always")
            else:
                self.report(node, "import-system", "review")
            return
        key = self.fold(key_node) if key_node is not None else None
        if isinstance(key, str):
            severity = "strict" if _is_protected_module(key, self.shipped) else "review"
        elif key_node is not None and _is_dunder_name(key_node):
            severity = "review"
        elif deleting:
            severity = "review"
        elif value is not None and self._from_spec(value):
            severity = "review"
        else:
            severity = "strict"
        self.report(node, "import-system", severity)

    def _from_spec(self, value: ast.AST) -> bool:
        if isinstance(value, ast.Name):
            return value.id in self.from_spec_names
        return isinstance(value, ast.Call) and "importlib.util.module_from_spec" in self._call_quals(value)

    def _patch(self, node: ast.AST, owner: str, attr: str | None, via: str) -> None:
        """node patches owner.attr (attr None: a computed name)."""
        rule, strength = self._patch_rule(owner, attr)
        if rule is None:
            return
        if self.lenient and via != "direct" and strength != "always-any":
            strength = "review"
        if strength == "always-any":
            strength = "always"
        self.report(node, rule, strength)

    def _patch_rule(self, owner: str, attr: str | None) -> tuple[str | None, str]:
        parts = owner.split(".")
        top = parts[0]
        name = attr or "*"
        full = f"{owner}.{name}"
        if top == "mlgrade_plugin" or (top in _HARNESS_MODULES and top not in self.shipped):
            return "events-channel", "always-any"
        if top in _COMPARISON_TOPS and (name in _COMPARISON_ATTRS or name.startswith("assert")
                                        or ".testing" in f".{owner}" and top != "triton"):
            return "comparison-patch", "always"
        if top in ("numpy", "torch") and "testing" in parts:
            return "comparison-patch", "always"
        if top in _PYTEST_TOPS:
            return "pytest-internals", "always"
        if top in _EXERCISE_MODULES or top == "conftest" or top.startswith("test_") or top.endswith("_test"):
            return "test-patch", "strict"
        if top in ("time", "timeit") or (top in _LIBRARY_TOPS and name in _CLOCK_ATTRS) \
                or any(f"{full}.".startswith(f"{p}.") for p in _CLOCK_PREFIXES):
            return "clock-patch", "strict"
        if top == "builtins":
            if owner != "builtins":
                return "builtins-patch", "strict"   # an attribute of a builtin type or function
            if name == "__import__":
                return "import-system", "strict"
            if attr is None:
                return "builtins-patch", "strict"
            if name in _HARMLESS_BUILTINS or name not in _BUILTIN_NAMES:
                return "builtins-patch", "review"
            return "builtins-patch", "strict"
        if top == "sys" and len(parts) == 1:
            if attr is None:
                return "library-patch", "review"  # setattr(sys, name, ...): mostly stdout/stderr redirection
            if name in _SYS_IMPORT_ATTRS:
                return "import-system", "strict"
            if name in _SYS_TRACE_ATTRS:
                return "introspection", "strict"
            if name in ("excepthook", "unraisablehook"):
                return "process-exit", "review"
            if name in _SYS_REVIEW_ATTRS:
                return "library-patch", "review"
            return "library-patch", "strict"
        if top == "sys" and parts[1] in _SYS_IMPORT_ATTRS:
            return "import-system", "strict"
        if top == "sys" and parts[1] in _SYS_REVIEW_ATTRS:
            return "library-patch", "review"
        if top == "threading" and name == "excepthook":
            return "process-exit", "review"
        if top in ("torch", "triton") and (_CONFIG_SEGMENTS & set(parts[1:]) or name in _CONFIG_SEGMENTS):
            return None, ""
        if top == "numpy" and len(parts) == 1 and name in _NUMPY_REMOVED_ALIASES:
            return "library-patch", "review"
        if top == "ctypes" and name == "pythonapi":
            return "native-code", "strict"
        if top in _LIBRARY_TOPS:
            return "library-patch", "strict"
        return None, ""

    # calls

    def _check_call(self, node: ast.Call, func: str | None) -> bool:
        quals = self._call_quals(node)
        args = node.args
        source = False
        f = node.func
        method = f.attr if isinstance(f, ast.Attribute) else None
        if method not in _CALL_METHODS and not quals & _CALL_QUALS \
                and not any(q.startswith("sys.monitoring.") for q in quals):
            return False  # the common case: nothing below can match

        # setattr-like
        if "builtins.dict" in quals:
            keys = {k.arg for k in node.keywords if k.arg}
            if _EVENT_KEYS <= keys or _RESULT_KEYS <= keys:
                self.report(node, "events-channel", "strict")
        if quals & _SETATTR_CALLS:
            if args:
                name = self.fold(args[1]) if len(args) > 1 else None
                attr = name if isinstance(name, str) else None
                if attr == "__code__":
                    self.report(node, "dynamic-code", "strict")
                for owner in self.resolve(args[0]):
                    self._patch(node, owner, attr, via="direct")
        elif method in ("setattr", "delattr") and not quals & {"builtins.setattr", "builtins.delattr"}:
            self._monkeypatch(node)
        elif quals & _ITEM_CALLS and len(args) >= 2:
            # operator.setitem(sys.modules, k, v), dict.__setitem__(vars(torch), k, v), ...
            deleting = any(q.endswith("delitem__") or q.endswith("delitem") for q in quals & _ITEM_CALLS)
            if "sys.modules" in self.resolve(args[0]):
                self._modules_write(node, args[1], args[2] if len(args) > 2 else None, deleting=deleting)
            key = self.fold(args[1])
            for owner in self._dict_owner(args[0], 0):
                self._patch(node, owner, key if isinstance(key, str) else None, via="direct")
        elif method in ("setitem", "delitem") and args and "sys.modules" in self.resolve(args[0]):
            self._modules_write(node, args[1] if len(args) > 1 else None, args[2] if len(args) > 2 else None,
                                deleting=method == "delitem", via="monkeypatch")
        if quals & (_MOCK_PATCH | _MOCK_OBJECT | _MOCK_DICT | _MOCK_MULTIPLE):
            self._mock(node, quals)

        # namespace dicts and sys.modules / meta_path mutators
        if method is not None:
            receiver = f.value
            if method in ("update", "setdefault", "__setitem__", "__delitem__", "pop", "popitem", "clear"):
                owners = self._dict_owner(receiver, 0)
                for owner in owners:
                    keys = self._dict_call_keys(node, method)
                    for key in keys or [None]:
                        self._patch(node, owner, key, via="direct")
                if "sys.modules" in self.resolve(receiver):
                    self._modules_call(node, method)
            if method in _MUTATING_METHODS and self.resolve(receiver) & {"sys.meta_path", "sys.path_hooks",
                                                                         "sys.path_importer_cache"}:
                self.report(node, "import-system", "strict")
            if method in ("force_result", "force_exception"):
                self.report(node, "pytest-internals", "always")
            if method == "replace" and any((k.arg or "").startswith("co_") for k in node.keywords):
                self.report(node, "dynamic-code", "strict")

        # tracing, frames, gc
        if quals & _TRACE_CALLS or any(q.startswith("sys.monitoring.") for q in quals):
            self.report(node, "introspection", "strict")
        if quals & _GC_REACH:
            self.report(node, "introspection", "strict")
            source = True
        if "gc.get_objects" in quals:
            self.report(node, "introspection", "review")
            source = True
        if quals & _FRAME_CALLS:
            self.report(node, "introspection", "review")
            source = True
        if "gc.callbacks.append" in quals:
            self.report(node, "introspection", "review")

        # dynamic code
        if quals & _EXEC_CALLS:
            self._exec(node)
            if len(args) >= 2:  # exec(code, some_module.__dict__): runs code inside that module
                for owner in self._dict_owner(args[1], 0):
                    self._patch(node, owner, None, via="direct")
        if quals & _IMPORT_CALLS and args:
            if self._obfuscated(args[0]):
                self.report(node, "dynamic-code", "strict")
            elif not isinstance(self.fold(args[0]), str):
                self.report(node, "import-system", "review")
        if quals & {"marshal.loads", "marshal.load", "types.CodeType"}:
            self.report(node, "dynamic-code", "strict")
        if quals & {"types.FunctionType", "runpy.run_path", "runpy.run_module", "codecs.register",
                    "zipimport.zipimporter"}:
            self.report(node, "dynamic-code", "review")
        if quals & _DECODERS and args and isinstance(self.fold(args[0]), (str, bytes)):
            self.report(node, "dynamic-code", "review")

        # pytest
        if not self.lenient and quals & {"pytest.skip", "pytest.xfail", "pytest.exit", "pytest.fail",
                                         "pytest.importorskip"}:
            self.report(node, "pytest-internals", "review")

        # processes
        if quals & _PROCESS_CALLS:
            self.report(node, "process-exit", "review")
            if quals & {"os.kill", "os.killpg"} and args and any(
                    isinstance(n, ast.Call) and self.resolve(n.func) & {"os.getppid"}
                    for n in ast.walk(args[0]) if _small(args[0])):
                self.report(node, "process-exit", "strict")

        # files
        if quals & {"os.path.join", "posixpath.join"} and len(args) >= 2:
            self._check_cwd_join(node, args[0], args[1:])
        if quals & _FS_CALLS and args:
            path = self.fold(args[0])
            if isinstance(path, str) and path.split("/")[0] == "hidden":
                self.report(node, "hidden-tests", "review")  # relative to the working folder
            if isinstance(path, str) and path.startswith("/") and not path.startswith("/proc/") \
                    and not any(path == p or path.startswith(p + "/") for p in _FS_ALLOWED):
                self.report(node, "filesystem", "review")
        return source

    def _dict_call_keys(self, node: ast.Call, method: str) -> list[str | None]:
        args = node.args
        if method == "update":
            keys: list[str | None] = [k.arg for k in node.keywords if k.arg]
            if args and isinstance(args[0], ast.Dict):
                for k in args[0].keys:
                    v = self.fold(k) if k is not None else None
                    keys.append(v if isinstance(v, str) else None)
            elif args:
                keys.append(None)
            return keys
        if method in ("setdefault", "__setitem__", "__delitem__", "pop") and args:
            v = self.fold(args[0])
            return [v if isinstance(v, str) else None]
        return [None]

    def _modules_call(self, node: ast.Call, method: str) -> None:
        args = node.args
        if method == "update":
            if args and isinstance(args[0], ast.Dict):
                for k, v in zip(args[0].keys, args[0].values):
                    self._modules_write(node, k, v)
            for k in node.keywords:
                self._modules_write(node, ast.Constant(k.arg) if k.arg else None, k.value)
            if args and not isinstance(args[0], ast.Dict):
                self._modules_write(node, None, args[0])
        elif method in ("setdefault", "__setitem__"):
            self._modules_write(node, args[0] if args else None, args[1] if len(args) > 1 else None)
        elif method in ("pop", "__delitem__"):
            self._modules_write(node, args[0] if args else None, None, deleting=True)
        elif method in ("clear", "popitem"):
            self.report(node, "import-system", "strict")

    def _monkeypatch(self, node: ast.Call) -> None:
        """obj.setattr(target, name, value) / obj.setattr("mod.attr", value) (pytest's monkeypatch)."""
        args = node.args
        if not args:
            return
        first = self.fold(args[0])
        if isinstance(first, str) and "." in first and len(args) <= 2:
            owner, _, attr = first.rpartition(".")
            self._patch(node, owner, attr, via="monkeypatch")
            return
        if len(args) >= 2:
            name = self.fold(args[1])
            attr = name if isinstance(name, str) else None
            for owner in self.resolve(args[0]):
                self._patch(node, owner, attr, via="monkeypatch")

    def _mock(self, node: ast.Call, quals: frozenset[str]) -> None:
        args = node.args
        target = None
        for k in node.keywords:
            if k.arg == "target":
                target = k.value
        if target is None and args:
            target = args[0]
        if target is None:
            return
        if quals & _MOCK_DICT:
            if "sys.modules" in self.resolve(target) or self.fold(target) == "sys.modules":
                self._modules_write(node, None, None, via="mock")
            return
        if quals & _MOCK_OBJECT:
            name = self.fold(args[1]) if len(args) > 1 else None
            for owner in self.resolve(target):
                self._patch(node, owner, name if isinstance(name, str) else None, via="mock")
            return
        text = self.fold(target)
        if isinstance(text, str) and "." in text:
            if quals & _MOCK_MULTIPLE:
                for k in node.keywords:
                    if k.arg:
                        self._patch(node, text, k.arg, via="mock")
            else:
                owner, _, attr = text.rpartition(".")
                self._patch(node, owner, attr, via="mock")
        elif quals & _MOCK_MULTIPLE:
            for owner in self.resolve(target):
                for k in node.keywords:
                    if k.arg:
                        self._patch(node, owner, k.arg, via="mock")

    def _exec(self, node: ast.Call) -> None:
        source = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "source"), None)
        if source is None:
            return
        value = self.fold(source)
        if self._obfuscated(source):
            self.report(node, "dynamic-code", "strict")
        else:
            self.report(node, "dynamic-code", "review")
        if isinstance(value, (str, bytes)) and self.nesting < MAX_EXEC_NESTING:
            self._scan_payload(node, value)

    def _scan_payload(self, node: ast.Call, value: str | bytes) -> None:
        try:
            tree = ast.parse(value)
        except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
            return
        sub = _PyScan(tree, self.emit, lenient=self.lenient, shipped=self.shipped,
                      line_override=self._line(node), inherited=self.aliases, nesting=self.nesting + 1)
        try:
            sub.run()
        except (RecursionError, MemoryError):
            pass

    # attribute reads

    def _check_attribute(self, node: ast.Attribute) -> bool:
        attr = node.attr
        if attr in _FRAME_DATA_ATTRS:
            # sys._getframe(1).f_globals.get("__name__") (the caller's module name, as namedtuple
            # and attrs do) reads nothing of the caller's: review
            self.report(node, "introspection", "review" if id(node) in self.module_name_reads else "strict")
            return True
        if attr in _FRAME_ATTRS:
            self.report(node, "introspection", "review")
            return True
        if attr in ("__globals__", "__closure__", "cell_contents", "__subclasses__"):
            self.report(node, "introspection", "review")
            return attr == "__globals__"
        if attr == "pluginmanager":
            self.report(node, "pytest-internals", "strict")
        elif attr in _SYS_IMPORT_ATTRS or attr == "pythonapi" or attr == "hookimpl":
            quals = self.resolve(node)
            if "sys.modules" in quals:
                self.report(node, "import-system", "review")
                return True
            if quals & {"sys.meta_path", "sys.path_hooks", "sys.path_importer_cache"}:
                self.report(node, "import-system", "review")
            if "ctypes.pythonapi" in quals:
                self.report(node, "native-code", "strict")
            if quals & {"pytest.hookimpl", "pluggy.HookimplMarker"} and not self.lenient:
                self.report(node, "pytest-internals", "review")
        return False

    # taint: objects reached through gc, frames or sys.modules, then modified

    def _taint(self, nodes: list[ast.AST]) -> None:
        tainted: dict[str, str] = {}

        def kind_of(expr: ast.AST) -> str | None:
            stack = [expr]
            seen = 0
            while stack and seen < 500:
                n = stack.pop()
                seen += 1
                if isinstance(n, ast.Name) and n.id in tainted:
                    return tainted[n.id]
                if isinstance(n, ast.Call):
                    q = self._call_quals(n)
                    if q & (_GC_REACH | {"gc.get_objects"}):
                        return "gc"
                    if q & _FRAME_CALLS:
                        return "frame"
                    if q & {"sys.modules.get", "sys.modules.items", "sys.modules.values", "sys.modules.copy"}:
                        if n.args and _is_dunder_name(n.args[0]):
                            continue  # sys.modules.get(__name__): the file's own module
                        return "modules"
                if isinstance(n, ast.Attribute) and n.attr in (_FRAME_ATTRS | _FRAME_DATA_ATTRS | {"__globals__"}):
                    return "frame"
                if isinstance(n, ast.Subscript) and "sys.modules" in self.resolve(n.value):
                    if _is_dunder_name(n.slice):
                        continue  # sys.modules[__name__]
                    return "modules"
                if isinstance(n, ast.Attribute) and n.attr == "modules" and "sys.modules" in self.resolve(n):
                    return "modules"
                stack.extend(ast.iter_child_nodes(n))
            return None

        for _ in range(4):
            before = len(tainted)
            for n in nodes:
                if isinstance(n, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and n.value is not None:
                    k = kind_of(n.value)
                    if k:
                        targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                        for t in targets:
                            for name in _names_in_target(t):
                                tainted.setdefault(name, k)
                elif isinstance(n, (ast.For, ast.AsyncFor, ast.comprehension)):
                    k = kind_of(n.iter)
                    if k:
                        for name in _names_in_target(n.target):
                            tainted.setdefault(name, k)
            if len(tainted) == before:
                break

        def root_kind(expr: ast.AST) -> str | None:
            n = expr
            for _ in range(100):
                if isinstance(n, (ast.Attribute, ast.Subscript)):
                    n = n.value
                elif isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
                    n = n.func.value
                else:
                    break
            if isinstance(n, ast.Name):
                return tainted.get(n.id)
            return kind_of(n) if isinstance(n, ast.Call) else None

        def mutated(node: ast.AST, kind: str) -> None:
            self.report(node, "library-patch" if kind == "modules" else "introspection", "strict")

        for n in nodes:
            if isinstance(n, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
                targets = n.targets if isinstance(n, (ast.Assign, ast.Delete)) else [n.target]
                for target in targets:
                    for t in _flatten_targets(target):
                        if isinstance(t, (ast.Attribute, ast.Subscript)):
                            if isinstance(t, ast.Subscript) and "sys.modules" in self.resolve(t.value):
                                continue  # sys.modules[...] itself: the import-system rule
                            k = root_kind(t.value)
                            if k:
                                mutated(t, k)
            elif isinstance(n, ast.Call):
                quals = self._call_quals(n)
                if quals & _EXEC_CALLS and len(n.args) >= 2:
                    k = root_kind(n.args[1]) if not isinstance(n.args[1], ast.Name) else tainted.get(n.args[1].id)
                    if k:
                        mutated(n, k)
                if quals & {"builtins.setattr", "builtins.delattr", "builtins.object.__setattr__"} and n.args:
                    k = root_kind(n.args[0]) if not isinstance(n.args[0], ast.Name) else tainted.get(n.args[0].id)
                    if k:
                        mutated(n, k)
                elif isinstance(n.func, ast.Attribute) and n.func.attr in _MUTATING_METHODS:
                    if "sys.modules" in self.resolve(n.func.value):
                        continue
                    k = root_kind(n.func.value) if not isinstance(n.func.value, ast.Name) \
                        else tainted.get(n.func.value.id)
                    if k:
                        mutated(n, k)


def _add_chain(node: ast.BinOp) -> list[ast.AST]:
    """The operands of a left-nested a + b + c + ... chain, left to right (no recursion)."""
    rights = []
    n: ast.AST = node
    while isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add) and len(rights) < 200_000:
        rights.append(n.right)
        n = n.left
    rights.append(n)
    rights.reverse()
    return rights


def _concat(values: list) -> object:
    """Sum of folded values when they are all str, all bytes, all tuples or all ints; else None."""
    if not values or any(v is None for v in values):
        return None
    kind = type(values[0])
    if any(type(v) is not kind for v in values):
        return None
    if kind is int:
        return sum(values) if all(abs(v) < 1 << 64 for v in values) else None
    if kind not in (str, bytes, tuple) or sum(len(v) for v in values) > FOLD_MAX:
        return None
    if kind is tuple:
        return tuple(x for v in values for x in v)
    return kind().join(values)


def _small(node: ast.AST, limit: int = 500) -> bool:
    count = 0
    for _ in ast.walk(node):
        count += 1
        if count > limit:
            return False
    return True


def _dotted(node: ast.AST) -> str | None:
    parts = []
    n = node
    for _ in range(50):
        if isinstance(n, ast.Attribute):
            parts.append(n.attr)
            n = n.value
        elif isinstance(n, ast.Name):
            parts.append(n.id)
            return ".".join(reversed(parts))
        else:
            return None
    return None


def _names_in_target(target: ast.AST) -> list[str]:
    out = []
    stack = [target]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.Name):
            out.append(n.id)
        elif isinstance(n, (ast.Tuple, ast.List)):
            stack.extend(n.elts)
        elif isinstance(n, ast.Starred):
            stack.append(n.value)
    return out


def _flatten_targets(target: ast.AST) -> Iterable[ast.AST]:
    stack = [target]
    while stack:
        n = stack.pop()
        if isinstance(n, (ast.Tuple, ast.List)):
            stack.extend(n.elts)
        elif isinstance(n, ast.Starred):
            stack.append(n.value)
        else:
            yield n


def _is_const(node: ast.AST, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value == value


def _is_dunder_name(node: ast.AST | None) -> bool:
    """__name__, or a key built from it (__name__ + ".sub", f"{__name__}.sub"): the module's own."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _is_dunder_name(_add_chain(node)[0])
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.FormattedValue):
        return _is_dunder_name(node.values[0].value)
    return isinstance(node, ast.Name) and node.id in ("__name__", "__package__")


# ----------------------------------------------------------------------------- files

@dataclass
class _File:
    rel: str
    path: str
    size: int


def _walk(root: Path) -> list[_File]:
    """Regular files under root (symlinks neither followed nor listed), sorted by relative path.
    Iterative: a folder chain thousands deep is walked (or cut where paths get too long)."""
    files: list[_File] = []
    stack: list[tuple[str, str]] = [(os.fspath(root), "")]
    visited = 0
    while stack:
        directory, prefix = stack.pop()
        try:
            with os.scandir(directory) as entries:
                items = list(entries)
        except OSError:
            continue
        for entry in items:
            visited += 1
            if visited > MAX_FILES * 10:
                return sorted(files, key=lambda f: f.rel)
            rel = f"{prefix}{entry.name}"
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append((entry.path, rel + "/"))
            elif stat.S_ISREG(st.st_mode):
                files.append(_File(rel, entry.path, st.st_size))
    files.sort(key=lambda f: f.rel)
    return files


def _read(path: str) -> bytes | None:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE_BYTES:
            return None
        chunks = []
        remaining = MAX_FILE_BYTES + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        return data if len(data) <= MAX_FILE_BYTES else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _decode_source(data: bytes) -> tuple[str, str | None]:
    """The text of a Python file, decoded as Python would, and its declared encoding."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except (SyntaxError, LookupError, UnicodeError):
        return data.decode("utf-8", errors="replace"), None
    try:
        return data.decode(encoding, errors="replace"), encoding
    except (LookupError, UnicodeError):
        return data.decode("utf-8", errors="replace"), None


def _parse(data: bytes) -> tuple[ast.AST | None, str]:
    try:
        return ast.parse(data), ""
    except SyntaxError as exc:
        return None, f"SyntaxError: {exc.msg}"
    except (ValueError, UnicodeError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    except RecursionError:
        return _parse_deep(data)
    except MemoryError:
        return None, "MemoryError: too complex for the parser"
    except OverflowError as exc:
        return None, f"OverflowError: {exc}"


def _parse_deep(data: bytes) -> tuple[ast.AST | None, str]:
    """ast.parse gives up on expressions nested ~1000 deep (the recursion limit), but candidate
    code that raises sys.setrecursionlimit first can still import such a file. Parse it again
    in a thread with a big stack under a higher limit (restored at once) so that it cannot hide
    from the scan; deeper than that it stays unparsed (and shown)."""
    result: dict[str, object] = {}

    def work() -> None:
        old = sys.getrecursionlimit()
        try:
            sys.setrecursionlimit(max(old, DEEP_RECURSION_LIMIT))
            result["tree"] = ast.parse(data)
        except BaseException as exc:  # noqa: BLE001 - reported, never raised
            result["error"] = exc
        finally:
            sys.setrecursionlimit(old)

    size = threading.stack_size()
    try:
        threading.stack_size(DEEP_STACK_BYTES)
        thread = threading.Thread(target=work, name="scan-deep-parse", daemon=True)
        thread.start()
    except (RuntimeError, ValueError, MemoryError):
        return None, "RecursionError: nested too deeply"
    finally:
        threading.stack_size(size)
    thread.join()
    tree = result.get("tree")
    if isinstance(tree, ast.AST):
        return tree, ""
    return None, f"{type(result.get('error')).__name__}: nested too deeply"


def _imports_of(nodes: list[tuple[ast.AST, str | None, int]], rel: str) -> set[str]:
    names: set[str] = set()
    package = rel.split("/")[:-1]
    for node, _, _ in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                names |= {".".join(parts[:i + 1]) for i in range(len(parts))}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package[:len(package) - (node.level - 1)] if node.level - 1 <= len(package) else []
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            parts = base.split(".") if base else []
            names |= {".".join(parts[:i + 1]) for i in range(len(parts))}
            for alias in node.names:
                names.add(f"{base}.{alias.name}" if base else alias.name)
                names.add(alias.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) < 200:
            # importlib.import_module("x"), __import__("x"), spec_from_file_location(.., "x.py")
            value = node.value
            if value.endswith(".py"):
                value = value[:-3].replace("/", ".")
            if re.fullmatch(r"[A-Za-z_][\w.]*", value):
                names.add(value)
                names.add(value.split(".")[-1])
    return names


class _Scan:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.findings: dict[tuple[str, int, str], str] = {}
        self.excerpts: dict[tuple[str, int, str], str] = {}

    def add(self, rel: str, line: int, rule: str, severity: str, excerpt: str) -> None:
        key = (rel, line, rule)
        if self.findings.get(key) != TAMPER:
            self.findings[key] = severity
        self.excerpts.setdefault(key, excerpt)

    def add_lines(self, rel: str, emitter: _Emitter, lines: list[str]) -> None:
        for (line, rule), severity in emitter.found.items():
            text = lines[line - 1].strip() if 0 < line <= len(lines) else ""
            self.add(rel, line, rule, severity, _printable(text))

    def text_scan(self, rel: str, data: bytes, lines: list[str] | None, *, strong_is_tamper: bool,
                  python: bool = False, lenient: bool = False) -> None:
        """Search the raw bytes for grader names. Review, unless strong_is_tamper (pytest config
        files; unparseable .py files (python=True) outside comments; in a lenient file only the
        "always" tokens)."""
        hits = 0
        line = 1
        last = 0
        seen_lines: set[int] = set()
        for match in _TEXT_TRIGGER.finditer(data):
            line += data.count(b"\n", last, match.start())
            last = match.start()
            if line in seen_lines:
                continue
            seen_lines.add(line)
            hits += 1
            if hits > TEXT_HITS_PER_FILE:
                break
            if lines is not None and 0 < line <= len(lines):
                text = lines[line - 1]
            else:
                start = data.rfind(b"\n", 0, match.start()) + 1
                end = data.find(b"\n", match.end())
                text = data[start:end if end >= 0 else len(data)][:4096].decode("utf-8", errors="replace")
            code = text[:_comment_start(text)] if python else text
            charged = ("always",) if lenient else ("always", "strong")
            code_rules = {rule for rule, strength, _ in _string_hits(code) if strength in charged} \
                if strong_is_tamper else set()
            for rule, strength, _ in _string_hits(text):
                tamper = strength != "weak" and rule in code_rules
                self.add(rel, line, rule, TAMPER if tamper else REVIEW, _printable(text.strip()))

    def result(self, max_findings: int) -> list[Finding]:
        items = [Finding(rel, line, rule, severity, self.excerpts.get((rel, line, rule), ""))
                 for (rel, line, rule), severity in self.findings.items()]
        items.sort(key=lambda f: (f.severity != TAMPER, f.file, f.line, f.rule))
        kept = items[:max(0, max_findings)]
        kept.sort(key=lambda f: (f.file, f.line, f.rule))
        return kept


def scan_submission(root: Path, max_findings: int = 50) -> list[Finding]:
    """Findings for the submission folder root, without running any of its code."""
    # A big file becomes millions of AST objects; the cyclic collector would walk them again and
    # again while they are made (4x the time of the whole scan). Nothing here makes cycles.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _scan_submission(Path(root), max_findings)
    finally:
        if collecting:
            gc.enable()


def _scan_submission(root: Path, max_findings: int) -> list[Finding]:
    scan = _Scan(root)
    files = _walk(root)
    if len(files) > MAX_FILES:
        first = files[MAX_FILES]
        scan.add(first.rel, 0, "unparsed", REVIEW, f"(scan stopped: more than {MAX_FILES} files)")
        files = files[:MAX_FILES]

    # modules the submission ships at its top level (what `import X` would find in it)
    shipped: set[str] = set()
    for f in files:
        first, _, rest = f.rel.partition("/")
        if not rest and first.endswith(".py"):
            shipped.add(first[:-3])
        elif not rest and first.endswith((".so", ".pyd")):
            shipped.add(first.split(".")[0])
        elif rest and rest.endswith(".py"):
            shipped.add(first)
    for name in sorted(shipped):
        if name in _SHADOW_TAMPER:
            rule = "events-channel" if name == "mlgrade_plugin" else (
                "pytest-internals" if name in _PYTEST_TOPS or name == "iniconfig" else "import-system")
            scan.add(_shadow_file(files, name), 0, rule, TAMPER, f"(the submission ships a module named {name})")
        elif name in _SHADOW_REVIEW:
            scan.add(_shadow_file(files, name), 0, "import-system", REVIEW,
                     f"(the submission ships a module named {name}, shadowing the real one)")

    deferred: list[tuple[_File, bytes]] = []
    imported: set[str] = set()
    test_imports: dict[str, set[str]] = {}
    parsed = 0  # bytes of Python parsed so far: smallest files first, where a payload hides least
    for f in sorted(files, key=lambda f: (f.size, f.rel)):
        if f.size > MAX_FILE_BYTES:
            if f.rel.endswith(".py"):
                scan.add(f.rel, 0, "unparsed", REVIEW, f"(not scanned: {f.size} bytes, over {MAX_FILE_BYTES})")
            continue
        data = _read(f.path)
        if data is None:
            continue
        if f.rel.endswith(".py") and parsed + len(data) > PARSE_BUDGET_BYTES:
            scan.add(f.rel, 0, "unparsed", REVIEW, f"(text search only: over the scan's {PARSE_BUDGET_BYTES} "
                                                   "bytes of parsed Python)")
            _scan_other(scan, f.rel, data)
            continue
        if f.rel.endswith(".py"):
            parsed += len(data)
            if _is_test_path(f.rel):
                tree, _ = _parse(data)
                try:
                    test_imports[f.rel] = _PyScan(tree, _Emitter(), lenient=True, shipped=shipped).imports(f.rel) \
                        if tree is not None else set()
                except (RecursionError, MemoryError):
                    test_imports[f.rel] = set()
                del tree
                deferred.append((f, b""))
                continue
            imported |= _scan_python(scan, f.rel, data, lenient=False, shipped=shipped)
        else:
            _scan_other(scan, f.rel, data)

    # a candidate's test file is lenient unless a strict file imports it (directly or through
    # other test files that are imported)
    strict_tests: set[str] = set()
    changed = True
    while changed:
        changed = False
        for rel in test_imports:
            if rel not in strict_tests and _module_names(rel) & imported:
                strict_tests.add(rel)
                imported |= test_imports[rel]
                changed = True
    for f, _ in deferred:
        data = _read(f.path)
        if data is not None:
            _scan_python(scan, f.rel, data, lenient=f.rel not in strict_tests, shipped=shipped)
    return scan.result(max_findings)


def _shadow_file(files: list[_File], name: str) -> str:
    for f in files:
        if f.rel == f"{name}.py" or f.rel.startswith(f"{name}/") or f.rel.startswith(f"{name}."):
            return f.rel
    return name


def _scan_python(scan: _Scan, rel: str, data: bytes, *, lenient: bool, shipped: set[str]) -> set[str]:
    """Scan one .py file; returns the modules it imports."""
    text, encoding = _decode_source(data)
    lines = _NEWLINE.split(text)
    if encoding is not None:
        try:
            normal = codecs.lookup(encoding).name
        except LookupError:
            normal = encoding
        if normal not in _USUAL_SOURCE_ENCODINGS:
            scan.add(rel, 1, "dynamic-code", REVIEW, _printable(lines[0].strip() if lines else ""))
    tree, error = _parse(data)
    if tree is None:
        scan.add(rel, 0, "unparsed", REVIEW, _printable(f"(does not parse: {error})"))
        scan.text_scan(rel, data, lines, strong_is_tamper=True, python=True, lenient=lenient)
        return set()
    scan.text_scan(rel, data, lines, strong_is_tamper=False)
    emitter = _Emitter()
    scanner = _PyScan(tree, emitter, lenient=lenient, shipped=shipped)
    try:
        scanner.run()
    except (RecursionError, MemoryError):
        scan.add(rel, 0, "unparsed", REVIEW, "(scan stopped: nested too deeply)")
    scan.add_lines(rel, emitter, lines)
    try:
        return scanner.imports(rel) if not lenient else set()
    except (RecursionError, MemoryError):
        return set()


def _comment_start(line: str) -> int:
    """Index of the '#' that starts a comment on a line of Python (quotes on the line taken
    into account, not strings that span lines), or len(line)."""
    quote = None
    i = 0
    n = len(line)
    while i < n:
        ch = line[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if line.startswith(quote, i):
                i += len(quote)
                quote = None
                continue
        elif ch in "'\"":
            quote = line[i:i + 3] if line[i:i + 3] in ("'''", '"""') else ch
            i += len(quote)
            continue
        elif ch == "#":
            return i
        i += 1
    return n


def _scan_other(scan: _Scan, rel: str, data: bytes) -> None:
    name = rel.rsplit("/", 1)[-1]
    if data[:4] == b"\x7fELF" or name.endswith((".so", ".pyd", ".dylib", ".dll")) or ".so." in name:
        scan.add(rel, 0, "native-code", REVIEW, "(native binary: not scanned)")
    elif name.endswith(".pyc"):
        flags = int.from_bytes(data[4:8], "little") if len(data) >= 8 else 0
        if flags & 0b01 and not flags & 0b10:
            scan.add(rel, 0, "dynamic-code", TAMPER, "(unchecked hash-based .pyc: runs instead of its source)")
        else:
            scan.add(rel, 0, "dynamic-code", REVIEW, "(compiled Python bytecode: not scanned)")
    config = name in _PYTEST_CONFIG_FILES
    scan.text_scan(rel, data, None, strong_is_tamper=config)
