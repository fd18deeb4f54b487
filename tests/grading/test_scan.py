"""The static scan (grader/scan.py) flags grader tampering as "tamper" and never honest code.

Every case is a real submission folder written to disk (tmp_path) or a bundled one; nothing
is mocked and no submission code is ever run.
"""
from __future__ import annotations

import base64
import dataclasses
import os
import time
import tomllib
import zlib
from pathlib import Path

import pytest

from grader.scan import MAX_FILE_BYTES, Finding, scan_submission

PROJECT = Path(__file__).resolve().parents[2]
HONEST_FIXTURE = PROJECT / "tests" / "fixtures" / "scan" / "honest"


def _write(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def _tamper(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "tamper"]


def _b64(code: str) -> str:
    return base64.b64encode(code.encode()).decode()


# ------------------------------------------------------------------ hostile snippets
# (id, {file: source}, rule that must come with at least one tamper finding)

_PAYLOAD = _b64("import torch\ntorch.equal = lambda a, b: True\n")
_ZPAYLOAD = base64.b64encode(zlib.compress(b"import _pytest.runner\n")).decode()

HOSTILE: list[tuple[str, dict[str, str], str]] = [
    # pytest internals
    ("call-and-report", {"loader.py": "import _pytest.runner as r\n"
                                      "r.call_and_report = lambda *a, **k: None\n"}, "pytest-internals"),
    ("from-pytest-import", {"loader.py": "from _pytest import runner\n"
                                         "_orig = runner.call_and_report\n"}, "pytest-internals"),
    ("testreport-outcome", {"loader.py": "import _pytest.reports\n"
                                         "_pytest.reports.TestReport.passed = property(lambda s: True)\n"},
     "pytest-internals"),
    ("import-module-concat", {"loader.py": "import importlib\n"
                                           "m = importlib.import_module('_py' + 'test.runner')\n"
                                           "setattr(m, 'call_' + 'and_report', print)\n"}, "pytest-internals"),
    ("getattr-concat", {"loader.py": "import sys\n"
                                     "runner = sys.modules.get('_pytest.runner')\n"
                                     "getattr(runner, 'call_' + 'and_report')\n"}, "pytest-internals"),
    ("b64-import", {"loader.py": "import base64\n"
                                 "m = __import__(base64.b64decode('X3B5dGVzdC5ydW5uZXI=').decode())\n"},
     "pytest-internals"),
    ("fromhex-import", {"loader.py": "name = bytes.fromhex('5f7079746573742e72756e6e6572').decode()\n"
                                     "m = __import__(name, fromlist=['x'])\n"}, "pytest-internals"),
    ("hookwrapper-force-result", {"loader.py": "import pytest\n\n\n"
                                               "@pytest.hookimpl(hookwrapper=True)\n"
                                               "def pytest_runtest_makereport(item, call):\n"
                                               "    outcome = yield\n"
                                               "    outcome.force_result(None)\n"}, "pytest-internals"),
    ("register-plugin", {"loader.py": "import sys\n\n\n"
                                      "def pytest_runtest_logreport(report):\n"
                                      "    pass\n\n\n"
                                      "def install(config):\n"
                                      "    config.pluginmanager.register(sys.modules[__name__])\n"},
     "pytest-internals"),
    ("conftest-outcome", {"conftest.py": "import pytest\n\n\n"
                                         "@pytest.hookimpl(hookwrapper=True)\n"
                                         "def pytest_runtest_makereport(item, call):\n"
                                         "    outcome = yield\n"
                                         "    report = outcome.get_result()\n"
                                         "    report.outcome = 'passed'\n"}, "pytest-internals"),
    ("ships-pytest", {"pytest.py": "raise SystemExit('shadow')\n", "loader.py": "x = 1\n"}, "pytest-internals"),
    # comparisons
    ("torch-equal", {"loader.py": "import torch\ntorch.equal = lambda a, b: True\n"}, "comparison-patch"),
    ("torch-alias", {"loader.py": "import torch as T\nT.allclose = lambda *a, **k: True\n"}, "comparison-patch"),
    ("testing-alias", {"loader.py": "from torch import testing as tt\n"
                                    "tt.assert_close = lambda *a, **k: None\n"}, "comparison-patch"),
    ("numpy-testing", {"loader.py": "import numpy as np\n"
                                    "np.testing.assert_allclose = lambda *a, **k: None\n"}, "comparison-patch"),
    ("from-numpy-testing-setattr", {"loader.py": "from numpy import testing\n"
                                                 "setattr(testing, 'assert_array_equal', lambda *a, **k: None)\n"},
     "comparison-patch"),
    ("numpy-array-equal", {"loader.py": "import numpy\nnumpy.array_equal = lambda *a, **k: True\n"},
     "comparison-patch"),
    ("tensor-eq", {"loader.py": "import torch\ntorch.Tensor.__eq__ = lambda a, b: torch.tensor(True)\n"},
     "comparison-patch"),
    ("type-of-tensor", {"loader.py": "import torch\ntype(torch.zeros(1)).allclose = lambda *a, **k: True\n"},
     "comparison-patch"),
    ("sys-modules-torch", {"loader.py": "import sys\nsys.modules['torch'].equal = lambda a, b: True\n"},
     "comparison-patch"),
    ("dict-assign", {"loader.py": "import numpy as np\n"
                                  "np.testing.__dict__['assert_equal'] = lambda *a, **k: None\n"},
     "comparison-patch"),
    ("vars-update", {"loader.py": "import torch\nvars(torch.testing).update(assert_close=print)\n"},
     "comparison-patch"),
    ("monkeypatch-outside-tests", {"loader.py": "import pytest\nimport torch\n"
                                                "mp = pytest.MonkeyPatch()\n"
                                                "mp.setattr(torch, 'allclose', lambda *a, **k: True)\n"},
     "comparison-patch"),
    ("mock-outside-tests", {"loader.py": "from unittest import mock\nimport torch\n"
                                         "mock.patch.object(torch, 'equal', return_value=True).start()\n"},
     "comparison-patch"),
    ("mock-string-target", {"loader.py": "from unittest.mock import patch\n"
                                         "patch('torch.testing.assert_close').start()\n"}, "comparison-patch"),
    ("math-isclose", {"loader.py": "import math\nmath.isclose = lambda *a, **k: True\n"}, "comparison-patch"),
    ("approx", {"loader.py": "import pytest\npytest.approx = lambda expected, **k: expected\n"},
     "comparison-patch"),
    ("alias-through-assignment", {"loader.py": "import torch\n_t = torch\n_t.equal = lambda a, b: True\n"},
     "comparison-patch"),
    ("alias-through-function", {"loader.py": "def lib():\n    import numpy\n    return numpy\n\n\n"
                                             "lib().allclose = lambda *a, **k: True\n"}, "comparison-patch"),
    ("loop-over-modules", {"loader.py": "import numpy, torch\n"
                                        "for m in (numpy, torch):\n"
                                        "    m.allclose = lambda *a, **k: True\n"}, "comparison-patch"),
    ("patch-in-test-file", {"tests/test_x.py": "import torch\ntorch.equal = lambda a, b: True\n"},
     "comparison-patch"),
    # the events channel
    ("plugin-emit", {"loader.py": "import mlgrade_plugin\nmlgrade_plugin._emit = lambda **e: None\n"},
     "events-channel"),
    ("events-env", {"loader.py": "import os\n"
                                 "with open(os.environ['MLGRADE_EVENTS'], 'a') as f:\n"
                                 "    f.write('{\"event\": \"result\", \"outcome\": \"passed\"}\\n')\n"
                                 "os._exit(0)\n"}, "events-channel"),
    ("events-env-concat", {"loader.py": "import os\nkey = 'MLGR' + 'ADE_EVENTS'\npath = os.environ[key]\n"},
     "events-channel"),
    ("events-env-join", {"loader.py": "import os\np = os.environ.get(''.join(['ML', 'GRADE', '_OUT']))\n"},
     "events-channel"),
    ("plugin-via-sys-modules", {"loader.py": "import sys\n"
                                             "plugin = sys.modules['mlgrade' + '_plugin']\n"
                                             "plugin._emit = print\n"}, "events-channel"),
    ("plugin-name-in-test-file", {"tests/test_x.py": "import sys\n"
                                                     "sys.modules['mlgrade_plugin']._emit = print\n"},
     "events-channel"),
    ("pytest-ini", {"pytest.ini": "[pytest]\naddopts = -p no:mlgrade_plugin\n"}, "events-channel"),
    ("forged-result-dict", {"calc.py": "import json\n"
                                       "line = json.dumps({'event': 'result', 'nodeid': n, 'outcome': 'passed'})\n"},
     "events-channel"),
    ("forged-result-call", {"calc.py": "import json\nline = json.dumps(dict(nodeid=n, outcome='passed'))\n"},
     "events-channel"),
    ("forged-result-text", {"calc.py": "LINE = '{\"nodeid\": \"hidden/x.py::t\", \"outcome\": \"passed\"}'\n"},
     "events-channel"),
    ("results-dir", {"calc.py": "import os\n"
                                "out = os.environ.get('MLGRADE_OUT', '/mlgrade/out')\n"}, "events-channel"),
    # hidden tests
    ("hidden-glob", {"loader.py": "import glob\n"
                                  "for p in glob.glob('/mlgrade/tests/hidden/*.py'):\n"
                                  "    print(open(p).read())\n"}, "hidden-tests"),
    ("hidden-join", {"loader.py": "import os\nroot = os.path.join('/', 'mlgrade', 'tests', 'hidden')\n"},
     "hidden-tests"),
    ("hidden-reversed", {"loader.py": "p = 'neddih/stset/edargml/'[::-1]\n"}, "hidden-tests"),
    ("hidden-nodeid", {"calc.py": "NODE = 'hidden/test_mean.py::test_mean_ints'\n"}, "hidden-tests"),
    ("cwd-hidden", {"calc.py": "import os\nroot = os.path.join(os.getcwd(), 'hidden')\n"}, "hidden-tests"),
    ("cwd-path-hidden", {"calc.py": "from pathlib import Path\n"
                                    "_here = Path.cwd()\n"
                                    "_roots = [_here / 'hidden', _here.parent.parent / 'reference']\n"}, "hidden-tests"),
    ("hidden-unparseable", {"loader.py": "x = '/mlgrade/tests/hidden'\ndef broken(:\n    pass\n"},
     "hidden-tests"),
    ("grader-path", {"loader.py": "from pathlib import Path\nsrc = Path('/mlgrade') / 'tests'\n"}, "grader-env"),
    # introspection
    ("gc-referrers", {"loader.py": "import gc\nfor holder in gc.get_referrers(len):\n    pass\n"},
     "introspection"),
    ("gc-referrers-alias", {"loader.py": "from gc import get_referrers as refs\nrefs(object)\n"},
     "introspection"),
    ("gc-objects-modified", {"loader.py": "import gc\n"
                                          "for obj in gc.get_objects():\n"
                                          "    if getattr(obj, '__name__', '') == 'x':\n"
                                          "        obj.y = 1\n"}, "introspection"),
    ("gc-objects-write", {"loader.py": "import gc\n"
                                       "files = [o for o in gc.get_objects() if hasattr(o, 'write')]\n"
                                       "for f in files:\n"
                                       "    f.write('x')\n"}, "introspection"),
    ("frame-locals", {"loader.py": "import sys\n\n\n"
                                   "def answer():\n"
                                   "    return sys._getframe(1).f_back.f_locals['expected']\n"},
     "introspection"),
    ("frame-alias", {"loader.py": "from sys import _getframe as gf\nx = gf(2).f_locals\n"}, "introspection"),
    ("stack-globals", {"loader.py": "import inspect\n\n\n"
                                    "def f():\n"
                                    "    for info in inspect.stack():\n"
                                    "        info.frame.f_globals['x'] = 1\n"}, "introspection"),
    ("settrace", {"loader.py": "import sys\nsys.settrace(lambda *a: None)\n"}, "introspection"),
    ("threading-settrace", {"loader.py": "import threading\nthreading.settrace(lambda *a: None)\n"},
     "introspection"),
    ("audithook", {"loader.py": "import sys\nsys.addaudithook(lambda *a: None)\n"}, "introspection"),
    # the import system
    ("fake-module", {"loader.py": "import sys, types\n"
                                  "fake = types.ModuleType('torch')\n"
                                  "sys.modules['torch'] = fake\n"}, "import-system"),
    ("meta-path", {"loader.py": "import sys\n\n\n"
                                "class F:\n"
                                "    def find_spec(self, *a):\n"
                                "        return None\n\n\n"
                                "sys.meta_path.insert(0, F())\n"}, "import-system"),
    ("path-hooks", {"loader.py": "import sys\nsys.path_hooks.append(lambda p: None)\n"}, "import-system"),
    ("import-hook", {"loader.py": "import builtins\nbuiltins.__import__ = lambda *a, **k: None\n"},
     "import-system"),
    ("modules-update", {"loader.py": "import sys\nsys.modules.update({'numpy': object()})\n"}, "import-system"),
    ("modules-computed", {"loader.py": "import sys\nfor n in ['torch']:\n    sys.modules[n] = object()\n"},
     "import-system"),
    ("modules-del", {"loader.py": "import sys\ndel sys.modules['pytest']\n"}, "import-system"),
    ("modules-operator", {"loader.py": "import operator, sys\noperator.setitem(sys.modules, 'torch', object())\n"},
     "import-system"),
    ("dict-setitem-vars", {"loader.py": "import torch\ndict.__setitem__(vars(torch), 'equal', print)\n"},
     "comparison-patch"),
    ("dunder-import-sys", {"loader.py": "__import__('sys').modules['torch'].equal = print\n"}, "comparison-patch"),
    ("sitecustomize", {"sitecustomize.py": "x = 1\n"}, "import-system"),
    # builtins
    ("builtins-isinstance", {"loader.py": "import builtins\nbuiltins.isinstance = lambda *a: True\n"},
     "builtins-patch"),
    ("builtins-dict", {"loader.py": "__builtins__['len'] = lambda x: 0\n"}, "builtins-patch"),
    ("builtins-setattr-alias", {"loader.py": "import builtins as b\nsetattr(b, 'AssertionError', Exception)\n"},
     "builtins-patch"),
    ("assertion-error", {"loader.py": "AssertionError.__init__ = lambda self, *a: None\n"}, "builtins-patch"),
    ("forbiddenfruit", {"loader.py": "from forbiddenfruit import curse\n"}, "builtins-patch"),
    # dynamic code
    ("exec-b64", {"loader.py": "import base64\nexec(base64.b64decode('cHJpbnQoMSk='))\n"}, "dynamic-code"),
    ("exec-b64-payload", {"loader.py": f"import base64\nexec(base64.b64decode('{_PAYLOAD}'))\n"},
     "comparison-patch"),
    ("exec-zlib-payload", {"loader.py": f"import base64, zlib\nexec(zlib.decompress(base64.b64decode('{_ZPAYLOAD}')))\n"},
     "pytest-internals"),
    ("exec-constant-payload", {"loader.py": "import torch\nexec('torch.allclose = lambda *a, **k: True')\n"},
     "comparison-patch"),
    ("eval-chr", {"loader.py": "eval(''.join(chr(c) for c in [112, 114, 105, 110, 116]))\n"}, "dynamic-code"),
    ("exec-reversed-file", {"loader.py": "src = open('payload.txt').read()[::-1]\nexec(src)\n"}, "dynamic-code"),
    ("compile-rot13", {"loader.py": "import codecs\ncompile(codecs.decode('vzcbeg bf', 'rot13'), 'x', 'exec')\n"},
     "dynamic-code"),
    ("marshal", {"loader.py": "import marshal\nexec(marshal.loads(b'\\xe3'))\n"}, "dynamic-code"),
    ("codetype", {"loader.py": "import types\nc = types.CodeType(0, 0, 0, 0, 0, 0, b'', (), (), (), '', '', '', 0, b'', b'', (), ())\n"},
     "dynamic-code"),
    ("code-swap", {"loader.py": "import torch.testing\n"
                                "torch.testing.assert_close.__code__ = (lambda *a, **k: None).__code__\n"},
     "dynamic-code"),
    ("co-code-replace", {"loader.py": "def f():\n    pass\n\n\nf.__code__.replace(co_code=b'')\n"},
     "dynamic-code"),
    ("exec-in-module", {"loader.py": "import sys\n"
                                     "for name, mod in list(sys.modules.items()):\n"
                                     "    exec('x = 1', mod.__dict__)\n"}, "library-patch"),
    # native code, processes, files
    ("pythonapi", {"loader.py": "import ctypes\nctypes.pythonapi.PyObject_SetAttr\n"}, "native-code"),
    ("kill-parent", {"loader.py": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"}, "process-exit"),
    ("proc-parent-mem", {"loader.py": "import os\nopen(f'/proc/{os.getppid()}/mem', 'rb')\n"}, "filesystem"),
    # clocks, test modules, libraries
    ("perf-counter", {"logits.py": "import time\ntime.perf_counter = lambda: 0.0\n"}, "clock-patch"),
    ("cuda-event", {"logits.py": "import torch\ntorch.cuda.Event.elapsed_time = lambda self, end: 0.1\n"},
     "clock-patch"),
    ("do-bench", {"logits.py": "import triton.testing as tt\ntt.do_bench = lambda *a, **k: 0.001\n"},
     "clock-patch"),
    ("slow-baseline", {"logits.py": "import baseline\nbaseline.process_logits_baseline = print\n"}, "test-patch"),
    ("test-module", {"loader.py": "import test_resume\ntest_resume.test_resume_mid_epoch = lambda: None\n"},
     "test-patch"),
    ("test-modules-via-sys", {"loader.py": "import sys\n"
                                           "for name, mod in list(sys.modules.items()):\n"
                                           "    if name.startswith('test_'):\n"
                                           "        setattr(mod, 'test_x', lambda: None)\n"}, "library-patch"),
    ("seed-patch", {"loader.py": "import numpy as np\nnp.random.seed = lambda *a: None\n"}, "library-patch"),
    ("cuda-available", {"loader.py": "import torch\ntorch.cuda.is_available = lambda: False\n"}, "library-patch"),
    ("reachable-test-file", {"loader.py": "from test_helpers import setup\n",
                             "test_helpers.py": "import torch\n"
                                                "torch.cuda.is_available = lambda: False\n\n\n"
                                                "def setup():\n    pass\n"}, "library-patch"),
    ("unchecked-pyc", {"loader.py": "x = 1\n",
                       "__pycache__/loader.cpython-311.pyc": b"\xa7\r\r\n\x01\x00\x00\x00" + b"\0" * 8},
     "dynamic-code"),
]


@pytest.mark.parametrize("files,rule", [(f, r) for _, f, r in HOSTILE], ids=[i for i, _, _ in HOSTILE])
def test_hostile_snippet_is_tamper(tmp_path: Path, files: dict[str, str], rule: str) -> None:
    findings = scan_submission(_write(tmp_path, files))
    tampers = _tamper(findings)
    assert any(f.rule == rule for f in tampers), findings


# ------------------------------------------------------------------ honest snippets

HONEST: list[tuple[str, dict[str, str]]] = [
    ("data-loader", {"loader.py": '''\
import os
import numpy as np
import torch
from torch.utils.data import IterableDataset, DataLoader, get_worker_info


class Shards(IterableDataset):
    def __init__(self, paths, seed=0, **kw):
        super().__init__()
        self.paths, self.seed = list(paths), seed
        self.rank = int(os.environ.get("RANK", "0"))
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        for k, v in kw.items():
            setattr(self, k, v)

    def state_dict(self):
        return {k: getattr(self, k) for k in ("seed", "rank")}

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        rng = np.random.default_rng([self.seed, wid])
        for i in rng.permutation(len(self.paths))[self.rank * nw + wid::self.world * nw]:
            yield torch.from_numpy(np.load(self.paths[i]))


def loader(paths):
    return DataLoader(Shards(paths), batch_size=8, num_workers=2, persistent_workers=True)
'''}),
    ("training-loop", {"train.py": '''\
import gc
import os
import sys
import time
import torch
import torch.nn.functional as F

torch.manual_seed(0)
torch.backends.cudnn.benchmark = True
torch.backends.cuda.matmul.allow_tf32 = True
torch._dynamo.config.suppress_errors = True
torch._inductor.config.coordinate_descent_tuning = True
os.environ["MASTER_ADDR"] = os.environ.get("MASTER_ADDR", "localhost")
sys.path.insert(0, os.path.dirname(__file__))


def train(model, data, steps):
    opt = torch.optim.AdamW(model.parameters())
    model.train()
    t0 = time.perf_counter()
    for step, (x, y) in enumerate(data):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step % 50 == 0:
            gc.collect()
            print(step, loss.item(), time.perf_counter() - t0)
    model.eval()
    return model
'''}),
    ("triton-kernel", {"kernel.py": '''\
import torch
import triton
import triton.language as tl


@triton.autotune(configs=[triton.Config({"BLOCK": 1024}, num_warps=4)], key=["n"])
@triton.jit
def add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) + tl.load(y_ptr + offs, mask=mask), mask=mask)


def add(x, y):
    out = torch.empty_like(x)
    add_kernel[(triton.cdiv(x.numel(), 1024),)](x, y, out, x.numel())
    return out
'''}),
    ("torch-compile", {"model.py": '''\
import functools
import inspect
import torch


@torch.compile(mode="reduce-overhead")
def fused(x, w):
    return torch.softmax(x @ w, dim=-1)


def check(x, w):
    torch.testing.assert_close(fused(x, w), torch.softmax(x @ w, dim=-1))
    assert torch.allclose(fused(x, w), fused(x, w))
    return inspect.signature(fused)


compiled = torch.compile(torch.nn.Linear(4, 4))
'''}),
    ("own-pytest-file", {"loader.py": "def read(p):\n    return p\n", "test_loader.py": '''\
import importlib.util
import sys
import pytest
import torch
import loader


@pytest.fixture
def data(tmp_path):
    return tmp_path


@pytest.mark.parametrize("n", [1, 2])
def test_read(data, n, monkeypatch):
    monkeypatch.setattr(loader, "read", lambda p: n)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("RANK", "1")
    assert loader.read(data) == n
    with pytest.raises(ZeroDivisionError):
        1 / 0


def test_load_by_path(tmp_path):
    spec = importlib.util.spec_from_file_location("copy", tmp_path / "x.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["copy_of_loader"] = module
'''}),
    ("library-idioms", {"compat.py": '''\
import ctypes
import sys
import types

__spec__.submodule_search_locations = []
sys.modules[__name__ + ".compat"] = types.ModuleType(__name__ + ".compat")
lib = ctypes.CDLL(None)
lib.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong]


def caller_module():
    return sys._getframe(1).f_globals.get("__name__", "__main__")


class Node:
    def link(self, root, other):
        next = root.left
        other.next = next
        next.prev = other
        prev = next
        prev.value = 1


results = {"nodeid_count": 3, "outcome": "ok"}
'''}),
    ("hidden-states", {"probe.py": '''\
import os
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "hidden"
CWD_OUT = Path.cwd() / "runs" / "hidden_states"


def dump(acts, name):
    OUT.mkdir(exist_ok=True)
    np.save(OUT / f"{name}.npy", acts)
    np.save(os.path.join(os.path.dirname(__file__), "hidden", name), acts)
'''}),
    ("misc-honest", {"util.py": '''\
import base64
import codecs
import importlib
import os
import re
import zlib


class Config:
    def __init__(self, **kw):
        self.__dict__.update(kw)

    def compile(self):
        return re.compile(self.pattern)


def decode(record):
    return zlib.decompress(base64.b64decode(record["blob"]))


def plugin(name):
    return importlib.import_module(f"mypkg.plugins.{name}")


def text(raw):
    return codecs.decode(raw, "utf-8")


RANK = int(os.environ.get("LOCAL_RANK", 0))
'''}),
]


@pytest.mark.parametrize("files", [f for _, f in HONEST], ids=[i for i, _ in HONEST])
def test_honest_snippet_has_no_tamper(tmp_path: Path, files: dict[str, str]) -> None:
    findings = scan_submission(_write(tmp_path, files))
    assert _tamper(findings) == [], findings


def test_honest_fixture_submission_has_no_tamper_but_is_reviewed() -> None:
    findings = scan_submission(HONEST_FIXTURE, max_findings=500)
    assert _tamper(findings) == [], _tamper(findings)
    reviewed = {(f.file, f.rule) for f in findings}
    # the borderline constructs are shown to the grader, not charged
    assert ("train.py", "introspection") in reviewed          # gc.get_objects, inspect.currentframe
    assert ("train.py", "dynamic-code") in reviewed           # exec(open(config).read()), eval(f"torch.{x}")
    assert ("train.py", "builtins-patch") in reviewed         # builtins.print silenced on other ranks
    assert ("tests/test_loader.py", "pytest-internals") in reviewed  # from _pytest.monkeypatch import ...


def test_same_code_is_lenient_in_an_unimported_test_file_only(tmp_path: Path) -> None:
    patch = "import torch\ntorch.cuda.is_available = lambda: False\n\n\ndef setup():\n    pass\n"
    lone = scan_submission(_write(tmp_path / "a", {"loader.py": "x = 1\n", "test_helpers.py": patch}))
    assert _tamper(lone) == [] and any(f.rule == "library-patch" for f in lone)
    imported = scan_submission(_write(tmp_path / "b", {"loader.py": "import test_helpers\n",
                                                       "test_helpers.py": patch}))
    assert [(f.file, f.rule) for f in _tamper(imported)] == [("test_helpers.py", "library-patch")]


# ------------------------------------------------------------------ bundled submissions

def _bundled() -> list[tuple[str, Path, bool]]:
    """(id, folder, flagged): every reference and calibration submission; flagged when its
    exercise.toml says the calibration is flagged (a deliberate tamperer)."""
    out = [(f"reference/{p.name}", p, False) for p in sorted((PROJECT / "reference").iterdir()) if p.is_dir()]
    for toml in sorted((PROJECT / "exercises").glob("*/exercise.toml")):
        flaws = {c["name"]: c.get("flaw", "") for c in tomllib.loads(toml.read_text()).get("calibration", [])}
        for folder in sorted((toml.parent / "calibration").iterdir()):
            if folder.is_dir():
                out.append((f"{toml.parent.name}/{folder.name}", folder, "flagged" in flaws.get(folder.name, "")))
    return out


@pytest.mark.parametrize("folder,flagged", [(p, f) for _, p, f in _bundled()], ids=[i for i, _, _ in _bundled()])
def test_references_and_calibrations(folder: Path, flagged: bool) -> None:
    tampers = _tamper(scan_submission(folder))
    if flagged:
        # timer-patch replaces the clocks and the baseline at import: that is tampering
        assert any(f.rule == "clock-patch" for f in tampers), tampers
    else:
        assert tampers == [], tampers


def test_every_bundled_folder_is_covered() -> None:
    ids = [i for i, _, _ in _bundled()]
    assert "reference/data-loader" in ids and "inference-latency/timer-patch" in ids
    assert len(ids) >= 19


# ------------------------------------------------------------------ hostile input

def test_unparseable_files_fall_back_to_the_text_scan(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "syntax.py": "def add(a, b)\n    return a + b\n",
        "nul.py": b"x = 1\x00\n",
        "deep.py": "x = " + "1 + " * 200_000 + "1\n",
        "notnot.py": "x = " + "not " * 100_000 + "a\n",
        "badutf8.py": b"x = '\xff\xfe'\n",
        "badcookie.py": b"# -*- coding: no-such-codec -*-\nx = 1\n",
        "comment_only.py": "def f(:\n    pass  # see _pytest/python_api.py\n",
    })
    findings = scan_submission(root)
    unparsed = {f.file for f in findings if f.rule == "unparsed"}
    assert unparsed == {"syntax.py", "nul.py", "deep.py", "notnot.py", "badutf8.py", "badcookie.py",
                        "comment_only.py"}
    assert _tamper(findings) == []  # the _pytest mention is in a comment


def test_two_mib_of_nested_parentheses(tmp_path: Path) -> None:
    (tmp_path / "bomb.py").write_text("(" * (MAX_FILE_BYTES - 16) + "\n# mlgrade\n")
    start = time.monotonic()
    findings = scan_submission(tmp_path)
    assert time.monotonic() - start < 1.0
    assert {(f.file, f.rule) for f in findings} >= {("bomb.py", "unparsed"), ("bomb.py", "grader-env")}


def test_deep_but_parseable_code_and_long_chains(tmp_path: Path) -> None:
    _write(tmp_path, {
        "chain.py": "x = " + " + ".join(["'a'"] * 20_000) + "\nimport torch\ntorch.equal = print\n",
        "nested.py": "x = " + "[" * 150 + "'/mlgrade/tests'" + "]" * 150 + "\n",
        "attrs.py": "x = a" + ".b" * 500 + "\n",
    })
    findings = scan_submission(tmp_path)
    tampered = {(f.file, f.rule) for f in _tamper(findings)}
    assert ("chain.py", "comparison-patch") in tampered and ("nested.py", "hidden-tests") in tampered


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    outside = _write(tmp_path / "outside", {"evil.py": "import _pytest\n", "sub/evil2.py": "import _pytest\n"})
    root = _write(tmp_path / "sub", {"loader.py": "x = 1\n"})
    os.symlink(outside / "evil.py", root / "linked.py")
    os.symlink(outside / "sub", root / "linked_dir")
    os.symlink(root / "missing.py", root / "dangling.py")
    assert scan_submission(root) == []


def test_files_over_the_size_limit_are_not_read(tmp_path: Path) -> None:
    _write(tmp_path, {"big.py": "import _pytest\n" + "#" * MAX_FILE_BYTES + "\n",
                      "data.bin": b"_pytest mlgrade" + b"\0" * MAX_FILE_BYTES})
    findings = scan_submission(tmp_path)
    assert [(f.file, f.line, f.rule, f.severity) for f in findings] == [("big.py", 0, "unparsed", "review")]


def test_cap_keeps_tamper_first_and_sorts(tmp_path: Path) -> None:
    noisy = "".join(f"# mlgrade note {i}\n" for i in range(100))
    _write(tmp_path, {"a_notes.py": noisy, "z_loader.py": "import torch\ntorch.equal = print\n"})
    findings = scan_submission(tmp_path, max_findings=10)
    assert len(findings) == 10
    assert [f.file for f in findings][-1] == "z_loader.py" and findings[-1].severity == "tamper"
    assert findings == sorted(findings, key=lambda f: (f.file, f.line))
    assert len(scan_submission(tmp_path, max_findings=0)) == 0
    assert len(scan_submission(tmp_path, max_findings=500)) == 101


def test_findings_are_deduplicated_per_line_and_rule(tmp_path: Path) -> None:
    _write(tmp_path, {"m.py": "import torch\ntorch.equal = torch.allclose = torch.isclose = print\n"})
    findings = scan_submission(tmp_path)
    assert [(f.line, f.rule, f.severity) for f in findings] == [(2, "comparison-patch", "tamper")]


def test_excerpt_is_one_short_printable_line(tmp_path: Path) -> None:
    line = "import torch; torch.equal = print  # \u202egnirts\x1b[31m " + "x" * 300
    _write(tmp_path, {"m.py": line + "\n"})
    finding = _tamper(scan_submission(tmp_path))[0]
    assert finding.line == 1 and len(finding.excerpt) <= 160 and finding.excerpt.isprintable()
    assert "\\u202e" in finding.excerpt and "\\x1b" in finding.excerpt
    assert finding.excerpt.startswith("import torch; torch.equal = print")


def test_finding_shape(tmp_path: Path) -> None:
    _write(tmp_path, {"pkg/mod.py": "import mlgrade_plugin\n"})
    (finding,) = scan_submission(tmp_path)
    assert finding == Finding("pkg/mod.py", 1, "events-channel", "tamper", "import mlgrade_plugin")
    with pytest.raises(dataclasses.FrozenInstanceError):
        finding.line = 2  # type: ignore[misc]


def test_padding_cannot_push_a_payload_past_the_parse_budget(tmp_path: Path) -> None:
    """Python is parsed smallest file first up to a budget; bigger files are text-searched only."""
    from grader.scan import PARSE_BUDGET_BYTES
    padding = 'X = "' + "a" * (MAX_FILE_BYTES - 16) + '"\n'
    count = PARSE_BUDGET_BYTES // len(padding) + 2
    files: dict[str, str | bytes] = {f"pad{i}.py": padding for i in range(count)}
    files["loader.py"] = "import _pytest.runner as r\nr.call_and_report = lambda *a, **k: None\n"
    found = scan_submission(_write(tmp_path, files))
    assert any(f.file == "loader.py" and f.severity == "tamper" for f in found)
    skipped = [f for f in found if f.rule == "unparsed" and "text search only" in f.excerpt]
    assert skipped and all(f.file.startswith("pad") for f in skipped)
