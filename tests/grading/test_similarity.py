"""Similarity across a round on real data-loader code: the reference, its calibrations, a disguised
copy (locals renamed, every line reformatted, comments and docstrings rewritten), an independent
rewrite written here in another style, and hostile archives. Nothing is mocked.
"""
from __future__ import annotations

import io
import os
import json
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
import tokenize
import zipfile
from pathlib import Path

import pytest

from grader import similarity
from grader.batch.layout import CANDIDATES, LEDGER, LEDGER_SCHEMA, read_round
from grader.errors import BadInput
from grader.exercises import load_exercise
from grader.similarity import (DEFAULT_THRESHOLD, SIMILARITY_FILE, SimilarPair, compare, compare_round,
                               load_similarity, read_similarity, similar_pairs, similarity_for_round,
                               write_similarity)
from tests.conftest import PROJECT

EXERCISE = PROJECT / "exercises" / "data-loader"
STARTER = EXERCISE / "starter"
REFERENCE = PROJECT / "reference" / "data-loader"
REQUIRED = ["loader.py", "collate.py"]
CALIBRATIONS = sorted(p for p in (EXERCISE / "calibration").iterdir() if p.is_dir())

# -- an independent implementation, written for this test in another style -----------------

REWRITE_LOADER = '''\
"""My take on the sharded dataset: one flat index, then slice it per rank and worker."""
import random

import torch
from torch.utils.data import IterableDataset, get_worker_info

from shards import read_shard, shard_num_samples


class ShardedTokenDataset(IterableDataset):
    def __init__(self, shard_paths, *, seed=0, shuffle=True, rank=0, world_size=1,
                 mask_prob=0.0, mask_token_id=None):
        super().__init__()
        if world_size < 1 or rank < 0 or rank >= world_size:
            raise ValueError("bad rank/world_size")
        if seed < 0 or mask_prob < 0 or mask_prob > 1:
            raise ValueError("bad seed or mask_prob")
        if mask_prob > 0 and mask_token_id is None:
            raise ValueError("need a mask token")
        self.paths = list(shard_paths)
        self.seed, self.shuffle = seed, shuffle
        self.rank, self.world = rank, world_size
        self.p, self.mask_id = mask_prob, mask_token_id
        self.epoch = 0
        self.skip = 0
        self.seen = 0

    def set_epoch(self, epoch):
        if epoch != self.epoch:
            self.skip = self.seen = 0
        self.epoch = epoch

    def state_dict(self):
        return {"epoch": self.epoch, "seen": self.seen}

    def load_state_dict(self, state):
        self.epoch = state["epoch"]
        self.skip = self.seen = state["seen"]

    def _index(self):
        # every (shard, row) pair of the data set, in this epoch's order
        pairs = []
        for s, path in enumerate(self.paths):
            pairs += [(s, r) for r in range(shard_num_samples(path))]
        if self.shuffle:
            random.Random(self.seed * 100003 + self.epoch).shuffle(pairs)
        return pairs

    def __iter__(self):
        everything = self._index()
        n = len(everything)
        mine = everything[self.rank * n // self.world:(self.rank + 1) * n // self.world][self.skip:]
        w = get_worker_info()
        if w is not None:
            mine = mine[w.id::w.num_workers]
        cache = {}
        for k, (s, r) in enumerate(mine):
            if s not in cache:
                cache = {s: read_shard(self.paths[s])}
            tokens = torch.tensor(cache[s].sequence(r), dtype=torch.long)
            ids = tokens.clone()
            sid = int(cache[s].sample_ids[r])
            if self.p > 0:
                g = torch.Generator().manual_seed((self.seed * 7919 + self.epoch) * 1000003 + sid)
                ids[torch.rand(len(ids), generator=g) < self.p] = self.mask_id
            self.seen = self.skip + k + 1
            yield {"sample_id": sid, "input_ids": ids, "labels": tokens}
'''

