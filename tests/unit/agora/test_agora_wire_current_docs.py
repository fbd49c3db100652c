"""The wire models' rules that Agora's current documentation widens (docs/contracts.md).

Covers: `recordingFileConfig.avFileType` takes "mp4" beside "hls" in mix mode only,
never alone, twice or with a type outside the contract (messages name no input
value); `storageConfig` takes vendors 5 .. 8 and the regions the current tables add,
any region for the vendors Agora ignores it for, and refuses unknown vendors and
regions outside every table.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator import contract as c
from orchestrator.agora import wire

STORAGE = {"bucket": "b", "accessKey": "a", "secretKey": "s"}


def start(mode: str | None, file_types: list[str]) -> wire.StartRequest:
    body: dict[str, Any] = {
        "uid": "1",
        "cname": "room",
        "clientRequest": {
            "recordingConfig": {"subscribeUidGroup": 0},
            "recordingFileConfig": {"avFileType": file_types},
        },
    }
    return wire.StartRequest.model_validate(body, context={"mode": mode})


@pytest.mark.parametrize("mode", ["mix", None])
@pytest.mark.parametrize("file_types", [["hls"], ["hls", "mp4"], ["mp4", "hls"]])
def test_mix_takes_mp4_beside_hls(mode: str | None, file_types: list[str]) -> None:
    request = start(mode, file_types)
    files = request.clientRequest.recordingFileConfig
    assert files is not None and files.avFileType == file_types


@pytest.mark.parametrize(
    ("mode", "file_types", "message"),
    [
        ("mix", ["mp4"], 'avFileType must include "hls"'),
        ("mix", ["hls", "hls"], "avFileType lists a file type twice"),
        ("mix", ["hls", "mp3"], "avFileType supports only ['hls', 'mp4']"),
        ("mix", [], 'avFileType must include "hls"'),
        ("individual", ["hls", "mp4"], "avFileType mp4 requires mode mix"),
    ],
)
def test_av_file_type_refusals(mode: str, file_types: list[str], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        start(mode, file_types)
    reason = wire.validation_reason(caught.value)
    assert message in reason
    assert "mp3" not in reason.replace(message, "")  # the input is never echoed


def test_individual_keeps_the_default() -> None:
    request = start("individual", ["hls"])
    assert request.clientRequest.problem("individual") is None
    assert wire.RecordingFileConfig().avFileType == list(c.DEFAULT_RECORDING_FILE_TYPES)


@pytest.mark.parametrize(
    ("vendor", "region"),
    [(5, 0), (5, 99), (6, 3), (7, 0), (7, 15), (8, 1), (8, 7), (1, 16), (1, 25), (2, 27)],
)
def test_storage_takes_the_current_vendors_and_regions(vendor: int, region: int) -> None:
    config = wire.StorageConfig.model_validate({**STORAGE, "vendor": vendor, "region": region})
    assert (config.vendor, config.region) == (vendor, region)


@pytest.mark.parametrize(
    ("vendor", "region", "message"),
    [
        (9, 0, "less than or equal to 8"),
        (11, 0, "less than or equal to 8"),  # S3-compatible storage: not adopted
        (1, 23, "region 23 does not exist for vendor 1"),
        (7, 16, "region 16 does not exist for vendor 7"),
        (8, 0, "region 0 does not exist for vendor 8"),
        (2, 28, "region 28 does not exist for vendor 2"),
    ],
)
def test_storage_refuses_what_no_table_lists(vendor: int, region: int, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        wire.StorageConfig.model_validate({**STORAGE, "vendor": vendor, "region": region})
    assert message in wire.validation_reason(caught.value)
