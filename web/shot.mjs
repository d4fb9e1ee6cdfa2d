// Development aid: logs in to a running cpn, opens pages and saves screenshots, printing the
// browser console's warnings and errors. Not a test; the tests are in tests/.
//   node shot.mjs --server http://127.0.0.1:8080 --password-file ../cpn-data/admin.password \
//        --out /tmp/shots [--lang zh] overview topology tasks/ID
import { chromium } from 'playwright-core';
import { readFileSync, mkdirSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    server: { type: 'string', default: 'http://127.0.0.1:8080' },
    user: { type: 'string', default: 'admin' },
    'password-file': { type: 'string', default: 'cpn-data/admin.password' },
    out: { type: 'string', default: '/tmp/cpn-shots' },
    lang: { type: 'string', default: 'en' },
    wait: { type: 'string', default: '1500' },
    width: { type: 'string', default: '1366' },
    height: { type: 'string', default: '900' },
  },
});
mkdirSync(values.out, { recursive: true });
const password = readFileSync(values['password-file'], 'utf8').trim();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage({ viewport: { width: +values.width, height: +values.height }, locale: values.lang === 'zh' ? 'zh-CN' : 'en-US' });
page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') console.log(`console.${m.type()}: ${m.text()}`); });
page.on('pageerror', (e) => console.log(`pageerror: ${e.message}\n${e.stack}`));
page.on('requestfailed', (r) => console.log(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
page.on('response', (r) => { if (r.status() >= 400) console.log(`http ${r.status()}: ${r.request().method()} ${r.url()}`); });
await page.goto(values.server + '/');
await page.fill('input[name=username]', values.user);
await page.fill('input[name=password]', password);
await page.click('button[type=submit]');
await page.waitForSelector('nav.side');
for (const p of positionals.length ? positionals : ['overview']) {
  await page.goto(`${values.server}/#/${p}`);
  await page.waitForTimeout(+values.wait);
  const file = `${values.out}/${p.replace(/[^\w-]+/g, '_')}.png`;
  await page.screenshot({ path: file, fullPage: true });
  console.log(`saved ${file}`);
}
await browser.close();
