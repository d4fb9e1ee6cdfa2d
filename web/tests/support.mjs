// What both browser tests share: the API call they set up and check with, and the headless
// Chromium they drive. Not a test file itself (node --test runs the files named to it).
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

export const BASE = process.env.CPN_URL;

/** Calls the API as `token`; a non-2xx answer fails the test with its body. */
export async function api(token, method, path, body) {
  const res = await fetch(`${BASE}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** The system's Chromium (or $CHROMIUM), headless, with nothing that reaches out. */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
