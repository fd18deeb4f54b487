"""Making candidate-produced text safe for the candidate view: nothing hidden goes back.

Candidate code runs next to the hidden tests (they are mounted at /mlgrade/tests), so it can
read them and hand their text back in anything the report shows it: a failure message, a
reason line, a flag, a version string, a kernel name. `scrub` is the one gate every such string
passes on its way into the candidate view (`grader.report.candidate_view`).

What is hidden (`HiddenText.from_exercise`): every file under the exercise's tests/ that the
candidate's kit does not contain (the kit, see `grader.cli.cmd_kit`, holds tests/public/,
tests/conftest.py and the spec module), and the reference solution's code and comments (its
string literals are left out: a candidate's own error message, "world_size must be >= 1, got
0", too often matches one of them). The kit (starter, README.md, public tests, conftest, spec)
is public: a run of text the kit also contains is not secret, so a public test's message that
quotes shared code is not withheld. The calibration submissions are not indexed: they are
written to look like candidate code (a timer-patching one matched the grader's own "replaced
after the candidate's import: time.perf_counter, ..." flag), and like the reference they are
never mounted where candidate code runs.

How it is matched: text is folded (NFKC, common Cyrillic/Greek look-alikes to Latin, casefold,
zero-width and bidi characters dropped) and compared twice, against two indexes of 64-bit
hashes (1.6 MB for 1 MB of Python source, both together):
- words: every run of WORDS = 4 consecutive words (a word: letters and digits; anything else,
  whitespace, punctuation, "_", separates) with at least MIN_CHARS = 14 letters and digits and
  two different words: hidden text re-indented, re-wrapped, re-cased, re-punctuated or
  re-rendered from its syntax tree, about 20 characters of code, is found. Two public names
  side by side ("TypeError: ShardedTokenDataset") are not enough to withhold a message.
- letters: every run of CHARS = 32 letters and digits with everything else removed, winnowed
  (the minimum of every WINDOW = 8 consecutive hashes is kept): hidden text with its whitespace
  removed ("assertas_pairs(got)==...") is found once 39 letters and digits of it are shared.

Covered (the string is replaced by WITHHELD_HIDDEN or WITHHELD_ENCODED):
- hidden text as written or as above, also with zero-width or bidi characters between its
  letters, in fullwidth or look-alike letters, reversed, or in ROT13;
- hidden text in short hex, base64, base32, \\x / \\u escape or decimal character-code runs
  (decoded and matched);
- any run of 64 or more hex/base64/base32 characters (whitespace inside it ignored): withheld as
  encoded data whatever it decodes to (compressed or encrypted text cannot be matched);
- in `candidate_view`, text split over several strings (one piece per test) when the pieces
  follow one another in report order or in reverse order, also behind a `SomeError: ` prefix;
- in `candidate_view`, a hidden test's module, class or function name of 6 characters or more
  ("test_mean_single") as a whole identifier, however short, also reversed or in ROT13
  (`with_names`; names the kit also uses are not withheld);
- every string is cut to `cap` characters and loses control, format (zero-width, bidi),
  surrogate, private-use and unassigned characters and ANSI escape sequences.

Not covered (the cap, a few hundred characters per string, bounds what these can carry):
- shared runs shorter than the above: a short literal (an expected value, a hidden test's
  parameter id, a name split into words, "SIZES = [9, 1, 0, 14]") can be passed on, one or two
  per string;
- any other cipher (Caesar shifts, XOR, a private alphabet), pieces in any other order,
  filler characters interleaved with the text, paraphrase;
- numbers: durations, timings, modelled figures and pass/fail patterns are chosen by candidate
  code and can carry a few bytes per test; they are not touched;
- withholding itself answers a question: a submission can print guesses and learn from which
  strings are withheld whether they match hidden text (a bit per string per grading);
- binary hidden files (not text) are not indexed.
"""
from __future__ import annotations

import base64
import builtins
import binascii
import hashlib
import io
import re
import tokenize
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

if TYPE_CHECKING:
    from .exercises import Exercise

