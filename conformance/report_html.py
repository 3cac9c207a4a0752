"""The HTML rendering of a :class:`~conformance.report.Report`: one self-contained page
(inline CSS, a few lines of inline JS, no external resources) for the people who read the
result -- engineers and safety assessors.

Order: summary (target, verdict and why, coverage, provenance, notes), failures (each
anchored as ``fail-<slug>`` and linked from a list at their top), checks, proofs (grouped in
collapsed ``<details>`` when there are many), the traceability matrix.  Every status is a
coloured label that also carries its text; every piece of text is clipped, stripped of
control characters and lone surrogates, and escaped.  A filter (JS toggling a class on
``<body>``) narrows the tables to failed+error or not-judged rows; without JS it stays
hidden and everything is shown.
"""

from __future__ import annotations

import html
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from conformance.report import TEXT_LIMIT, op_text
from conformance.results import clip_text

__all__ = ["render"]

LABELS = {"proved": "∎ proved", "passed": "✓ passed", "failed": "✗ failed",
          "error": "! error", "not-judged": "– not judged"}
BAD = ("failed", "error")
TRACE_SHOWN = 200      # steps of a minimal trace shown inline (the trace file has them all)
GROUP_PROOFS_OVER = 40  # more proofs than this: one collapsed <details> per group
_CTRL = {c: None for c in (*range(32), 127) if c not in (9, 10, 13)}

