"""Property-based: `translate` of any valid manifest, and the fingerprints it computes.

Covers:
- a strategy for valid manifest documents across the whole language, valid by
  construction (nothing is filtered): both modes; `recording` with channelType,
  streams, maxIdleTime, subscribe and unsubscribe lists per kind (`#allstream#` alone
  in a subscribe list, empty sections), subscribeUidGroup written or derived,
  decryption with a secret, audioProfile (mix), videoStreamType; `transcoding` and
  `layout` in mix (floating, adaptive, vertical with maxResolutionUid, custom with
  1-17 regions); `recordingFiles` (hls, and mp4 beside it in mix, in either order) or
  `snapshots` (individual, with video); `storage` for every vendor with a region of
  its table (by name or alias, spelled loosely, or by code; none for the vendors
  without regions) and fileNamePrefix up to its limit; `aliyunVod` (mix, without storage); token;
  resourceExpiredHour; every schedule form; labels, suspend, updatePolicy,
  startingDeadline; uid numbers and `auto`. Words are also written in capitals or as
  their codes; secrets are env, file and credential references and literals.
- every valid manifest translates, and each body (acquire; start once its secrets
  are resolved; update; updateLayout in mix mode only) passes the checks the
  receiving side (the emulator) applies: the channel name, the wire model with the
  URL's mode, update lists that fit the start's streamTypes; each survives JSON,
  re-dumps to itself and names the manifest's uid and channel.
- secrets: the unresolved start refuses to become a body; every reference of the
  manifest, and no other, is in the start and its value in the resolved body; no
  value appears in a described body; no fingerprint changes when only a literal
  secret's value does.
- fingerprints, for a valid manifest and a valid change of one field (one test per
  field): `restart` changes exactly when something only a new session can apply
  changes: app, channel, uid (the derived one for `auto`, so the name then too),
  mode, channelType, streams, maxIdleTime, decryption (`none` is no decryption),
  audioProfile, videoStreamType, the effective subscribeUidGroup, the transcoding
  size (the reference's defaults once a layout is written), recordingFiles or
  snapshots, mp4 added or dropped (not the order the types are written in),
  storage, aliyunVod, the token reference, resourceExpiredHour, and
  which recorded kinds the lists leave unsubscribed (a kind without a list while
  another kind has one); never for schedule, suspend, labels, updatePolicy,
  startingDeadline, rolloverUid (`auto` written or left out is no change at all),
  a change inside a written layout, or a list change that keeps the same kinds
  reachable and the same group. `subscription` changes exactly when
  what `update` would send changes (no list for any kind means `#allstream#` for
  each), never for a layout change; `layout` exactly when what `updateLayout` would
  send changes (floating on `#000000` by default), never for a list change. `spec`
  changes with every change but a literal secret's value, which no fingerprint sees.
- secrets once resolved: `secret_values()` (what the client scrubs from echoed
  errors) lists every resolved secret, the optional token and decryption secret too;
  a reference that resolves to nothing (an empty literal `token: ""`, a variable set
  to "") is refused when resolving, by its name and without any value.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from orchestrator import contract as c
from orchestrator.agora import wire
from orchestrator.manifest.model import Layout, Manifest, Recording, ScheduleSpec
from orchestrator.reconcile.translate import translate
from orchestrator.secrets import LiteralSecret, SecretRef, describe_secret, resolve_secret

# Some 1,500 generated manifests: about 20 s, so not in `make test-fast`.
pytestmark = pytest.mark.slow

Doc = dict[str, Any]

# --- strategies: valid manifest documents, valid by construction -----------------------

ALNUM = string.ascii_letters + string.digits


def identifiers(
    first: str, rest: str, max_rest: int, last: str | None = None
) -> st.SearchStrategy[str]:
    """A character of `first`, then up to `max_rest` of `rest` (ending in one of `last`)."""
    parts = st.tuples(
        st.text(first, min_size=1, max_size=1),
        st.text(rest, max_size=max_rest),
        st.text(last or rest, min_size=1, max_size=1),
    )
    return parts.map(lambda p: p[0] + (p[1] + p[2] if p[1] or last is None else ""))


def spelled(table: Mapping[str, int], word: str) -> st.SearchStrategy[str | int]:
    """The ways a manifest may write `word`: itself, in capitals, its code, the code as text."""
    code = table[word]
    return st.sampled_from([word, word.upper(), code, str(code)])


def choice(table: Mapping[str, int]) -> st.SearchStrategy[str | int]:
    return st.sampled_from(list(table)).flatmap(lambda word: spelled(table, word))


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


UIDS = st.integers(min_value=c.MIN_UID, max_value=c.UINT32_MAX)
UID_OR_AUTO = st.one_of(UIDS, UIDS.map(str), st.sampled_from(["auto", "AUTO"]))
NAMES = identifiers(ALNUM, ALNUM + "._-", 20, last=ALNUM)
APPS = identifiers(ALNUM, ALNUM + "._-", 15)
CHANNELS = st.text(alphabet=sorted(c.CHANNEL_CHARSET), min_size=1, max_size=c.MAX_CHANNEL_BYTES)
LABELS = st.dictionaries(identifiers(ALNUM, ALNUM + "._/-", 20), st.text(max_size=40), max_size=3)
DEADLINES = st.sampled_from(["10m", "1h", "90s", "1h30m"]) | st.integers(0, 86_400)
IDLE_TIMES = st.integers(c.IDLE_TIME.low, c.IDLE_TIME.high) | st.sampled_from(
    ["5s", "2m", "1h30m", "1d", "300"]
)
COLORS = st.text(string.hexdigits, min_size=6, max_size=6).map(lambda h: "#" + h)
FRACTIONS = st.integers(0, 10**6).map(lambda n: n / 10**6) | st.sampled_from([0, 1])
TEXTS = st.text(min_size=1, max_size=30)
# Literal values are distinctive, so that finding one in a text means it leaked there.
LITERAL_PREFIX = "lit-"
LITERALS = st.binary(min_size=8, max_size=8).map(lambda b: LITERAL_PREFIX + b.hex())
SECRETS = st.one_of(
    identifiers(string.ascii_letters + "_", ALNUM + "_", 11).map(lambda n: {"env": n}),
    st.text(ALNUM + ".-", min_size=1, max_size=12).map(lambda n: {"file": f"/etc/o/{n}"}),
    st.text(ALNUM + "_.@-", min_size=1, max_size=12).map(lambda n: {"credential": n}),
    LITERALS,
)
RESOURCE_HOURS = st.integers(c.RESOURCE_HOURS.low, c.RESOURCE_HOURS.high)


def group_for(count: int) -> str | None:
    """The subscribeUidGroup word for `count` distinct subscribed uids (None above 17)."""
    for word, (low, high) in c.UID_GROUP_RANGES.items():
        if low <= count <= high:
            return word
    return None


@st.composite
def windows(draw: st.DrawFn) -> Doc:
    zones = [UTC, timezone(timedelta(hours=8)), timezone(-timedelta(hours=5, minutes=30))]
    out = []
    for _ in range(draw(st.integers(1, 3))):
        start = draw(st.datetimes(datetime(2020, 1, 1), datetime(2035, 1, 1)))
        start = start.replace(tzinfo=draw(st.sampled_from(zones)))
        end = start + timedelta(seconds=draw(st.integers(1, 10**6)))
        out.append({"start": start.isoformat(), "end": end.isoformat()})
    return {"windows": out}


CRONS = st.fixed_dictionaries(
    {
        "cron": st.sampled_from(
            ["0 9 * * MON-FRI", "*/10 * * * *", "30 2 * * *", "@daily", "0 0 1 * *"]
        ),
        "timezone": st.sampled_from(["UTC", "Europe/Berlin", "Asia/Shanghai", "America/New_York"]),
        "duration": st.sampled_from(["30m", "1h30m", 3600, "90s", "1d"]),
    }
)
SCHEDULES = st.one_of(st.just("always"), st.just({"always": True}), windows(), CRONS)


@st.composite
def decryptions(draw: st.DrawFn) -> Doc:
    mode = draw(st.sampled_from(list(c.DECRYPTION_MODES)))
    out: Doc = {"mode": draw(spelled(c.DECRYPTION_MODES, mode))}
    if mode != "none":
        out["secret"] = draw(SECRETS)
    return out


@st.composite
def recordings(draw: st.DrawFn, mode: c.Mode, snapshots: bool) -> Doc:
    """A `recording` section valid in `mode` (with snapshots: video, and audio needs video)."""
    out: Doc = {}
    if draw(st.booleans()):
        out["channelType"] = draw(choice(c.CHANNEL_TYPES))
    streams = draw(st.sampled_from(["video", "audio+video"] if snapshots else list(c.STREAM_TYPES)))
    if streams != "audio+video" or draw(st.booleans()):
        out["streams"] = draw(spelled(c.STREAM_TYPES, streams))
    if draw(st.booleans()):
        out["decryption"] = draw(decryptions())
    if mode is c.Mode.MIX and draw(st.booleans()):
        out["audioProfile"] = draw(choice(c.AUDIO_PROFILES))
    if draw(st.booleans()):
        out["videoStreamType"] = draw(choice(c.VIDEO_STREAM_TYPES))
    if draw(st.booleans()):
        out["maxIdleTime"] = draw(IDLE_TIMES)

    kinds = ("audio", "video") if streams == "audio+video" else (streams,)
    ways = ["none", "subscribe", "all", "unsubscribe"]
    lists = {kind: draw(st.sampled_from(ways)) for kind in kinds}
    subscribing = ("subscribe", "all")
    if snapshots and lists.get("audio") in subscribing and lists["video"] not in subscribing:
        lists["video"] = draw(st.sampled_from(subscribing))
    has_sub = any(how in subscribing for how in lists.values())
    has_unsub = "unsubscribe" in lists.values()
    # an empty section is valid; an empty unsubscribe section makes the count uncertain
    empty_sub = not has_sub and draw(st.integers(0, 3)) == 0
    empty_unsub = not has_unsub and draw(st.integers(0, 3)) == 0
    certain = (
        not (has_unsub or empty_unsub)
        and "all" not in lists.values()
        and "subscribe" in lists.values()
    )
    # in individual mode a certain count must fit a group: at most 17 distinct uids
    cap = c.MAX_SUBSCRIBED_UIDS if certain and mode is c.Mode.INDIVIDUAL else c.MAX_UID_LIST
    size = draw(st.integers(1, cap))  # integers favour their bounds: full lists too
    pool = draw(st.lists(UIDS, min_size=size, max_size=size, unique=True))
    subscribe: Doc = {}
    unsubscribe: Doc = {}
    for kind, how in lists.items():
        if how == "all":
            subscribe[kind] = [draw(st.sampled_from([c.ALL_STREAMS, c.ALL_STREAMS.upper()]))]
        elif how != "none":
            uids = draw(st.permutations(pool))[: draw(st.integers(1, len(pool)))]
            written = [draw(st.sampled_from([uid, str(uid)])) for uid in uids]
            (subscribe if how == "subscribe" else unsubscribe)[kind] = written
    if has_sub or empty_sub:
        out["subscribe"] = subscribe
    if has_unsub or empty_unsub:
        out["unsubscribe"] = unsubscribe

    if certain:
        union = {
            int(u) for kind, how in lists.items() if how == "subscribe" for u in subscribe[kind]
        }
        derived = group_for(len(union))
        if derived is not None and draw(st.booleans()):
            out["subscribeUidGroup"] = draw(spelled(c.UID_GROUPS, derived))
    elif mode is c.Mode.INDIVIDUAL or draw(st.booleans()):
        out["subscribeUidGroup"] = draw(choice(c.UID_GROUPS))
    return out


@st.composite
def transcodings(draw: st.DrawFn) -> Doc:
    width = draw(st.integers(1, c.MAX_SIDE))
    height = draw(st.integers(1, min(c.MAX_SIDE, c.MAX_PIXELS // width)))
    return {
        "width": width,
        "height": height,
        "fps": draw(st.integers(1, 120)),
        "bitrate": draw(st.integers(1, c.MAX_BITRATE)),
    }


@st.composite
def regions(draw: st.DrawFn) -> Doc:
    out: Doc = {key: draw(FRACTIONS) for key in ("x", "y", "width", "height")}
    if draw(st.booleans()):
        out["uid"] = draw(UIDS)
    if draw(st.booleans()):
        out["alpha"] = draw(FRACTIONS)
    if draw(st.booleans()):
        out["renderMode"] = draw(choice(c.RENDER_MODES))
    return out


@st.composite
def layouts(draw: st.DrawFn) -> Doc:
    kind = draw(st.sampled_from(list(c.LAYOUT_TYPES)))
    out: Doc = {}
    if kind != "floating" or draw(st.booleans()):
        out["type"] = draw(spelled(c.LAYOUT_TYPES, kind))
    if draw(st.booleans()):
        out["background"] = draw(COLORS)
    if kind == "vertical" and draw(st.booleans()):
        out["maxResolutionUid"] = draw(UIDS)
    if kind == "custom":
        out["regions"] = draw(st.lists(regions(), min_size=1, max_size=c.MAX_LAYOUT_REGIONS))
    return out


@st.composite
def prefixes(draw: st.DrawFn) -> list[str]:
    parts = draw(st.lists(st.text(ALNUM, min_size=1, max_size=40), min_size=1, max_size=6))
    kept: list[str] = []
    length = 0
    for part in parts:
        if length + len(part) + 1 > c.MAX_PREFIX_CHARS:
            break
        kept.append(part)
        length += len(part) + 1
    return kept


PREFIXES = prefixes() | st.sampled_from([["A" * 127], ["x" * 63, "y" * 63]])  # at the limit


@st.composite
def region_of(draw: st.DrawFn, vendor: str, other_than: str | None = None) -> str | int:
    """A region of `vendor`'s table: its name or an alias, spelled loosely, or its code."""
    name = draw(st.sampled_from([n for n in c.REGIONS[vendor] if n != other_than]))
    code = c.REGIONS[vendor][name]
    aliases = [a for a, n in c.REGION_ALIASES.get(vendor, {}).items() if n == name]
    written = draw(st.sampled_from([name, *aliases]))
    loose = written.lower().replace("_", "-")
    spellings: list[str | int] = [written, written.lower(), loose, code, str(code)]
    return draw(st.sampled_from(spellings))


