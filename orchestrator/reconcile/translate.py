"""From a manifest to the typed requests of the Cloud Recording API, once.

`translate(manifest)` builds every request a manifest can need (acquire, start,
update, updateLayout) as the wire models of `orchestrator.agora.wire`, and the
fingerprints the planner compares. A desired recording carries the result from
planning to execution, so nothing translates a manifest twice: the executor only
resolves the start request's secrets just before it is sent, and the client sends
what it is given.

This is the one place that maps manifest words to the API's field names; the
codes themselves come from `orchestrator.contract`. It must never resolve a
secret: requests hold secret *references* until the executor resolves them, and
fingerprints hash references (`<env:S3_KEY>`), never values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from orchestrator import contract as c
from orchestrator.agora import wire
from orchestrator.errors import OrchestratorError
from orchestrator.manifest.model import Layout, Manifest, Recording, Subscription, canonical_digest


class TranslationError(OrchestratorError, ValueError):
    """A valid manifest gave a request the wire models refuse (a bug: the property
    tests prove it cannot happen). The message names fields, never values."""


@dataclass(frozen=True)
class Fingerprints:
    """sha256 hex digests of canonical JSON; secret references hashed, never values."""

    spec: str  # everything (any change at all)
    subscription: str  # the parts `update` can change
    layout: str  # the parts `updateLayout` can change
    restart: str  # everything else a live session depends on (needs stop + start)


@dataclass(frozen=True)
class Requests:
    """Every request of one manifest, translated once, with their fingerprints."""

    mode: c.Mode
    acquire: wire.AcquireRequest
    start: wire.StartRequest  # secrets still references: resolve just before sending
    update: wire.UpdateRequest
    update_layout: wire.UpdateLayoutRequest | None  # mix mode only
    fingerprints: Fingerprints

    def for_uid(self, uid: int) -> Requests:
        """The same requests for another recording uid (a rollover's successor); the
        fingerprints are the manifest's, which no uid changes."""
        if uid == int(self.acquire.uid):
            return self
        return dataclasses.replace(
            self,
            acquire=self.acquire.for_uid(uid),
            start=self.start.for_uid(uid),
            update=self.update.for_uid(uid),
            update_layout=self.update_layout.for_uid(uid) if self.update_layout else None,
        )


def translate(m: Manifest) -> Requests:
    """The requests of `m` and their fingerprints. Raises TranslationError."""
    try:
        acquire = _acquire(m)
        start = _start(m)
        update = wire.UpdateRequest(
            uid=_uid(m),
            cname=m.channel,
            clientRequest=wire.UpdateClientRequest(streamSubscribe=_stream_subscribe(m)),
        )
        update_layout = (
            wire.UpdateLayoutRequest(
                uid=_uid(m),
                cname=m.channel,
                clientRequest=wire.UpdateLayoutClientRequest(**_layout_fields(m.layout)),
            )
            if m.mode is c.Mode.MIX
            else None
        )
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise TranslationError(_reason(exc)) from None
    problem = start.clientRequest.problem(m.mode)
    if problem:
        raise TranslationError(f"start: {problem}")
    return Requests(
        mode=m.mode,
        acquire=acquire,
        start=start,
        update=update,
        update_layout=update_layout,
        fingerprints=_fingerprints(m, acquire, start, update, update_layout),
    )


def stop_request(channel: str, uid: int) -> wire.StopRequest:
    """The `stop` request of a stored session (its channel and uid)."""
    return wire.StopRequest(uid=str(uid), cname=channel, clientRequest=wire.StopClientRequest())


def _reason(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        return wire.validation_reason(exc)
    return "a request could not be built"


# --- requests ------------------------------------------------------------------------


def _uid(m: Manifest) -> str:
    return str(m.recording_uid)


def _acquire(m: Manifest) -> wire.AcquireRequest:
    client = (
        wire.AcquireClientRequest()
        if m.resource_expired_hour is None
        else wire.AcquireClientRequest(resourceExpiredHour=m.resource_expired_hour)
    )
    return wire.AcquireRequest(cname=m.channel, uid=_uid(m), clientRequest=client)


def _uids(values: tuple[int | str, ...]) -> list[str]:
    return [str(v) for v in values]


def _subscription_lists(r: Recording) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for direction, lists in (("subscribe", r.subscribe), ("unSubscribe", r.unsubscribe)):
        for kind in ("audio", "video"):
            uids = _uid_list(lists, kind)
            if uids is not None:
                out[f"{direction}{kind.capitalize()}Uids"] = _uids(uids)
    return out


def _layout_fields(layout: Layout | None) -> dict[str, Any]:
    """mixedVideoLayout, backgroundColor, layoutConfig, maxResolutionUid: the whole layout."""
    if layout is None:
        return {
            "mixedVideoLayout": c.LAYOUT_TYPES["floating"],
            "backgroundColor": c.DEFAULT_BACKGROUND,
        }
    out: dict[str, Any] = {
        "mixedVideoLayout": c.LAYOUT_TYPES[layout.type],
        "backgroundColor": layout.background or c.DEFAULT_BACKGROUND,
    }
    if layout.max_resolution_uid is not None:
        out["maxResolutionUid"] = str(layout.max_resolution_uid)
    if layout.regions is not None:
        regions = []
        for region in layout.regions:
            entry: dict[str, Any] = {}
            if region.uid is not None:
                entry["uid"] = str(region.uid)
            entry.update(
                x_axis=float(region.x),
                y_axis=float(region.y),
                width=float(region.width),
                height=float(region.height),
            )
            if region.alpha is not None:
                entry["alpha"] = float(region.alpha)
            if region.render_mode is not None:
                entry["render_mode"] = c.RENDER_MODES[region.render_mode]
            regions.append(wire.LayoutRegion(**entry))
        out["layoutConfig"] = regions
    return out


def _recording_config(m: Manifest) -> wire.RecordingConfig:
    r = m.recording
    cfg: dict[str, Any] = {
        "channelType": c.CHANNEL_TYPES[r.channel_type],
        "streamTypes": c.STREAM_TYPES[r.streams],
        "maxIdleTime": r.max_idle_time,
    }
    if r.decryption is not None and r.decryption.mode != "none":
        cfg["decryptionMode"] = c.DECRYPTION_MODES[r.decryption.mode]
        if r.decryption.secret is not None:
            cfg["secret"] = r.decryption.secret
    if r.audio_profile is not None:
        cfg["audioProfile"] = c.AUDIO_PROFILES[r.audio_profile]
    if r.video_stream_type is not None:
        cfg["videoStreamType"] = c.VIDEO_STREAM_TYPES[r.video_stream_type]
    if m.transcoding is not None or m.layout is not None:
        t = m.transcoding
        size: dict[str, Any] = (
            dict(c.DEFAULT_TRANSCODING)
            if t is None
            else {"width": t.width, "height": t.height, "fps": t.fps, "bitrate": t.bitrate}
        )
        layout = _layout_fields(m.layout) if m.layout is not None else {}
        cfg["transcodingConfig"] = wire.TranscodingConfig(**size, **layout)
    cfg.update(_subscription_lists(r))
    group = m.subscribe_uid_group
    if group is not None:
        cfg["subscribeUidGroup"] = c.UID_GROUPS[group]
    return wire.RecordingConfig(**cfg)


def _start(m: Manifest) -> wire.StartRequest:
    client: dict[str, Any] = {"recordingConfig": _recording_config(m)}
    if m.token is not None:
        client["token"] = m.token
    if m.recording_files is not None:
        client["recordingFileConfig"] = wire.RecordingFileConfig(
            avFileType=list(m.recording_files.file_types)
        )
    if m.snapshots is not None:
        snap: dict[str, Any] = {"fileType": list(m.snapshots.file_types)}
        if m.snapshots.interval is not None:
            snap["captureInterval"] = m.snapshots.interval
        client["snapshotConfig"] = wire.SnapshotConfig(**snap)
    if m.storage is not None:
        s = m.storage
        storage: dict[str, Any] = {
            "vendor": c.VENDORS[s.vendor],
            # a vendor without regions ignores the field, which the wire still requires
            "region": c.NO_REGION if s.region is None else c.REGIONS[s.vendor][s.region],
            "bucket": s.bucket,
            "accessKey": s.access_key,
            "secretKey": s.secret_key,
        }
        if s.file_name_prefix is not None:
            storage["fileNamePrefix"] = list(s.file_name_prefix)
        client["storageConfig"] = wire.StorageConfig(**storage)
    if m.aliyun_vod is not None:
        vod = m.aliyun_vod
        service: dict[str, Any] = {
            "serviceName": c.ALIYUN_VOD_SERVICE,
            "serviceParam": wire.AliyunVodParam(
                accessKey=vod.access_key,
                secretKey=vod.secret_key,
                regionId=vod.region_id,
                apiData=wire.ApiData(
                    videoData=wire.VideoData(
                        **vod.video_data.model_dump(by_alias=True, exclude_none=True)
                    )
                ),
            ),
        }
        if vod.error_handle_policy is not None:
            service["errorHandlePolicy"] = vod.error_handle_policy
        client["extensionServiceConfig"] = wire.ExtensionServiceConfig(
            extensionServices=[wire.ExtensionService(**service)]
        )
    return wire.StartRequest(
        uid=_uid(m), cname=m.channel, clientRequest=wire.StartClientRequest(**client)
    )


def _listed_kinds(r: Recording) -> list[str]:
    """The recorded kinds (audio, video) that have a subscribe or unsubscribe list."""
    return [
        kind
        for kind in r.recorded_kinds
        if _uid_list(r.subscribe, kind) is not None or _uid_list(r.unsubscribe, kind) is not None
    ]


def _uid_list(lists: Subscription | None, kind: str) -> tuple[int | str, ...] | None:
    return None if lists is None else lists.kind(kind)


def _stream_subscribe(m: Manifest) -> wire.StreamSubscribe:
    """The `streamSubscribe` object: the manifest's whole subscription for `update`.

    A recorded kind without a list is sent as `#allstream#` only when no kind has
    a list (the manifest subscribes to everything); when some kind has a list,
    the reference leaves the others unsubscribed, which `update` cannot express,
    so they are omitted (and the restart fingerprint covers that case).
    """
    r = m.recording
    listed = _listed_kinds(r)
    out: dict[str, Any] = {}
    for kind in r.recorded_kinds:
        cap = kind.capitalize()
        sub = _uid_list(r.subscribe, kind)
        unsub = _uid_list(r.unsubscribe, kind)
        entry: dict[str, list[str]] = {}
        if sub is not None:
            entry[f"subscribe{cap}Uids"] = _uids(sub)
        elif unsub is not None:
            entry[f"unSubscribe{cap}Uids"] = _uids(unsub)
        elif not listed:
            entry[f"subscribe{cap}Uids"] = [c.ALL_STREAMS]
        if entry:
            model = wire.AudioUidList if kind == "audio" else wire.VideoUidList
            out[f"{kind}UidList"] = model(**entry)
    return wire.StreamSubscribe(**out)


# --- fingerprints --------------------------------------------------------------------


_LAYOUT_KEYS = frozenset(wire.UpdateLayoutClientRequest.model_fields)
_LIST_KEYS = frozenset(key for key in wire.RecordingConfig.model_fields if key.endswith("Uids"))


def _fingerprints(
    m: Manifest,
    acquire: wire.AcquireRequest,
    start_request: wire.StartRequest,
    update: wire.UpdateRequest,
    update_layout: wire.UpdateLayoutRequest | None,
) -> Fingerprints:
    """What changed between two versions of a manifest, as the planner needs it.

    `restart` is the start/acquire bodies without the subscription lists and the
    layout, plus the app, mode and which recorded kinds `update` cannot subscribe
    again. Schedule, suspend, labels, updatePolicy and startingDeadline are in
    `spec` only: they decide *when* to record, not what a live session does.
    """
    start = start_request.described()
    config = start["clientRequest"]["recordingConfig"]
    for key in _LIST_KEYS:
        config.pop(key, None)
    transcoding = config.get("transcodingConfig")
    if transcoding is not None:
        for key in _LAYOUT_KEYS:
            transcoding.pop(key, None)
    listed = _listed_kinds(m.recording)
    # A recorded kind left without a list while another kind has one is not
    # subscribed at all, and `update` cannot change that: it needs a restart.
    unreachable = [k for k in m.recording.recorded_kinds if listed and k not in listed]
    restart = {
        "app": m.app,
        "mode": str(m.mode),
        "acquire": acquire.described(),
        "start": start,
        "unsubscribedKinds": unreachable,
    }
    layout = None if update_layout is None else update_layout.clientRequest.described()
    return Fingerprints(
        spec=m.spec_digest(),
        subscription=canonical_digest(update.clientRequest.streamSubscribe.described()),
        layout=canonical_digest(layout),
        restart=canonical_digest(restart),
    )
