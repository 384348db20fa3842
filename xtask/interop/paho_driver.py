"""Interop driver for `cargo xtask interop`: paho-mqtt 2.x (Python).

Usage: python paho_driver.py mqtt://HOST:PORT VERSION PREFIX   (VERSION: 3.1.1 or 5)

Prints `PASS CHECK` or `FAIL CHECK: why` for each of qos0, qos1, qos2,
retained and will, and exits non-zero if any failed.
"""

import queue
import sys
import threading
import time
import traceback
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

WAIT = 10.0


class Peer:
    """One connected client: its messages and the acknowledgements it got."""

    def __init__(self, host, port, version, client_id, will=None, loop=True):
        protocol = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol
        )
        self.messages = queue.Queue()
        self.subacks = {}
        self.suback_events = {}
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.reason = None
        if will:
            self.client.will_set(will[0], will[1], qos=1, retain=False)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        self.client.on_subscribe = self._on_subscribe
        self.client.connect(host, port, keepalive=60)
        if loop:
            self.client.loop_start()
            ok = self.connected.wait(WAIT)
        else:
            # No network thread: the caller closes the socket under us.
            deadline = time.monotonic() + WAIT
            while not self.connected.is_set() and time.monotonic() < deadline:
                self.client.loop(0.1)
            ok = self.connected.is_set()
        if not ok:
            raise RuntimeError(f"{client_id}: no CONNACK within {WAIT}s")
        if self.reason.is_failure:
            raise RuntimeError(f"{client_id}: connection refused: {self.reason}")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.reason = reason_code
        self.connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.lock:
            self.subacks[mid] = reason_codes
            if mid in self.suback_events:
                self.suback_events[mid].set()

    def subscribe(self, topic, qos):
        done = threading.Event()
        result, mid = self.client.subscribe(topic, qos)
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"subscribe {topic}: {mqtt.error_string(result)}")
        with self.lock:
            self.suback_events[mid] = done
            if mid in self.subacks:
                done.set()
        if not done.wait(WAIT):
            raise RuntimeError(f"no SUBACK for {topic} within {WAIT}s")
        codes = self.subacks[mid]
        if any(code.is_failure for code in codes) or codes[0].value != qos:
            raise RuntimeError(f"subscribe {topic}: granted {codes}")

    def publish(self, topic, payload, qos, retain=False):
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(WAIT)
        if not info.is_published():
            raise RuntimeError(f"publish to {topic} at QoS {qos} not completed")

    def expect(self, topic, payload, qos, retain):
        deadline = time.monotonic() + WAIT
        while True:
            left = deadline - time.monotonic()
            try:
                msg = self.messages.get(timeout=max(left, 0.01))
            except queue.Empty:
                raise RuntimeError(f"no message on {topic} within {WAIT}s") from None
            if msg.topic != topic:
                continue
            got = (msg.payload.decode(errors="replace"), msg.qos, bool(msg.retain))
            if got != (payload, qos, retain):
                raise RuntimeError(
                    f"on {topic}: expected (payload, qos, retain) "
                    f"{(payload, qos, retain)}, got {got}"
                )
            return

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def main():
    url, version, prefix = sys.argv[1:4]
    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port
    tag = f"paho-{version}-{int(time.time() * 1000) % 100000}"
    failed = 0

    def check(name, body):
        nonlocal failed
        try:
            body()
            print(f"PASS {name}", flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is reported
            failed += 1
            print(f"FAIL {name}: {e}", flush=True)
            traceback.print_exc()

    sub = Peer(host, port, version, f"{tag}-sub")
    sub.subscribe(f"{prefix}/q/+", 2)
    sub.subscribe(f"{prefix}/will", 1)
    pub = Peer(host, port, version, f"{tag}-pub")

    for qos in (0, 1, 2):

        def qos_check(qos=qos):
            pub.publish(f"{prefix}/q/{qos}", f"qos{qos}", qos)
            sub.expect(f"{prefix}/q/{qos}", f"qos{qos}", qos, False)

        check(f"qos{qos}", qos_check)

    def retained():
        topic = f"{prefix}/retained"
        pub.publish(topic, "kept", 1, retain=True)
        late = Peer(host, port, version, f"{tag}-late")
        try:
            late.subscribe(topic, 1)
            late.expect(topic, "kept", 1, True)
        finally:
            late.close()
            pub.publish(topic, b"", 1, retain=True)

    check("retained", retained)

    def will():
        topic = f"{prefix}/will"
        w = Peer(host, port, version, f"{tag}-will", will=(topic, "gone"), loop=False)
        # Close the socket under the client: no DISCONNECT is sent.
        w.client.socket().close()
        sub.expect(topic, "gone", 1, False)

    check("will", will)

    pub.close()
    sub.close()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
