"""Regenerate the "Parameters" section of each ``docs/algorithms/<algo>.md`` from the class itself.

``python docs/gen_params.py`` replaces the text between ``<!-- params:start -->`` and
``<!-- params:end -->`` in every page with a table built from the constructor's signature
(defaults) and its ``:param:`` docstring lines, so the pages never drift from the code.
"""

import inspect
import re
from pathlib import Path

from sb3_pgx.registry import ALGORITHMS

START, END = "<!-- params:start -->", "<!-- params:end -->"
# SB3's own plumbing, documented once at the bottom of every page instead of in each table.
COMMON = {
    "policy", "env", "rollout_buffer_class", "rollout_buffer_kwargs", "stats_window_size", "tensorboard_log",
    "policy_kwargs", "verbose", "seed", "device", "_init_setup_model",
}  # fmt: skip


def param_docs(cls) -> dict[str, str]:
    """``{name: description}`` from the ``:param name: ...`` lines (continuations joined)."""
    docs, current = {}, None
    for line in inspect.getdoc(cls).splitlines():
        match = re.match(r"\s*:param (\w+):\s*(.*)", line)
        if match:
            current = match.group(1)
            docs[current] = match.group(2).strip()
        elif current and line.strip() and not line.strip().startswith(":"):
            docs[current] += " " + line.strip()
        else:
            current = None
    return docs


def params_table(cls) -> str:
    docs = param_docs(cls)
    lines = ["| parameter | default | meaning |", "|---|---|---|"]
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or name in COMMON or param.kind is param.VAR_KEYWORD:
            continue
        default = "required" if param.default is inspect.Parameter.empty else f"`{param.default!r}`"
        text = docs.get(name, "").replace("|", "\\|")
        lines.append(f"| `{name}` | {default} | {text} |")
    lines += [
        "",
        "Also, as in every SB3 algorithm: `policy`, `env`, `policy_kwargs`, `tensorboard_log`, `verbose`, `seed`,",
        "`device`, `stats_window_size`, `rollout_buffer_class`, `rollout_buffer_kwargs`, `_init_setup_model`.",
        f"Generated from `sb3_pgx.{cls.__name__}`'s signature and docstring by `python docs/gen_params.py`.",
    ]
    return "\n".join(lines)


def main() -> None:
    folder = Path(__file__).resolve().parent / "algorithms"
    for algorithm in ALGORITHMS:
        path = folder / f"{algorithm.name}.md"
        text = path.read_text()
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        path.write_text(f"{head}{START}\n{params_table(algorithm.cls)}\n{END}{tail}")
        print(f"updated {path}")


if __name__ == "__main__":
    main()
