"""What a loaded manifest computes once: its spec hash, from the dump its document uses.

Covers: the spec hash made from a manifest's document (one dump for both) equals the
one made on its own; the document keeps the secret references as written (only the
hash sees their descriptions); a literal secret's value is in neither the hash's input
nor changed in the document by hashing.
"""

from __future__ import annotations

from orchestrator.manifest.cache import ManifestCache
from orchestrator.secrets import EnvSecret, LiteralSecret, describe_secrets_in
from tests.unit.manifest.test_manifest_cache import EXAMPLES


def test_one_dump_serves_the_document_and_the_spec_hash() -> None:
    alone = ManifestCache([EXAMPLES]).load().manifests
    both = ManifestCache([EXAMPLES]).load().manifests
    assert alone and all(not m.hashed for m in both)
    documents = [m.dumped() for m in both]
    assert all(m.hashed for m in both)
    assert [m.spec_hash for m in both] == [m.spec_hash for m in alone]
    assert documents == [m.manifest.document() for m in alone]  # left as dumped
    with_refs = [d for d in documents if "storage" in d and "accessKey" in d["storage"]]
    assert with_refs and all(isinstance(d["storage"]["accessKey"], dict) for d in with_refs)


def test_describing_secrets_copies_only_their_paths() -> None:
    document = {"storage": {"accessKey": {"value": "s3cr3t"}, "bucket": "b"}, "name": "n"}
    refs = [
        ("storage.accessKey", LiteralSecret(value="s3cr3t")),
        ("storage.secretKey", EnvSecret(env="S3")),  # not in the document: skipped
        ("missing.key", EnvSecret(env="X")),
    ]
    described = describe_secrets_in(document, refs)
    assert described == {"storage": {"accessKey": "<literal>", "bucket": "b"}, "name": "n"}
    assert document["storage"]["accessKey"] == {"value": "s3cr3t"}  # untouched
