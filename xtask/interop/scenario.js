// The interop checks with MQTT.js, shared by Node (mqttjs.js) and the
// browser page (browser.js): qos0, qos1, qos2, retained and will (every
// driver's), then session, large, cross-version and, in MQTT 5, properties
// and topic-alias.
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
      client.inbox.push({
        topic,
        payload: payload.toString(),
        qos: packet.qos,
        retain: packet.retain,
        properties: packet.properties || {}
      })
      for (const wake of client.waiters.splice(0)) wake()
    })
    return withTimeout(new Promise((resolve, reject) => {
      client.once('connect', (connack) => {
        client.connack = connack
        resolve(client)
      })
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

    await check('session', async () => {
      // A persistent session keeps the subscription and the QoS 1 message
      // published while its client was away.
      const topic = prefix + '/session'
      const id = tag + '-persistent'
      const persistent = { clean: false }
      if (version === '5') persistent.properties = { sessionExpiryInterval: 60 }
      const first = await connect(mqtt, url, version, id, persistent)
      await subscribe(first, topic, 1)
      await first.endAsync()
      await withTimeout(pub.publishAsync(topic, 'while away', { qos: 1 }), 'PUBACK')
      const back = await connect(mqtt, url, version, id, persistent)
      try {
        if (!back.connack.sessionPresent) throw new Error('CONNACK without session present')
        same(await expect(back, topic), { payload: 'while away', qos: 1, retain: false })
      } finally {
        await back.endAsync()
        // Clean Start / Clean Session 1 discards the session.
        await (await connect(mqtt, url, version, id)).endAsync()
      }
    })

    await check('large', async () => {
      const topic = prefix + '/q/large'
      const payload = 'tern'.repeat(75000) // 300 kB
      await withTimeout(pub.publishAsync(topic, payload, { qos: 1 }), 'PUBACK')
      const got = await expect(sub, topic)
      if (got.payload !== payload) {
        throw new Error('payload of ' + got.payload.length + ' bytes, expected ' + payload.length)
      }
    })

    await check('cross-version', async () => {
      // A publisher of the other version; from MQTT 5 with properties, which
      // a 3.1.1 subscriber must not see.
      const other = version === '5' ? '3.1.1' : '5'
      const across = await connect(mqtt, url, other, tag + '-other')
      try {
        const topic = prefix + '/q/cross'
        const options = { qos: 1 }
        if (other === '5') options.properties = { contentType: 'text/plain', userProperties: { a: 'b' } }
        await withTimeout(across.publishAsync(topic, 'across', options), 'PUBACK')
        same(await expect(sub, topic), { payload: 'across', qos: 1, retain: false })
      } finally {
        await across.endAsync()
      }
    })

    if (version === '5') {
      await check('properties', async () => {
        const topic = prefix + '/q/properties'
        const properties = {
          payloadFormatIndicator: true,
          messageExpiryInterval: 3600,
          contentType: 'text/plain',
          responseTopic: prefix + '/reply',
          userProperties: { unit: 'celsius', source: 'interop' }
        }
        await withTimeout(pub.publishAsync(topic, '21.5', { qos: 1, properties }), 'PUBACK')
        const got = (await expect(sub, topic)).properties
        const expiry = got.messageExpiryInterval
        same(got, {
          payloadFormatIndicator: true,
          contentType: 'text/plain',
          responseTopic: prefix + '/reply'
        })
        if (!(expiry > 3590 && expiry <= 3600)) throw new Error('message expiry ' + expiry)
        same(got.userProperties || {}, properties.userProperties)
      })

      await check('topic-alias', async () => {
        // The publisher replaces the topic by an alias after the first
        // message; the subscriber lets the broker send aliases too.
        const topic = prefix + '/alias'
        const aliasing = await connect(mqtt, url, version, tag + '-alias-pub', { autoAssignTopicAlias: true })
        const receiver = await connect(mqtt, url, version, tag + '-alias-sub', {
          properties: { topicAliasMaximum: 8 }
        })
        try {
          await subscribe(receiver, topic, 1)
          for (const n of [1, 2, 3]) {
            await withTimeout(aliasing.publishAsync(topic, 'alias ' + n, { qos: 1 }), 'PUBACK')
          }
          for (const n of [1, 2, 3]) {
            same(await expect(receiver, topic), { payload: 'alias ' + n, qos: 1 })
          }
        } finally {
          await aliasing.endAsync()
          await receiver.endAsync()
        }
      })
    }

    await pub.endAsync()
    await sub.endAsync()
  }

  root.ternInterop = run
  if (typeof module !== 'undefined') module.exports = run
})(typeof globalThis !== 'undefined' ? globalThis : this)
