// The interop checks with MQTT.js, shared by Node (mqttjs.js) and the
// browser page (browser.js): qos0, qos1, qos2, retained and will (every
// driver's), then session, large, cross-version, unsubscribe and, in MQTT 5,
// properties, topic-alias, shared, no-local, retain-as-published and
// will-delay.
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

  async function subscribe (client, topic, qos, options) {
    const granted = await withTimeout(client.subscribeAsync(topic, Object.assign({ qos }, options)), 'SUBACK')
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

    await check('unsubscribe', async () => {
      // After UNSUBACK nothing more arrives on the filter; a later message on
      // another subscription proves it.
      const gone = prefix + '/unsub/gone'
      const still = prefix + '/unsub/still'
      const client = await connect(mqtt, url, version, tag + '-unsub')
      try {
        await subscribe(client, gone, 1)
        await subscribe(client, still, 1)
        await withTimeout(client.unsubscribeAsync(gone), 'UNSUBACK')
        await withTimeout(pub.publishAsync(gone, 'not for you', { qos: 1 }), 'PUBACK')
        await withTimeout(pub.publishAsync(still, 'marker', { qos: 1 }), 'PUBACK')
        same(await expect(client, still), { payload: 'marker', qos: 1 })
        const stray = client.inbox.find((m) => m.topic === gone)
        if (stray) throw new Error('got ' + JSON.stringify(stray) + ' after unsubscribing')
      } finally {
        await client.endAsync()
      }
    })

    if (version === '5') {
      await check('shared', async () => {
        // Two members of $share/g/...: each message goes to exactly one.
        const topic = prefix + '/shared'
        const end = prefix + '/shared-end'
        const members = [
          await connect(mqtt, url, version, tag + '-share-a'),
          await connect(mqtt, url, version, tag + '-share-b')
        ]
        try {
          for (const member of members) {
            await subscribe(member, '$share/g/' + topic, 1)
            await subscribe(member, end, 1)
          }
          const sent = ['m1', 'm2', 'm3', 'm4', 'm5', 'm6']
          for (const payload of sent) {
            await withTimeout(pub.publishAsync(topic, payload, { qos: 1 }), 'PUBACK')
          }
          await withTimeout(pub.publishAsync(end, 'end', { qos: 1 }), 'PUBACK')
          for (const member of members) await expect(member, end)
          const got = members
            .flatMap((m) => m.inbox.filter((x) => x.topic === topic).map((x) => x.payload))
            .sort()
          if (JSON.stringify(got) !== JSON.stringify(sent)) {
            throw new Error('the group got ' + JSON.stringify(got) + ', expected each of ' + JSON.stringify(sent) + ' once')
          }
        } finally {
          for (const member of members) await member.endAsync()
        }
      })

      await check('no-local', async () => {
        // No Local: our own message on that subscription does not come back.
        const own = prefix + '/nolocal/own'
        const marker = prefix + '/nolocal/marker'
        const client = await connect(mqtt, url, version, tag + '-nolocal')
        try {
          await subscribe(client, own, 1, { nl: true })
          await subscribe(client, marker, 1)
          await withTimeout(client.publishAsync(own, 'mine', { qos: 1 }), 'PUBACK')
          await withTimeout(client.publishAsync(marker, 'marker', { qos: 1 }), 'PUBACK')
          await expect(client, marker)
          const stray = client.inbox.find((m) => m.topic === own)
          if (stray) throw new Error('own message came back: ' + JSON.stringify(stray))
        } finally {
          await client.endAsync()
        }
      })

      await check('retain-as-published', async () => {
        // Live delivery of a retained publish: the flag is kept with Retain
        // As Published, cleared without.
        const topic = prefix + '/rap'
        const keeps = await connect(mqtt, url, version, tag + '-rap-1')
        const clears = await connect(mqtt, url, version, tag + '-rap-0')
        try {
          await subscribe(keeps, topic, 1, { rap: true })
          await subscribe(clears, topic, 1, { rap: false })
          await withTimeout(pub.publishAsync(topic, 'flagged', { qos: 1, retain: true }), 'PUBACK')
          same(await expect(keeps, topic), { payload: 'flagged', retain: true })
          same(await expect(clears, topic), { payload: 'flagged', retain: false })
        } finally {
          await withTimeout(pub.publishAsync(topic, '', { qos: 1, retain: true }), 'PUBACK')
          await keeps.endAsync()
          await clears.endAsync()
        }
      })

      await check('will-delay', async () => {
        // Will Delay Interval 1 s (with a longer session expiry): the will
        // comes about a second after the connection dies, not at once.
        const topic = prefix + '/will'
        const will = await connect(mqtt, url, version, tag + '-will-delay', {
          properties: { sessionExpiryInterval: 30 },
          will: { topic, payload: 'late', qos: 1, retain: false, properties: { willDelayInterval: 1 } }
        })
        const died = Date.now()
        will.end(true)
        same(await expect(sub, topic), { payload: 'late', qos: 1 })
        const after = Date.now() - died
        // Clean Start 1 and no expiry: the session left behind goes.
        await (await connect(mqtt, url, version, tag + '-will-delay')).endAsync()
        if (after < 900) throw new Error('the will came after ' + after + ' ms, before its 1 s delay')
      })

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
        // What went on the wire, noted as it was sent (MQTT.js restores
        // the topic name in the packet object afterwards).
        const sent = []
        aliasing.on('packetsend', (packet) => {
          if (packet.cmd === 'publish') {
            sent.push({ topic: packet.topic, alias: (packet.properties || {}).topicAlias })
          }
        })
        try {
          await subscribe(receiver, topic, 1)
          for (const n of [1, 2, 3]) {
            await withTimeout(aliasing.publishAsync(topic, 'alias ' + n, { qos: 1 }), 'PUBACK')
          }
          for (const n of [1, 2, 3]) {
            same(await expect(receiver, topic), { payload: 'alias ' + n, qos: 1 })
          }
          // The check is about aliases: the first PUBLISH sets one, the
          // others carry only the alias (an empty topic name), or nothing
          // was checked.
          const byAlias = sent.filter((p) => p.alias !== undefined && p.topic === '')
          if (sent.length !== 3 || sent[0].alias === undefined || byAlias.length !== 2) {
            throw new Error('topic aliases not used: sent ' + JSON.stringify(sent) +
              ' (CONNACK topicAliasMaximum ' + (aliasing.connack.properties || {}).topicAliasMaximum + ')')
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
