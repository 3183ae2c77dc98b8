#!/usr/bin/env python3
"""Reads every record of a Kinesis stream and verifies each event stream's hash chain.

A consumer written from the documented wire format alone (the crate docs of `events`,
events/src/lib.rs), with clients nobody on the project wrote: boto3 reads the shards, msgpack
decodes the envelopes. Nothing here comes from the Rust code.

    verify_kinesis.py --endpoint http://127.0.0.1:4567 --stream order-events

Prints `N events, M streams, chain OK` and exits 0; or names the first broken link (the one with
the lowest global position) and exits 1. Exits 2 when the stream cannot be read.

Delivery is at least once, so the same event may appear more than once: copies are merged by
event id (they must be identical). Each stream must then hold versions 1, 2, 3, ... without a gap,
and each event's hash must be sha256(previous event's hash, or 32 zero bytes, || canonical bytes).

Needs: pip install boto3 msgpack. Without --endpoint it talks to AWS with the default credentials;
with one (an emulator) it uses the static credentials test/test unless AWS_ACCESS_KEY_ID is set.
"""

import argparse
import hashlib
import os
import struct
import sys
from collections import defaultdict

import boto3
import msgpack

GENESIS = bytes(32)


def read_records(client, stream):
    """Every record of every shard, each shard from its oldest record until caught up."""
    shards, token = [], None
    while True:
        answer = client.list_shards(NextToken=token) if token else client.list_shards(StreamName=stream)
        shards += [s["ShardId"] for s in answer["Shards"]]
        token = answer.get("NextToken")
        if not token:
            break
    records = []
    for shard in shards:
        it = client.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            answer = client.get_records(ShardIterator=it, Limit=10000)
            for r in answer["Records"]:
                records.append((shard, r["SequenceNumber"], r["Data"]))
            if not answer["Records"] and answer.get("MillisBehindLatest", 0) == 0:
                break
            it = answer.get("NextShardIterator")
    return records


class Broken(Exception):
    def __init__(self, position, text):
        super().__init__(text)
        self.position = position


def expect(envelope, key, kind, size=None, nullable=False):
    value = envelope.get(key)
    if value is None and nullable:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"field {key!r} is {type(value).__name__}, expected {kind.__name__}")
    if size is not None and len(value) != size:
        raise ValueError(f"field {key!r} has {len(value)} bytes, expected {size}")
    return value


def decode(data):
    """The envelope as a dict of checked fields (MessagePack map, bin for ids, payload and hash)."""
    envelope = msgpack.unpackb(data, raw=False)
    if not isinstance(envelope, dict):
        raise ValueError("the envelope is not a MessagePack map")
    return {
        "event_id": expect(envelope, "event_id", bytes, 16),
        "stream_id": expect(envelope, "stream_id", str),
        "stream_version": expect(envelope, "stream_version", int),
        "global_position": expect(envelope, "global_position", int),
        "event_type": expect(envelope, "event_type", str),
        "schema_version": expect(envelope, "schema_version", int),
        "recorded_at_us": expect(envelope, "recorded_at_us", int),
        "correlation_id": expect(envelope, "correlation_id", bytes, 16),
        "causation_id": expect(envelope, "causation_id", bytes, 16, nullable=True),
        "payload": expect(envelope, "payload", bytes),
        "hash": expect(envelope, "hash", bytes, 32),
    }


def length_prefixed(b):
    return struct.pack(">I", len(b)) + b


def canonical(e):
    """The bytes the chain covers, in the documented order (integers big-endian)."""
    return (
        e["event_id"]
        + length_prefixed(e["stream_id"].encode("utf-8"))
        + struct.pack(">Q", e["stream_version"])
        + length_prefixed(e["event_type"].encode("utf-8"))
        + struct.pack(">H", e["schema_version"])
        + struct.pack(">q", e["recorded_at_us"])
        + e["correlation_id"]
        + (e["causation_id"] if e["causation_id"] is not None else bytes(16))
        + length_prefixed(e["payload"])
    )


def check_stream(stream_id, events):
    """Raises Broken at the stream's first bad link. `events` maps version -> envelope."""
    previous = GENESIS
    for version in range(1, max(events) + 1):
        e = events.get(version)
        if e is None:
            later = events[min(v for v in events if v > version)]
            raise Broken(later["global_position"], f"stream {stream_id}: version {version} is missing")
        link = f"stream {stream_id} version {version} (global position {e['global_position']})"
        if hashlib.sha256(previous + canonical(e)).digest() != e["hash"]:
            raise Broken(e["global_position"], f"hash chain broken in {link}")
        previous = e["hash"]


def verify(records):
    """Returns (events, streams) or raises Broken at the first broken link."""
    by_id = {}
    streams = defaultdict(dict)
    problems = []
    for shard, sequence, data in records:
        try:
            e = decode(data)
        except Exception as err:  # noqa: BLE001 - any decoding failure is a broken record
            problems.append(Broken(-1, f"record {sequence} of {shard} does not decode: {err}"))
            continue
        seen = by_id.get(e["event_id"])
        if seen is not None:
            if seen != e:
                problems.append(Broken(e["global_position"], f"two different copies of event {e['event_id'].hex()}"))
            continue
        by_id[e["event_id"]] = e
        other = streams[e["stream_id"]].get(e["stream_version"])
        if other is not None:
            problems.append(
                Broken(
                    e["global_position"],
                    f"stream {e['stream_id']} version {e['stream_version']} is claimed by two events",
                )
            )
            continue
        streams[e["stream_id"]][e["stream_version"]] = e
    for stream_id, events in streams.items():
        try:
            check_stream(stream_id, events)
        except Broken as b:
            problems.append(b)
    if problems:
        raise min(problems, key=lambda b: b.position)
    return len(by_id), len(streams)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", help="endpoint URL (an emulator); AWS when absent")
    parser.add_argument("--stream", default="order-events", help="stream name (default order-events)")
    parser.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    args = parser.parse_args()
    options = {"region_name": args.region}
    if args.endpoint:
        options["endpoint_url"] = args.endpoint
        if "AWS_ACCESS_KEY_ID" not in os.environ:
            options.update(aws_access_key_id="test", aws_secret_access_key="test")
    try:
        records = read_records(boto3.client("kinesis", **options), args.stream)
    except Exception as err:  # noqa: BLE001 - report any client failure plainly
        print(f"cannot read stream {args.stream}: {err}", file=sys.stderr)
        return 2
    try:
        events, streams = verify(records)
    except Broken as b:
        print(f"BROKEN: {b}")
        return 1
    print(f"{events} events, {streams} streams, chain OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
