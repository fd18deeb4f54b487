"""Similarity across a round: pairs of submissions that share most of their code beyond the starter.

Winnowing as MOSS does it (Schleimer, Wilkerson, Aiken, SIGMOD 2003): each file is tokenized with
Python's `tokenize` and normalised (identifiers -> V, strings -> S, numbers -> N; keywords, builtins
and operators kept; comments, layout and line breaks dropped), every k-gram of the normalised text
is hashed, and the minimum hash of each window of w consecutive k-grams is a fingerprint: a shared
run of `guarantee_chars` normalised characters is always seen, one shorter than `noise_chars` never.
Fingerprints that also occur in the exercise's starter are removed, so code every candidate was
given never counts. Required files that are not Python (review.json) are compared as text with
whitespace and case dropped.

A pair's score is the share of the smaller side's fingerprints found in the other, over the whole
submission (a function moved to another file still matches); the smaller side counts as at least
`min_fingerprints`, so a submission that adds a few lines to the starter cannot reach 1.0 on them.

Why not the `copydetect` package (0.5, which does the same with pygments): its k-gram hashes are
Python's salted `hash()`, so the fingerprints winnowing picks and the scores change from run to run
(reference vs whole-shards scored 0.863-0.866 and reference vs a rewrite 0.030-0.037 over three
runs); pygments lexes hostile input about 5x slower than `tokenize` (1.4 s against 0.26 s for 120k
tokens); its boilerplate removal calls np.intersect1d(assume_unique=True) on hashes that repeat;
and importing it imports matplotlib (0.5 s). Hashing here is a polynomial over the characters
modulo 2**64 with a splitmix64 finaliser, in numpy: the same fingerprints on every run and machine.

Submissions are read only through `grader.intake.intake` (the same checks as grading; refused ones
are skipped with their reason) into a temporary folder removed afterwards, and only Python and
required files under size caps are read, so a hostile submission costs a bounded amount of time
and memory (see Config).
"""
from __future__ import annotations

import builtins
import io
import json
import keyword
import os
import tempfile
import tokenize
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .cleanup import remove_tree
from .errors import BadInput, InfraError
from .intake import intake
from .outdir import Out, one_line, write_files

if TYPE_CHECKING:
    from .batch.layout import Round
    from .exercises import Exercise

SIMILARITY_FILE = "similarity.json"  # DIR/similarity.json, beside the ledger
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Config:
    noise_chars: int = 25            # k: normalised characters per k-gram; shorter matches never count
    guarantee_chars: int = 30        # a shared run this long is always seen (window = guarantee - noise + 1)
    min_fingerprints: int = 50       # the smaller side counts as at least this many (tiny additions score low)
    # Tokenizing costs about 2 s per MiB of hostile text (a token per character) and 14 bytes of
    # memory per character kept; honest submissions of the shipped exercises hold 8-40 KiB.
    max_file_bytes: int = 64 * 1024            # a larger file is not read (noted)
    max_submission_bytes: int = 128 * 1024     # files past this total are not read (noted)
    max_name_shown: int = 60


CONFIG = Config()
# Measured on data-loader (docs/similarity.md): one-change copies and a renamed, reformatted copy
# score 0.86-1.0, independent implementations 0.04, submissions that share only the starter 0.
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class SimilarPair:
    a: str          # candidate ids, a < b
    b: str
    score: float    # 0..1: share of the smaller side's non-starter fingerprints found in the other
    detail: str     # one line: how much is shared and in which files


@dataclass(frozen=True)
class Similarity:
    """The result of comparing a round's submissions."""
    pairs: list[SimilarPair]                                # score >= threshold, high first
    threshold: float
    compared: list[str] = field(default_factory=list)       # candidates fingerprinted
    notes: dict[str, str] = field(default_factory=dict)     # candidate -> what was not compared and why


# -- normalising ----------------------------------------------------------------------------

_KEPT_NAMES = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | {"self", "cls"}
_DROPPED = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENCODING, tokenize.ENDMARKER}
_STRING_START = getattr(tokenize, "FSTRING_START", -1)         # Python 3.12 splits f-strings
_STRING_REST = {getattr(tokenize, "FSTRING_MIDDLE", -2), getattr(tokenize, "FSTRING_END", -3)}


