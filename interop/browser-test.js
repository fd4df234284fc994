#!/usr/bin/env node
// Headless-browser check of the chat example (examples/chat).
//
//   node interop/browser-test.js [--recovery] <url0> <url1>
//
// url0 and url1 are the pages of two instances of the chat cluster. The
// script opens each in its own tab of a headless Chromium, waits until both
// show they are connected, then types a unique message into page 0 and
// submits it, and waits until that text appears in page 1's message list
// (sent through the other instance, so it crossed Redis); then the same in
// the other direction.
//
// With --recovery (a cluster with connection state recovery: go run
// ./examples/chat -adapter streams), page 0 then drops its connection
// (chatSocket.io.engine.close(), with automatic reconnection held off), page
// 1 sends three messages while it is away, and page 0 reconnects: it must
// say its session was recovered and show the three messages, once each, in
// order, marked "recovered".
//
// It exits 0 on success and 1, with a message saying which step failed,
// otherwise. The browser is always closed.
//
// It is run by the Go test in examples/chat/browser_test.go (go test -tags
// browser), which starts the cluster with the Socket.IO browser client taken
// from node_modules/socket.io-client, so nothing is fetched from the network.
//
// Environment: CHROMIUM_PATH (default /usr/bin/chromium) is the browser to
// drive; BROWSER_TEST_TIMEOUT_MS (default 45000) bounds the whole run.
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const puppeteer = require('puppeteer-core');

const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const totalTimeoutMs = Number(process.env.BROWSER_TEST_TIMEOUT_MS) || 45000;
const stepTimeoutMs = 15000;

function log(...args) {
  console.log(`[browser-test ${new Date().toISOString().slice(11, 23)}]`, ...args);
}

// Everything the pages say (console lines, uncaught errors, failed requests)
// is kept and printed only if the check fails.
const pageLog = [];

// The browser and its profile directory, so that the watchdog can clean up.
let browser;
let userDataDir;

async function main() {
  let args = process.argv.slice(2);
  const recovery = args[0] === '--recovery';
  if (recovery) {
    args = args.slice(1);
  }
  const urls = args;
  if (urls.length !== 2) {
    throw new Error('usage: node browser-test.js [--recovery] <url0> <url1>');
  }
  if (!fs.existsSync(executablePath)) {
    throw new Error(`no browser at ${executablePath}: install chromium (apt-get install -y chromium) or set CHROMIUM_PATH`);
  }

  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-browser-test-'));
  try {
    log(`launching ${executablePath}`);
    browser = await puppeteer.launch({
      executablePath,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        `--user-data-dir=${userDataDir}`,
      ],
      timeout: stepTimeoutMs,
      protocolTimeout: stepTimeoutMs,
    });
    log(`browser ${await browser.version()}`);

    // Open one tab per instance. Each tab is given a known name before its
    // scripts run (the page reads it from sessionStorage and sends it when
    // it connects), so that presence lines and messages can be recognised.
    const pages = [];
    for (const [i, url] of urls.entries()) {
      pages.push(await openChat(browser, i, url));
    }
    const ports = urls.map((u) => new URL(u).port);

    // Page 0 connected first, so it hears page 1 join through the other
    // instance: both are in the lobby and the adapters are subscribed.
    await waitFor(pages[0], 'page 0 to see page 1 join',
      (line) => [...document.querySelectorAll('#messages li.presence')].some((li) => li.textContent === line),
      `browser-1 joined via :${ports[1]}`);

    await sendAndExpect(pages, ports, 0, 1);
    await sendAndExpect(pages, ports, 1, 0);
    log('OK: messages crossed between the instances in both directions');
    if (recovery) {
      await dropAndRecover(pages, ports);
      log('OK: page 0 dropped its connection, came back with its session and showed the messages it missed');
    }
  } finally {
    if (browser) {
      await browser.close().catch((err) => log(`closing the browser: ${err.message}`));
    }
    fs.rmSync(userDataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  }
}

