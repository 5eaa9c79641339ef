#!/usr/bin/env python3
"""The broker's own ceiling for the command side's produce shape: librdkafka (through
confluent-kafka) producing N records of SIZE bytes with the command side's settings —
idempotent, acks=all, one record per batch (batch.num.messages=1), linger.ms=1 — keyed
over every partition of a fresh topic. Prints records/s.

    ceiling.py BROKERS TOPIC PARTITIONS COUNT [SIZE] [--one-per-partition]

By default as many records are in flight as the client allows. With
`--one-per-partition` each partition has one record in flight at a time, the next sent
when the last is acknowledged: the shape of a writer that decides on a partition only
once its last record is durable (the command side), so the ratio of the two is what that
rule costs on this broker.
"""
import sys
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic


def main():
    serial = "--one-per-partition" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--one-per-partition"]
    brokers, topic, partitions, count = args[0], args[1], int(args[2]), int(args[3])
    size = int(args[4]) if len(args) > 4 else 300
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
    if serial:
        sent = [0]
        idle = list(range(partitions))

        def acked_one(error, message):
            acked(error, message)
            idle.append(message.partition())

        while sent[0] < count or len(idle) < partitions:
            while idle and sent[0] < count:
                producer.produce(topic, payload, key=f"key-{sent[0]}", partition=idle.pop(),
                                 on_delivery=acked_one)
                sent[0] += 1
            producer.poll(0.01)
    else:
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
    shape = "one in flight per partition" if serial else "pipelined"
    print(f"ceiling, {shape}: {count / elapsed:.0f} records/s ({count} in {elapsed:.2f} s)")

if __name__ == "__main__":
    main()