def _normalise_python(code: str) -> tuple[str, list[int]]:
    """The tokens of code as one normalised string, and the source line of each of its characters."""
    parts: list[str] = []
    lines: list[int] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            kind = tok.type
            if kind in _DROPPED or kind in _STRING_REST:
                continue
            if kind == tokenize.NAME:
                text = tok.string if tok.string in _KEPT_NAMES else "V"
            elif kind == tokenize.STRING or kind == _STRING_START:
                text = "S"
            elif kind == tokenize.NUMBER:
                text = "N"
            elif kind == tokenize.ERRORTOKEN:
                text = "?" if tok.string.strip() else ""
            else:
                text = tok.string
            parts.append(text)
            lines.extend([tok.start[0]] * len(text))
    except (tokenize.TokenError, SyntaxError):  # intake compiled it; still, keep what was read
        pass
    return "".join(parts), lines


def _normalise_text(code: str) -> tuple[str, list[int]]:
    parts: list[str] = []
    lines: list[int] = []
    for number, line in enumerate(code.splitlines(), 1):
        text = "".join(line.split()).lower()
        parts.append(text)
        lines.extend([number] * len(text))
    return "".join(parts), lines


_BASE = np.uint64(0x100000001B3)


def _kgram_hashes(text: str, k: int) -> np.ndarray:
    """A 64-bit hash of every k-gram of text (polynomial mod 2**64, then splitmix64's finaliser)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.uint64)
    n = len(codes) - k + 1
    if n <= 0:
        return np.zeros(0, dtype=np.uint64)
    h = np.zeros(n, dtype=np.uint64)
    for j in range(k):  # wraps modulo 2**64, as intended
        h = h * _BASE + codes[j:j + n]
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


def _winnow(hashes: np.ndarray, window: int) -> np.ndarray:
    """The minimum of every window of hashes, sorted and unique: the fingerprints."""
    if len(hashes) == 0:
        return hashes
    window = min(window, len(hashes))
    return np.unique(sliding_window_view(hashes, window).min(axis=1))


@dataclass
class _File:
    name: str
    hashes: np.ndarray        # of every k-gram
    lines: np.ndarray         # source line of each normalised character
    prints: np.ndarray        # sorted unique fingerprints, the starter's removed


def _fingerprint(name: str, code: str, config: Config, starter: np.ndarray | None = None) -> _File:
    text, lines = (_normalise_python if name.endswith(".py") else _normalise_text)(code)
    hashes = _kgram_hashes(text, config.noise_chars)
    prints = _winnow(hashes, config.guarantee_chars - config.noise_chars + 1)
    if starter is not None and len(starter):
        prints = np.setdiff1d(prints, starter, assume_unique=True)
    return _File(name=name, hashes=hashes, lines=np.array(lines, dtype=np.int32), prints=prints)


# -- reading submissions --------------------------------------------------------------------

@dataclass
class _Side:
    candidate: str
    files: list[_File]
    prints: np.ndarray        # union over its files


def _name(name: str, config: Config) -> str:
    name = one_line(name)
    return name if len(name) <= config.max_name_shown else "…" + name[-(config.max_name_shown - 1):]


def _read_files(root: Path, files: Iterable[str], required: list[str], config: Config,
                notes: list[str]) -> list[tuple[str, str]]:
    """(relative name, text) of the Python and required files under root, required ones first,
    within the size caps; what is left out is added to notes."""
    wanted = [f for f in files if f.endswith(".py") or f in required]
    order = [r for r in required if r in wanted] + sorted(f for f in wanted if f not in required)
    out: list[tuple[str, str]] = []
    total = 0
    for rel in order:
        path = root / rel
        try:
            size = os.lstat(path).st_size
            if size > config.max_file_bytes:
                notes.append(f"{_name(rel, config)} not compared (over {config.max_file_bytes} bytes)")
                continue
            if total + size > config.max_submission_bytes:
                notes.append(f"{_name(rel, config)} and later files not compared "
                             f"(over {config.max_submission_bytes} bytes in all)")
                break
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with open(fd, "rb") as handle:
                data = handle.read(config.max_file_bytes + 1)[: config.max_file_bytes]
        except OSError as exc:
            raise InfraError(f"cannot read {path}: {exc.strerror or exc}") from None
        total += len(data)
        out.append((rel, data.decode("utf-8", errors="replace")))
    return out


def _starter_prints(starter: Path, required: list[str], config: Config) -> np.ndarray:
    """Every k-gram hash of the starter, not only its winnowed ones: a window that straddles the
    end of given code may pick a k-gram the starter's own windows passed over."""
    files = sorted(p.relative_to(starter).as_posix() for p in starter.rglob("*")
                   if p.is_file() and not p.is_symlink() and "__pycache__" not in p.parts)
    hashes = [_fingerprint(name, code, config).hashes for name, code in _read_files(starter, files, required,
                                                                                     config, [])]
    return np.unique(np.concatenate(hashes)) if hashes else np.zeros(0, dtype=np.uint64)