@st.composite
def storages(draw: st.DrawFn) -> Doc:
    vendor = draw(st.sampled_from(list(c.VENDORS)))
    out: Doc = {
        "vendor": draw(spelled(c.VENDORS, vendor)),
        "bucket": draw(st.text(min_size=1, max_size=255)),
        "accessKey": draw(SECRETS),
        "secretKey": draw(SECRETS),
    }
    if c.REGIONS[vendor]:  # Azure and Google Cloud take none
        out["region"] = draw(region_of(vendor))
    if draw(st.booleans()):
        out["fileNamePrefix"] = draw(PREFIXES)
    return out


VIDEO_DATA_KEYS = (
    "description",
    "coverUrl",
    "tags",
    "templateGroupId",
    "userData",
    "storageLocation",
    "workflowId",
)
REGION_ID_PARTS = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8)


@st.composite
def vods(draw: st.DrawFn) -> Doc:
    video: Doc = {"title": draw(TEXTS)}
    for key in draw(st.lists(st.sampled_from(VIDEO_DATA_KEYS), unique=True)):
        video[key] = draw(TEXTS)
    if draw(st.booleans()):
        video["cateId"] = draw(TEXTS | st.integers(0, 10**9))
    out: Doc = {
        "accessKey": draw(SECRETS),
        "secretKey": draw(SECRETS),
        "regionId": "-".join(draw(st.lists(REGION_ID_PARTS, min_size=1, max_size=3))),
        "videoData": video,
    }
    if draw(st.booleans()):
        out["errorHandlePolicy"] = "error_abort"
    return out


