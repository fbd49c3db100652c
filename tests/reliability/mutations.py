"""Mutations of valid manifests: what a bad edit, a bad merge or a bad disk leaves.

Each operator takes the text and a `pick(n)` that returns an integer in [0, n): the
property-based test draws from hypothesis, the live test from a seeded
`random.Random`, so both explore the same space. `mutate()` applies one to four
operators and returns bytes (some operators make invalid UTF-8).
"""

from __future__ import annotations

from collections.abc import Callable

Pick = Callable[[int], int]

# Characters that mean something to YAML, plus whitespace, quotes and oddities.
# fmt: off
SPECIALS = [
    ":", "-", "?", "{", "}", "[", "]", ",", "#", "&", "*", "!", "|", ">", "'", '"', "%",
    "@", "`", " ", "  ", "\t", "\n", "\r", "\r\n", "\\", "\x00", "\x7f", "\ufeff",
    "\u2028", "\x85", "é", "日本", "🎥", "~", "null", "true", "no", "0x1F", "1e400",
    "-.inf", ".nan", "99999999999999999999999", "-1", "0", "!!binary", "!!python/object",
    "&a", "*a", "<<: *a", "---", "...", "%YAML 1.2", "? ", ": ", "- ", "{}", "[]",
]
VALUES = [
    "", "~", "null", "true", "false", "yes", "0", "-1", "4294967296", "1.5", "'x'",
    '"\\u0000"', "[]", "{}", "[1, 2", "{a: 1", "*undefined", "&x 3", "!!int x",
    "a" * 300, "{env: ''}", "{env: NOPE}", "{file: /nonexistent}", "{credential: ../x}",
    "'2026-13-45T99:99:99Z'", "{cron: '61 * * * *', timezone: Mars/Base, duration: 0s}",
    "always", "{always: false}", "mix", "individual", "-5", "audio+video+x",
    "|\n  block\n", ">-\n  folded\n", "[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]",
]
# fmt: on
RAW = [b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80", b"\x80abc", b"\xf8\x88\x80\x80\x80"]


def _lines(text: str) -> list[str]:
    return text.split("\n")


def delete_span(text: str, pick: Pick) -> str:
    if not text:
        return text
    start = pick(len(text))
    return text[:start] + text[start + 1 + pick(min(40, len(text) - start)) :]


def insert_special(text: str, pick: Pick) -> str:
    at = pick(len(text) + 1)
    return text[:at] + SPECIALS[pick(len(SPECIALS))] + text[at:]


def replace_char(text: str, pick: Pick) -> str:
    if not text:
        return text
    at = pick(len(text))
    return text[:at] + SPECIALS[pick(len(SPECIALS))] + text[at + 1 :]


def duplicate_line(text: str, pick: Pick) -> str:
    lines = _lines(text)
    i = pick(len(lines))
    lines.insert(i, lines[i])
    return "\n".join(lines)


def swap_lines(text: str, pick: Pick) -> str:
    lines = _lines(text)
    i, j = pick(len(lines)), pick(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines)


def reindent(text: str, pick: Pick) -> str:
    lines = _lines(text)
    i = pick(len(lines))
    shift = pick(7) - 3
    lines[i] = (" " * shift + lines[i]) if shift > 0 else lines[i][-shift:]
    return "\n".join(lines)


def truncate(text: str, pick: Pick) -> str:
    return text[: pick(len(text) + 1)]


def replace_value(text: str, pick: Pick) -> str:
    lines = _lines(text)
    candidates = [i for i, line in enumerate(lines) if ":" in line]
    if not candidates:
        return text
    i = candidates[pick(len(candidates))]
    key, _, _ = lines[i].partition(":")
    lines[i] = f"{key}: {VALUES[pick(len(VALUES))]}"
    return "\n".join(lines)


def rename_key(text: str, pick: Pick) -> str:
    lines = _lines(text)
    candidates = [i for i, line in enumerate(lines) if ":" in line]
    if not candidates:
        return text
    i = candidates[pick(len(candidates))]
    key, _, rest = lines[i].partition(":")
    stripped = key.lstrip()
    indent = key[: len(key) - len(stripped)]
    variants = [stripped.upper(), stripped + "s", stripped[:-1], "x" + stripped, ""]
    variants.append("- " + stripped)
    return "\n".join(
        [*lines[:i], f"{indent}{variants[pick(len(variants))]}:{rest}", *lines[i + 1 :]]
    )


def drop_line(text: str, pick: Pick) -> str:
    lines = _lines(text)
    del lines[pick(len(lines))]
    return "\n".join(lines)


def add_document(text: str, pick: Pick) -> str:
    docs = ["---\n", "---\nname: [\n", "--- !!map\n", "---\n- a\n- b\n", "---\n" + text[:200]]
    at = pick(2)
    extra = docs[pick(len(docs))]
    return extra + text if at == 0 else text + "\n" + extra


def alias_bomb(text: str, pick: Pick) -> str:
    depth = 2 + pick(8)
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, depth)]
    return "\n".join(lines) + "\n" + text


def deep_nesting(text: str, pick: Pick) -> str:
    depth = 10 + pick(200)
    return text + "\nrecording: " + "[" * depth + "]" * depth + "\n"


TEXT_OPERATORS: tuple[Callable[[str, Pick], str], ...] = (
    delete_span,
    insert_special,
    replace_char,
    duplicate_line,
    swap_lines,
    reindent,
    truncate,
    replace_value,
    rename_key,
    drop_line,
    add_document,
    alias_bomb,
    deep_nesting,
)


def mutate(text: str, pick: Pick) -> bytes:
    """One to four operators, then (sometimes) raw bytes that are not UTF-8."""
    for _ in range(1 + pick(4)):
        text = TEXT_OPERATORS[pick(len(TEXT_OPERATORS))](text, pick)
    data = text.encode("utf-8")
    if pick(8) == 0:
        at = pick(len(data) + 1)
        data = data[:at] + RAW[pick(len(RAW))] + data[at:]
    return data