WORDS = 4  # words per word shingle
MIN_CHARS = 14  # letters and digits a word shingle needs to be indexed
CHARS = 32  # letters and digits per letter shingle
WINDOW = 8  # winnowing window of the letter index: shared runs of CHARS + WINDOW - 1 are always found
MIN_DISTINCT = 4  # letter shingles (and hex runs) with fewer distinct characters carry nothing
BLOB = 64  # hex/base64/base32 runs this long are withheld whatever they decode to
MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_TOTAL_BYTES = 64 * 1024 * 1024

WITHHELD_HIDDEN = "[message withheld: it contains text of hidden material]"
WITHHELD_ENCODED = "[message withheld: encoded data]"
ELLIPSIS = "\u2026"

_BASE = np.uint64(0x100000001B3)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_NO_HASH = np.uint64(0xFFFFFFFFFFFFFFFF)
_EMPTY = np.empty(0, dtype=np.uint64)

# Letters that look like Latin ones (after NFKC, before casefold).
_HOMOGLYPHS = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s",
    "һ": "h", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l", "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m",
    "Н": "h", "О": "o", "Р": "p", "С": "c", "Т": "t", "Х": "x", "У": "y", "І": "i", "Ј": "j", "Ѕ": "s",
    "α": "a", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x",
    "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n", "Ο": "o",
    "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x",
})
_FORMAT = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_WORD = re.compile(r"[^\W_]+")
_NOT_ALNUM = re.compile(r"[\W_]+")
_ROT13 = str.maketrans("abcdefghijklmnopqrstuvwxyz", "nopqrstuvwxyzabcdefghijklm")
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_DROP_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn"}
_B64_RUN = re.compile(r"[A-Za-z0-9+/=_-]{%d,}" % BLOB)
_HEX_RUN = re.compile(r"[0-9A-Fa-f]{%d,}" % BLOB)
_B32_RUN = re.compile(r"[A-Z2-7]{%d,}|[a-z2-7]{%d,}" % (BLOB, BLOB))
_WHITESPACE = re.compile(r"\s+")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_QUOTED_NAME = re.compile(r"""['"]([^'"\s]*)['"]""")
_BUILTIN_NAMES = frozenset(dir(builtins))  # 'str', 'NoneType'... in a TypeError are not secret
# Short encodings that are decoded and matched (long ones are withheld as blobs anyway).
_HEX_SHORT = re.compile(r"(?:[0-9A-Fa-f]{2}[\s:,-]?){12,}")
_B64_SHORT = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_B32_SHORT = re.compile(r"[A-Z2-7]{24,}=*|[a-z2-7]{24,}=*")
_ESCAPES = re.compile(r"(?:\\(?:x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8})){8,}")
_CODES = re.compile(r"(?:\b\d{1,7}\b[^\w\n]{0,3}){12,}")
# What pytest and exceptions put before a message: dropped when pieces are joined.
_EXCEPTION_PREFIX = re.compile(r"^\s*(?:\[\w+\]\s*)?(?:[A-Za-z_][\w.]*\s*:\s*)?")


def _fold(text: str) -> str:
    """Text as matching sees it: compatibility forms and look-alikes folded, case-folded, without
    zero-width and bidi characters."""
    return _FORMAT.sub("", unicodedata.normalize("NFKC", text).translate(_HOMOGLYPHS).casefold())


def _mix(h: np.ndarray) -> np.ndarray:
    h ^= h >> np.uint64(29)
    h *= _MIX
    h ^= h >> np.uint64(32)
    return h


def _rolling(values: np.ndarray, k: int) -> np.ndarray:
    """64-bit hashes of every k consecutive values (empty when there are fewer)."""
    n = len(values) - k + 1
    if n <= 0:
        return _EMPTY
    h = np.zeros(n, dtype=np.uint64)
    for j in range(k):  # polynomial hash mod 2**64, one vector step per position
        h = h * _BASE + values[j:j + n]
    return _mix(h)


def _letters(text: str) -> np.ndarray:
    """Code points of the letters and digits of folded text."""
    alnum = _NOT_ALNUM.sub("", text)
    return np.frombuffer(alnum.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)


