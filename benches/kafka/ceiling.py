#!/usr/bin/env python3
"""The broker's own ceiling for the command side's produce shape: librdkafka (through
confluent-kafka) producing N records of SIZE bytes with the command side's settings —
idempotent, acks=all, one record per batch (batch.num.messages=1), linger.ms=1 — keyed
over every partition of a fresh topic, as many in flight as the client allows. Prints
records/s.

    ceiling.py BROKERS TOPIC PARTITIONS COUNT [SIZE]
"""
import sys
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic


def main():
    brokers, topic, partitions, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    size = int(sys.argv[5]) if len(sys.argv) > 5 else 300
    admin = AdminClient({"bootstrap.servers": brokers})
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result()
    producer = Producer({
        "bootstrap.servers": brokers,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 1,
        "batch.num.messages": 1,
    })
    # Warm up: metadata, the producer id, one record per partition.
    for p in range(partitions):
        producer.produce(topic, b"x" * size, key=f"warm-{p}", partition=p)
    producer.flush(30)
    failed = []
    payload = b"x" * size

    def acked(error, _message):
        if error is not None:
            failed.append(error)

    started = time.perf_counter()
    for i in range(count):
        while True:
            try:
                producer.produce(topic, payload, key=f"key-{i}", on_delivery=acked)
                break
            except BufferError:
                producer.poll(0.001)
        producer.poll(0)
    producer.flush(60)
    elapsed = time.perf_counter() - started
    if failed:
        raise SystemExit(f"{len(failed)} records failed: {failed[0]}")
    print(f"ceiling: {count / elapsed:.0f} records/s ({count} in {elapsed:.2f} s)")

if __name__ == "__main__":
    main()
