#!/usr/bin/env python3
"""Restart with N queued messages: Tern `--data-dir` against mosquitto
`persistence true`, interleaved in one run (issue 14's restart goal).

For each broker and round: a fresh data directory; an offline persistent
subscriber (mosquitto_sub -c -q 1 -E) on `load/#`; N QoS 1 messages of
64 bytes from `tern bench pub` (4 publishers, every one acknowledged); a
clean stop (SIGTERM: Tern checkpoints its log into redb, mosquitto writes
mosquitto.db); then a restart, timed from spawn until a 3.1.1 CONNECT gets
its CONNACK. Each round then checks that the subscriber's session is
present and that its first queued message arrives, and prints the data
directory's size.

Usage: benches/restart_queued.py TERN_BINARY [N] [ROUNDS]
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def connect_packet(client_id, clean):
    cid = client_id.encode()
    var = b"\x00\x04MQTT\x04" + bytes([0x02 if clean else 0x00]) + b"\x00\x3c"
    body = var + len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(body)]) + body


def connack(port, client_id="probe", clean=True, timeout=0.2):
    """The CONNACK's session-present flag, or None if none came."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(5)
            s.sendall(connect_packet(client_id, clean))
            data = s.recv(4)
            if len(data) == 4 and data[0] == 0x20 and data[3] == 0:
                return data[2] & 1
    except OSError:
        pass
    return None


def first_message(port, client_id):
    """Session present, and the first PUBLISH's topic, for a resumed session."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.settimeout(30)
        s.sendall(connect_packet(client_id, False))
        buf = b""
        while len(buf) < 4:
            buf += s.recv(4096)
        present = buf[2] & 1
        buf = buf[4:]
        while len(buf) < 4:
            buf += s.recv(4096)
        assert buf[0] >> 4 == 3 and buf[1] < 128, buf[:8]
        tlen = int.from_bytes(buf[2:4], "big")
        while len(buf) < 4 + tlen:
            buf += s.recv(4096)
        return present, buf[4:4 + tlen].decode(errors="replace")


def wait_ready(port, proc, limit=600):
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode}")
        if connack(port) is not None:
            return time.monotonic() - start
        time.sleep(0.002)
    raise RuntimeError("broker never accepted a connection")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=600)


def dir_size(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def tern_start(tern, port, data):
    cfg = os.path.join(data, "..", "tern.toml")
    with open(cfg, "w") as f:
        f.write(
            "[limits]\nmax_queued_messages = 100000000\n"
            "max_queued_bytes = 100000000000\nmax_memory = 0\n"
        )
    return subprocess.Popen(
        [tern, "broker", "--tcp", f"127.0.0.1:{port}", "--data-dir", data,
         "--config", cfg, "--log", "warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def mosquitto_start(port, data):
    cfg = os.path.join(data, "..", "mosquitto.conf")
    with open(cfg, "w") as f:
        f.write(
            f"listener {port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {data}/\n"
            "autosave_interval 0\nmax_queued_messages 0\nmax_queued_bytes 0\n"
        )
    return subprocess.Popen(["mosquitto", "-c", cfg],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def round_(name, start, tern, n):
    top = tempfile.mkdtemp(prefix=f"restart-{name}-")
    data = os.path.join(top, "data")
    os.makedirs(data)
    # mosquitto started as root runs as its own user: it must write here.
    os.chmod(top, 0o755)
    os.chmod(data, 0o777)
    port = free_port()
    proc = start(port, data)
    wait_ready(port, proc)
    subprocess.run(["mosquitto_sub", "-p", str(port), "-i", "q1m", "-c", "-q", "1",
                    "-t", "load/#", "-E"], check=True)
    per = n // 4
    t = time.monotonic()
    subprocess.run([tern, "bench", "pub", "-p", str(port), "-c", "4", "-n", str(per),
                    "-q", "1", "-s", "64", "-t", "load/%i", "--quiet"],
                   check=True, stdout=subprocess.DEVNULL)
    fill = time.monotonic() - t
    t = time.monotonic()
    stop(proc)
    stopping = time.monotonic() - t
    size = dir_size(data)
    proc = start(port, data)
    ready = wait_ready(port, proc)
    present, topic = first_message(port, "q1m")
    stop(proc)
    shutil.rmtree(top)
    print(f"{name:9} n={n} fill={fill:6.1f}s stop={stopping:5.2f}s "
          f"disk={size / 1e6:7.1f}MB restart-to-CONNACK={ready:6.3f}s "
          f"session_present={present} first={topic}", flush=True)
    return ready


def main():
    tern = os.path.abspath(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    with open("/proc/loadavg") as f:
        print("load average:", f.read().split()[:3])
    results = {"tern": [], "mosquitto": []}
    for _ in range(rounds):
        results["tern"].append(round_("tern", lambda p, d: tern_start(tern, p, d), tern, n))
        results["mosquitto"].append(round_("mosquitto", mosquitto_start, tern, n))
    med = {k: sorted(v)[len(v) // 2] for k, v in results.items()}
    print(f"median restart-to-CONNACK: tern {med['tern']:.3f}s, "
          f"mosquitto {med['mosquitto']:.3f}s, "
          f"ratio mosquitto/tern {med['mosquitto'] / med['tern']:.2f}")
    with open("/proc/loadavg") as f:
        print("load average:", f.read().split()[:3])


if __name__ == "__main__":
    main()