def _word_hashes(words: list[str]) -> np.ndarray:
    cache: dict[str, int] = {}
    return np.array([cache.setdefault(w, int.from_bytes(hashlib.blake2b(w.encode("utf-8", "surrogatepass"),
                                                                          digest_size=8).digest(), "little"))
                     for w in words], dtype=np.uint64)


def _word_shingles(words: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every WORDS consecutive words, and whether each is worth indexing (enough letters,
    not one word repeated)."""
    hashes = _word_hashes(words)
    shingles = _rolling(hashes, WORDS)
    n = len(shingles)
    if not n:
        return shingles, np.zeros(0, dtype=bool)
    lengths = np.concatenate([[0], np.cumsum([len(w) for w in words])])
    enough = lengths[WORDS:] - lengths[:n] >= MIN_CHARS
    varied = np.zeros(n, dtype=bool)
    for j in range(1, WORDS):
        varied |= hashes[j:j + n] != hashes[:n]
    return shingles, enough & varied


def _diverse(codes: np.ndarray) -> np.ndarray:
    """Per letter shingle: True when it has at least MIN_DISTINCT different characters."""
    n = len(codes) - CHARS + 1
    out = np.zeros(max(n, 0), dtype=bool)
    if n <= 0:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(codes, CHARS)
    for start in range(0, n, 16384):
        block = np.sort(windows[start:start + 16384], axis=1)
        out[start:start + 16384] = (np.diff(block, axis=1) != 0).sum(axis=1) + 1 >= MIN_DISTINCT
    return out


def _winnow(hashes: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The minimum of every WINDOW consecutive kept hashes (winnowing), as sorted unique values."""
    h = np.where(keep, hashes, _NO_HASH)
    if len(h) >= WINDOW:
        h = np.lib.stride_tricks.sliding_window_view(h, WINDOW).min(axis=1)
    h = np.unique(h)
    return h[h != _NO_HASH]


def _member(values: np.ndarray, table: np.ndarray) -> np.ndarray:
    """values in table (a sorted array), elementwise."""
    if len(table) == 0 or len(values) == 0:
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(table, values), len(table) - 1)
    return table[at] == values


def _union(*arrays: np.ndarray) -> np.ndarray:
    return np.unique(np.concatenate(arrays)) if arrays else _EMPTY


def read_text(path: Path) -> str | None:
    """A file's text as the index reads it (capped; None when binary or unreadable)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES)
    except OSError:
        return None
    if b"\0" in data:
        return None  # binary: not indexed
    return data.decode("utf-8", errors="replace")


_STRING_TOKENS = {getattr(tokenize, name) for name in ("STRING", "FSTRING_MIDDLE", "TSTRING_MIDDLE")
                  if hasattr(tokenize, name)}


def _code_only(text: str) -> list[str]:
    """A Python source's text between its string literals (the whole text when it does not tokenize)."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return [text]
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    segments, position = [], 0
    for token in tokens:
        if token.type in _STRING_TOKENS:
            begin = starts[token.start[0] - 1] + token.start[1]
            segments.append(text[position:begin])
            position = starts[token.end[0] - 1] + token.end[1]
    return segments + [text[position:]]


def kit_files(exercise: "Exercise") -> list[Path]:
    """What a candidate's kit holds (grader.cli.cmd_kit): starter, brief, public tests, conftest, spec."""
    kit = _files(exercise.starter) + _files(exercise.brief) + _files(exercise.tests / "public")
    kit += _files(exercise.tests / "conftest.py")  # shipped in the kit, like the spec (cli.cmd_kit)
    if exercise.manifest.spec:
        kit += _files(exercise.root / exercise.manifest.spec)
    return kit


def hidden_test_files(exercise: "Exercise") -> list[Path]:
    """Every file under the exercise's tests/ that its kit does not hold."""
    shipped = {p.resolve() for p in kit_files(exercise)}
    return [p for p in _files(exercise.tests) if p.resolve() not in shipped]


def folded_words(text: str) -> list[str]:
    """text's words as the index compares them (folded: case, look-alikes, width; "_" separates)."""
    return _WORD.findall(_fold(text))


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                  and p.suffix not in (".pyc", ".pyo"))


