#!/usr/bin/env python3
"""Verifies a Portcullis audit export without Portcullis: an independent implementation of
the chain rules of docs/audit.md, for events of schema 3, on two common libraries.

    pip install rfc8785 cryptography
    portcullis audit export --output audit.jsonl
    python3 audit_verify.py audit.jsonl $(portcullis audit keys | awk '{print "--public-key", $1}')

For each event, in order: its sequence follows the one before, its `prev_hash` is the hash
of the event before (64 zeros for the first), its `hash` is

    SHA-256("portcullis-audit-event/3\\n" || JCS(event without "hash" and "signature"))

with JCS the JSON Canonicalization Scheme of RFC 8785, and its `signature` is the Ed25519
signature by the key `key_id` of "portcullis-audit-signature/2\\n" || hash (the hex text).
The chain must reach the head the export's header records. Events from before the chain
(no `hash`) may only come first. Exit code 0: intact; 1: the first bad event is named on
stderr; 2: the file or a key cannot be read.
"""

import argparse
import base64
import binascii
import hashlib
import json
import sys

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

EVENT_DOMAIN = b"portcullis-audit-event/3\n"
SIGNATURE_DOMAIN = b"portcullis-audit-signature/2\n"
GENESIS = "0" * 64
EXPORT_FORMAT = "portcullis-audit-export"


class BadEvent(Exception):
    """The first bad event: its position in the chain, its id and what is wrong."""

    def __init__(self, sequence, event_id, problem):
        super().__init__(f"event {sequence} ({event_id}): {problem}")


def event_hash(event):
    covered = {k: v for k, v in event.items() if k not in ("hash", "signature")}
    return hashlib.sha256(EVENT_DOMAIN + rfc8785.dumps(covered)).hexdigest()


def parse_key(text):
    """KEY_ID:BASE64, as `portcullis audit keys` prints it."""
    key_id, _, key = text.partition(":")
    raw = base64.b64decode(key, validate=True)
    return key_id, Ed25519PublicKey.from_public_bytes(raw)


def check_event(event, position, prev_hash, keys):
    """Checks one chained event; returns its hash."""
    sequence = event.get("sequence")
    event_id = event.get("id")
    if position is not None and sequence != position:
        raise BadEvent(position, event_id,
                       f"found event {sequence} in its place: deleted, inserted or reordered")
    if event.get("schema") != 3:
        raise BadEvent(sequence, event_id,
                       f"schema {event.get('schema')}: this verifier reads schema 3 only "
                       "(`portcullis audit verify` reads every schema)")
    if event.get("prev_hash") != prev_hash:
        raise BadEvent(sequence, event_id,
                       "prev_hash is not the hash of the event before it: the chain is broken")
    try:
        computed = event_hash(event)
    except rfc8785.CanonicalizationError as e:
        raise BadEvent(sequence, event_id, f"not canonicalizable (RFC 8785): {e}") from e
    if computed != event.get("hash"):
        raise BadEvent(sequence, event_id, "its content does not match its hash: it was edited")
    key = keys.get(event.get("key_id"))
    if key is None:
        raise BadEvent(sequence, event_id, f"signed by the unknown key {event.get('key_id')}")
    try:
        key.verify(base64.b64decode(event.get("signature", ""), validate=True),
                   SIGNATURE_DOMAIN + computed.encode())
    except (InvalidSignature, binascii.Error) as e:
        raise BadEvent(sequence, event_id, "its signature does not verify: forged or inserted") from e
    return computed


def verify(lines, keys):
    """Walks an export's lines; returns (events checked, last sequence, last hash)."""
    header = json.loads(lines[0])
    if header.get("format") != EXPORT_FORMAT:
        raise ValueError(f"the first line is not a {EXPORT_FORMAT} header")
    if not keys:
        # Trusting the export's own keys proves only that the file is consistent.
        keys = dict(parse_key(f"{k['id']}:{k['public_key']}") for k in header.get("keys", [])
                    if k.get("algorithm") == "ed25519")
    position, prev_hash, count = None, GENESIS, 0
    for line in lines[1:]:
        if not line.strip():
            continue
        event = json.loads(line)
        if "hash" not in event:
            if position is None:
                continue  # from before the chain began: nothing to check
            raise BadEvent(position, event.get("id"), "no hash although the chain began before it")
        prev_hash = check_event(event, position, prev_hash, keys)
        position = event["sequence"] + 1
        count += 1
    last = None if position is None else position - 1
    head = header.get("head")
    if head and head["hash"] != GENESIS:
        if last is None or last < head["sequence"]:
            raise BadEvent(head["sequence"], None,
                           f"missing: the chain ends at {last} before the export's head")
        if last == head["sequence"] and prev_hash != head["hash"]:
            raise BadEvent(last, None, "its hash is not the export's head hash: rewritten")
    return count, last, prev_hash


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", help="a `portcullis audit export` file")
    parser.add_argument("--public-key", action="append", default=[], metavar="KEY_ID:BASE64",
                        help="trust only these audit keys (repeatable); default: the export's")
    args = parser.parse_args()
    try:
        keys = dict(parse_key(k) for k in args.public_key)
        with open(args.export, encoding="utf-8") as f:
            lines = f.read().splitlines()
        count, last, head = verify(lines, keys)
    except BadEvent as e:
        print(e, file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError, IndexError, AttributeError, TypeError) as e:
        print(f"cannot verify {args.export}: {e}", file=sys.stderr)
        return 2
    print(f"intact: {count} events, head {last}:{head}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
