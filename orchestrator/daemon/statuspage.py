"""The status page on the metrics address: `/` for a person, `/api/v1/status` for a
program (and the page itself).

An operator on call asks: is everything that should record recording, what happens
next, and what is wrong. The page answers from what the daemon already knows (the
overview of its last pass, the timeline of that pass's plan, its last actions, its
App IDs' rate use and owners), so a request costs no store read and no API call.

- `/api/v1/status` is JSON, `version` 1 (docs/status-page.md documents every field;
  a field is only ever added within a version). `status_document` builds it.
- `/` is plain HTML built from that same document: readable without JavaScript, for
  a laptop or a phone, with the counts at the top coloured so that a glance says
  whether all is well. A small inline script fetches `/` again every
  `REFRESH_SECONDS` and swaps the page's `<main>`: one renderer, no build step, no
  CDN, nothing loaded but the page itself.

Must never: show a secret (everything shown is what `status` and `/readyz` show:
names, ids, states, the API's scrubbed error texts, file positions); put text into
the page unescaped; read the store or call the API from a request (a route runs on
the event loop: it reads the daemon's memory only).
"""

from __future__ import annotations

import html
import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.daemon.listener import Page
from orchestrator.reconcile.execute import ActionResult
from orchestrator.reconcile.overview import (
    Overview,
    Reason,
    RecordingStatus,
    Should,
    doing_of,
)
from orchestrator.reconcile.plan import DesiredRecording, Plan
from orchestrator.reconcile.timeline import Lane, describe_next, lanes
from orchestrator.schedule import FAR_FUTURE
from orchestrator.state import SessionRecord

#: The document's schema version (`version`); fields are only added within one.
VERSION = 1
#: Seconds between two refreshes of an open page.
REFRESH_SECONDS = 1.0
#: Seconds a made document (and its renderings) serves every request.
FRESH_FOR = REFRESH_SECONDS / 2
#: The timeline's horizon, as `plan` draws it.
HORIZON = timedelta(hours=24)
#: Actions remembered for the page.
ACTIONS_KEPT = 50
#: The timeline is computed again at most this often (10,000 schedules cost a little).
TIMELINE_EVERY = timedelta(seconds=10)
#: Windows a lane of the document lists at most (the page shows 6), so that an
#: every-minute cron (1,440 windows a day) costs neither the loop nor the reader.
MAX_WINDOWS = 48


@dataclass(frozen=True)
class ActionEntry:
    at: datetime
    manifest: str
    action: str
    ok: bool
    reason: str
    message: str
    session_id: int | None