@dataclass(frozen=True, eq=False)
class HiddenText:
    """An index of hidden material: `leaks(text)` says whether text shares a run with it.

    `words` and `letters`: hashes of the hidden text's word and (winnowed) letter shingles, minus
    every shingle the public material also has; `public_words` and `public_letters`: all of the
    public material's, kept so that `extended` subtracts them too.
    """

    words: np.ndarray = field(default_factory=lambda: _EMPTY)
    letters: np.ndarray = field(default_factory=lambda: _EMPTY)
    public_words: np.ndarray = field(default_factory=lambda: _EMPTY)
    public_letters: np.ndarray = field(default_factory=lambda: _EMPTY)
    sources: tuple[str, ...] = ()
    public_names: frozenset[str] = frozenset()  # identifiers of the kit and its module names (names_public)
    names: frozenset[str] = frozenset()  # hidden identifiers (test names), matched whole, folded (with_names)

    # -- building -----------------------------------------------------------------------
    @classmethod
    def empty(cls) -> "HiddenText":
        return cls()

    @classmethod
    def from_texts(cls, hidden: Iterable[str], public: Iterable[str] = (), sources: Sequence[str] = ()) -> "HiddenText":
        public = [_fold(text) for text in public]
        return cls(public_words=_union(_EMPTY, *(_word_shingles(_WORD.findall(t))[0] for t in public)),
                   public_letters=_union(_EMPTY, *(_rolling(_letters(t), CHARS) for t in public)),
                   sources=tuple(sources)).extended(hidden)

    @classmethod
    def from_exercise(cls, exercise: "Exercise") -> "HiddenText":
        """The exercise's hidden tests and data and its reference; its kit is public."""
        kit, tests = kit_files(exercise), hidden_test_files(exercise)
        solutions = _files(exercise.reference)
        hidden, public, sources, total = [], [], [], 0
        for paths, texts in ((tests, hidden), (solutions, hidden), (kit, public)):
            for path in paths:
                text = read_text(path)
                if text is None or total + len(text) > MAX_TOTAL_BYTES:
                    continue
                total += len(text)
                texts.extend(_code_only(text) if paths is solutions and path.suffix == ".py" else [text])
                if texts is hidden:
                    sources.append(str(path))
        names = {name for text in public for name in _IDENTIFIER.findall(text)}
        names |= {Path(p).stem for p in exercise.manifest.required_files} | {p.stem for p in _files(exercise.starter)}
        return replace(cls.from_texts(hidden, public, sources), public_names=frozenset(names))

    def extended(self, hidden: Iterable[str]) -> "HiddenText":
        """This index plus more hidden texts (public runs still subtracted)."""
        words, letters = [self.words], [self.letters]
        for text in hidden:
            text = _fold(text)
            shingles, worth = _word_shingles(_WORD.findall(text))
            words.append(shingles[worth & ~_member(shingles, self.public_words)])
            codes = _letters(text)
            shingles = _rolling(codes, CHARS)
            if len(shingles):
                letters.append(_winnow(shingles, _diverse(codes) & ~_member(shingles, self.public_letters)))
        return replace(self, words=_union(*words), letters=_union(*letters))

    def with_names(self, names: Iterable[str]) -> "HiddenText":
        """This index plus identifiers that count as hidden when they appear whole in a text, however
        short ("test_mean_single"): a hidden test's function, class or module name. Names the kit
        also uses are left out."""
        public = {name.casefold() for name in self.public_names}
        return replace(self, names=self.names | {n for n in map(_fold, names) if n and n not in public})

    @property
    def nbytes(self) -> int:
        """Bytes of the hidden material's index (the public shingles not counted)."""
        return int(self.words.nbytes + self.letters.nbytes)

    def __bool__(self) -> bool:
        return bool(len(self.words) or len(self.letters) or self.names)

    # -- matching -----------------------------------------------------------------------
    def spans(self, pieces: Sequence[str]) -> list[tuple[int, int]]:
        """(first, last) piece of every indexed shingle found in the folded pieces read one after
        another (a piece boundary separates words)."""
        found = []
        per_piece = [_WORD.findall(piece) for piece in pieces]
        owner = np.repeat(np.arange(len(pieces)), [len(words) for words in per_piece])
        if len(self.words) and len(owner) >= WORDS:
            hits = np.flatnonzero(_member(_rolling(_word_hashes([w for ws in per_piece for w in ws]), WORDS),
                                          self.words))
            found += [(int(owner[i]), int(owner[i + WORDS - 1])) for i in hits]
        codes = [_letters(piece) for piece in pieces]
        owner = np.repeat(np.arange(len(pieces)), [len(c) for c in codes])
        if len(self.letters) and len(owner) >= CHARS:
            hits = np.flatnonzero(_member(_rolling(np.concatenate(codes), CHARS), self.letters))
            found += [(int(owner[i]), int(owner[i + CHARS - 1])) for i in hits]
        return found

    def _found(self, text: str) -> bool:
        text = _fold(text)
        return any(self.spans([variant]) or (self.names and not self.names.isdisjoint(_IDENTIFIER.findall(variant)))
                   for variant in (text, text[::-1], text.translate(_ROT13)))

    def names_public(self, text: str) -> bool:
        """True when every name text quotes ('x' or "x", as Python's messages do) is a name of the
        kit: "cannot import name 'PadCollator' from 'collate'" is, a helper only a hidden test
        imports is not."""
        return all(name in self.public_names or name in _BUILTIN_NAMES
                   for quoted in _QUOTED_NAME.findall(text) for name in _IDENTIFIER.findall(quoted))

    def leaks(self, text: str) -> bool:
        """True when text shares a run with hidden material, as written or cheaply transformed
        (reversed, ROT13, short hex/base64/base32/escape/character-code encodings)."""
        return bool(self) and (self._found(text) or any(self._found(decoded) for decoded in _decodings(text)))


