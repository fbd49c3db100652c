"""Where a recording goes: the manifest's output sections.

Recording files and snapshots (`recordingFiles`, `snapshots`), the third-party
storage they are uploaded to (`storage`, with each vendor's regions by name or
number) and the Aliyun VOD extension (`aliyunVod`). Part of the manifest language
(`model` holds the rules between sections); kept apart only to keep `model` short.

Like `model`, it never resolves a secret and knows no numeric code of its own:
the region and file type tables are `orchestrator.contract`'s.
"""

from __future__ import annotations

import functools
from typing import Annotated, TypeVar

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from orchestrator import contract
from orchestrator.manifest.rules import Rules, did_you_mean, fail, norm
from orchestrator.manifest.scalars import (
    PrefixPart,
    RegionName,
    SnapshotSeconds,
    Text,
    TextOrNumber,
    Vendor,
)
from orchestrator.manifest.section import Section
from orchestrator.secrets import SecretField

__all__ = ["AliyunVod", "RecordingFiles", "Snapshots", "Storage", "VideoData"]


_Kind = TypeVar("_Kind", bound=str)


def _listed_once(value: tuple[_Kind, ...]) -> tuple[_Kind, ...]:
    """`fileTypes` names each type once (Agora refuses a repeated one)."""
    twice = sorted({kind for kind in value if value.count(kind) > 1})
    if twice:
        raise fail("fileTypes", f"{', '.join(twice)} is listed more than once")
    return value


# A section's `fileTypes`: one or more, each once.
FileTypes = Annotated[tuple[_Kind, ...], Field(min_length=1), AfterValidator(_listed_once)]


class RecordingFiles(Section):
    """recordingFileConfig: hls (M3U8 and TS files), in mix mode also mp4 beside it."""

    file_types: FileTypes[contract.RecordingFileType] = contract.DEFAULT_RECORDING_FILE_TYPES

    @field_validator("file_types", mode="after")
    @classmethod
    def _with_hls(
        cls, value: tuple[contract.RecordingFileType, ...]
    ) -> tuple[contract.RecordingFileType, ...]:
        if contract.HLS not in value:
            others = ", ".join(value)
            raise fail(
                "fileTypes",
                f"{others} needs {contract.HLS} beside it (Agora refuses it alone): "
                f"write fileTypes: [{contract.HLS}, {others}]",
            )
        # mp4 follows Agora's current documentation (contract.RECORDING_FILE_TYPES);
        # held in the contract's order, the order written changes no fingerprint
        return tuple(kind for kind in contract.RECORDING_FILE_TYPES if kind in value)


class Snapshots(Section):
    """snapshotConfig (individual mode with video): a jpg every `interval` seconds."""

    interval: SnapshotSeconds | None = None
    # Each once: ["jpg", "jpg"] passed, and could never be translated.
    file_types: FileTypes[contract.SnapshotFileType] = contract.SNAPSHOT_FILE_TYPES


class Storage(Section):
    """storageConfig: where recording files and snapshots are uploaded."""

    vendor: Vendor
    region: RegionName | None = None  # required unless the vendor has no regions
    bucket: Annotated[str, Field(min_length=1, max_length=255)]
    access_key: SecretField
    secret_key: SecretField
    file_name_prefix: Annotated[tuple[PrefixPart, ...], Field(min_length=1)] | None = None

    @field_validator("region", mode="after")
    @classmethod
    def _region_of_vendor(cls, value: str | int | None, info: ValidationInfo) -> str | None:
        vendor = info.data.get("vendor")
        if vendor is None or value is None:  # an invalid vendor is already reported
            return None if value is None else str(value)
        table = contract.REGIONS[vendor]
        if not table:
            raise fail(
                "region",
                f"{vendor} has no regions (Agora ignores region for it): remove region",
            )
        if isinstance(value, int) or (value.strip().isascii() and value.strip().isdigit()):
            code = int(value)
            for name, number in table.items():
                if number == code:
                    return name
        else:
            found = _region_lookup(vendor).get(norm(value))
            if found is not None:
                return found
        hint = (
            did_you_mean(value, list(_region_lookup(vendor).values()))
            if isinstance(value, str)
            else ""
        )
        raise fail(
            "region",
            f"{value!r} is not a region of {vendor}: use one of {_region_listing(vendor)}{hint}",
        )

    @model_validator(mode="after")
    def _region_if_the_vendor_has_regions(self) -> Storage:
        if self.region is None and contract.REGIONS[self.vendor]:
            rules = Rules()
            rules.add(
                ("region",),
                f"required for {self.vendor}: use one of {_region_listing(self.vendor)}",
            )
            rules.raise_if_any()
        return self

    @field_validator("file_name_prefix", mode="after")
    @classmethod
    def _prefix_length(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            length = sum(len(part) + 1 for part in value)
            if length > 128:
                raise fail(
                    "prefix",
                    f"the prefix is {length} characters with its slashes; at most 128 are allowed",
                )
        return value


@functools.cache
def _region_lookup(vendor: str) -> dict[str, str]:
    """Every spelling of `vendor`'s regions (normalised) -> the table's name."""
    aliases = contract.REGION_ALIASES.get(vendor, {})
    names = {norm(alias): name for alias, name in aliases.items()}
    names.update({norm(name): name for name in contract.REGIONS[vendor]})
    return names


@functools.cache
def _region_listing(vendor: str) -> str:
    return ", ".join(f"{name} ({number})" for name, number in contract.REGIONS[vendor].items())


class VideoData(Section):
    """apiData.videoData of the Aliyun VOD service."""

    title: Text
    description: Text | None = None
    cover_url: Text | None = None
    cate_id: TextOrNumber | None = None
    tags: Text | None = None
    template_group_id: Text | None = None
    user_data: Text | None = None
    storage_location: Text | None = None
    workflow_id: Text | None = None


class AliyunVod(Section):
    """The aliyun_vod_service extension (mix only, without storage or snapshots)."""

    access_key: SecretField
    secret_key: SecretField
    region_id: Annotated[str, Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")]
    video_data: VideoData
    error_handle_policy: contract.ErrorAbort | None = None