REWRITE_COLLATE = '''\
import torch

IGNORE_INDEX = -100


class PadCollator:
    def __init__(self, pad_id=0, max_length=None):
        self.pad = pad_id
        self.cap = max_length

    def __call__(self, batch):
        if not batch:
            raise ValueError("empty batch")
        seqs = [torch.as_tensor(b["input_ids"]).long()[: self.cap] for b in batch]
        labs = [torch.as_tensor(b["labels"]).long()[: self.cap] for b in batch]
        n = [len(x) for x in seqs]
        out = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=self.pad)
        lab = torch.nn.utils.rnn.pad_sequence(labs, batch_first=True, padding_value=IGNORE_INDEX)
        mask = torch.zeros_like(out)
        for i, m in enumerate(n):
            mask[i, :m] = 1
        return {"input_ids": out, "attention_mask": mask, "labels": lab,
                "lengths": torch.tensor(n), "sample_ids": torch.tensor([int(b["sample_id"]) for b in batch])}
'''

# A second one, numpy-based with a strided split and a PCG64 per shard.

OTHER_LOADER = '''\
"""Streaming dataset over token shards (numpy-based, strided worker split)."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

import shards as shard_io


def _order(n: int, seed: int, *salt: int) -> np.ndarray:
    gen = np.random.Generator(np.random.PCG64([seed, *salt]))
    return gen.permutation(n)


class ShardedTokenDataset(IterableDataset):
    """Yields every sample once per epoch; rank r takes every world_size-th block."""

    def __init__(self, shard_paths, *, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1, mask_prob: float = 0.0, mask_token_id=None):
        super().__init__()
        checks = [
            (world_size >= 1, "world_size"),
            (0 <= rank < world_size, "rank"),
            (seed >= 0, "seed"),
            (0.0 <= mask_prob <= 1.0, "mask_prob"),
            (mask_prob == 0 or mask_token_id is not None, "mask_token_id"),
        ]
        for ok, what in checks:
            if not ok:
                raise ValueError(f"invalid {what}")
        self._files = [str(p) for p in shard_paths]
        self._cfg = dict(seed=seed, shuffle=shuffle, rank=rank, world=world_size)
        self._mask = (mask_prob, mask_token_id)
        self._ep = 0
        self._done = 0
        self._resume = 0

    def set_epoch(self, epoch: int) -> None:
        self._ep, self._done, self._resume = epoch, 0, 0

    def state_dict(self) -> dict:
        return dict(epoch=self._ep, done=self._done)

    def load_state_dict(self, state: dict) -> None:
        self._ep = int(state["epoch"])
        self._done = self._resume = int(state["done"])

    def _global_order(self) -> list[tuple[int, int]]:
        counts = [shard_io.shard_num_samples(f) for f in self._files]
        seed, shuffle = self._cfg["seed"], self._cfg["shuffle"]
        visit = _order(len(counts), seed, self._ep) if shuffle else range(len(counts))
        flat = []
        for sh in visit:
            rows = _order(counts[sh], seed, self._ep, 1 + int(sh)) if shuffle else range(counts[sh])
            flat.extend((int(sh), int(r)) for r in rows)
        return flat

    def __iter__(self):
        flat = self._global_order()
        world, rank = self._cfg["world"], self._cfg["rank"]
        per_rank = np.array_split(np.arange(len(flat)), world)[rank][self._resume:]
        info = get_worker_info()
        if info is not None:
            per_rank = np.array_split(per_rank, info.num_workers)[info.id]
        loaded: tuple[int, object] | None = None
        prob, token = self._mask
        for count, g in enumerate(per_rank, start=1):
            sh, row = flat[g]
            if loaded is None or loaded[0] != sh:
                loaded = (sh, shard_io.read_shard(self._files[sh]))
            data = loaded[1]
            seq = np.asarray(data.sequence(row), dtype=np.int64).copy()
            sid = int(data.sample_ids[row])
            labels = torch.from_numpy(seq)
            inputs = labels.clone()
            if prob > 0:
                coin = np.random.default_rng([self._cfg["seed"], self._ep, sid, 7]).random(len(seq))
                inputs[torch.from_numpy(coin < prob)] = token
            self._done = self._resume + count
            yield dict(sample_id=sid, input_ids=inputs, labels=labels)
'''