CSS = """
:root{--proved:#14532d;--passed:#15803d;--failed:#b91c1c;--error:#c2410c;--nj:#6b7280;
--incomplete:#475569;--line:#d9dde3;--muted:#5b6470;--bg:#f5f6f8}
*{box-sizing:border-box}[hidden]{display:none!important}
body{margin:0;background:var(--bg);color:#1f2328;font:14px/1.45 system-ui,-apple-system,
"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
main{max-width:1240px;margin:0 auto;padding:0 20px 40px}
h1{font-size:22px;margin:0 0 4px;overflow-wrap:anywhere}h2{font-size:18px;margin:0 0 12px}
h3{font-size:15px;margin:0 0 8px;overflow-wrap:anywhere}h4{font-size:12px;margin:10px 0 4px;
text-transform:uppercase;letter-spacing:.04em;color:var(--muted)}
section,header.top{background:#fff;border:1px solid var(--line);border-radius:8px;
padding:18px 20px;margin:16px 0}
nav{position:sticky;top:0;z-index:2;background:#1f2937;color:#e5e7eb;display:flex;
flex-wrap:wrap;gap:4px 16px;align-items:center;padding:8px 20px;font-size:13px}
nav a{color:#e5e7eb;text-decoration:none}nav a:hover{text-decoration:underline}
nav .brand{font-weight:700;color:#fff;margin-right:8px}
.filter{margin-left:auto;display:flex;gap:4px;align-items:center}
.filter button{font:inherit;border:1px solid #4b5563;background:#374151;color:#e5e7eb;
border-radius:4px;padding:2px 10px;cursor:pointer}
.filter button[aria-pressed=true]{background:#e5e7eb;color:#111827;border-color:#e5e7eb}
.sub,.muted{color:var(--muted)}.sub{font-size:12px;overflow-wrap:anywhere}
.verdict-row{display:flex;gap:16px;align-items:center;flex-wrap:wrap;margin:10px 0 16px}
.verdict{font-size:24px;font-weight:800;letter-spacing:.06em;color:#fff;padding:8px 22px;
border-radius:8px;background:var(--incomplete)}.reason{font-size:15px;overflow-wrap:anywhere;flex:1;min-width:260px}
.v-passed{background:var(--passed)}.v-failed{background:var(--failed)}
.v-error{background:var(--error)}.v-incomplete{background:var(--incomplete)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:10px;
margin:4px 0 8px}.card{border:1px solid var(--line);border-radius:6px;padding:8px 12px;
border-top:4px solid var(--line)}.card b{display:block;font-size:22px}
.card.c-passed{border-top-color:var(--passed)}.card.c-failed{border-top-color:var(--failed)}
.card.c-error{border-top-color:var(--error)}.card.c-nj{border-top-color:var(--nj)}
.bar{display:flex;height:10px;border-radius:5px;overflow:hidden;background:#eef0f3;
margin:6px 0 12px}.bar span{display:block}
.b-proved{background:var(--proved)}.b-passed{background:var(--passed)}
.b-failed{background:var(--failed)}.b-error{background:var(--error)}.b-nj{background:#c4c9d0}
.alert{border-left:4px solid var(--incomplete);background:#f1f5f9;padding:8px 12px;
margin:10px 0;overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;vertical-align:top;padding:5px 8px;border-bottom:1px solid #eceef1}
th{background:#f3f4f6;font-weight:600;position:sticky;top:var(--nav,40px)}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tbody tr:hover{background:#f8fafc}.id{font-family:ui-monospace,"DejaVu Sans Mono",monospace;
font-size:12px;overflow-wrap:anywhere;word-break:break-word}
dl.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(400px,1fr));
gap:0 28px;margin:6px 0}dl.facts div{display:grid;grid-template-columns:110px 1fr;gap:8px;
padding:3px 0;border-bottom:1px solid #eceef1}dl.facts div.wide{grid-column:1/-1}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0;white-space:pre-wrap;
word-break:break-all;font:12px/1.6 ui-monospace,"DejaVu Sans Mono",monospace}
.st{display:inline-block;white-space:nowrap;border-radius:4px;padding:0 7px;font-size:12px;
font-weight:600;border:1px solid transparent;color:#fff;background:#4b5563}
.st-proved{background:var(--proved)}.st-passed{background:#dcfce7;color:#14532d;
border-color:#86efac}.st-failed{background:var(--failed)}.st-error{background:var(--error)}
.st-not-judged{background:#e5e7eb;color:#374151;border-color:#d1d5db}
.why{font-size:12px;color:var(--muted);white-space:nowrap}td.req{min-width:17em}
.sub.detail{font-style:italic;border-left:2px solid var(--line);padding-left:6px;margin-top:2px}
pre{white-space:pre-wrap;word-break:break-word;overflow-wrap:anywhere;margin:0;
background:#f6f8fa;border:1px solid #eceef1;border-radius:4px;padding:8px 10px;
font:12px/1.45 ui-monospace,"DejaVu Sans Mono",monospace;max-height:420px;overflow:auto}
article.fail{border:1px solid var(--line);border-left:5px solid var(--failed);
border-radius:6px;padding:12px 16px;margin:14px 0;scroll-margin-top:48px}
article.fail.s-error{border-left-color:var(--error)}
.eo{display:grid;grid-template-columns:1fr 1fr;gap:12px}
@media (max-width:800px){.eo{grid-template-columns:1fr}}
ol.trace{margin:0;padding:6px 10px 6px 46px;background:#f6f8fa;border:1px solid #eceef1;
border-radius:4px;max-height:420px;overflow:auto;font:12px/1.5 ui-monospace,
"DejaVu Sans Mono",monospace}ol.trace li{overflow-wrap:anywhere}
ul.toc{margin:0;padding-left:18px}ul.toc li{margin:2px 0;overflow-wrap:anywhere}
details.grp{border:1px solid var(--line);border-radius:6px;margin:4px 0}
details.grp>summary{cursor:pointer;padding:3px 10px;display:flex;gap:8px;flex-wrap:wrap;
align-items:center;list-style:none}details.grp>summary::-webkit-details-marker{display:none}
details.grp>summary::before{content:"▸";color:var(--muted);width:10px}
details.grp[open]>summary::before{content:"▾"}
details.grp[open]>summary{border-bottom:1px solid var(--line);background:#f8fafc}
ul.notes{margin:6px 0 0;padding-left:18px}ul.notes li{overflow-wrap:anywhere}
footer{color:var(--muted);font-size:12px;text-align:center;margin:20px 0}
body.f-bad tr.s-passed,body.f-bad tr.s-proved,body.f-bad tr.s-not-judged,
body.f-nj tr.s-passed,body.f-nj tr.s-proved,body.f-nj tr.s-failed,body.f-nj tr.s-error,
body.f-bad details.grp:not(.has-bad),body.f-nj details.grp:not(.has-nj){display:none}
@media print{nav{display:none}th{position:static}pre,ol.trace{max-height:none}}
"""