// openChat opens url in a new tab as browser-<i> and waits until the page
// says it is connected.
async function openChat(browser, i, url) {
  const page = await browser.newPage();
  page.setDefaultTimeout(stepTimeoutMs);
  page.on('console', (msg) => pageLog.push(`page ${i} console.${msg.type()}: ${msg.text()}`));
  page.on('pageerror', (err) => pageLog.push(`page ${i} error: ${err.message}`));
  page.on('requestfailed', (req) => pageLog.push(`page ${i} request failed: ${req.url()} ${req.failure()?.errorText}`));
  page.on('response', (res) => {
    if (res.status() >= 400) pageLog.push(`page ${i} HTTP ${res.status()}: ${res.url()}`);
  });
  await page.evaluateOnNewDocument((name) => sessionStorage.setItem('name', name), `browser-${i}`);

  log(`page ${i}: opening ${url}`);
  const res = await page.goto(url, { waitUntil: 'load' });
  if (!res || !res.ok()) {
    throw new Error(`page ${i}: GET ${url} returned ${res ? res.status() : 'no response'}`);
  }
  if (!(await page.evaluate(() => typeof io === 'function'))) {
    throw new Error(`page ${i}: the Socket.IO client did not load (the page's <script src> is ${await page.$eval('script[src]', (s) => s.src)})`);
  }
  await waitFor(page, `page ${i} to show it is connected`,
    () => document.querySelector('#status')?.classList.contains('connected'));
  log(`page ${i}: ${await page.$eval('#status', (s) => s.textContent)}`);
  return page;
}

// sendAndExpect types a unique message into page `from`, submits it, and
// waits until page `to` shows it, marked as sent through the instance of
// page `from`.
async function sendAndExpect(pages, ports, from, to) {
  const text = `hello from page ${from} (:${ports[from]}) ${Date.now()}-${Math.random().toString(36).slice(2, 10)}`;
  const page = pages[from];
  await page.bringToFront();
  await page.click('#input');
  await page.type('#input', text);
  await page.keyboard.press('Enter');
  log(`page ${from}: sent ${JSON.stringify(text)}`);

  const want = { name: `browser-${from}`, text, via: `via :${ports[from]}` };
  await waitFor(pages[to], `page ${to} to show ${JSON.stringify(text)}`, (want) =>
    [...document.querySelectorAll('#messages li.message')].some((li) =>
      li.querySelector('.text')?.textContent === want.text &&
      li.querySelector('.name')?.textContent === want.name &&
      li.querySelector('.via')?.textContent === want.via),
  want);
  log(`page ${to}: received it via :${ports[from]}`);
}