def _decodings(text: str) -> Iterable[str]:
    """Texts hidden in short encoded runs of text: hex, base64, escapes, decimal character codes."""
    for match in _HEX_SHORT.finditer(text):
        digits = re.sub(r"[^0-9A-Fa-f]", "", match.group())
        yield bytes.fromhex(digits[:len(digits) // 2 * 2]).decode("utf-8", errors="ignore")
    for match in _B64_SHORT.finditer(text):
        run = match.group().rstrip("=")
        for alphabet in (None, b"-_"):
            try:
                yield base64.b64decode(run + "=" * (-len(run) % 4), altchars=alphabet).decode("utf-8", errors="ignore")
            except (binascii.Error, ValueError):
                pass
    for match in _B32_SHORT.finditer(text):
        run = match.group().rstrip("=").upper()
        try:
            yield base64.b32decode(run + "=" * (-len(run) % 8)).decode("utf-8", errors="ignore")
        except (binascii.Error, ValueError):
            pass
    for match in _ESCAPES.finditer(text):
        try:
            yield match.group().encode("ascii").decode("unicode_escape")
        except (UnicodeDecodeError, UnicodeEncodeError):
            pass
    for match in _CODES.finditer(text):
        values = [int(v) for v in re.findall(r"\d+", match.group())]
        yield "".join(chr(v) for v in values if 32 <= v < 0x110000 and not 0xD800 <= v < 0xE000)


def _blob(text: str) -> bool:
    """True when text holds a long hex, base64 or base32 run (whitespace inside it ignored)."""
    compact = _WHITESPACE.sub("", text)
    for match in _HEX_RUN.finditer(compact):
        if len(set(match.group().lower())) >= MIN_DISTINCT:
            return True
    for match in _B32_RUN.finditer(compact):
        if sum(c.isdigit() for c in match.group()) >= 6:  # natural text there has 0, 1, 8 or 9 too
            return True
    for match in _B64_RUN.finditer(compact):
        run = match.group()
        classes = ["u" if c.isupper() else "l" if c.islower() else "d" if c.isdigit() else "s" for c in run]
        changes = sum(a != b for a, b in zip(classes, classes[1:])) / (len(run) - 1)
        # random-looking: not a path, a snake_case or CamelCase name or words run together
        if (classes.count("s") <= 0.08 * len(run) and classes.count("d") >= 2 and classes.count("u") >= 4
                and classes.count("l") >= 4 and changes >= 0.4):
            return True
    return False


def clean(text: str, cap: int = 300) -> str:
    """text without ANSI sequences and control/format/surrogate/private/unassigned characters
    (newlines and tabs stay), cut to at most cap characters (the last one an ellipsis)."""
    text = _ANSI.sub("", text)
    text = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) not in _DROP_CATEGORIES)
    return text if len(text) <= cap else text[:max(cap - 1, 0)] + ELLIPSIS