#: recordingFiles sections valid in each mode (None: `recordingFiles:` alone).
RECORDING_FILES = {
    c.Mode.INDIVIDUAL: st.sampled_from([None, {}, {"fileTypes": ["hls"]}]),
    c.Mode.MIX: st.sampled_from(
        [
            None,
            {},
            {"fileTypes": ["hls"]},
            {"fileTypes": ["hls", "mp4"]},
            {"fileTypes": ["mp4", "hls"]},
        ]
    ),
}
SNAPSHOTS = st.one_of(
    st.sampled_from([None, {}, {"fileTypes": ["jpg"]}]),
    st.builds(
        lambda interval: {"interval": interval},
        st.integers(c.CAPTURE_INTERVAL.low, c.CAPTURE_INTERVAL.high)
        | st.sampled_from(["5s", "1m", "1h"]),
    ),
)


@st.composite
def manifest_docs(
    draw: st.DrawFn,
    mode: c.Mode | None = None,
    layout: bool | None = None,
    storage: bool | None = None,
    literal_token: bool = False,
    recording_files: bool = False,
) -> Doc:
    """A valid manifest document, as the loader hands it to the model.

    `layout` and `storage` force the section present (True) or absent (False);
    `layout=True` needs `mode=MIX`. `literal_token` writes the token as a literal;
    `recording_files` writes a recordingFiles section.
    """
    mode = mode or draw(st.sampled_from(list(c.Mode)))
    doc: Doc = {
        "name": draw(NAMES),
        "app": draw(APPS),
        "channel": draw(CHANNELS),
        "uid": None,  # drawn last: never one of the users' uids the lists name
        "mode": draw(st.sampled_from([str(mode), str(mode).upper()])),
        "schedule": draw(SCHEDULES),
    }
    if draw(st.booleans()):
        doc["labels"] = draw(LABELS)
    if draw(st.booleans()):
        doc["startingDeadline"] = draw(DEADLINES)
    if draw(st.booleans()):
        doc["suspend"] = draw(st.booleans())
    if draw(st.booleans()):
        doc["updatePolicy"] = draw(st.sampled_from(["restart", "defer", "DEFER"]))
    if literal_token or draw(st.booleans()):
        doc["token"] = draw(LITERALS if literal_token else SECRETS)
    if draw(st.booleans()):
        doc["resourceExpiredHour"] = draw(RESOURCE_HOURS)

    outputs = ["none", "recordingFiles"] + (["snapshots"] if mode is c.Mode.INDIVIDUAL else [])
    output = "recordingFiles" if recording_files else draw(st.sampled_from(outputs))
    recording = draw(recordings(mode, snapshots=output == "snapshots"))
    if recording:
        doc["recording"] = recording
    elif draw(st.booleans()):
        doc["recording"] = {}  # all defaults
    if mode is c.Mode.MIX:
        if draw(st.booleans()):
            doc["transcoding"] = draw(transcodings())
        if layout or (layout is None and draw(st.booleans())):
            doc["layout"] = draw(layouts())
    if output == "recordingFiles":
        doc["recordingFiles"] = draw(RECORDING_FILES[mode])
    elif output == "snapshots":
        doc["snapshots"] = draw(SNAPSHOTS)
    if mode is c.Mode.MIX and not storage and draw(st.booleans()):
        doc["aliyunVod"] = draw(vods())
    elif storage or (storage is None and draw(st.booleans())):
        doc["storage"] = draw(storages())
    users = users_named(doc)
    doc["uid"] = draw(UID_OR_AUTO.filter(lambda u: not str(u).isdigit() or int(u) not in users))
    return doc