// dropAndRecover drops page 0's connection, sends three messages from page 1
// (the other instance) while page 0 is away, reconnects page 0 and checks
// that it shows them, recovered.
async function dropAndRecover(pages, ports) {
  const [away, other] = pages;
  const before = await away.$$eval('#messages li.message', (lis) => lis.length);
  // Hold off automatic reconnection so that the messages are surely sent
  // while the page is away, then close the Engine.IO connection as a
  // network failure would (the server sees "transport close").
  await away.evaluate(() => {
    window.chatSocket.io.reconnection(false);
    window.chatSocket.io.engine.close();
  });
  await waitFor(away, 'page 0 to show it is disconnected',
    () => !document.querySelector('#status')?.classList.contains('connected'));
  log('page 0: connection dropped');
  // Page 1 hears that page 0 left once page 0's server has seen the drop
  // (and saved its session).
  await waitFor(other, 'page 1 to see page 0 leave',
    (line) => [...document.querySelectorAll('#messages li.presence')].some((li) => li.textContent === line),
    `browser-0 left via :${ports[0]}`);

  // One at a time, each once page 1 shows it: the order is then fixed.
  const texts = [];
  for (let i = 0; i < 3; i++) {
    const text = `missed ${i} ${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
    texts.push(text);
    await other.bringToFront();
    await other.click('#input');
    await other.type('#input', text);
    await other.keyboard.press('Enter');
    await waitFor(other, `page 1 to show ${JSON.stringify(text)}`, (text) =>
      [...document.querySelectorAll('#messages li.message .text')].some((el) => el.textContent === text), text);
  }
  log(`page 1: sent ${texts.length} messages while page 0 was away`);
  if ((await away.$$eval('#messages li.message', (lis) => lis.length)) !== before) {
    throw new Error('page 0 got messages while it was disconnected');
  }

  await away.evaluate(() => {
    window.chatSocket.io.reconnection(true);
    window.chatSocket.connect();
  });
  await waitFor(away, 'page 0 to reconnect with its session recovered',
    () => document.querySelector('#status')?.textContent.includes('(session recovered)'));
  const want = texts.map((text) => ({ text, via: `via :${ports[1]}`, recovered: true }));
  await waitFor(away, `page 0 to show the ${texts.length} missed messages, recovered`, ({ before, n }) =>
    document.querySelectorAll('#messages li.message').length >= before + n, { before, n: texts.length });
  // Anything delivered twice would have shown up by now.
  await new Promise((r) => setTimeout(r, 300));
  const got = await away.$$eval('#messages li.message', (lis, before) => lis.slice(before).map((li) => ({
    text: li.querySelector('.text')?.textContent,
    via: li.querySelector('.via')?.textContent,
    recovered: li.classList.contains('recovered') && li.querySelector('.recovered-mark')?.textContent === 'recovered',
  })), before);
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new Error(`page 0 shows after reconnecting ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  }
  const notice = await away.$$eval('#messages li.notice', (lis) => lis.map((li) => li.textContent).pop());
  if (!notice || !notice.includes(`session recovered, ${texts.length} missed message(s)`)) {
    throw new Error(`page 0's last notice is ${JSON.stringify(notice)}, want one saying the session was recovered with ${texts.length} missed messages`);
  }
  log(`page 0: ${notice}`);
}

// waitFor waits until fn(arg), evaluated in page, is true; on timeout it
// fails with what it was waiting for.
async function waitFor(page, what, fn, arg) {
  try {
    await page.waitForFunction(fn, { timeout: stepTimeoutMs, polling: 100 }, arg);
  } catch (err) {
    const state = await page.evaluate(() => ({
      status: document.querySelector('#status')?.textContent,
      messages: [...document.querySelectorAll('#messages li')].map((li) => li.textContent),
    })).catch(() => null);
    throw new Error(`timed out after ${stepTimeoutMs} ms waiting for ${what} (${err.message}); page state: ${JSON.stringify(state)}`);
  }
}

// If anything hangs past the deadline, kill the browser (puppeteer's close
// might hang too), remove its profile and fail.
const watchdog = setTimeout(() => {
  console.error(`FAIL: the browser test did not finish within ${totalTimeoutMs} ms`);
  dumpPageLog();
  const pid = browser?.process()?.pid;
  if (pid) {
    // puppeteer starts the browser as the leader of its own process group;
    // kill the whole group (renderers, zygote...), not just the leader.
    for (const target of [-pid, pid]) {
      try {
        process.kill(target, 'SIGKILL');
      } catch {}
    }
  }
  if (userDataDir) {
    try {
      fs.rmSync(userDataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    } catch {}
  }
  process.exit(1);
}, totalTimeoutMs);

function dumpPageLog() {
  if (pageLog.length > 0) {
    console.error('what the pages logged:\n  ' + pageLog.join('\n  '));
  }
}

main().then(() => {
  clearTimeout(watchdog);
  process.exit(0);
}, (err) => {
  clearTimeout(watchdog);
  console.error(`FAIL: ${err.message}`);
  dumpPageLog();
  process.exit(1);
});