JS = """
(function(){var fs=document.querySelectorAll('.filter');fs.forEach(function(f){f.hidden=false});
var nav=document.querySelector('nav');if(nav)document.documentElement.style.setProperty(
'--nav',nav.offsetHeight+'px');
function show(v){document.body.classList.remove('f-bad','f-nj');
if(v!=='all'){document.body.classList.add('f-'+v);
document.querySelectorAll('details.grp.has-'+v).forEach(function(g){g.open=true})}
document.querySelectorAll('.filter button').forEach(function(b){
b.setAttribute('aria-pressed',String(b.dataset.f===v))})}
document.querySelectorAll('.filter button').forEach(function(b){
b.addEventListener('click',function(){show(b.dataset.f)})})})();
"""


def _e(text: Any, limit: int = TEXT_LIMIT) -> str:
    """``text`` clipped, without control characters or lone surrogates, HTML-escaped."""
    return html.escape(clip_text("" if text is None else str(text), limit).translate(_CTRL))


def _cls(status: Any) -> str:
    return re.sub(r"[^a-z-]", "", str(status).lower()) or "unknown"


def _badge(status: str, reason: str | None = None) -> str:
    out = f'<span class="st st-{_cls(status)}">{_e(LABELS.get(status, status), 60)}</span>'
    return out + (f' <span class="why">({_e(reason, 80)})</span>' if reason else "")


def _slugs(ids: Iterable[str]) -> list[str]:
    """Unique anchor ids ``fail-<slug>`` for the given check ids, in order."""
    seen: set[str] = set()
    out = []
    for i in ids:
        base = "fail-" + (re.sub(r"[^a-z0-9_-]+", "-", i.lower()).strip("-")[:120] or "check")
        slug, n = base, 2
        while slug in seen:
            slug, n = f"{base}-{n}", n + 1
        seen.add(slug)
        out.append(slug)
    return out


def _names(ids: Sequence[str], links: Mapping[str, str], limit: int = 6) -> str:
    shown = [f'<a href="#{links[i]}">{_e(i, 200)}</a>' if i in links else _e(i, 200)
             for i in ids[:limit]]
    more = f' <span class="muted">(+{len(ids) - limit} more)</span>' if len(ids) > limit else ""
    return (", ".join(shown) + more) or '<span class="muted">—</span>'


def _summary(d: Mapping[str, Any]) -> str:
    cov, summ = d["coverage"], d["summary"]
    nj_total = sum(cov["not_judged"].values())
    nj_why = ", ".join(f"{n} {r}" for r, n in cov["not_judged"].items()) or "none"
    cards = [("", "Requirements", cov["requirements"], "in the matrix"),
             ("", "Judged", cov["judged"], "evaluated on this target"),
             ("c-passed", "Passed", cov["passed"], f"{cov['proved']:,} of them proved"),
             ("c-failed", "Failed", cov["failed"], "broken by the target"),
             ("c-error", "Error", cov["error"], "a check broke while judging"),
             ("c-nj", "Not judged", nj_total, nj_why)]
    out = ['<h4>Requirement coverage</h4><div class="cards">'] + [
        f'<div class="card {c}"><span class="muted">{t}</span><b>{n:,}</b>'
        f'<span class="sub">{_e(s, 500)}</span></div>' for c, t, n, s in cards] + ["</div>"]
    total = max(cov["requirements"], 1)
    parts = [("proved", cov["proved"]), ("passed", cov["passed"] - cov["proved"]),
             ("failed", cov["failed"]), ("error", cov["error"]), ("nj", nj_total)]
    out.append('<div class="bar" aria-hidden="true">' + "".join(
        f'<span class="b-{k}" style="width:{100 * n / total:.3f}%" title="{n} {k}"></span>'
        for k, n in parts if n > 0) + "</div>")
    counts = ", ".join(f"{summ.get(s, 0):,} {s}" for s in LABELS if summ.get(s))
    out.append(f'<p>Checks: <b>{summ["checks"]:,}</b> ({_e(counts) or "none"}) · '
               f'{summ["steps"]:,} oracle steps · {d["seconds"]:.1f} s · profile '
               f'<code>{_e(d["profile"], 100)}</code>'
               + (f' · ABI {_e(d["abi_version"], 100)}' if d.get("abi_version") else "")
               + (f' · protocol {_e(d["protocol_version"], 100)}'
                  if d.get("protocol_version") else "")
               + (f' · capabilities: {_e(", ".join(d["capabilities"]), 1000)}'
                  if d.get("capabilities") else "")
               + (" · profile: " + _e(", ".join(f"{k} {v}" for k, v in
                                                 d["target_profile"].items()), 1000)
                  if d.get("target_profile") else "") + "</p>")
    if d.get("incomplete"):
        out.append(f'<div class="alert"><b>Incomplete:</b> {_e(d["incomplete"])}</div>')
    rows = [(k, v) for k, v in d["provenance"].items() if v not in ("", [], {}, None)]
    if d.get("proof_bound"):
        rows.append(("proof bound", d["proof_bound"]))
    if rows:
        out.append('<h4>Provenance</h4>' + _facts((k, _plain(v)) for k, v in rows))
    if d["notes"]:
        out.append('<h4>Notes</h4><ul class="notes">'
                   + "".join(f"<li>{_e(n)}</li>" for n in d["notes"]) + "</ul>")
    return "".join(out)