def users_named(doc: Doc) -> set[int]:
    """The uids of users a document's subscribe lists and layout name (the recorder's
    own uid is none of them)."""
    recording, layout = doc.get("recording", {}), doc.get("layout", {})
    named = [u for kind in ("audio", "video") for u in recording.get("subscribe", {}).get(kind, [])]
    named += [layout.get("maxResolutionUid"), *(r.get("uid") for r in layout.get("regions", []))]
    return {int(u) for u in named if isinstance(u, int) or (isinstance(u, str) and u.isdigit())}


# --- helpers: what the receiving side checks, and the secrets --------------------------


def resolve(ref: SecretRef) -> str:
    """A stand-in for the executor's resolver: a literal's value, else a fake non-empty one."""
    if isinstance(ref, LiteralSecret):
        return ref.value
    return "sv-" + hashlib.sha256(describe_secret(ref).encode()).hexdigest()[:16]


def received(model: type[wire.Request], body: dict[str, Any], mode: str | None) -> None:
    """Check `body` as the emulator does, after a trip through JSON; it must re-dump to itself."""
    sent = json.loads(json.dumps(body))
    assert sent == body
    assert c.channel_name_problem(sent["cname"]) is None
    parsed = model.model_validate(sent, context={"mode": mode})
    assert parsed.to_wire() == body


def node_of(doc: Doc, path: str) -> tuple[Doc, str]:
    """The mapping holding a dotted secret path (`storage.accessKey`) and the last key."""
    *parents, leaf = path.split(".")
    node = doc
    for part in parents:
        node = node[part]
    return node, leaf


def with_literals_replaced(doc: Doc, manifest: Manifest) -> Doc:
    """`doc` with every literal secret given another value (the same references otherwise)."""
    out = copy.deepcopy(doc)
    for path, ref in manifest.secret_refs():
        if isinstance(ref, LiteralSecret):
            node, key = node_of(out, path)
            node[key] = LITERAL_PREFIX + hashlib.sha256(ref.value.encode()).hexdigest()[:16]
    return out