def scrub(text: str, hidden: HiddenText, cap: int = 300) -> str:
    """Candidate-produced text made safe for the candidate view: cleaned and capped (`clean`),
    then replaced by WITHHELD_ENCODED when it holds a long base64/hex run, or by WITHHELD_HIDDEN
    when what is left to show shares a run with hidden material (see the module docstring)."""
    shown = clean(text, cap)
    if _blob(shown):
        return WITHHELD_ENCODED
    if hidden.leaks(shown):
        return WITHHELD_HIDDEN
    return shown


def stitched(texts: Sequence[str], hidden: HiddenText) -> set[int]:
    """Indices of texts that, read one after another in order or in reverse order (also reversed
    and in ROT13, and with or without an exception-name prefix on each), share a run with hidden
    material across a boundary between them."""
    if not hidden or len(texts) < 2:
        return set()
    found: set[int] = set()
    forward = list(range(len(texts)))
    for strip in (False, True):
        folded = [_fold(_EXCEPTION_PREFIX.sub("", t, count=1) if strip else t) for t in texts]
        for order, how in ((forward, None), (forward[::-1], None), (forward[::-1], "reverse"),
                           (forward, "reverse"), (forward, "rot13")):
            pieces = [folded[i][::-1] if how == "reverse" else folded[i].translate(_ROT13) if how == "rot13"
                      else folded[i] for i in order]
            for first, last in hidden.spans(pieces):
                if last > first:  # across a boundary
                    found.update(order[i] for i in range(first, last + 1) if _NOT_ALNUM.sub("", pieces[i]))
    return found


# -- the candidate view ----------------------------------------------------------------------

# Strings of a report that candidate code cannot influence: left as they are. The submission's file
# names are chosen before any candidate code runs, so they cannot carry what it read. Every other
# string is candidate-influenced (written in, or read back from, a sandbox) and is scrubbed, whatever
# section a later version of the report adds it to.
_TRUSTED = {("schema",), ("view",), ("exercise",), ("submission",), ("timing",), ("run", "runs", "*", "what"),
            ("environment", "backend"), ("environment", "device"), ("environment", "mlgrade"),
            ("environment", "host"), ("environment", "enforced_limits"), ("environment", "details"),
            ("checks", "*", "id"), ("checks", "*", "title"), ("checks", "*", "kind"), ("checks", "*", "visibility"),
            ("checks", "*", "status"), ("checks", "*", "hints"), ("checks", "*", "tests", "*", "nodeid"), ("checks", "*", "tests", "*", "outcome"),
            ("latency", "*", "check"), ("latency", "*", "device"), ("latency", "*", "cases", "*", "case"),
            ("model", "*", "check"), ("model", "*", "target"), ("model", "*", "label"), ("model", "*", "entry"),
            ("model", "*", "cases", "*", "case")}
_CAPS = {("environment",): 100, ("latency", "*", "method"): 500, ("model", "*", "cases", "*", "parts"): 80}
_ALLOWED_KEYS = {("latency", "*", "cases", "*", "warmup_s"): {"baseline", "candidate"},  # keys the probe wrote
                 ("latency", "*", "cases", "*", "warmup_calls"): {"baseline", "candidate"}}
_POINTS = re.compile(r"^(?:-\d+(?:\.\d+)? pts: |also: )")
_OUTCOMES = ("passed", "failed", "error", "skipped", "timeout", "crashed", "missing")
_WITHHELD = (WITHHELD_HIDDEN, WITHHELD_ENCODED)


