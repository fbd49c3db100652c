"""Request bodies from the reference's own examples, as fresh dicts for each test."""

from __future__ import annotations

import copy
from typing import Any

CNAME = "httpClient463224"
UID = "527841"

_ACQUIRE = {"cname": CNAME, "uid": UID, "clientRequest": {"resourceExpiredHour": 24}}

_STORAGE = {
    "accessKey": "xxxxxxf",
    "region": 3,
    "bucket": "xxxxx",
    "secretKey": "xxxxx",
    "vendor": 2,
    "fileNamePrefix": ["directory1", "directory2"],
}

_START_RECORDING = {
    "uid": UID,
    "cname": CNAME,
    "clientRequest": {
        "token": "<token if any>",
        "recordingConfig": {
            "maxIdleTime": 30,
            "streamTypes": 2,
            "channelType": 0,
            "transcodingConfig": {
                "height": 640,
                "width": 360,
                "bitrate": 500,
                "fps": 15,
                "mixedVideoLayout": 1,
                "backgroundColor": "#FF0000",
            },
            "subscribeVideoUids": ["123", "456"],
            "subscribeAudioUids": ["123", "456"],
            "subscribeUidGroup": 0,
        },
        "recordingFileConfig": {"avFileType": ["hls"]},
        "storageConfig": _STORAGE,
    },
}

_START_SNAPSHOT = {
    "uid": UID,
    "cname": CNAME,
    "clientRequest": {
        "token": "<token if any>",
        "recordingConfig": {
            "maxIdleTime": 30,
            "streamTypes": 2,
            "channelType": 0,
            "subscribeUidGroup": 0,
        },
        "snapshotConfig": {"captureInterval": 5, "fileType": ["jpg"]},
        "storageConfig": _STORAGE,
    },
}

_START_VOD = {
    "uid": UID,
    "cname": CNAME,
    "clientRequest": {
        "token": "<token if any>",
        "recordingConfig": {
            "maxIdleTime": 30,
            "streamTypes": 2,
            "channelType": 0,
            "subscribeUidGroup": 0,
        },
        "extensionServiceConfig": {
            "extensionServices": [
                {
                    "serviceName": "aliyun_vod_service",
                    "serviceParam": {
                        "secretKey": "xxxxxx",
                        "accessKey": "xxxxxx",
                        "regionId": "cn-shanghai",
                        "apiData": {
                            "videoData": {
                                "title": "My Video",
                                "description": "This is my first video",
                                "coverUrl": "http://xxxxx",
                            }
                        },
                    },
                }
            ]
        },
    },
}

_UPDATE = {
    "uid": UID,
    "cname": CNAME,
    "clientRequest": {
        "streamSubscribe": {
            "audioUidList": {"subscribeAudioUids": ["#allstream#"]},
            "videoUidList": {"unSubscribeVideoUids": ["444", "555", "666"]},
        }
    },
}

_UPDATE_LAYOUT = {
    "uid": UID,
    "cname": CNAME,
    "clientRequest": {
        "mixedVideoLayout": 3,
        "backgroundColor": "#FF0000",
        "layoutConfig": [
            {
                "uid": "1",
                "x_axis": 0.1,
                "y_axis": 0.1,
                "width": 0.1,
                "height": 0.1,
                "alpha": 1.0,
                "render_mode": 1,
            },
            {
                "uid": "2",
                "x_axis": 0.2,
                "y_axis": 0.2,
                "width": 0.1,
                "height": 0.1,
                "alpha": 1.0,
                "render_mode": 1,
            },
        ],
    },
}

_STOP = {"cname": CNAME, "uid": UID, "clientRequest": {}}


def acquire(cname: str = CNAME, uid: str = UID) -> dict[str, Any]:
    body = copy.deepcopy(_ACQUIRE)
    body.update(cname=cname, uid=uid)
    return body


def _with(body: dict[str, Any], cname: str, uid: str) -> dict[str, Any]:
    body = copy.deepcopy(body)
    body.update(cname=cname, uid=uid)
    return body


def start_recording(cname: str = CNAME, uid: str = UID) -> dict[str, Any]:
    """The reference's recording example (mix mode: it has transcodingConfig)."""
    return _with(_START_RECORDING, cname, uid)


def start_individual(cname: str = CNAME, uid: str = UID) -> dict[str, Any]:
    """The recording example adapted to individual mode (no transcodingConfig)."""
    body = _with(_START_RECORDING, cname, uid)
    del body["clientRequest"]["recordingConfig"]["transcodingConfig"]
    return body


def start_snapshot(cname: str = CNAME, uid: str = UID) -> dict[str, Any]:
    return _with(_START_SNAPSHOT, cname, uid)


def start_vod(cname: str = CNAME, uid: str = UID) -> dict[str, Any]:
    return _with(_START_VOD, cname, uid)


def update(cname: str = CNAME, uid: str = UID) -> dict[str, Any]:
    return _with(_UPDATE, cname, uid)


def update_layout(cname: str = CNAME, uid: str = UID) -> dict[str, Any]:
    return _with(_UPDATE_LAYOUT, cname, uid)


def stop(cname: str = CNAME, uid: str = UID) -> dict[str, Any]:
    return _with(_STOP, cname, uid)