class ActionLog:
    """The last `ACTIONS_KEPT` actions of the daemon's passes, newest last."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._entries: deque[ActionEntry] = deque(maxlen=ACTIONS_KEPT)

    def record(self, results: Iterable[ActionResult]) -> None:
        now = self._clock()
        for r in results:
            self._entries.append(
                ActionEntry(
                    r.at or now,  # when it ended (every one of a pass had the pass's end)
                    r.action.manifest,
                    r.action.kind.value,
                    r.ok,
                    r.action.reason,
                    r.message,
                    r.session_id,
                )
            )

    def newest_first(self) -> list[ActionEntry]:
        return list(reversed(self._entries))


@dataclass(frozen=True)
class AppView:
    """One App ID as the page shows it."""

    app_id: str
    owner: str | None
    rate_limit: int
    in_use: int
    query_cycle_s: float | None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _short(value: str | None) -> str | None:
    if not value:
        return None
    return value if len(value) <= 12 else f"{value[:6]}…{value[-4:]}"


def _human(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _should(r: RecordingStatus) -> dict[str, Any]:
    window = r.window
    text = {
        Should.RECORD: "record",
        Should.SUSPENDED: "suspended",
        Should.ENDED: "ended: no window lies ahead",
    }.get(r.should)
    if r.should is Should.WAIT:
        text = f"wait for its next window at {_human(window.start)}" if window else "wait"
    elif r.should is Should.RECORD and window is not None:
        text = (
            "record (always)" if window.end >= FAR_FUTURE else f"record until {_human(window.end)}"
        )
    return {
        "state": r.should.value,
        "text": text,
        "window": None
        if window is None
        else {
            "start": window.start.isoformat(),
            "end": None if window.end >= FAR_FUTURE else window.end.isoformat(),
        },
    }


def _recording(r: RecordingStatus, owner: str | None) -> dict[str, Any]:
    s = r.session
    doing: dict[str, Any] = {"state": r.doing}
    if s is not None:
        doing.update(_live(s, owner))
    why = None
    if r.reason is not None:
        why = {
            "reason": r.reason.value,
            "message": r.message or None,
            "last_error": r.last_error,
            "last_error_at": _iso(r.last_error_at),
            "next_attempt": _iso(r.next_attempt),
        }
    return {
        "manifest": r.name,
        "app_id": r.app_id,
        "channel": r.channel,
        "uid": r.uid,
        "file": r.source_file,
        "should": _should(r),
        "doing": doing,
        # As wanted, or about to be (a start due now, a window skipped on purpose).
        "ok": r.reason in (None, Reason.STARTING, Reason.MISSED),
        "why": why,
        "kept": r.kept,
    }


def _live(s: SessionRecord, owner: str | None) -> dict[str, Any]:
    """A live session as the document shows it: `session_id`, `sid` (shortened), `uid`,
    `since`, `owner`."""
    return {
        "session_id": s.id,
        "sid": _short(s.sid),
        "uid": s.uid,
        "since": _iso(s.started_at or s.created_at),
        "owner": owner,
    }


def _orphan(s: SessionRecord, owner: str | None, failing: set[str]) -> dict[str, Any]:
    """A live session that no manifest gives now: its file does not load and no version
    of it is stored (it had literal secrets), so it is left running; or its manifest is
    gone and its stop is due."""
    kept = s.source_file is not None and s.source_file in failing
    return {
        "manifest": s.manifest,
        "app_id": s.app_id,
        "channel": s.channel,
        "file": s.source_file,
        "state": doing_of(s),
        **_live(s, owner),
        "why": (
            "its file does not load and no version of it is stored (it holds literal "
            "secrets): left running as it is"
            if kept
            else "no manifest wants it: its stop is due"
        ),
    }


def _timeline(lanes_: Sequence[Lane], now: datetime) -> list[dict[str, Any]]:
    out = []
    for lane in lanes_:
        out.append(
            {
                "manifest": lane.manifest,
                "suspended": lane.suspended,
                "windows": [
                    {
                        "start": w.start.isoformat(),
                        "end": None if w.end >= FAR_FUTURE else w.end.isoformat(),
                    }
                    for w in lane.windows
                ],
                "more_windows": lane.more,
                "next": describe_next(lane, now, _human),  # as the page writes times
                "skipped": lane.skipped,
                "waits_until": _iso(lane.waits_until),
            }
        )
    return out


def status_document(
    view: Overview | None,
    *,
    now: datetime,
    replica: str,
    ready: bool,
    detail: str,
    timeline: Sequence[Lane],
    actions: Sequence[ActionEntry],
    apps: Sequence[AppView],
) -> dict[str, Any]:
    """The `/api/v1/status` document (see docs/status-page.md)."""
    owners = {a.app_id: a.owner for a in apps}
    recordings = list(view.recordings) if view is not None else []
    reasons = view.reasons if view is not None else {}
    files = list(view.files_failing) if view is not None else []
    orphans = list(view.orphans) if view is not None else []
    failing = set(view.failing_files) if view is not None else set()
    counts = {
        "manifests": len(recordings),
        "wanted": view.tally.wanted if view is not None else 0,
        "live": view.tally.recording if view is not None else 0,
        "held": sum(reasons.get(k, 0) for k in ("held", "unmanageable")),
        "failing": sum(reasons.get(k, 0) for k in ("failing", "backoff")),
        "starting": reasons.get("starting", 0),
        "not_recording": len(view.not_recording) if view is not None else 0,
        "files_failing": len(view.failing_files) if view is not None else 0,
        "live_without_manifest": len(orphans),
    }
    return {
        "version": VERSION,
        "generated_at": now.isoformat(),
        "as_of": _iso(view.at) if view is not None else None,
        "replica": replica,
        "ready": ready,
        "ok": bool(view is not None and view.ok and ready),
        "summary": detail,
        "counts": counts,
        "recordings": [_recording(r, owners.get(r.app_id)) for r in recordings],
        "files_failing": [d.as_dict() for d in files],
        "problems": list(view.problems) if view is not None else [],
        "live_without_manifest": [_orphan(s, owners.get(s.app_id), failing) for s in orphans],
        "timeline": {
            "horizon_hours": HORIZON.total_seconds() / 3600,
            "lanes": _timeline(timeline, now),
        },
        "actions": [
            {
                "at": e.at.isoformat(),
                "manifest": e.manifest,
                "action": e.action,
                "outcome": "ok" if e.ok else "failed",
                "reason": e.reason,
                "message": e.message,
                "session_id": e.session_id,
            }
            for e in actions
        ],
        "apps": [
            {
                "app_id": a.app_id,
                "owner": a.owner,
                "rate_limit": a.rate_limit,
                "rate_in_use": a.in_use,
                "query_cycle_seconds": None
                if a.query_cycle_s is None
                else round(a.query_cycle_s, 3),
            }
            for a in apps
        ],
    }


class StatusPage:
    """The two routes, from the daemon's memory (`source()` gives what they need).

    Every open page asks once a second, and a route runs on the event loop: the
    document, and each rendering of it, is made at most once per `FRESH_FOR`, however
    many pages are open, so that thousands of manifests never hold the loop up."""

    def __init__(
        self, source: Callable[[], dict[str, Any]], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._source = source
        self._clock = clock
        self._made: float | None = None
        self._document: dict[str, Any] = {}
        self._pages: dict[str, Page] = {}

    def routes(self) -> Mapping[str, Callable[[], Page]]:
        return {"/": self.html_page, "/api/v1/status": self.json_page}

    def json_page(self) -> Page:
        return self._page(
            "json", lambda doc: Page(200, "application/json", json.dumps(doc, indent=1).encode())
        )

    def html_page(self) -> Page:
        return self._page(
            "html", lambda doc: Page(200, "text/html; charset=utf-8", render_html(doc).encode())
        )

    def _page(self, kind: str, render: Callable[[dict[str, Any]], Page]) -> Page:
        now = self._clock()
        if self._made is None or now - self._made >= FRESH_FOR:
            self._made, self._document, self._pages = now, self._source(), {}
        page = self._pages.get(kind)
        if page is None:
            page = self._pages[kind] = render(self._document)
        return page


class TimelineCache:
    """The 24-hour timeline of the last plan, computed again at most every
    `TIMELINE_EVERY`, or as soon as the plan or the recordings are other ones."""

    def __init__(self) -> None:
        self._desired: Sequence[DesiredRecording] | None = None
        self._plan: Plan | None = None
        self._at: datetime | None = None
        self._lanes: list[Lane] = []

    def lanes(
        self, desired: Sequence[DesiredRecording], the_plan: Plan | None, now: datetime
    ) -> list[Lane]:
        same = desired is self._desired and the_plan is self._plan
        if not same or self._at is None or now - self._at >= TIMELINE_EVERY:
            self._lanes = lanes(desired, now, HORIZON, the_plan, limit=MAX_WINDOWS)
            self._desired, self._plan, self._at = desired, the_plan, now
        return self._lanes


# -- the HTML ----------------------------------------------------------------------------

_E = html.escape

_STYLE = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;
color:#1d2430;background:#f6f7f9}
header{padding:12px 16px;background:#1d2430;color:#fff}header h1{font-size:18px;margin:0}
header p{margin:4px 0 0;color:#c9d1dc;font-size:13px}
main{padding:12px 16px;max-width:1200px}
.counts{display:flex;flex-wrap:wrap;gap:8px;margin:0 0 12px;padding:0;list-style:none}
.counts li{padding:8px 12px;border-radius:6px;background:#e6e9ee;min-width:80px}
.counts b{display:block;font-size:22px}
.good{background:#d7f2dd!important;color:#0f5b23}.bad{background:#fbd9d6!important;color:#8a1c12}
.warn{background:#fdebc8!important;color:#7a4b00}
.banner{padding:10px 12px;border-radius:6px;margin:0 0 12px;font-weight:600}
table{border-collapse:collapse;width:100%;background:#fff;margin:0 0 16px}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #e3e6eb;vertical-align:top}
th{font-size:12px;text-transform:uppercase;color:#5b6575}
tr.bad td:first-child{border-left:4px solid #d93025}
tr.good td:first-child{border-left:4px solid #1e8e3e}
tr.idle td{color:#5b6575}
tr.warn td:first-child{border-left:4px solid #e37400}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}
h2{font-size:15px;margin:18px 0 6px}small{color:#5b6575}
.wrap{overflow-x:auto}
"""