OTHER_COLLATE = '''\
"""Right-padding collate."""
from __future__ import annotations

import numpy as np
import torch

IGNORE_INDEX = -100


class PadCollator:
    def __init__(self, pad_id: int = 0, max_length: int | None = None) -> None:
        if max_length is not None and max_length <= 0:
            raise ValueError("max_length must be positive")
        self.pad_id, self.max_length = pad_id, max_length

    def _row(self, values) -> np.ndarray:
        arr = np.asarray(values.tolist() if hasattr(values, "tolist") else list(values))
        if arr.dtype.kind not in "iu" and arr.size:
            raise TypeError("token ids must be integers")
        return arr.astype(np.int64)[: self.max_length]

    def __call__(self, samples):
        if len(samples) == 0:
            raise ValueError("no samples")
        rows = [(self._row(s["input_ids"]), self._row(s["labels"])) for s in samples]
        longest = max(len(r[0]) for r in rows)
        ids = np.full((len(rows), longest), self.pad_id, dtype=np.int64)
        lab = np.full((len(rows), longest), IGNORE_INDEX, dtype=np.int64)
        att = np.zeros((len(rows), longest), dtype=np.int64)
        for i, (x, y) in enumerate(rows):
            ids[i, : len(x)], lab[i, : len(y)], att[i, : len(x)] = x, y, 1
        return {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(att),
            "labels": torch.from_numpy(lab),
            "lengths": torch.tensor([len(r[0]) for r in rows]),
            "sample_ids": torch.tensor([int(s["sample_id"]) for s in samples]),
        }
'''

# -- a disguised copy -----------------------------------------------------------------------

LOADER_RENAMES = {
    "sizes": "shard_lengths", "total": "n_all", "rank_lo": "base", "rank_len": "count", "remaining": "left",
    "lo": "begin", "hi": "end", "shard_order": "visit", "offset": "cursor", "shard_index": "which",
    "n": "length", "first": "from_pos", "last": "to_pos", "shard": "chunk", "rows": "perm",
    "shard_start": "chunk_start", "pos": "at", "sample": "item", "info": "winfo", "num_workers": "n_workers",
    "worker_id": "me", "position": "where", "key": "parts", "hit": "masked", "labels": "targets",
    "sample_id": "sid", "epoch": "ep", "start": "begin_at"}
COLLATE_RENAMES = {
    "values": "raw", "tensor": "flat", "ids_list": "all_ids", "labels_list": "all_labels", "ids": "one_ids",
    "labels": "one_labels", "lengths": "lens", "width": "longest", "size": "dims", "input_ids": "padded_ids",
    "lab": "lab_row", "attention_mask": "att", "sample": "entry", "batch": "samples"}


def _disguise(code: str, renames: dict[str, str], variant: int = 0) -> str:
    """code with names renamed, every comment and docstring rewritten and every line re-spaced
    (untokenize without positions puts its own spacing around each token)."""
    names = {tok.string for tok in tokenize.generate_tokens(io.StringIO(code).readline) if tok.type == tokenize.NAME}
    assert not names & {f"{new}{variant or ''}" for new in renames.values()}, "a new name would collide"
    out: list[tuple[int, str]] = []
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        kind, text = tok.type, tok.string
        after_dot = bool(out) and out[-1] == (tokenize.OP, ".")
        if kind == tokenize.NAME and text in renames and not after_dot:  # locals, not attributes
            text = f"{renames[text]}{variant or ''}"
        elif kind == tokenize.COMMENT:
            text = f"# note {variant}"
        elif kind == tokenize.STRING and text.startswith('"""'):
            text = f'"""Rewritten docs {variant}."""'
        out.append((kind, text))
    result = tokenize.untokenize(out)
    compile(result, "disguised", "exec")  # still Python
    return result


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def _disguised(folder: Path, variant: int = 0) -> Path:
    return _write(folder, {"loader.py": _disguise((REFERENCE / "loader.py").read_text(), LOADER_RENAMES, variant),
                           "collate.py": _disguise((REFERENCE / "collate.py").read_text(), COLLATE_RENAMES, variant)})


def _rewrite(folder: Path) -> Path:
    return _write(folder, {"loader.py": REWRITE_LOADER, "collate.py": REWRITE_COLLATE})


def _other(folder: Path) -> Path:
    return _write(folder, {"loader.py": OTHER_LOADER, "collate.py": OTHER_COLLATE})


