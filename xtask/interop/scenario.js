// The interop checks with MQTT.js, shared by Node (mqttjs.js) and the
// browser page (browser.js): qos0, qos1, qos2, retained and will.
//
// `ternInterop(mqtt, url, version, prefix, report)` runs them against the
// broker at `url` (mqtt:// or ws://) in MQTT `version` ("3.1.1" or "5"),
// on topics under `prefix`, and awaits `report(line)` with `PASS CHECK` or
// `FAIL CHECK: why` for each. A classic script, so the page can load it.
;(function (root) {
  'use strict'
  const WAIT = 10000

  function withTimeout (promise, what) {
    let timer
    const timeout = new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error('no ' + what + ' within ' + WAIT / 1000 + 's')), WAIT)
    })
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
  }

  // Connects and resolves once CONNACK came; every message goes to an inbox.
  function connect (mqtt, url, version, clientId, extra) {
    const options = Object.assign({
      protocolVersion: version === '5' ? 5 : 4,
      clientId,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: WAIT
    }, extra || {})
    const client = mqtt.connect(url, options)
    client.inbox = []
    client.waiters = []
    client.on('message', (topic, payload, packet) => {
      client.inbox.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain })
      for (const wake of client.waiters.splice(0)) wake()
    })
    return withTimeout(new Promise((resolve, reject) => {
      client.once('connect', () => resolve(client))
      client.once('error', (e) => { client.end(true); reject(e) })
    }), 'CONNACK for ' + clientId)
  }

  // The first message on `topic`, within WAIT.
  function expect (client, topic) {
    return withTimeout(new Promise((resolve) => {
      const look = () => {
        const i = client.inbox.findIndex((m) => m.topic === topic)
        if (i >= 0) resolve(client.inbox.splice(i, 1)[0])
        else client.waiters.push(look)
      }
      look()
    }), 'message on ' + topic)
  }

  function same (got, want) {
    for (const key of Object.keys(want)) {
      if (got[key] !== want[key]) {
        throw new Error('expected ' + JSON.stringify(want) + ', got ' + JSON.stringify(got))
      }
    }
  }

  async function subscribe (client, topic, qos) {
    const granted = await withTimeout(client.subscribeAsync(topic, { qos }), 'SUBACK')
    if (granted.length !== 1 || granted[0].qos !== qos) {
      throw new Error('subscribe ' + topic + ': granted ' + JSON.stringify(granted))
    }
  }

  async function run (mqtt, url, version, prefix, report) {
    const tag = 'mqttjs-' + version + '-' + Math.floor(Math.random() * 1e9)
    async function check (name, body) {
      try {
        await body()
        await report('PASS ' + name)
      } catch (e) {
        await report('FAIL ' + name + ': ' + ((e && e.message) || e))
      }
    }
    const sub = await connect(mqtt, url, version, tag + '-sub')
    await subscribe(sub, prefix + '/q/+', 2)
    await subscribe(sub, prefix + '/will', 1)
    const pub = await connect(mqtt, url, version, tag + '-pub')

    for (const qos of [0, 1, 2]) {
      await check('qos' + qos, async () => {
        const topic = prefix + '/q/' + qos
        await withTimeout(pub.publishAsync(topic, 'qos' + qos, { qos }), 'acknowledgement')
        same(await expect(sub, topic), { payload: 'qos' + qos, qos, retain: false })
      })
    }

    await check('retained', async () => {
      const topic = prefix + '/retained'
      await withTimeout(pub.publishAsync(topic, 'kept', { qos: 1, retain: true }), 'PUBACK')
      const late = await connect(mqtt, url, version, tag + '-late')
      try {
        await subscribe(late, topic, 1)
        same(await expect(late, topic), { payload: 'kept', qos: 1, retain: true })
      } finally {
        late.end(true)
        await withTimeout(pub.publishAsync(topic, '', { qos: 1, retain: true }), 'PUBACK')
      }
    })

    await check('will', async () => {
      const topic = prefix + '/will'
      const will = await connect(mqtt, url, version, tag + '-will', {
        will: { topic, payload: 'gone', qos: 1, retain: false }
      })
      // end(true) destroys the stream without sending DISCONNECT.
      will.end(true)
      same(await expect(sub, topic), { payload: 'gone', qos: 1, retain: false })
    })

    await pub.endAsync()
    await sub.endAsync()
  }

  root.ternInterop = run
  if (typeof module !== 'undefined') module.exports = run
})(typeof globalThis !== 'undefined' ? globalThis : this)
