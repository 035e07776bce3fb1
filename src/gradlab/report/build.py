"""Build reports/REPORT.md and reports/report.html (figures embedded) from results/."""

from __future__ import annotations

import base64
import html
import os
import platform
import posixpath
import shutil
from importlib import metadata
from pathlib import Path

from gradlab.config import load_yaml
from gradlab.context import write_json
from gradlab.process import publish
from gradlab.report import docs_blocks, replication
from gradlab.report.quotes import MissingResults, Quotes
from gradlab.report.section import Section
from gradlab.report.sections import sections as section_fns
from gradlab.tracking import git_sha, params_hash, workspace_changes

VERSIONS = ["torch", "pytorch-lightning", "mlflow", "gymnasium", "ale-py", "scipy", "numpy", "dvc"]


def versions() -> str:
    found = []
    for name in VERSIONS:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return f"Python {platform.python_version()}; " + ", ".join(found)


def conditions(stage: str, params: dict) -> str:
    section = params.get(stage)
    if section is None:
        return "parameters: not in params.yaml"
    if "seeds" in section:
        return f"params `{stage}` (hash {params_hash(section)}), seeds: {section['seeds']}"
    return f"params `{stage}` (hash {params_hash(section)}), seed: {section.get('seed', 'n/a')}"


def results_changed(results: Path) -> bool:
    """Whether ``results`` differ from the commit the report names (new, deleted or changed files)."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all", "--", str(results)],
            cwd=results.parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and bool(out.stdout.strip())


def provenance(results: Path | None = None) -> str:
    """Which commit the report was built at, whether the workspace (code, params, results) differed from it,
    which DVC experiment."""
    changed = workspace_changes()
    if results is not None and results_changed(results):
        changed.append("results/")
    state = f" ({' and '.join(changed)} modified since that commit)" if changed else " (workspace as committed)"
    exp = os.environ.get("DVC_EXP_NAME")
    return f"Built from `results/` at git {git_sha()}{state}" + (f", DVC experiment `{exp}`" if exp else "")


def contents(sections: list[Section]) -> list[str]:
    from markdown.extensions.toc import slugify

    return (
        ["**Contents.**", ""]
        + [f"- [{sec.title}](#{slugify(f'{sec.title} ({sec.stage})', '-')})" for sec in sections]
        + [""]
    )


def render_markdown(sections: list[Section], missing: list[tuple[str, str]], params: dict, results: Path) -> str:
    lines = [
        "# gradlab findings",
        "",
        f"{provenance(results)}. {versions()}.",
        "Every number below is read from `results/<stage>/stats.json` (see `quotes.json`).",
        "",
    ]
    lines += contents(sections)
    for sec in sections:
        lines += [
            f"## {sec.title} (`{sec.stage}`)",
            "",
            f"**Question.** {sec.question}",
            "",
            f"**Answer.** {sec.answer}",
            "",
        ]
        lines += ["**Evidence.**", ""] + [f"- {e}" for e in sec.evidence] + [""]
        for fig in sec.figures:  # listed whether or not drawn yet: figures are DVC outputs, absent from a clone
            path = results / posixpath.normpath(f"{sec.stage}/{fig}")  # another stage's: ../<stage>/figures/..
            rel = Path("..") / path.relative_to(results.parent) if results.parent in path.parents else path
            lines.append(f"![{sec.stage}: {Path(fig).stem}]({rel.as_posix()})")
        lines += [
            "",
            f"**Conditions.** {conditions(sec.stage, params)}; read from `results/{sec.stage}/stats.json` "
            f"(SHA-256 {replication.stats_digest(results, sec.stage)}).",
            "",
        ]
        lines += ["**Caveats.**", ""] + [f"- {c}" for c in sec.caveats] + [""]
        lines += replication.lines(results, sec.stage) + [""]
    for stage, why in missing:
        lines += [f"## `{stage}`", "", why, ""]
    return "\n".join(lines)


def render_html(markdown_text: str, sections: list[Section], results: Path) -> str:
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables", "toc"])  # toc: headings get the ids linked to
    for sec in sections:  # embed figures so the file stands alone
        for fig in sec.figures:
            path = results / posixpath.normpath(f"{sec.stage}/{fig}")  # another stage's: ../<stage>/figures/..
            if path.exists():
                rel = (
                    (Path("..") / path.relative_to(results.parent)).as_posix()
                    if results.parent in path.parents
                    else str(path)
                )
                data = base64.b64encode(path.read_bytes()).decode()
                body = body.replace(f'src="{html.escape(rel)}"', f'src="data:image/png;base64,{data}"')
    style = "body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.45}img{max-width:100%}"
    head = f"<meta charset='utf-8'><title>gradlab findings</title><style>{style}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>\n"


def collect(results: Path) -> tuple[list[Section], list[tuple[str, str]], Quotes]:
    """Every stage's report section from ``results`` (and, for a stage without one, why)."""
    q = Quotes(results)
    sections, missing = [], []
    for stage, fn in section_fns().items():
        if not q.has(stage):
            missing.append((stage, f"No results yet: run `dvc repro {stage}` (or `gradlab run {stage}`)."))
            continue
        quoted = len(q.entries)
        try:
            sections.append(fn(q))
        except MissingResults as err:
            del q.entries[quoted:]  # the section is not in the report, nor are its quotes
            missing.append((stage, f"`results/{stage}/stats.json` lacks {err}: rerun the stage."))
    return sections, missing, q


def build(results: Path, reports: Path, params_file: Path, docs: Path | None = None) -> tuple[Path, list[dict]]:
    """Write REPORT.md, report.html and quotes.json atomically into ``reports``; return (folder, quotes).

    ``docs``: a folder of study pages whose generated results blocks are rewritten too
    (:mod:`gradlab.report.docs_blocks`).
    """
    params = load_yaml(params_file) if Path(params_file).exists() else {}
    sections, missing, q = collect(results)
    if docs is not None and docs.is_dir():
        docs_blocks.update(docs, {sec.stage: sec for sec in sections}, dict(missing), results)
    text = render_markdown(sections, missing, params, results)
    tmp = reports.parent / f".staging-{reports.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "REPORT.md").write_text(text)
    (tmp / "report.html").write_text(render_html(text, sections, results))
    write_json(tmp / "quotes.json", q.entries)
    publish(tmp, reports)
    return reports, q.entries
