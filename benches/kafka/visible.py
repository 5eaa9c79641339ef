#!/usr/bin/env python3
"""Command-to-visible lag: registers COUNT drones one at a time through the command API
and, after each answer, polls the query API (a separate process) until the drone is
there. Prints the p50/p99/max of the time from the command's answer to the first read
that shows it.

    visible.py COMMAND_URL QUERY_URL COUNT PREFIX
"""
import http.client
import json
import sys
import time
from urllib.parse import urlparse


def connect(url):
    parsed = urlparse(url)
    return http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)


def main():
    command, query = connect(sys.argv[1]), connect(sys.argv[2])
    count, prefix = int(sys.argv[3]), sys.argv[4]
    body = json.dumps({"model": "X8", "payloadKg": 5, "rangeKm": 60, "speedMps": 15,
                       "home": {"latitude": 47.6, "longitude": -122.3, "altitude": 0}})
    lags = []
    for i in range(count):
        drone = f"{prefix}-{i}"
        command.request("PUT", f"/api/v1/drones/{drone}", body, {"content-type": "application/json"})
        answer = command.getresponse()
        answer.read()
        if answer.status >= 300:
            raise SystemExit(f"PUT {drone}: {answer.status}")
        answered = time.perf_counter()
        while True:
            query.request("GET", f"/api/v1/drones/{drone}")
            read = query.getresponse()
            read.read()
            if read.status == 200:
                break
            time.sleep(0.0005)
            if time.perf_counter() - answered > 30:
                raise SystemExit(f"{drone} never became visible")
        lags.append(time.perf_counter() - answered)
    lags.sort()
    at = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))] * 1000
    print(f"command-to-visible: p50 {at(0.5):.1f} ms, p99 {at(0.99):.1f} ms, "
          f"max {lags[-1] * 1000:.1f} ms over {count} commands")


if __name__ == "__main__":
    main()