def _reason_prefix(reason: str, nodeids: list[str]) -> tuple[str, str | None]:
    """The part of a reason line the grader wrote ("-0.50 pts: <node id>: failed: "), before any text
    that came from the candidate's run, and the node id it names (None: none)."""
    match = _POINTS.match(reason)
    prefix = match.group() if match else ""
    rest = reason[len(prefix):]
    for nodeid in sorted(nodeids, key=len, reverse=True):
        if rest.startswith(nodeid + ": ") or rest == nodeid:
            prefix, rest = prefix + nodeid + ": ", rest[len(nodeid) + 2:]
            outcome = next((o for o in _OUTCOMES if rest == o or rest.startswith(o + ": ")), None)
            if outcome is not None:
                prefix += outcome + ": "
            return (reason if len(prefix) >= len(reason) else prefix), nodeid
    return prefix, None


def scrub_view(view: dict[str, Any], hidden: HiddenText, leads: Sequence[re.Pattern[str]] = ()) -> None:
    """Scrub, in place, every candidate-influenced string of a candidate-view report whose hidden checks
    are already reduced to counts, hints and grader-worded lines: test messages (cap 300), the part of
    each reason line after the grader's "-0.50 pts: <node id>: failed: " (withheld with its test's
    message), the part of a hidden check's reason after one of `leads` (grader/feedback.py: the
    submission's own import error), warnings, latency methods (500) and flags, modelled kernel names
    (80), version strings (100), and any string a later version adds outside the trusted fields. Keys
    candidate code chose (warm-up tables) are dropped. Finally strings that carry hidden text in pieces,
    one after another, are withheld (`stitched`)."""
    slots: list[tuple[Any, Any, str, str]] = []  # (container, key, trusted prefix, text shown)

    def take(container: Any, key: Any, cap: int, prefix: str = "", withheld: str | None = None) -> str:
        text = withheld or scrub(container[key][len(prefix):], hidden, cap)
        container[key] = prefix + text
        if text not in _WITHHELD:
            slots.append((container, key, prefix, text))
        return text

    def walk(container: Any, key: Any, path: tuple) -> None:
        value = container[key]
        if any(path[:len(t)] == t for t in _TRUSTED):
            return
        if isinstance(value, str):
            take(container, key, next((c for p, c in _CAPS.items() if path[:len(p)] == p), 300))
        elif isinstance(value, dict):
            allowed = _ALLOWED_KEYS.get(path)
            for name in list(value):
                if allowed is not None and name not in allowed:
                    del value[name]
                else:
                    walk(value, name, path + (name,))
        elif isinstance(value, list):
            for index in range(len(value)):
                walk(value, index, path + ("*",))

    for name in list(view):
        if name != "checks":
            walk(view, name, (name,))
            continue
        for check in view["checks"]:
            if check.get("visibility") == "hidden":  # tests dropped; hints and reasons written by the grader...
                for index, reason in enumerate(check.get("reasons", [])):
                    lead = next((m for m in (p.match(reason) for p in leads) if m), None)
                    if lead is not None:  # ...except what follows a lead: the candidate's own error
                        take(check["reasons"], index, 300, lead.group())
                continue
            withheld = {}  # node id -> the note that replaced its message
            for test in check.get("tests", []):
                if take(test, "message", 300) in _WITHHELD:
                    withheld[test["nodeid"]] = test["message"]
            nodeids = [t["nodeid"] for t in check.get("tests", [])]
            for index, reason in enumerate(check.get("reasons", [])):
                prefix, nodeid = _reason_prefix(reason, nodeids)
                if prefix != reason:  # a reason quoting a withheld message is withheld with it
                    take(check["reasons"], index, 300, prefix, withheld.get(nodeid))
            for key in sorted(set(check) - {"tests", "reasons"}):  # numbers, trusted names, fields added later
                walk(check, key, ("checks", "*", key))
    for index in stitched([text for *_, text in slots], hidden):
        container, key, prefix, _ = slots[index]
        container[key] = prefix + WITHHELD_HIDDEN
