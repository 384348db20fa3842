// Interop driver for `cargo xtask interop`: MQTT.js's browser bundle in
// headless Chromium, over WebSocket.
//
// Usage: NODE_PATH=.../node_modules CHROMIUM=/usr/bin/chromium \
//        PROFILE_DIR=DIR node browser.js ws://HOST:PORT/mqtt VERSION PREFIX
//
// Serves a page on 127.0.0.1 (a free port) that loads dist/mqtt.min.js and
// scenario.js, runs the checks against the broker's WebSocket listener and
// POSTs each result line back here; this prints them (`PASS CHECK` /
// `FAIL CHECK: why`), stops Chromium by its PID and exits 1 if any failed
// or the page did not finish within the time limit.
'use strict'
const fs = require('fs')
const http = require('http')
const path = require('path')
const { spawn } = require('child_process')

const [url, version, prefix] = process.argv.slice(2)
const bundle = path.join(process.env.NODE_PATH, 'mqtt', 'dist', 'mqtt.min.js')
const scenario = path.join(__dirname, 'scenario.js')
const LIMIT_MS = 60000

const page = `<!doctype html>
<meta charset="utf-8"><title>tern interop</title>
<script src="/mqtt.min.js"></script>
<script src="/scenario.js"></script>
<script>
  const post = (where, line) => fetch(where, { method: 'POST', body: line })
  window.addEventListener('error', (e) => post('/log', 'page error: ' + e.message))
  ternInterop(mqtt, ${JSON.stringify(url)}, ${JSON.stringify(version)}, ${JSON.stringify(prefix)},
    (line) => post('/report', line))
    .catch((e) => post('/log', 'scenario error: ' + ((e && e.stack) || e)))
    .finally(() => post('/done', ''))
</script>`

let failed = 0
let browser = null
let finishing = false

function finish (code, why) {
  if (finishing) return
  finishing = true
  if (why) console.error(why)
  server.close()
  if (browser && browser.exitCode === null) {
    browser.once('exit', () => process.exit(code))
    browser.kill('SIGTERM')
    setTimeout(() => { browser.kill('SIGKILL'); process.exit(code) }, 5000).unref()
  } else {
    process.exit(code)
  }
}

const server = http.createServer((req, res) => {
  let body = ''
  req.on('data', (chunk) => { body += chunk })
  req.on('end', () => {
    const send = (status, type, data) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' })
      res.end(data)
    }
    if (req.method === 'GET' && req.url === '/') return send(200, 'text/html', page)
    if (req.method === 'GET' && req.url === '/mqtt.min.js') {
      return send(200, 'text/javascript', fs.readFileSync(bundle))
    }
    if (req.method === 'GET' && req.url === '/scenario.js') {
      return send(200, 'text/javascript', fs.readFileSync(scenario))
    }
    if (req.method === 'POST' && req.url === '/report') {
      if (body.startsWith('FAIL')) failed++
      console.log(body)
      return send(204, 'text/plain', '')
    }
    if (req.method === 'POST' && req.url === '/log') {
      console.error(body)
      return send(204, 'text/plain', '')
    }
    if (req.method === 'POST' && req.url === '/done') {
      send(204, 'text/plain', '')
      return finish(failed ? 1 : 0)
    }
    send(404, 'text/plain', 'not found')
  })
})

server.listen(0, '127.0.0.1', () => {
  const address = `http://127.0.0.1:${server.address().port}/`
  fs.rmSync(process.env.PROFILE_DIR, { recursive: true, force: true })
  browser = spawn(process.env.CHROMIUM || 'chromium', [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run',
    '--user-data-dir=' + process.env.PROFILE_DIR, address
  ], { stdio: ['ignore', 'ignore', 'inherit'] })
  browser.on('error', (e) => finish(1, 'cannot start Chromium: ' + e.message))
  browser.on('exit', (code, signal) => {
    finish(1, `Chromium exited (${code ?? signal}) before the page finished`)
  })
  console.error(`serving ${address}; Chromium pid ${browser.pid}`)
})

setTimeout(() => finish(1, `the page did not finish within ${LIMIT_MS / 1000}s`), LIMIT_MS).unref()