_SCRIPT = """
(function(){var every=%d;function swap(doc,tag){var n=doc.querySelector(tag);
var o=document.querySelector(tag);if(n&&o&&n.innerHTML!==o.innerHTML){o.replaceWith(n)}}
function tick(){var c=new AbortController();var t=setTimeout(function(){c.abort()},5000);
fetch('/',{cache:'no-store',signal:c.signal}).then(function(r){
if(!r.ok)throw new Error(r.status);return r.text()}).then(function(t){
var doc=new DOMParser().parseFromString(t,'text/html');swap(doc,'header');swap(doc,'main')})
.catch(function(){var s=document.getElementById('stale');if(s){s.hidden=false}})
.finally(function(){clearTimeout(t);setTimeout(tick,every)})}setTimeout(tick,every)})();
"""


def _t(value: str | None) -> str:
    """An ISO instant as a person reads it: `2026-12-07 07:30:00 UTC` (escaped)."""
    if not value:
        return "-"
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return _E(value)
    return _E(_human(at))


def _count(label: str, value: int, *, good: bool, warn: bool = False) -> str:
    cls = "good" if good else ("warn" if warn else "bad")
    return f'<li class="{cls}" data-count="{_E(label)}"><b>{value}</b>{_E(label)}</li>'


def _doing_html(doing: Mapping[str, Any]) -> str:
    if "session_id" not in doing:
        return _E(str(doing["state"]))
    owner = f", owner {_E(doing['owner'])}" if doing.get("owner") else ""
    return (
        f"{_E(doing['state'])} <small>session #{doing['session_id']}, sid "
        f"<code>{_E(str(doing.get('sid') or '-'))}</code>, uid {doing['uid']}, since "
        f"{_t(doing.get('since'))}{owner}</small>"
    )