def _facts(rows: Iterable[tuple[str, str]]) -> str:
    """Key/value pairs in a compact grid; long values take a whole line."""
    return '<dl class="facts">' + "".join(
        f'<div{" class=wide" if len(v) > 56 or chr(10) in v else ""}><dt>{_e(k, 100)}</dt>'
        f"<dd>{_e(v)}</dd></div>" for k, v in rows if v) + "</dl>"


def _plain(v: Any) -> str:
    if isinstance(v, Mapping):
        return "\n".join(f"{k}: {_plain(x)}" for k, x in v.items())
    if isinstance(v, list | tuple):
        return ", ".join(str(x) for x in v)
    return str(v)


def _failure(c: Mapping[str, Any], slug: str, target: str) -> str:
    f = c.get("failure") or {}
    st = c["status"]
    out = [f'<article class="fail s-{_cls(st)}" id="{slug}"><h3>{_badge(st)} '
           f'<span class="id">{_e(c["id"], 500)}</span></h3>',
           f'<div class="sub">{_e(c["title"], 500)}</div>']
    req = f.get("requirement") or ", ".join(c["covers"][:3])
    out.append(_facts((("requirement", req), ("clause", f.get("clause") or c["clause"]),
                       ("kind", f"{c['kind']} check" + (f", {f['kind']} failure" if f else "")),
                       ("method", c["method"]))))
    if f:
        out.append(f'<div class="eo"><div><h4>Expected</h4><pre>{_e(f["expected"])}</pre>'
                   f'</div><div><h4>Observed</h4><pre>{_e(f["observed"])}</pre></div></div>')
    if c["detail"]:
        out.append(f'<h4>Detail</h4><pre>{_e(c["detail"])}</pre>')
    trace = f.get("trace") or []
    if trace:
        shrunk = f", shrunk from {f['shrunk_from']:,}" if f.get("shrunk_from") else ""
        more = (f'<div class="sub">… {len(trace) - TRACE_SHOWN:,} more steps in the trace '
                f"file</div>" if len(trace) > TRACE_SHOWN else "")
        out.append(f'<h4>Minimal trace — {len(trace):,} steps{shrunk}</h4><ol class="trace">'
                   + "".join(f"<li>{_e(op_text(op), 600)}</li>" for op in trace[:TRACE_SHOWN])
                   + f"</ol>{more}")
    if f.get("trace_file"):
        path = str(f["trace_file"])
        # the trace lives under the report directory's traces/: link it relative to the page
        rel = "/".join(path.replace("\\", "/").split("/")[-2:]) if "/traces/" in (
            "/" + path.replace("\\", "/")) else path
        cmd = f"pvspec replay {shlex.quote(path)} --target {shlex.quote(target)}"
        out.append(f'<h4>Replay</h4><pre>{_e(cmd)}</pre><div class="sub">trace file: '
                   f'<a href="{html.escape(quote(rel, safe="/"))}">{_e(rel, 500)}</a></div>')
    return "".join(out) + "</article>"


