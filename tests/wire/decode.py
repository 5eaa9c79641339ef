#!/usr/bin/env python3
"""Reads every record of the drone-delivery topics with an independent Kafka client
(confluent-kafka) and decodes it with an independent Avro library (fastavro) from the
checked-in .avsc files alone: the Confluent framing (magic byte 0, big-endian schema id,
Avro datum), the manifest's ids, the Commit frame whose events are framed the same way
inside it, and the WriterMarker frame a command writer opens its partitions with. Prints
one JSON object per event or marker on stdout.

    decode.py BROKERS TOPIC_PREFIX SCHEMA_DIR
"""
import io
import json
import struct
import sys
from pathlib import Path

import fastavro
from confluent_kafka import Consumer, TopicPartition

TOPICS = ["accounts", "drones", "packages", "deliveries", "drone-telemetry"]


def load_schemas(schema_dir):
    manifest = json.loads((schema_dir / "manifest.json").read_text())
    named = {}
    by_id = {}
    # Later files refer to named types (Location, EventMetadata, ...) of earlier ones;
    # each file defines them again, so each parses on its own.
    for entry in manifest:
        schema = json.loads((schema_dir / entry["file"]).read_text())
        by_id[entry["id"]] = (entry["subject"], fastavro.parse_schema(schema, named_schemas={}))
    return by_id


def unframe(data, schemas):
    if len(data) < 5 or data[0] != 0:
        raise ValueError(f"not Confluent-framed: {data[:5]!r}")
    (schema_id,) = struct.unpack(">I", data[1:5])
    return schema_id, data[5:]


def decode(schema_id, datum, schemas):
    subject, schema = schemas[schema_id]
    buffer = io.BytesIO(datum)
    value = fastavro.schemaless_reader(buffer, schema)
    if buffer.tell() != len(datum):
        raise ValueError(f"{subject}: {len(datum) - buffer.tell()} bytes left over")
    return subject, value


def main():
    brokers, prefix, schema_dir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    schemas = load_schemas(schema_dir)
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": f"wire-check-{prefix}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    events = []
    for topic in TOPICS:
        name = prefix + topic
        metadata = consumer.list_topics(name, timeout=10).topics[name]
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(name, partition, low)])
            seen = low
            while seen < high:
                message = consumer.poll(10)
                if message is None:
                    raise SystemExit(f"{name}/{partition}: nothing at offset {seen} of {high}")
                if message.error():
                    raise SystemExit(f"{name}/{partition}: {message.error()}")
                seen = message.offset() + 1
                schema_id, datum = unframe(message.value(), schemas)
                subject, value = decode(schema_id, datum, schemas)
                if subject == "WriterMarker":
                    events.append({
                        "topic": topic,
                        "partition": partition,
                        "offset": message.offset(),
                        "key": message.key().decode(),
                        "type": subject,
                        "data": value,
                    })
                    continue
                if subject == "Commit":
                    inner = [decode(e["schemaId"], e["datum"], schemas) for e in value["events"]]
                else:
                    inner = [(subject, value)]
                for subject, value in inner:
                    metadata_ = value.pop("metadata")
                    events.append({
                        "topic": topic,
                        "partition": partition,
                        "offset": message.offset(),
                        "key": message.key().decode(),
                        "type": subject,
                        "aggregateId": metadata_["aggregateId"],
                        "aggregateVersion": metadata_["aggregateVersion"],
                        "data": value,
                    })
    consumer.close()
    json.dump(events, sys.stdout, default=str)


if __name__ == "__main__":
    main()