# --- property 1: every valid manifest gives bodies the receiving side accepts ----------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=manifest_docs())
def test_every_valid_manifest_translates_to_bodies_the_receiver_accepts(doc: Doc) -> None:
    manifest = Manifest.model_validate(doc)  # the strategy only builds valid documents
    mode = str(manifest.mode)
    event(f"mode {mode}")
    requests = translate(manifest)
    uid, cname = str(manifest.recording_uid), manifest.channel

    acquire = requests.acquire.to_wire()
    received(wire.AcquireRequest, acquire, None)

    refs = [ref for _, ref in manifest.secret_refs()]
    values = {resolve(ref) for ref in refs}
    start = requests.start.resolved(resolve).to_wire()
    received(wire.StartRequest, start, mode)
    text = json.dumps(start)
    assert [value for value in values if value not in text] == []

    update = requests.update.to_wire()
    received(wire.UpdateRequest, update, mode)
    streams = start["clientRequest"]["recordingConfig"]["streamTypes"]
    subscribe = update["clientRequest"]["streamSubscribe"]
    assert subscribe, "update subscribes to nothing"
    if streams == c.STREAM_TYPES["video"]:
        assert "audioUidList" not in subscribe
    if streams == c.STREAM_TYPES["audio"]:
        assert "videoUidList" not in subscribe

    bodies = [acquire, start, update]
    described = [r.described() for r in (requests.acquire, requests.start, requests.update)]
    if manifest.mode is c.Mode.MIX:
        assert requests.update_layout is not None
        update_layout = requests.update_layout.to_wire()
        received(wire.UpdateLayoutRequest, update_layout, mode)
        bodies.append(update_layout)
        described.append(requests.update_layout.described())
    else:
        assert requests.update_layout is None
    assert [(body["uid"], body["cname"]) for body in bodies] == [(uid, cname)] * len(bodies)

    # secrets stay references until resolved, and never reach a description
    assert sorted(map(describe_secret, requests.start.secret_refs())) == sorted(
        map(describe_secret, refs)
    )
    if refs:
        event("secrets")
        with pytest.raises((wire.UnresolvedSecretError, ValueError), match="not resolved"):
            requests.start.to_wire()
    else:
        assert requests.start.to_wire() == start
    shown = json.dumps(described)
    assert [value for value in values if value in shown] == []

    # no fingerprint input holds a secret value: other literal values change nothing
    if any(isinstance(ref, LiteralSecret) for ref in refs):
        event("literal secrets")
        other = translate(Manifest.model_validate(with_literals_replaced(doc, manifest)))
        assert other.fingerprints == requests.fingerprints
        assert other.start.described() == requests.start.described()


# --- property 2: the fingerprints follow the field that changed ------------------------
#
# Each view below states, in manifest terms, what one fingerprint must follow; a test
# changes one field and checks every fingerprint against its view.


def masked(m: Manifest) -> Doc:
    """The manifest as validated (defaults applied), each secret shown as its reference."""
    dump = m.model_dump(mode="json", by_alias=True, exclude_none=True)
    for path, ref in m.secret_refs():
        node, key = node_of(dump, path)
        node[key] = describe_secret(ref)
    return dump


KindLists = dict[str, tuple[str, tuple[int | str, ...]] | None]


def kind_lists(m: Manifest) -> KindLists:
    """Per recorded kind: its subscribe or unsubscribe list, or None."""
    r = m.recording
    out: KindLists = {}
    for kind in r.recorded_kinds:
        sub = r.subscribe.kind(kind) if r.subscribe else None
        unsub = r.unsubscribe.kind(kind) if r.unsubscribe else None
        if sub is not None:
            out[kind] = ("subscribe", sub)
        elif unsub is not None:
            out[kind] = ("unsubscribe", unsub)
        else:
            out[kind] = None
    return out


def effective_subscription(m: Manifest) -> object:
    """What `update` can say: each listed kind's list; without any list, `#allstream#` for
    every recorded kind. (A kind without a list while another kind has one is not
    subscribed at all, which only a restart changes: see `unsubscribed_kinds`.)"""
    lists = kind_lists(m)
    if all(v is None for v in lists.values()):
        return [(kind, ("subscribe", (c.ALL_STREAMS,))) for kind in lists]
    return [(kind, v) for kind, v in lists.items() if v is not None]


def unsubscribed_kinds(m: Manifest) -> list[str]:
    lists = kind_lists(m)
    listed = any(v is not None for v in lists.values())
    return [kind for kind, v in lists.items() if listed and v is None]


def effective_layout(m: Manifest) -> object:
    """The whole layout `updateLayout` sends (mix only): floating on black by default."""
    if m.mode is not c.Mode.MIX:
        return None
    layout = m.layout or Layout()
    background = layout.background or c.DEFAULT_BACKGROUND
    return layout.model_copy(update={"background": background}).model_dump(
        mode="json", exclude_none=True
    )


def effective_transcoding(m: Manifest) -> object:
    """The transcoding size sent: none, or the reference's defaults once a layout is written."""
    if m.transcoding is None and m.layout is None:
        return None
    if m.transcoding is None:
        return dict(c.DEFAULT_TRANSCODING)
    return m.transcoding.model_dump()


def effective_decryption(m: Manifest) -> object:
    d = m.recording.decryption
    if d is None or d.mode == "none":
        return None
    return d.mode, None if d.secret is None else describe_secret(d.secret)


def top(key: str) -> Callable[[Manifest], object]:
    return lambda m: masked(m).get(key)


def in_recording(key: str) -> Callable[[Manifest], object]:
    return lambda m: masked(m)["recording"].get(key)


def never(m: Manifest) -> object:
    return None


Edit = Callable[[st.DataObject, Doc, Manifest], None]


