"""The remote API: wire models, the async client, its error taxonomy, and a local emulator.

This package is the only code that speaks HTTP to Agora Cloud Recording. The
emulator (`orchestrator.agora.emulator`) is imported on demand, so the client does
not pull in aiohttp.
"""

from orchestrator.agora.client import AgoraClient, RateLimiter, RetryPolicy
from orchestrator.agora.errors import (
    AgoraError,
    AlreadyStartedError,
    AmbiguousStartError,
    ConflictError,
    InvalidRequestError,
    NoFilesError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RecordingExistsError,
    ResourceExpiredError,
    RetryableError,
    StopAlreadyEndedError,
    error_from_response,
)
from orchestrator.agora.wire import QueryResponse, StopResponse

__all__ = [
    "AgoraClient",
    "AgoraError",
    "AlreadyStartedError",
    "AmbiguousStartError",
    "ConflictError",
    "InvalidRequestError",
    "NoFilesError",
    "NotFoundError",
    "PermanentError",
    "QueryResponse",
    "RateLimitedError",
    "RateLimiter",
    "RecordingExistsError",
    "ResourceExpiredError",
    "RetryPolicy",
    "RetryableError",
    "StopAlreadyEndedError",
    "StopResponse",
    "error_from_response",
]
