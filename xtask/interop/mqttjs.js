// Interop driver for `cargo xtask interop`: MQTT.js in Node.
//
// Usage: NODE_PATH=.../node_modules node mqttjs.js URL VERSION PREFIX
// (URL: mqtt://HOST:PORT or ws://HOST:PORT/mqtt; VERSION: 3.1.1 or 5).
// Prints `PASS CHECK` / `FAIL CHECK: why` per check; exits 1 if any failed.
'use strict'
const mqtt = require('mqtt')
const run = require('./scenario.js')

const [url, version, prefix] = process.argv.slice(2)
let failed = 0
run(mqtt, url, version, prefix, async (line) => {
  if (line.startsWith('FAIL')) failed++
  console.log(line)
}).then(
  () => process.exit(failed ? 1 : 0),
  (e) => {
    console.error(e)
    process.exit(1)
  }
)
