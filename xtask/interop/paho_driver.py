"""Interop driver for `cargo xtask interop`: paho-mqtt 2.x (Python).

Usage: python paho_driver.py URL VERSION PREFIX
(URL: mqtt://HOST:PORT, mqtts://HOST:PORT or ws://HOST:PORT/PATH; VERSION:
3.1.1 or 5)

Over mqtts:// the broker's certificate is verified against the CA file in
TLS_CAFILE (and its name against the URL's host), and the client presents
the certificate and key in TLS_CERT and TLS_KEY.

Prints `PASS CHECK` or `FAIL CHECK: why` for each of qos0, qos1, qos2,
retained and will (every driver's), then session, large, cross-version and,
in MQTT 5, properties; exits non-zero if any failed.
"""

import os
import queue
import sys
import threading
import time
import traceback
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

WAIT = 10.0


class Peer:
    """One connected client: its messages and the acknowledgements it got."""

    def __init__(
        self, url, version, client_id, will=None, loop=True, persistent=False
    ):
        host, port = url.hostname, url.port
        v5 = version == "5"
        protocol = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            clean_session=None if v5 else not persistent,
            transport="websockets" if url.scheme == "ws" else "tcp",
        )
        if url.scheme == "ws":
            self.client.ws_set_options(path=url.path or "/mqtt")
        if url.scheme == "mqtts":
            self.client.tls_set(
                ca_certs=os.environ["TLS_CAFILE"],
                certfile=os.environ["TLS_CERT"],
                keyfile=os.environ["TLS_KEY"],
            )
        self.session_present = None
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
        if v5:
            connect_properties = Properties(PacketTypes.CONNECT)
            if persistent:
                connect_properties.SessionExpiryInterval = 60
            self.client.connect(
                host,
                port,
                keepalive=60,
                clean_start=not persistent,
                properties=connect_properties,
            )
        else:
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
        self.session_present = flags.session_present
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

    def publish(self, topic, payload, qos, retain=False, properties=None):
        info = self.client.publish(
            topic, payload, qos=qos, retain=retain, properties=properties
        )
        info.wait_for_publish(WAIT)
        if not info.is_published():
            raise RuntimeError(f"publish to {topic} at QoS {qos} not completed")

    def expect(self, topic, payload, qos, retain):
        """The next message on `topic`, checked; returns it."""
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
            return msg

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def main():
    url, version, prefix = sys.argv[1:4]
    target = urlparse(url)
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

    sub = Peer(target, version, f"{tag}-sub")
    sub.subscribe(f"{prefix}/q/+", 2)
    sub.subscribe(f"{prefix}/will", 1)
    pub = Peer(target, version, f"{tag}-pub")

    for qos in (0, 1, 2):

        def qos_check(qos=qos):
            pub.publish(f"{prefix}/q/{qos}", f"qos{qos}", qos)
            sub.expect(f"{prefix}/q/{qos}", f"qos{qos}", qos, False)

        check(f"qos{qos}", qos_check)

    def retained():
        topic = f"{prefix}/retained"
        pub.publish(topic, "kept", 1, retain=True)
        late = Peer(target, version, f"{tag}-late")
        try:
            late.subscribe(topic, 1)
            late.expect(topic, "kept", 1, True)
        finally:
            late.close()
            pub.publish(topic, b"", 1, retain=True)

    check("retained", retained)

    def will():
        topic = f"{prefix}/will"
        w = Peer(target, version, f"{tag}-will", will=(topic, "gone"), loop=False)
        # Close the socket under the client: no DISCONNECT is sent.
        w.client.socket().close()
        sub.expect(topic, "gone", 1, False)

    check("will", will)

    def session():
        # A persistent session keeps the subscription and the QoS 1 message
        # published while its client was away.
        topic = f"{prefix}/session"
        cid = f"{tag}-persistent"
        first = Peer(target, version, cid, persistent=True)
        first.subscribe(topic, 1)
        first.close()
        pub.publish(topic, "while away", 1)
        back = Peer(target, version, cid, persistent=True)
        try:
            if not back.session_present:
                raise RuntimeError("CONNACK without session present")
            back.expect(topic, "while away", 1, False)
        finally:
            back.close()
            # Clean Start / Clean Session 1 discards the session.
            Peer(target, version, cid).close()

    check("session", session)

    def large():
        topic = f"{prefix}/q/large"
        payload = "tern" * 75000  # 300 kB
        pub.publish(topic, payload, 1)
        sub.expect(topic, payload, 1, False)

    check("large", large)

    def cross_version():
        # A publisher of the other version; from MQTT 5 with properties,
        # which a 3.1.1 subscriber must not see.
        other = "3.1.1" if version == "5" else "5"
        across = Peer(target, other, f"{tag}-other")
        try:
            properties = None
            if other == "5":
                properties = Properties(PacketTypes.PUBLISH)
                properties.ContentType = "text/plain"
                properties.UserProperty = [("a", "b")]
            topic = f"{prefix}/q/cross"
            across.publish(topic, "across", 1, properties=properties)
            sub.expect(topic, "across", 1, False)
        finally:
            across.close()

    check("cross-version", cross_version)

    if version == "5":

        def properties():
            topic = f"{prefix}/q/properties"
            sent = Properties(PacketTypes.PUBLISH)
            sent.PayloadFormatIndicator = 1
            sent.MessageExpiryInterval = 3600
            sent.ContentType = "text/plain"
            sent.ResponseTopic = f"{prefix}/reply"
            sent.CorrelationData = b"\x00\x01request-17"
            sent.UserProperty = [("unit", "celsius"), ("source", "interop")]
            pub.publish(topic, "21.5", 1, properties=sent)
            got = sub.expect(topic, "21.5", 1, False).properties
            want = {
                "PayloadFormatIndicator": 1,
                "ContentType": "text/plain",
                "ResponseTopic": f"{prefix}/reply",
                "CorrelationData": b"\x00\x01request-17",
                "UserProperty": [("unit", "celsius"), ("source", "interop")],
            }
            for name, value in want.items():
                if getattr(got, name, None) != value:
                    raise RuntimeError(
                        f"{name}: expected {value!r}, got {getattr(got, name, None)!r}"
                    )
            expiry = getattr(got, "MessageExpiryInterval", None)
            if expiry is None or not 3590 < expiry <= 3600:
                raise RuntimeError(f"MessageExpiryInterval {expiry!r}")

        check("properties", properties)

    pub.close()
    sub.close()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