def _side(candidate: str, source: Path, dest: Path, required: list[str], starter: np.ndarray,
          config: Config, notes: dict[str, str]) -> _Side | None:
    dest.mkdir()
    try:
        try:
            submission = intake(source, dest, required)
        except BadInput as exc:
            notes[candidate] = f"not compared: {exc}"
            return None
        said: list[str] = []
        files = [_fingerprint(name, code, config, starter)
                 for name, code in _read_files(submission.root, submission.files, required, config, said)]
    finally:
        remove_tree(dest)  # only the fingerprints are kept
    if said:
        notes[candidate] = "; ".join(said)
    prints = np.unique(np.concatenate([f.prints for f in files])) if files else np.zeros(0, dtype=np.uint64)
    return _Side(candidate=candidate, files=files, prints=prints)


# -- pairs ----------------------------------------------------------------------------------

def _shared(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.intersect1d(x, y, assume_unique=True)


def _shared_lines(f: _File, prints: np.ndarray, k: int) -> int:
    """Source lines of f inside its k-grams whose hash is one of prints."""
    starts = np.flatnonzero(np.isin(f.hashes, prints))
    if len(starts) == 0:
        return 0
    depth = np.zeros(len(f.lines) + 1, dtype=np.int64)
    np.add.at(depth, starts, 1)
    np.add.at(depth, starts + k, -1)
    covered = np.cumsum(depth[:-1]) > 0
    return len(np.unique(f.lines[covered]))


def _detail(small: _Side, other: _Side, shared: int, config: Config) -> str:
    parts = []
    for f in small.files:
        if not len(f.prints):
            continue
        overlaps = [(len(_shared(f.prints, g.prints)), g) for g in other.files]
        count, best = max(overlaps, key=lambda item: item[0], default=(0, None))
        if best is None or count == 0:
            continue
        common = _shared(f.prints, best.prints)
        parts.append(f"{_name(f.name, config)}~{_name(best.name, config)} "
                     f"{_shared_lines(f, common, config.noise_chars)}/{len(np.unique(f.lines))} lines")
    where = "; ".join(parts) if parts else "no file in common"
    return (f"{small.candidate}: {shared} of {len(small.prints)} fingerprints beyond the starter are in "
            f"{other.candidate} ({len(other.prints)}); {where}")


def _pair(x: _Side, y: _Side, threshold: float, config: Config) -> SimilarPair | None:
    small, other = (x, y) if (len(x.prints), x.candidate) <= (len(y.prints), y.candidate) else (y, x)
    shared = len(_shared(small.prints, other.prints))
    score = shared / max(len(small.prints), config.min_fingerprints, 1)
    if score < threshold:
        return None
    a, b = sorted((x.candidate, y.candidate))
    return SimilarPair(a=a, b=b, score=round(score, 4), detail=_detail(small, other, shared, config))


def compare(submissions: Mapping[str, Path], starter: Path, threshold: float = DEFAULT_THRESHOLD, *,
            required_files: Iterable[str] = (), config: Config = CONFIG) -> Similarity:
    """Every pair of submissions (candidate -> folder, .zip or .tar.gz) scoring at least threshold,
    high first, with the candidates compared and a note for each one that was not (fully) read.
    required_files are the exercise's: read even when not Python, and how intake finds the
    top folder of an archive."""
    if not 0.0 <= threshold <= 1.0:
        raise BadInput(f"similarity threshold must be in [0, 1], got {threshold}")
    required = list(required_files)
    starter_prints = _starter_prints(starter, required, config) if starter.is_dir() else None
    notes: dict[str, str] = {}
    sides: list[_Side] = []
    try:
        work = Path(tempfile.mkdtemp(prefix="mlgrade-similarity-"))
    except OSError as exc:
        raise InfraError(f"cannot make a temporary folder: {exc.strerror or exc}") from None
    try:
        for number, candidate in enumerate(sorted(submissions)):
            side = _side(candidate, Path(submissions[candidate]), work / str(number), required,
                         starter_prints, config, notes)
            if side is not None:
                sides.append(side)
    finally:
        remove_tree(work)
    pairs = [p for i, x in enumerate(sides) for y in sides[i + 1:]
             if (p := _pair(x, y, threshold, config)) is not None]
    pairs.sort(key=lambda p: (-p.score, p.a, p.b))
    return Similarity(pairs=pairs, threshold=threshold, compared=[s.candidate for s in sides], notes=notes)


def similar_pairs(submissions: Mapping[str, Path], starter: Path, threshold: float = DEFAULT_THRESHOLD, *,
                  required_files: Iterable[str] = (), config: Config = CONFIG) -> list[SimilarPair]:
    """Pairs of submissions (candidate -> folder, .zip or .tar.gz) whose score is at least threshold,
    high first. Submissions that intake refuses are skipped (`compare` also says which and why)."""
    return compare(submissions, starter, threshold, required_files=required_files, config=config).pairs


# -- a round --------------------------------------------------------------------------------

def compare_round(round: Round, exercise: Exercise | str | None = None,
                  threshold: float = DEFAULT_THRESHOLD, *, config: Config = CONFIG,
                  sources: Mapping[str, Path] | None = None) -> Similarity:
    """`compare` over a round's sources (Round.submission_path of each entry, or `sources`, candidate ->
    path, where given: a candidate of the ledger missing from it is noted, not compared) with the
    exercise's starter and required files (the round's own exercise when None). A source gone since
    the batch ran is noted."""
    from .exercises import load_exercise

    loaded = load_exercise(exercise or round.exercise) if exercise is None or isinstance(exercise, str) else exercise
    given = sources
    found: dict[str, Path] = {}
    gone: dict[str, str] = {}
    for entry in round.entries:
        if given is not None and entry.candidate not in given:
            gone[entry.candidate] = "not compared: no longer in SOURCE"
        elif os.path.lexists(path := Path(given[entry.candidate]) if given is not None else round.submission_path(entry)):
            found[entry.candidate] = path
        else:
            gone[entry.candidate] = f"not compared: {one_line(entry.source)} is no longer there"
    result = compare(found, loaded.starter, threshold, required_files=loaded.manifest.required_files,
                     config=config)
    return Similarity(pairs=result.pairs, threshold=result.threshold, compared=result.compared,
                      notes=dict(sorted({**result.notes, **gone}.items())))


def similarity_for_round(round: Round, exercise: Exercise | str | None = None,
                         threshold: float = DEFAULT_THRESHOLD) -> list[SimilarPair]:
    """The flagged pairs of a round (see `compare_round`)."""
    return compare_round(round, exercise, threshold).pairs


# -- similarity.json ------------------------------------------------------------------------

def write_similarity(path: Path, pairs: Iterable[SimilarPair] | Similarity) -> None:
    """Write pairs (or a whole Similarity, with its threshold and notes) as JSON, atomically."""
    result = pairs if isinstance(pairs, Similarity) else Similarity(pairs=list(pairs), threshold=DEFAULT_THRESHOLD)
    document = {"version": FORMAT_VERSION, "threshold": result.threshold, "compared": result.compared,
                "notes": result.notes, "pairs": [asdict(p) for p in result.pairs]}
    path = Path(path)
    text = json.dumps(document, indent=2, ensure_ascii=True) + "\n"
    write_files(Out(arg=str(path.parent), path=path.parent), {path.name: text})  # atomic; InfraError, one line


def load_similarity(path: Path) -> Similarity:
    """What write_similarity wrote; BadInput with one line when the file is not that."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        if document.get("version") != FORMAT_VERSION:
            raise ValueError(f"version {document.get('version')!r}, expected {FORMAT_VERSION}")
        pairs = [SimilarPair(a=str(p["a"]), b=str(p["b"]), score=float(p["score"]), detail=str(p["detail"]))
                 for p in document["pairs"]]
        return Similarity(pairs=pairs, threshold=float(document["threshold"]),
                          compared=[str(c) for c in document.get("compared", [])],
                          notes={str(k): str(v) for k, v in document.get("notes", {}).items()})
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BadInput(f"{path}: not a similarity file ({one_line(str(exc))[:120]})") from None


def read_similarity(path: Path) -> list[SimilarPair]:
    """The pairs in a file write_similarity wrote."""
    return load_similarity(path).pairs
