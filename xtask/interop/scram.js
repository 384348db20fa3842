// Interop driver for `cargo xtask interop`: MQTT.js in Node doing MQTT 5
// enhanced authentication with SCRAM-SHA-256 (RFC 5802/7677) or, with
// SCRAM_HASH=sha512, SCRAM-SHA-512, against a `tern broker` whose password
// file holds SCRAM_USER (default `scram-user`) with password `scram-pass`
// (a SCRAM line from `tern passwd --scram` or `--scram-sha512`). The SCRAM
// client is written here on node:crypto, independently of Tern's, and
// plugged into MQTT.js's own enhanced authentication hook (`handleAuth`).
//
// Usage: NODE_PATH=.../node_modules [SCRAM_HASH=sha512] [SCRAM_USER=NAME]
//        node scram.js URL VERSION PREFIX
// (VERSION must be 5). Checks:
// - scram-login: the exchange succeeds, the CONNACK names the method and
//   carries the server signature this script verifies, and a QoS 1
//   message goes round trip;
// - scram-wrong-password: refused with CONNACK 0x86.
'use strict'
const mqtt = require('mqtt')
const crypto = require('node:crypto')

const [url, version, prefix] = process.argv.slice(2)
const HASH = process.env.SCRAM_HASH || 'sha256'
if (HASH !== 'sha256' && HASH !== 'sha512') throw new Error(`SCRAM_HASH ${HASH}: sha256 or sha512`)
const USER = process.env.SCRAM_USER || 'scram-user'
const METHOD = HASH === 'sha512' ? 'SCRAM-SHA-512' : 'SCRAM-SHA-256'
// The hash's output length: SaltedPassword's (RFC 5802 Hi) and the keys'.
const KEY_LEN = HASH === 'sha512' ? 64 : 32
const hmac = (key, data) => crypto.createHmac(HASH, key).update(data).digest()
const hash = (data) => crypto.createHash(HASH).update(data).digest()
const xor = (a, b) => Buffer.from(a.map((x, i) => x ^ b[i]))

// One SCRAM-SHA-256 client exchange.
function scramClient (user, password) {
  const nonce = crypto.randomBytes(18).toString('base64')
  const bare = `n=${user},r=${nonce}`
  const state = {}
  return {
    first: () => Buffer.from(`n,,${bare}`),
    final (serverFirst) {
      const text = serverFirst.toString()
      const attrs = Object.fromEntries(text.split(',').map((a) => [a[0], a.slice(2)]))
      if (!attrs.r.startsWith(nonce)) throw new Error('nonce mismatch')
      const salted = crypto.pbkdf2Sync(password, Buffer.from(attrs.s, 'base64'), Number(attrs.i), KEY_LEN, HASH)
      const clientKey = hmac(salted, 'Client Key')
      const withoutProof = `c=biws,r=${attrs.r}`
      const authMessage = `${bare},${text},${withoutProof}`
      const proof = xor(clientKey, hmac(hash(clientKey), authMessage))
      state.serverSignature = hmac(hmac(salted, 'Server Key'), authMessage)
      return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`)
    },
    verify (serverFinal) {
      const v = Buffer.from(serverFinal.toString().replace(/^v=/, ''), 'base64')
      return state.serverSignature && crypto.timingSafeEqual(v, state.serverSignature)
    }
  }
}

function login (password, clientId) {
  const scram = scramClient(USER, password)
  const client = mqtt.connect(url, {
    protocolVersion: 5,
    clientId,
    reconnectPeriod: 0,
    connectTimeout: 10000,
    properties: { authenticationMethod: METHOD, authenticationData: scram.first() }
  })
  client.handleAuth = (packet, callback) => {
    try {
      const data = scram.final(packet.properties.authenticationData)
      callback(null, {
        cmd: 'auth',
        reasonCode: 0x18,
        properties: { authenticationMethod: METHOD, authenticationData: data }
      })
    } catch (e) {
      callback(e)
    }
  }
  return { client, scram }
}

function check (name, body) {
  return body().then(
    () => console.log(`PASS ${name}`),
    (e) => { console.log(`FAIL ${name}: ${e.message || e}`); return 1 }
  )
}

const within = (ms, what, promise) => Promise.race([
  promise,
  new Promise((resolve, reject) => setTimeout(() => reject(new Error(`no ${what} within ${ms / 1000}s`)), ms))
])

async function scramLogin () {
  const { client, scram } = login('scram-pass', `${prefix}/ok`.replace(/\//g, '-'))
  try {
    const connack = await within(10000, 'CONNACK', new Promise((resolve, reject) => {
      client.once('connect', resolve)
      client.once('error', reject)
    }))
    const props = connack.properties || {}
    if (props.authenticationMethod !== METHOD) throw new Error(`CONNACK method ${props.authenticationMethod}`)
    if (!scram.verify(props.authenticationData || Buffer.alloc(0))) throw new Error('bad server signature')
    const topic = `${prefix}/scram`
    await client.subscribeAsync(topic, { qos: 1 })
    const got = within(10000, 'message', new Promise((resolve) => client.once('message', (t, p) => resolve(p.toString()))))
    await client.publishAsync(topic, 'scram-hello', { qos: 1 })
    if ((await got) !== 'scram-hello') throw new Error('wrong payload')
  } finally {
    client.end(true)
  }
}

async function scramWrongPassword () {
  const { client } = login('not-the-password', `${prefix}/bad`.replace(/\//g, '-'))
  try {
    const err = await within(10000, 'refusal', new Promise((resolve, reject) => {
      client.once('connect', () => reject(new Error('connected with a wrong password')))
      client.once('error', resolve)
    }))
    if (err.code !== 0x86) throw new Error(`refused with ${err.code}, not 0x86: ${err.message}`)
  } finally {
    client.end(true)
  }
}

async function main () {
  if (version !== '5') {
    console.log('FAIL scram-login: enhanced authentication needs MQTT 5')
    return 1
  }
  let failed = 0
  failed += (await check('scram-login', scramLogin)) || 0
  failed += (await check('scram-wrong-password', scramWrongPassword)) || 0
  return failed
}

main().then((failed) => process.exit(failed ? 1 : 0), (e) => { console.error(e); process.exit(1) })