def _starter_copy(folder: Path) -> Path:
    shutil.copytree(STARTER, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def _zip(path: Path, folder: Path, top: str = "") -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(folder.iterdir()):
            archive.write(file, f"{top}{file.name}")
    return path


def _tar_gz(path: Path, folder: Path) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for file in sorted(folder.iterdir()):
            archive.add(file, file.name)
    return path


def _score(pairs: list[SimilarPair], x: str, y: str) -> float:
    a, b = sorted((x, y))
    return next(p.score for p in pairs if (p.a, p.b) == (a, b))


@pytest.fixture
def own_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temporary folders of the module go under tmp_path/tmp, so a test can see they are removed."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


# -- tests ----------------------------------------------------------------------------------

def test_disguised_copy_is_flagged(tmp_path: Path, own_tmp: Path) -> None:
    disguised = _disguised(tmp_path / "disguised")
    reference_lines = {line.strip() for line in (REFERENCE / "loader.py").read_text().splitlines()}
    lines = [line.strip() for line in (disguised / "loader.py").read_text().splitlines() if line.strip()]
    assert sum(line in reference_lines for line in lines) < 0.3 * len(lines)  # hardly a line is the same text

    pairs = similar_pairs({"ref": REFERENCE, "copy": disguised}, STARTER, required_files=REQUIRED)
    print(pairs)
    assert [(p.a, p.b) for p in pairs] == [("copy", "ref")]
    assert pairs[0].score >= 0.95
    assert "loader.py~loader.py" in pairs[0].detail and "collate.py~collate.py" in pairs[0].detail
    assert list(own_tmp.iterdir()) == []


def test_calibrations_are_one_change_copies_of_the_reference() -> None:
    submissions = {"reference": REFERENCE, **{c.name: c for c in CALIBRATIONS}}
    flagged = similar_pairs(submissions, STARTER, required_files=REQUIRED)
    scores = {(p.b if p.a == "reference" else p.a): p.score for p in flagged if "reference" in (p.a, p.b)}
    print({name: round(score, 3) for name, score in scores.items()})
    assert set(scores) == {c.name for c in CALIBRATIONS}
    assert min(scores.values()) >= 0.8
    assert [p.score for p in flagged] == sorted((p.score for p in flagged), reverse=True)


def test_only_the_starter_in_common_is_not_flagged(tmp_path: Path) -> None:
    # Each keeps the starter as given in one file and implements the other: all they share is the starter.
    collate_only = _starter_copy(tmp_path / "collate-only")
    (collate_only / "collate.py").write_text((REFERENCE / "collate.py").read_text())
    loader_only = _starter_copy(tmp_path / "loader-only")
    (loader_only / "loader.py").write_text(REWRITE_LOADER)
    submissions = {"starter-1": _starter_copy(tmp_path / "s1"), "starter-2": _starter_copy(tmp_path / "s2"),
                   "collate-only": collate_only, "loader-only": loader_only}

    pairs = similar_pairs(submissions, STARTER, threshold=0.0, required_files=REQUIRED)
    print([(p.a, p.b, p.score) for p in pairs])
    assert _score(pairs, "starter-1", "starter-2") == 0.0
    assert _score(pairs, "collate-only", "loader-only") < 0.1
    assert similar_pairs(submissions, STARTER, required_files=REQUIRED) == []

    # The starter's removal is what keeps them apart: compared without it, they are flagged.
    empty = tmp_path / "no-starter"
    empty.mkdir()
    unfiltered = similar_pairs(submissions, empty, required_files=REQUIRED)
    assert {("starter-1", "starter-2"), ("collate-only", "loader-only")} <= {(p.a, p.b) for p in unfiltered}


def test_independent_implementations_score_low(tmp_path: Path) -> None:
    submissions = {"ref": REFERENCE, "rewrite": _rewrite(tmp_path / "rewrite"), "other": _other(tmp_path / "other")}
    pairs = similar_pairs(submissions, STARTER, threshold=0.0, required_files=REQUIRED)
    print(pairs)
    assert len(pairs) == 3
    assert all(p.score < 0.1 < DEFAULT_THRESHOLD for p in pairs)


def test_one_copied_file_scores_by_its_share(tmp_path: Path) -> None:
    """The reference's loader with an own collate shares most of the code; the reference's collate with
    an own loader shares less than half: only the first is flagged at the default threshold."""
    loader_copied = _write(tmp_path / "loader-copied", {"loader.py": (REFERENCE / "loader.py").read_text(),
                                                        "collate.py": OTHER_COLLATE})
    collate_copied = _write(tmp_path / "collate-copied", {"loader.py": OTHER_LOADER,
                                                          "collate.py": (REFERENCE / "collate.py").read_text()})
    pairs = similar_pairs({"ref": REFERENCE, "loader-copied": loader_copied, "collate-copied": collate_copied},
                          STARTER, threshold=0.0, required_files=REQUIRED)
    print([(p.a, p.b, p.score) for p in pairs])
    assert _score(pairs, "ref", "loader-copied") > DEFAULT_THRESHOLD > _score(pairs, "ref", "collate-copied") > 0.2
    assert _score(pairs, "loader-copied", "collate-copied") < 0.1


def test_hostile_submissions_are_skipped_with_a_note(tmp_path: Path, own_tmp: Path) -> None:
    good = _disguised(tmp_path / "good")
    escape = tmp_path / "escape.zip"
    with zipfile.ZipFile(escape, "w") as archive:
        archive.writestr("loader.py", "x = 1\n")
        archive.writestr("collate.py", "y = 2\n")
        archive.writestr("../../evil.py", "import os\n")
    link = tmp_path / "link.tar.gz"
    with tarfile.open(link, "w:gz") as archive:
        info = tarfile.TarInfo("loader.py")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(info)
    huge = _disguised(tmp_path / "huge")
    (huge / "generated.py").write_text("".join(f"v{i} = {i}\n" for i in range(20_000)))  # over the per-file cap
    (huge / "__init__.py").write_text("")
    # Just under the caps, one token per character: the tokenizer's worst case is read, and bounded.
    dense = _write(tmp_path / "dense", {"loader.py": "x = [" + "a," * 30_000 + "]\n", "collate.py": "y = 1\n"})
    submissions = {"ref": REFERENCE, "good": good, "escape": escape, "link": link, "huge": huge,
                   "gone": tmp_path / "missing.zip", "dense": dense}

    started, cpu = time.monotonic(), time.process_time()
    result = compare(submissions, STARTER, required_files=REQUIRED)
    print(f"{time.monotonic() - started:.2f} s ({time.process_time() - cpu:.2f} s CPU)", result.notes)
    assert result.compared == ["dense", "good", "huge", "ref"]
    assert set(result.notes) == {"escape", "link", "huge", "gone"}
    assert "'..'" in result.notes["escape"] and "not compared" in result.notes["escape"]
    assert "link" in result.notes["link"]
    assert "generated.py not compared" in result.notes["huge"]
    assert all("\n" not in note for note in result.notes.values())
    assert {(p.a, p.b) for p in result.pairs} == {("good", "huge"), ("good", "ref"), ("huge", "ref")}
    assert list(own_tmp.iterdir()) == []
    assert not (tmp_path / "evil.py").exists() and not (tmp_path.parent / "evil.py").exists()


def test_twenty_submissions_of_a_round(tmp_path: Path) -> None:
    """The reference, its 7 calibrations, 7 disguised copies, 3 copies of a rewrite, another rewrite and
the starter, in folders, zips (with a top folder) and tar.gz files."""
    submissions: dict[str, Path] = {"reference": REFERENCE, **{c.name: c for c in CALIBRATIONS}}
    for i in range(1, 8):
        folder = _disguised(tmp_path / f"disguised-{i}", variant=i)
        submissions[f"disguised-{i}"] = (folder if i <= 2 else _zip(tmp_path / f"d{i}.zip", folder, top=f"d{i}/")
                                         if i <= 4 else _tar_gz(tmp_path / f"d{i}.tar.gz", folder))
    for i in range(1, 3):
        submissions[f"rewrite-{i}"] = _rewrite(tmp_path / f"rewrite-{i}")
    submissions["other"] = _other(tmp_path / "other")
    submissions["starter"] = _starter_copy(tmp_path / "starter")
    submissions["rewrite-zip"] = _zip(tmp_path / "rewrite.zip", _rewrite(tmp_path / "rewrite-z"))
    assert len(submissions) == 20

    started, cpu = time.monotonic(), time.process_time()
    result = compare(submissions, STARTER, required_files=REQUIRED)
    print(f"20 submissions, {len(result.pairs)} pairs flagged: {time.monotonic() - started:.2f} s "
          f"({time.process_time() - cpu:.2f} s CPU)")
    assert result.notes == {} and len(result.compared) == 20
    copies = {"reference", *(c.name for c in CALIBRATIONS), *(f"disguised-{i}" for i in range(1, 8))}
    rewrites = {"rewrite-1", "rewrite-2", "rewrite-zip"}
    flagged = {(p.a, p.b) for p in result.pairs}
    expected = {tuple(sorted((x, y))) for group in (copies, rewrites) for x in group for y in group if x != y}
    assert flagged == expected  # copies with copies, rewrites with rewrites, nothing across; not other, not starter


def _round(folder: Path, sources: dict[str, Path | str]) -> Path:
    folder.mkdir()
    with sqlite3.connect(folder / LEDGER) as db:
        db.executescript(LEDGER_SCHEMA)
        db.executemany("INSERT INTO round (name, value) VALUES (?, ?)",
                       [("exercise", "data-loader"), ("exercise_version", "x"), ("backend", "bwrap")])
        db.executemany("INSERT INTO submissions (candidate, source, content_hash, exercise_version, image_id, key, "
                       "state, gradings, percent, updated_at) VALUES (?, ?, '', 'x', '', '', 'graded', 1, 50.0, '')",
                       [(c, str(s)) for c, s in sources.items()])
    for candidate in sources:
        (folder / CANDIDATES / candidate).mkdir(parents=True)
    return folder


def test_a_round_and_its_json_round_trip(tmp_path: Path) -> None:
    disguised = _zip(tmp_path / "copy.zip", _disguised(tmp_path / "copy"))
    sources = {"alice": REFERENCE, "bob": disguised, "carol": _rewrite(tmp_path / "carol"),
               "dave": tmp_path / "deleted-since"}
    round_dir = _round(tmp_path / "round", sources)
    exercise = load_exercise(str(EXERCISE))

    pairs = similarity_for_round(read_round(round_dir), exercise)
    assert [(p.a, p.b) for p in pairs] == [("alice", "bob")]
    result = compare_round(read_round(round_dir), exercise)
    assert result.pairs == pairs and "no longer there" in result.notes["dave"]

    path = round_dir / SIMILARITY_FILE
    write_similarity(path, pairs)
    assert read_similarity(path) == pairs
    write_similarity(path, result)
    assert load_similarity(path) == result
    assert read_similarity(path) == pairs
    assert [p.name for p in round_dir.iterdir() if p.name.endswith(".partial")] == []
    assert json.loads(path.read_text())["pairs"][0]["a"] == "alice"

    path.write_text('{"version": 1, "pairs": [{"a": "x"}]}')
    with pytest.raises(BadInput) as refused:
        read_similarity(path)
    assert "\n" not in str(refused.value) and "not a similarity file" in str(refused.value)


def test_threshold_out_of_range_is_bad_input() -> None:
    with pytest.raises(BadInput):
        similar_pairs({}, STARTER, threshold=1.5)


def test_config_default_is_documented() -> None:
    docs = "\n".join(p.read_text() for p in (PROJECT / "docs").glob("*.md"))
    assert f"`DEFAULT_THRESHOLD = {similarity.DEFAULT_THRESHOLD}`" in docs


def test_scores_are_the_same_in_every_process(tmp_path: Path) -> None:
    """Hashes are not Python's salted hash(): two processes with different hash seeds agree."""
    script = ("import json, sys; from pathlib import Path; from grader.similarity import similar_pairs; "
              "pairs = similar_pairs({'ref': Path(sys.argv[1]), 'ws': Path(sys.argv[2]), 'other': Path(sys.argv[3])}, "
              "Path(sys.argv[4]), threshold=0.0, required_files=['loader.py', 'collate.py']); "
              "print(json.dumps([[p.a, p.b, p.score, p.detail] for p in pairs]))")
    args = [str(REFERENCE), str(EXERCISE / "calibration" / "whole-shards"), str(_other(tmp_path / "other")),
            str(STARTER)]
    runs = [subprocess.run([sys.executable, "-c", script, *args], cwd=PROJECT, capture_output=True, text=True,
                           check=True, env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")]
    assert runs[0] == runs[1] and len(json.loads(runs[0])) == 3