def _why_html(r: Mapping[str, Any]) -> str:
    parts = []
    why = r.get("why")
    if why:
        parts.append(f"<b>{_E(why['reason'])}</b>")
        if why.get("message"):
            parts.append(_E(why["message"]))
        if why.get("last_error"):
            parts.append(f"last error: {_E(why['last_error'])}")
        if why.get("next_attempt"):
            parts.append(f"next attempt {_t(why['next_attempt'])}")
    if r.get("kept"):
        parts.append("its file does not load: the last known good version is in force")
    return "<br>".join(parts)


def render_html(doc: Mapping[str, Any]) -> str:
    """The page, from a `status_document`."""
    counts = doc["counts"]
    all_well = bool(doc["ok"])
    out = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name=viewport content="width=device-width,initial-scale=1">',
        '<title>orchestrator status</title><link rel=icon href="data:,">',
        f"<style>{_STYLE}</style></head><body>",
        "<header><h1>orchestrator</h1>",
        f"<p>replica {_E(doc['replica'])} · as of {_t(doc['as_of'])} · "
        f"{_E(doc['summary'])}</p></header><main>",
        '<p id=stale class="banner warn" hidden>The daemon does not answer: what '
        "follows may be out of date.</p>",
        f'<p class="banner {"good" if all_well else "bad"}" id=verdict>'
        + (
            "All is well: every wanted recording records, every file loads."
            if all_well
            else "Not all is well: see what is marked below."
        )
        + "</p>",
        "<ul class=counts id=counts>",
        _count("wanted", counts["wanted"], good=True),
        _count("live", counts["live"], good=counts["not_recording"] == 0),
        _count("held", counts["held"], good=counts["held"] == 0),
        _count("failing", counts["failing"], good=counts["failing"] == 0),
        _count("not loading", counts["files_failing"], good=counts["files_failing"] == 0),
        "</ul>",
    ]
    if doc["files_failing"]:
        out.append(
            "<h2>Files that do not load</h2><div class=wrap><table id=files><tr>"
            "<th>file</th><th>line</th><th>field</th><th>message</th></tr>"
        )
        for d in doc["files_failing"]:
            file = _E(str(d.get("file")))
            out.append(
                f'<tr class=bad data-file="{file}"><td><code>{file}'
                f"</code></td><td>{_E(str(d.get('line')))}:{_E(str(d.get('column')))}</td>"
                f"<td>{_E(str(d.get('field') or ''))}</td><td>{_E(str(d.get('message')))}</td></tr>"
            )
        out.append("</table></div>")
    if doc["problems"]:
        out.append("<h2>Problems</h2><ul>")
        out.extend(f"<li>{_E(p)}</li>" for p in doc["problems"])
        out.append("</ul>")
    if doc["live_without_manifest"]:
        out.append(
            "<h2>Live without a manifest</h2><div class=wrap><table id=orphans><tr>"
            "<th>manifest</th><th>is</th><th>why</th></tr>"
        )
        for o in doc["live_without_manifest"]:
            out.append(
                f'<tr class=warn data-manifest="{_E(o["manifest"])}"><td><b>{_E(o["manifest"])}'
                f"</b><br><small>{_E(o['channel'])} · uid {o['uid']} · <code>"
                f"{_E(str(o['file']))}</code></small></td><td>{_doing_html(o)}</td>"
                f"<td>{_E(o['why'])}</td></tr>"
            )
        out.append("</table></div>")
    out.append(
        "<h2>Recordings</h2><div class=wrap><table id=recordings><tr><th>manifest</th>"
        "<th>should</th><th>is</th><th>why not</th></tr>"
    )
    for r in doc["recordings"]:
        wanted = r["should"]["state"] == "record"
        cls = "bad" if not r["ok"] else ("warn" if r["kept"] else ("good" if wanted else "idle"))
        doing = _E(r["doing"]["state"])
        out.append(
            f'<tr class={cls} data-manifest="{_E(r["manifest"])}" data-doing="{doing}">'
            f"<td><b>{_E(r['manifest'])}</b><br><small>{_E(r['channel'])} · uid {r['uid']} · "
            f"<code>{_E(r['file'])}</code></small></td>"
            f"<td>{_E(str(r['should']['text']))}</td><td>{_doing_html(r['doing'])}</td>"
            f"<td>{_why_html(r)}</td></tr>"
        )
    out.append("</table></div>")
    lanes_ = doc["timeline"]["lanes"]
    out.append(
        "<h2>Next 24 hours</h2><div class=wrap><table id=timeline><tr><th>manifest</th>"
        "<th>next</th><th>windows</th></tr>"
    )
    for lane in lanes_:
        windows = ", ".join(
            "always" if w["end"] is None else f"{_t(w['start'])} → {_t(w['end'])}"
            for w in lane["windows"][:6]
        )
        extra = len(lane["windows"]) - 6
        plus = "+" if lane["more_windows"] else ""  # more than the document lists
        more = f" (+{extra}{plus})" if extra > 0 else ""
        out.append(
            f"<tr><td>{_E(lane['manifest'])}</td><td>{_E(lane['next'])}</td>"
            f"<td><small>{windows}{more}</small></td></tr>"
        )
    out.append("</table></div>")
    out.append(
        f"<h2>Last {ACTIONS_KEPT} actions</h2><div class=wrap><table id=actions><tr>"
        "<th>at</th><th>manifest</th><th>action</th><th>outcome</th></tr>"
    )
    for a in doc["actions"]:
        cls = "good" if a["outcome"] == "ok" else "bad"
        out.append(
            f"<tr class={cls}><td><small>{_t(a['at'])}</small></td><td>{_E(a['manifest'])}</td>"
            f"<td>{_E(a['action'])} <small>{_E(a['reason'])}</small></td>"
            f"<td>{_E(a['outcome'])} <small>{_E(a['message'])}</small></td></tr>"
        )
    if not doc["actions"]:
        out.append("<tr><td colspan=4><small>none yet</small></td></tr>")
    out.append("</table></div>")
    out.append(
        "<h2>App IDs</h2><div class=wrap><table id=apps><tr><th>App ID</th>"
        "<th>owner</th><th>rate in use</th><th>query round</th></tr>"
    )
    for a in doc["apps"]:
        cycle = a["query_cycle_seconds"]
        out.append(
            f"<tr><td><code>{_E(a['app_id'])}</code></td><td>{_E(str(a['owner'] or 'nobody'))}</td>"
            f"<td>{a['rate_in_use']} of {a['rate_limit']}/s</td>"
            f"<td>{'-' if cycle is None else f'{cycle:.1f} s'}</td></tr>"
        )
    out.append("</table></div>")
    out.append(
        f"<p><small>Read-only. Updates itself every {REFRESH_SECONDS:g} s; the same data "
        "as JSON: <a href=/api/v1/status>/api/v1/status</a>.</small></p></main>"
    )
    out.append(f"<script>{_SCRIPT % int(REFRESH_SECONDS * 1000)}</script></body></html>")
    return "".join(out)