@dataclass(frozen=True)
class Mutation:
    """A change of one field, and what `restart` must follow through it.

    kind: "schedule" (only `spec` may change), "subscription" (never `layout`),
    "layout" (never `subscription`) or "restart" (a field only a new session applies).
    `docs` are the arguments of `manifest_docs` that make the field changeable.
    """

    name: str
    kind: str
    edit: Edit = field(repr=False)
    restart_view: Callable[[Manifest], object] = field(repr=False)
    docs: Mapping[str, Any] = field(default_factory=dict, repr=False)


def put(node: Doc, key: str, value: Any) -> None:
    """Set `key`, or remove it for None (not for recordingFiles/snapshots: None is "on")."""
    if value is None:
        node.pop(key, None)
    else:
        node[key] = value


def recording_of(doc: Doc) -> Doc:
    node: Doc = doc.setdefault("recording", {})
    return node


def fix_group(doc: Doc, keep: str | None) -> None:
    """Keep subscribeUidGroup valid after the lists changed: agree with a certain count,
    and in individual mode stay written (as `keep`) where it can no longer be derived."""
    node = recording_of(doc)
    probe = {k: v for k, v in node.items() if k != "subscribeUidGroup"}
    try:
        count = Recording.model_validate(probe).subscribed_uid_count
    except ValidationError:
        return  # invalid for another reason: the mutation is dropped
    if count is not None:
        derived = group_for(count)
        if derived is None:
            node.pop("subscribeUidGroup", None)
        elif "subscribeUidGroup" in node:
            node["subscribeUidGroup"] = derived
    elif str(doc["mode"]).lower() == "individual" and "subscribeUidGroup" not in node:
        node["subscribeUidGroup"] = keep or "1-2"


def setter(strategy: st.SearchStrategy[Any], key: str, removable: bool = True) -> Edit:
    """Write a top-level key that is absent, or replace (or remove) one that is written."""

    def edit(data: st.DataObject, doc: Doc, before: Manifest) -> None:
        written = key in doc and removable
        put(doc, key, data.draw(optional(strategy) if written else strategy))

    return edit


def recording_setter(strategy: st.SearchStrategy[Any], key: str) -> Edit:
    """The same for a key of `recording`."""

    def edit(data: st.DataObject, doc: Doc, before: Manifest) -> None:
        setter(strategy, key)(data, recording_of(doc), before)

    return edit


def edit_schedule(data: st.DataObject, doc: Doc, before: Manifest) -> None:
    forms = (windows() | CRONS) if before.schedule.always else SCHEDULES
    doc["schedule"] = data.draw(
        forms.filter(lambda s: ScheduleSpec.model_validate(s) != before.schedule)
    )


def edit_policy(data: st.DataObject, doc: Doc, before: Manifest) -> None:
    doc["updatePolicy"] = "defer" if before.update_policy == "restart" else "restart"


def edit_mode(data: st.DataObject, doc: Doc, before: Manifest) -> None:
    if before.mode is c.Mode.MIX:
        doc["mode"] = "individual"
        for key in ("transcoding", "layout", "aliyunVod"):
            doc.pop(key, None)
        recording_of(doc).pop("audioProfile", None)
        fix_group(doc, before.subscribe_uid_group)
        files = doc.get("recordingFiles")
        if isinstance(files, dict) and "mp4" in files.get("fileTypes", ()):
            doc["recordingFiles"] = {"fileTypes": ["hls"]}  # mp4 is for mix mode only
    else:
        doc["mode"] = "mix"
        doc.pop("snapshots", None)


def edit_channel_type(data: st.DataObject, doc: Doc, before: Manifest) -> None:
    word = "live" if before.recording.channel_type == "communication" else "communication"
    recording_of(doc)["channelType"] = data.draw(spelled(c.CHANNEL_TYPES, word))


def edit_streams(data: st.DataObject, doc: Doc, before: Manifest) -> None:
    """Record other streams; the lists of a kind no longer recorded go."""
    allowed = [s for s in c.STREAM_TYPES if s != before.recording.streams]
    if before.snapshots is not None and "audio" in allowed:
        allowed.remove("audio")
    streams = data.draw(st.sampled_from(allowed))
    node = recording_of(doc)
    node["streams"] = data.draw(spelled(c.STREAM_TYPES, streams))
    for direction in ("subscribe", "unsubscribe"):
        for kind in ("audio", "video"):
            if streams not in ("audio+video", kind) and isinstance(node.get(direction), dict):
                node[direction].pop(kind, None)
    fix_group(doc, before.subscribe_uid_group)


def edit_group(data: st.DataObject, doc: Doc, before: Manifest) -> None:
    """Write another subscribeUidGroup, or remove it where that is allowed."""
    count = before.recording.subscribed_uid_count
    if count is not None:  # written, it must agree with a certain count
        options = [None, group_for(count)]
    elif before.mode is c.Mode.INDIVIDUAL:  # and cannot be derived: required
        options = list(c.UID_GROUPS)
    else:
        options = [None, *c.UID_GROUPS]
    current = before.recording.subscribe_uid_group
    group = data.draw(st.sampled_from([g for g in options if g != current] or [current]))
    written = None if group is None else data.draw(spelled(c.UID_GROUPS, group))
    put(recording_of(doc), "subscribeUidGroup", written)


