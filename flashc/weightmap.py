"""Checkpoint maps: a reference's state-dict names and layouts, declared as data beside a spec.

A map file (``specs/gpt2.hf.map`` for ``specs/gpt2.flash``) is read, never run. One rule a line::

    # Hugging Face GPT2LMHeadModel -> specs/gpt2.flash
    for GPT2LMHeadModel GPT2Model        # config.json architectures this map reads
    strip transformer.                   # a leading `transformer.` is dropped before matching
    h.{i}.ln_1.{p}          -> blocks.{i}.layernorm.{p}
    h.{i}.attn.c_attn.{p}   -> blocks.{i}.attention.q.{p}, blocks.{i}.attention.k.{p}, blocks.{i}.attention.v.{p} : transpose, split 0
    h.{i}.mlp.c_fc.weight   -> blocks.{i}.linear.weight : transpose
    drop h.{i}.attn.bias                 # the causal mask buffer: the spec builds its own

- ``{name}`` stands for one dotted segment (or the rest of one: ``encoder_layer_{i}``) and carries
  its text to the targets. The first rule whose source matches a key is used.
- After ``:`` come steps applied left to right: ``transpose`` (swap the last two axes: a
  ``Conv1D`` stores ``[in, out]``), ``split AXIS`` (cut one tensor into the targets, each as
  long as the spec's weight along AXIS: fused q/k/v, grouped-query sizes included), and
  ``reshape`` (to the target's shape, same number of elements: a scalar into ``[1]``).
- ``drop PATTERN`` names keys the spec does not need (mask buffers, ``rotary_emb.inv_freq``).
- A key no rule matches is taken under its own name, so a map lists only what differs.

Everything is checked when the map is read (syntax, placeholders, steps) with ``file:line:col``
errors, and again against the spec when it is used: a target that names no weight of the spec
is reported with the key it came from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from flashc.diagnostics import Diagnostic, FlashError, Span, did_you_mean

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
KEY = re.compile(r"^[A-Za-z0-9_.{}\-]+$")
MAX_MAP_BYTES = 1 << 20
STEPS = ("transpose", "split", "reshape")


@dataclass(frozen=True)
class Pattern:
    """A key with ``{name}`` placeholders: matches keys, fills in targets."""

    text: str
    span: Span

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(PLACEHOLDER.findall(self.text))

    def regex(self) -> re.Pattern[str]:
        out, pos = [], 0
        for m in PLACEHOLDER.finditer(self.text):
            out.append(re.escape(self.text[pos:m.start()]))
            out.append(f"(?P<{m.group(1)}>[^.]+)")
            pos = m.end()
        out.append(re.escape(self.text[pos:]))
        return re.compile("".join(out) + r"\Z")

    def fill(self, values: dict[str, str]) -> str:
        return PLACEHOLDER.sub(lambda m: values[m.group(1)], self.text)

    def wildcard(self) -> re.Pattern[str]:
        """Any key this pattern can produce, whatever its placeholders stand for."""
        return re.compile(PLACEHOLDER.sub("\0", self.text).replace(".", r"\.").replace("\0", "[^.]+") + r"\Z")


@dataclass(frozen=True)
class Step:
    kind: str  # transpose | split | reshape
    axis: int = 0


@dataclass(frozen=True)
class Rule:
    """`source -> targets : steps`, or `drop source` (no targets)."""

    source: Pattern
    targets: tuple[Pattern, ...]
    steps: tuple[Step, ...]
    line: int

    @property
    def drop(self) -> bool:
        return not self.targets


@dataclass(frozen=True)
class WeightMap:
    """A parsed, syntax-checked map file."""

    path: str
    architectures: tuple[str, ...]
    strip: tuple[str, ...]
    rules: tuple[Rule, ...]
    text: str

    def match(self, key: str) -> tuple[Rule | None, dict[str, str]]:
        """The first rule whose source matches ``key`` (after a `strip` prefix), and its values."""
        key = self.stripped(key)
        for rule in self.rules:
            m = rule.source.regex().match(key)
            if m:
                return rule, m.groupdict()
        return None, {}

    def stripped(self, key: str) -> str:
        """``key`` without the first `strip` prefix it starts with."""
        for prefix in self.strip:
            if key.startswith(prefix):
                return key[len(prefix):]
        return key

    def fail(self, line: int, col: int, width: int, message: str, hint: str | None = None) -> FlashError:
        span = Span(self.path, line, col, line, col + max(1, width))
        return FlashError([Diagnostic(span, message, hint)], {self.path: self.text})

    def check_targets(self, names: Iterable[str], model: str) -> None:
        """Every target of every rule can name a weight of the spec (``names``: paths and tied names)."""
        names = list(names)
        for rule in self.rules:
            for target in rule.targets:
                pattern = target.wildcard()
                if not any(pattern.match(n) for n in names):
                    concrete = target.fill({k: "0" for k in target.names})
                    near = did_you_mean(concrete, names)
                    raise FlashError([Diagnostic(target.span, f"`{target.text}` names no weight of model {model}",
                                                 f"did you mean `{near}`?" if near else None)], {self.path: self.text})


def read_map(path: str | Path) -> WeightMap:
    """Parse and check a map file; errors point at the line and column."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_MAP_BYTES:
            raise FlashError([Diagnostic(Span.nowhere(str(p)), f"a map file is at most {MAX_MAP_BYTES} bytes")])
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FlashError([Diagnostic(Span.nowhere(str(p)), "no such map file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FlashError([Diagnostic(Span.nowhere(str(p)), f"cannot read the map file: {exc}")]) from None
    return parse_map(text, str(p))


def parse_map(text: str, path: str = "<map>") -> WeightMap:
    draft = WeightMap(path, (), (), (), text)
    architectures: list[str] = []
    strip: list[str] = []
    rules: list[Rule] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        words = line.split()
        head = words[0]
        if head == "for":
            if len(words) < 2:
                raise draft.fail(number, indent + 1, 3, "`for` names the architectures this map reads",
                                 "e.g. `for LlamaForCausalLM` (the `architectures` of config.json)")
            architectures += words[1:]
        elif head == "strip":
            if len(words) != 2 or not words[1].endswith("."):
                raise draft.fail(number, indent + 1, len(line) - indent, "`strip` takes one prefix ending in `.`",
                                 "e.g. `strip model.`")
            strip.append(words[1])
        elif head == "drop":
            if len(words) != 2:
                raise draft.fail(number, indent + 1, len(line) - indent, "`drop` takes one key pattern")
            rules.append(Rule(_pattern(draft, words[1], number, line.index(words[1], indent + 4)), (), (), number))
        elif "->" in line:
            rules.append(_rule(draft, line, number))
        else:
            raise draft.fail(number, indent + 1, len(head), f"expected `SOURCE -> TARGET`, `drop`, `strip` or `for`, "
                             f"got `{head}`")
    return WeightMap(path, tuple(architectures), tuple(strip), tuple(rules), text)


def _pattern(draft: WeightMap, word: str, line: int, start: int) -> Pattern:
    span = Span(draft.path, line, start + 1, line, start + 1 + len(word))
    if not KEY.match(word) or PLACEHOLDER.sub("", word).count("{") or PLACEHOLDER.sub("", word).count("}"):
        raise draft.fail(line, start + 1, len(word), f"`{word}` is not a key pattern",
                         "keys are dotted names; `{i}` stands for one segment")
    names = PLACEHOLDER.findall(word)
    if len(set(names)) != len(names):
        raise draft.fail(line, start + 1, len(word), f"`{word}` uses a placeholder twice")
    return Pattern(word, span)


def _rule(draft: WeightMap, line: str, number: int) -> Rule:
    left, _, rest = line.partition("->")
    right, colon, steps_text = rest.partition(":")
    words = left.split()
    if len(words) != 1:
        raise draft.fail(number, 1, len(left.rstrip()), "expected one source key before `->`")
    source = _pattern(draft, words[0], number, left.index(words[0]))
    offset = len(left) + 2
    targets = []
    for part in right.split(","):
        word = part.strip()
        start = offset + part.index(word) if word else offset
        if not word or len(word.split()) != 1:
            raise draft.fail(number, start + 1, max(1, len(part)), "expected target keys separated by `,`",
                             "steps come after `:`, e.g. `-> a.weight, b.weight : split 0`")
        target = _pattern(draft, word, number, start)
        missing = [n for n in target.names if n not in source.names]
        if missing:
            raise draft.fail(number, start + 1, len(word), f"`{{{missing[0]}}}` is not in the source `{source.text}`",
                             "a target can only use the source's placeholders")
        targets.append(target)
        offset += len(part) + 1
    steps = _steps(draft, steps_text, number, len(left) + 2 + len(right) + 1) if colon else ()
    splits = sum(s.kind == "split" for s in steps)
    if (len(targets) > 1) != (splits == 1) or splits > 1:
        raise draft.fail(number, 1, len(line.rstrip()), f"{len(targets)} target(s) need "
                         f"{'one `split AXIS` step' if len(targets) > 1 else 'no split'}",
                         "one source key cut into several weights: `-> a, b, c : split 0`")
    return Rule(source, tuple(targets), steps, number)


def _steps(draft: WeightMap, text: str, number: int, start: int) -> tuple[Step, ...]:
    steps = []
    offset = start
    for part in text.split(","):
        words = part.split()
        col = offset + (part.index(words[0]) if words else 0) + 1
        offset += len(part) + 1
        if not words or words[0] not in STEPS:
            got = words[0] if words else ""
            near = did_you_mean(got, STEPS)
            raise draft.fail(number, col, max(1, len(got)), f"unknown step `{got}`; steps are {', '.join(STEPS)}",
                             f"did you mean `{near}`?" if near else None)
        if words[0] == "split":
            if len(words) != 2 or not words[1].lstrip("-").isdigit():
                raise draft.fail(number, col, len(part.strip()), "`split` takes the axis: `split 0`")
            steps.append(Step("split", int(words[1])))
        elif len(words) != 1:
            raise draft.fail(number, col, len(part.strip()), f"`{words[0]}` takes no argument")
        else:
            steps.append(Step(words[0]))
    return tuple(steps)


def maps_beside(spec_path: str | Path) -> list[Path]:
    """The map files of a spec: ``NAME.*.map`` in the spec's folder, sorted."""
    p = Path(spec_path)
    return sorted(p.parent.glob(f"{p.stem}.*.map")) if p.suffix == ".flash" else []