def _failures(bad: Sequence[Mapping[str, Any]], slugs: Sequence[str], target: str) -> str:
    if not bad:
        return '<p class="muted">No failed or errored checks.</p>'
    toc = "".join(
        f'<li>{_badge(c["status"])} <a class="id" href="#{s}">{_e(c["id"], 300)}</a>'
        f' <span class="sub">{_e((c.get("failure") or {}).get("requirement", ""), 200)}'
        f"</span></li>" for c, s in zip(bad, slugs, strict=True))
    return (f'<ul class="toc">{toc}</ul>'
            + "".join(_failure(c, s, target) for c, s in zip(bad, slugs, strict=True)))


def _groups(proofs: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Proofs by the longest prefix of their ``:``-separated ids that makes groups of a
    readable size (``proof:GROUP:HYPERCALL``, else ``proof:GROUP``)."""
    for depth in range(max(c["id"].count(":") for c in proofs), 0, -1):
        groups: dict[str, list[Mapping[str, Any]]] = {}
        for c in proofs:
            groups.setdefault(":".join(c["id"].split(":")[:depth]), []).append(c)
        if len(groups) <= 80 and len(proofs) >= 6 * len(groups):
            return groups
    return {"all proofs": list(proofs)}


def _check_row(c: Mapping[str, Any], links: Mapping[str, str],
               group: str | None = None) -> str:
    """A row of the checks table, or of a proof table (``group``: the id prefix the
    proof's group shows already)."""
    proof = group is not None
    judged = c["judged"]
    jtxt = (", ".join(judged) if len(judged) <= 3 else f"{len(judged)} requirements") or "—"
    sub = ""
    if c["status"] in BAD and c["id"] in links:
        sub = f'<div class="sub"><a href="#{links[c["id"]]}">→ failure details</a></div>'
    elif c["status"] != "passed" and c["status"] != "proved" and c["detail"]:
        sub = f'<div class="sub detail">{_e(c["detail"], 300)}</div>'
    name = c["id"][len(group) + 1:] if group and c["id"].startswith(group + ":") else c["id"]
    cells = [f'<span class="id">{_e(name, 500)}</span><div class="sub">{_e(c["title"], 300)}'
             f"</div>{sub}", _badge(c["status"], c.get("reason"))]
    cells += ([_e(c["clause"], 300)] if proof else [_e(c["kind"], 40), _e(c["method"], 100)])
    cells.append(f'<span title="{_e(", ".join(judged), 2000)}">{_e(jtxt, 300)}</span>')
    nums = ([] if proof else [f'<td class="n">{c["steps"]:,}</td>']) + [
        f'<td class="n">{c["seconds"]:.2f}</td>']
    return (f'<tr class="s-{_cls(c["status"])}">' + "".join(f"<td>{x}</td>" for x in cells)
            + "".join(nums) + "</tr>")


def _table(head: Sequence[str], rows: Iterable[str]) -> str:
    ths = "".join((f'<th class="n">{h}</th>' if h in ("steps", "seconds") else f"<th>{h}</th>")
                  for h in head)
    return f'<table class="filterable"><thead><tr>{ths}</tr></thead><tbody>' \
           + "".join(rows) + "</tbody></table>"


def _checks(checks: Sequence[Mapping[str, Any]], links: Mapping[str, str]) -> str:
    if not checks:
        return '<p class="muted">No checks in this run.</p>'
    return _table(("check", "status", "kind", "how", "judged", "steps", "seconds"),
                  (_check_row(c, links) for c in checks))


def _proofs(proofs: Sequence[Mapping[str, Any]], links: Mapping[str, str]) -> str:
    if not proofs:
        return '<p class="muted">No proofs in this run.</p>'
    head = ("proof", "status", "clause", "judged", "seconds")
    if len(proofs) <= GROUP_PROOFS_OVER:
        return _table(head, (_check_row(c, links, "") for c in proofs))
    groups = _groups(proofs)
    out = [f'<p class="muted">{len(proofs):,} proofs in {len(groups):,} groups; groups with a '
           f"failed or errored proof are open.</p>"]
    for key, cs in groups.items():
        sts = [c["status"] for c in cs]
        has = (" has-bad" if any(s in BAD for s in sts) else "") + (
            " has-nj" if "not-judged" in sts else "")
        counts = " ".join(f"{_badge(s)} ×{sts.count(s)}" for s in LABELS if s in sts)
        out.append(f'<details class="grp{has}"{" open" if "bad" in has else ""}><summary>'
                   f'<span class="id">{_e(key, 300)}</span> {counts}</summary>'
                   + _table(head, (_check_row(c, links, key) for c in cs)) + "</details>")
    return "".join(out)


def _matrix(m: Mapping[str, Mapping[str, Any]], links: Mapping[str, str]) -> str:
    rows = []
    for r, v in m.items():
        who = v["judged_by"] or ([c for c in v["checks"] if c in links]
                                 if v["status"] in BAD else [])
        how = f'<div class="sub">{_e(", ".join(v["how"]), 300)}</div>' if v["how"] else ""
        rows.append(f'<tr class="s-{_cls(v["status"])}"><td class="id req">{_e(r, 300)}</td>'
                    f'<td>{_e(v["clause"], 500)}</td><td>{_badge(v["status"], v["reason"])}'
                    f"</td><td>{_names(who, links if v['status'] in BAD else {})}{how}</td></tr>")
    if not rows:
        return '<p class="muted">No requirements.</p>'
    return _table(("requirement", "clause", "status", "judged by"), rows)


def render(report: Any, d: Mapping[str, Any] | None = None) -> str:
    """The report as one self-contained HTML page (``d``: its ``to_dict()``, when the
    caller has it already)."""
    d = report.to_dict() if d is None else d
    checks: list[Mapping[str, Any]] = d["checks"]
    bad = [c for c in checks if c["status"] in BAD]
    slugs = _slugs(c["id"] for c in bad)
    links: dict[str, str] = {}
    for c, s in zip(bad, slugs, strict=True):
        links.setdefault(c["id"], s)
    proofs = [c for c in checks if c["kind"] == "proof"]
    others = [c for c in checks if c["kind"] != "proof"]
    verdict, target = str(d["verdict"]), str(d["target"])
    name = f' <span class="muted">({_e(d["target_name"], 200)})</span>' \
        if d.get("target_name") else ""
    m = d["traceability"]
    nav = ('<nav><span class="brand">pvspec</span><a href="#summary">Summary</a>'
           f'<a href="#failures">Failures ({len(bad):,})</a>'
           f'<a href="#checks">Checks ({len(others):,})</a>'
           f'<a href="#proofs">Proofs ({len(proofs):,})</a>'
           f'<a href="#traceability">Traceability ({len(m):,})</a>'
           '<div class="filter" role="group" aria-label="Rows shown in the tables" hidden>'
           'Show: <button type="button" data-f="all" aria-pressed="true">All</button>'
           '<button type="button" data-f="bad" aria-pressed="false">Failed + error</button>'
           '<button type="button" data-f="nj" aria-pressed="false">Not judged</button>'
           "</div></nav>")
    body = [
        nav, "<main>",
        '<header class="top" id="summary"><div class="muted">pvspec conformance report</div>'
        f'<h1>{_e(target, 1000)}{name}</h1><div class="verdict-row">'
        f'<div class="verdict v-{_cls(verdict)}" role="status">{_e(verdict.upper(), 40)}</div>'
        f'<div class="reason">{_e(d["verdict_reason"])}</div></div>{_summary(d)}</header>',
        f'<section id="failures"><h2>Failures ({len(bad):,})</h2>'
        f"{_failures(bad, slugs, target)}</section>",
        f'<section id="checks"><h2>Checks ({len(others):,})</h2>{_checks(others, links)}'
        "</section>",
        f'<section id="proofs"><h2>Proofs ({len(proofs):,})</h2>{_proofs(proofs, links)}'
        "</section>",
        f'<section id="traceability"><h2>Traceability matrix ({len(m):,} requirements)</h2>'
        f"{_matrix(m, links)}</section>",
        f'<footer>pvspec {_e(d["provenance"].get("version", ""), 40)} · report format '
        f'v{_e(d.get("report_version", ""), 10)} · {_e(d["provenance"].get("finished", ""), 40)}'
        "</footer></main>"]
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>pvspec: {_e(verdict.upper(), 40)} — {_e(target, 200)}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body)
            + f"\n<script>{JS}</script>\n</body></html>\n")