def edit_list(data: st.DataObject, doc: Doc, before: Manifest) -> None:
    """Give one recorded kind another list, no list, or its list in another order."""
    kind = data.draw(st.sampled_from(before.recording.recorded_kinds))
    node = recording_of(doc)
    current = kind_lists(before)[kind]
    ways = ["none", "subscribe", "all", "unsubscribe"]
    if current is not None and len(current[1]) > 1:
        ways.append("reorder")
    how = data.draw(st.sampled_from(ways))
    if how == "reorder" and current is not None:
        node[current[0]][kind] = list(reversed(node[current[0]][kind]))
    else:
        for direction in ("subscribe", "unsubscribe"):
            if isinstance(node.get(direction), dict):
                node[direction].pop(kind, None)
        if how == "all":
            node.setdefault("subscribe", {})[kind] = [c.ALL_STREAMS]
        elif how != "none":
            listed = {u for v in kind_lists(before).values() if v for u in v[1]}
            known = sorted(u for u in listed if isinstance(u, int))
            uids = (st.sampled_from(known) | UIDS) if known else UIDS
            chosen = data.draw(st.lists(uids, min_size=1, max_size=c.MAX_UID_LIST, unique=True))
            node.setdefault(how, {})[kind] = chosen
    fix_group(doc, before.subscribe_uid_group)


def edit_layout_section(data: st.DataObject, doc: Doc, before: Manifest) -> None:
    if "layout" in doc:
        del doc["layout"]
    else:
        doc["layout"] = data.draw(layouts())


def edit_background(data: st.DataObject, doc: Doc, before: Manifest) -> None:
    written = "background" in doc["layout"]
    put(doc["layout"], "background", data.draw(optional(COLORS) if written else COLORS))


def edit_outputs(data: st.DataObject, doc: Doc, before: Manifest) -> None:
    doc.pop("recordingFiles", None)
    doc.pop("snapshots", None)
    outputs = ["none", "recordingFiles"]
    if before.mode is c.Mode.INDIVIDUAL and before.recording.streams != "audio":
        outputs.append("snapshots")
    current = "recordingFiles" if before.recording_files else "none"
    output = data.draw(st.sampled_from([o for o in outputs if o != current]))
    if output == "recordingFiles":
        doc["recordingFiles"] = data.draw(RECORDING_FILES[before.mode])
    elif output == "snapshots":
        doc["snapshots"] = data.draw(SNAPSHOTS)


def edit_file_types(data: st.DataObject, doc: Doc, before: Manifest) -> None:
    """Add or drop mp4 (mix mode), or write the same types in another order."""
    assert before.recording_files is not None
    types = list(before.recording_files.file_types)
    how = data.draw(st.sampled_from(["mp4", "reorder"]))
    if how == "reorder":
        doc["recordingFiles"] = {"fileTypes": list(reversed(types))}
    else:
        doc["recordingFiles"] = {"fileTypes": ["hls"] if "mp4" in types else ["mp4", "hls"]}


def edit_region(data: st.DataObject, doc: Doc, before: Manifest) -> None:
    assert before.storage is not None
    storage = before.storage
    assume(storage.region is not None)  # Azure and Google Cloud have no region to change
    doc["storage"]["region"] = data.draw(region_of(storage.vendor, other_than=storage.region))


def edit_literal(data: st.DataObject, doc: Doc, before: Manifest) -> None:
    paths = [path for path, ref in before.secret_refs() if isinstance(ref, LiteralSecret)]
    node, key = node_of(doc, data.draw(st.sampled_from(paths)))
    node[key] = data.draw(LITERALS)


MIX = {"mode": c.Mode.MIX}
MUTATIONS = [
    # when to record: `spec` only
    Mutation("schedule", "schedule", edit_schedule, never),
    Mutation("suspend", "schedule", lambda d, doc, b: put(doc, "suspend", not b.suspend), never),
    Mutation("labels", "schedule", setter(LABELS.filter(bool), "labels"), never),
    Mutation("updatePolicy", "schedule", edit_policy, never),
    Mutation("startingDeadline", "schedule", setter(DEADLINES, "startingDeadline"), never),
    # identity: the name only through `uid: auto`
    Mutation("name", "restart", setter(NAMES, "name", removable=False), lambda m: m.recording_uid),
    Mutation("app", "restart", setter(APPS, "app", removable=False), lambda m: m.app),
    Mutation(
        "channel", "restart", setter(CHANNELS, "channel", removable=False), lambda m: m.channel
    ),
    Mutation(
        "uid", "restart", setter(UID_OR_AUTO, "uid", removable=False), lambda m: m.recording_uid
    ),
    Mutation("mode", "restart", edit_mode, lambda m: str(m.mode)),
    # recordingConfig
    Mutation("channelType", "restart", edit_channel_type, in_recording("channelType")),
    Mutation("streams", "restart", edit_streams, in_recording("streams")),
    Mutation(
        "maxIdleTime",
        "restart",
        recording_setter(IDLE_TIMES, "maxIdleTime"),
        in_recording("maxIdleTime"),
    ),
    Mutation(
        "decryption",
        "restart",
        recording_setter(decryptions(), "decryption"),
        effective_decryption,
    ),
    Mutation(
        "audioProfile",
        "restart",
        recording_setter(choice(c.AUDIO_PROFILES), "audioProfile"),
        in_recording("audioProfile"),
        MIX,
    ),
    Mutation(
        "videoStreamType",
        "restart",
        recording_setter(choice(c.VIDEO_STREAM_TYPES), "videoStreamType"),
        in_recording("videoStreamType"),
    ),
    Mutation("subscribeUidGroup", "restart", edit_group, lambda m: m.subscribe_uid_group),
    # what `update` changes live, unless a kind becomes (un)reachable or the group moves
    Mutation(
        "subscribe/unsubscribe",
        "subscription",
        edit_list,
        lambda m: (unsubscribed_kinds(m), m.subscribe_uid_group),
    ),
    # what `updateLayout` changes live; a layout alone also sends the default transcoding
    Mutation(
        "layout",
        "layout",
        setter(layouts(), "layout", removable=False),
        effective_transcoding,
        MIX | {"layout": True},
    ),
    Mutation(
        "layout.background",
        "layout",
        edit_background,
        effective_transcoding,
        MIX | {"layout": True},
    ),
    Mutation("layout (section)", "layout", edit_layout_section, effective_transcoding, MIX),
    # the rest of the start and acquire requests
    Mutation(
        "transcoding",
        "restart",
        setter(transcodings(), "transcoding"),
        effective_transcoding,
        MIX,
    ),
    Mutation(
        "recordingFiles/snapshots",
        "restart",
        edit_outputs,
        lambda m: (masked(m).get("recordingFiles"), masked(m).get("snapshots")),
    ),
    Mutation(
        "storage",
        "restart",
        setter(storages(), "storage"),
        top("storage"),
        {"storage": True},
    ),
    Mutation(
        "recordingFiles.fileTypes",
        "restart",
        edit_file_types,
        lambda m: masked(m).get("recordingFiles"),
        MIX | {"recording_files": True},
    ),
    Mutation("storage.region", "restart", edit_region, top("storage"), {"storage": True}),
    Mutation(
        "aliyunVod",
        "restart",
        setter(vods(), "aliyunVod"),
        top("aliyunVod"),
        MIX | {"storage": False},
    ),
    Mutation("token", "restart", setter(SECRETS, "token"), top("token")),
    Mutation(
        "resourceExpiredHour",
        "restart",
        setter(RESOURCE_HOURS, "resourceExpiredHour"),
        top("resourceExpiredHour"),
    ),
    # the successor's uid matters only at the next rollover: a live session keeps going
    Mutation("rolloverUid", "schedule", setter(UID_OR_AUTO, "rolloverUid"), never),
    # a literal secret's value: no fingerprint sees it, not even `spec`
    Mutation("a literal's value", "restart", edit_literal, never, {"literal_token": True}),
]


def validated(doc: Doc) -> Manifest | None:
    try:
        return Manifest.model_validate(doc)
    except ValidationError:
        return None


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.name)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_fingerprints_follow_the_field_that_changed(
    mutation: Mutation, data: st.DataObject
) -> None:
    doc = data.draw(manifest_docs(**mutation.docs), label="manifest")
    before = Manifest.model_validate(doc)
    changed = copy.deepcopy(doc)
    mutation.edit(data, changed, before)
    after = validated(changed)
    assume(after is not None)  # only changes that leave the manifest valid
    assert after is not None
    old, new = translate(before).fingerprints, translate(after).fingerprints

    def moved(view: Callable[[Manifest], object]) -> bool:
        return view(before) != view(after)

    if not moved(masked):
        # the same manifest, or one that differs only in a literal secret's value
        event("no change")
        assert new == old
        return
    event(f"restart {'expected' if moved(mutation.restart_view) else 'not expected'}")
    assert new.spec != old.spec
    assert (new.restart != old.restart) == moved(mutation.restart_view), "restart"
    assert (new.subscription != old.subscription) == moved(effective_subscription), "subscription"
    assert (new.layout != old.layout) == moved(effective_layout), "layout"
    if mutation.kind == "schedule":
        assert (new.restart, new.subscription, new.layout) == (
            old.restart,
            old.subscription,
            old.layout,
        )
    elif mutation.kind == "subscription":
        assert new.layout == old.layout
    elif mutation.kind == "layout":
        assert new.subscription == old.subscription


# --- secrets once resolved ------------------------------------------------------------

MINIMAL: Doc = {
    "name": "a",
    "app": "main",
    "channel": "room",
    "uid": 1,
    "mode": "mix",
    "schedule": "always",
}


@settings(max_examples=100, deadline=None)
@example(doc=MINIMAL | {"token": {"env": "TOKEN"}})
@example(doc=MINIMAL | {"recording": {"decryption": {"mode": "aes-128-xts", "secret": "k3y-1"}}})
@given(doc=manifest_docs())
def test_secret_values_are_every_resolved_secret(doc: Doc) -> None:
    """The client scrubs echoed errors with `secret_values()`: it must list every secret,
    the optional ones (token, recordingConfig.secret) too."""
    manifest = Manifest.model_validate(doc)
    resolved = translate(manifest).start.resolved(resolve)
    assert sorted(resolved.secret_values()) == sorted(
        resolve(ref) for _, ref in manifest.secret_refs()
    )


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_a_secret_resolved_to_nothing_is_refused_by_name(data: st.DataObject) -> None:
    """An empty value (a variable set to "", an empty file) never reaches a body: resolving
    refuses it, naming the reference and no value."""
    manifest = Manifest.model_validate(data.draw(manifest_docs(), label="manifest"))
    refs = [ref for _, ref in manifest.secret_refs()]
    assume(refs)
    empty = data.draw(st.sampled_from(refs), label="empty")
    start = translate(manifest).start
    with pytest.raises(wire.EmptySecretError, match=re.escape(describe_secret(empty))) as caught:
        start.resolved(lambda ref: "" if ref == empty else resolve(ref))
    assert [v for v in map(resolve, refs) if v in str(caught.value)] == []


def test_an_empty_literal_secret_never_reaches_a_body() -> None:
    """`token: ""` is a valid manifest (a literal: a warning); resolving refuses it."""
    try:
        manifest = Manifest.model_validate(MINIMAL | {"token": ""})
    except ValidationError:
        return  # refused up front: as good
    with pytest.raises(wire.EmptySecretError):
        translate(manifest).start.resolved(resolve_secret)
