// The console's marketplace pages in a real browser (issue #14 deliverable 7): headless
// Debian Chromium driven by playwright-core against a `cpn serve` where supplier `sup`
// (tenant acme) owns site acme-sz whose node n1 reports two GPUs, and user `bob` (tenant lab)
// shops. The supplier publishes through the API; bob searches with filters, opens the card
// grid, orders a chosen card, sees the lease, releases it and opens billing, in English and
// in Chinese. The supplier publishes a class A listing (node n2's GPU) from the console's
// YAML form; bob orders it, the supplier issues the authorization code (shown once) and bob
// enters it with his SSH public key. The operator approves one pending enterprise supplier
// and rejects another in the review queue. Started by crates/cpn-cli/tests/e2e/web.rs,
// which passes:
//   CPN_URL             the server's base URL
//   CPN_PASSWORD_FILE   the admin password file of its data dir (its token is beside it)
//   CPN_SUPPLIER_TOKEN  the supplier's bearer token
//   CPN_USER, CPN_USER_PASSWORD  the shopper's login
//   CPN_SHOTS           where to save the screenshots (under target/)
//   CPN_APPROVE, CPN_REJECT  `username:id` of the two registrations waiting for review
//                       (absent without a real SMTP server: that test is then skipped)
// Every page's console output is watched: any error or warning (a CSP violation included)
// fails the run.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BASE, api, launchChromium } from './support.mjs';

const ADMIN_TOKEN = readFileSync(process.env.CPN_PASSWORD_FILE.replace(/admin\.password$/, 'admin.token'), 'utf8').trim();
const SUPPLIER = process.env.CPN_SUPPLIER_TOKEN;
const USER = process.env.CPN_USER;
const USER_PASSWORD = process.env.CPN_USER_PASSWORD;
const ADMIN_PASSWORD = readFileSync(process.env.CPN_PASSWORD_FILE, 'utf8').trim();
const [APPROVE, APPROVE_ID] = (process.env.CPN_APPROVE || ':').split(':');
const [REJECT, REJECT_ID] = (process.env.CPN_REJECT || ':').split(':');
// bob's key for the class A lease's SSH account (a public key only: nothing logs in with it).
const SSH_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICabhurIVfRXc0iCFM3gFHzJwkPDhTw4U98sEZkPewxv bob@console-test';
const SHOTS = process.env.CPN_SHOTS || 'target/console-screenshots';
mkdirSync(SHOTS, { recursive: true });

let browser;
let cpcid;
// The class A listing the supplier publishes from the console, and bob's lease of it.
let cpcidA;
let leaseA;
// What a prompt is answered with (a delist's or a rejection's reason).
let promptReply = 'maintenance window';
const problems = [];
// Markup in a supplier's text must show as text, never as markup.
const VENDOR = 'Acme <img src=x data-xss=1> Cloud';

async function newPage(locale = 'en-US', opts = {}) {
  const context = await browser.newContext({ viewport: { width: 1366, height: 860 }, locale, ...opts });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console.${m.type()} on ${page.url()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error on ${page.url()}: ${e.message}`));
  // The release button asks first; delisting asks for a reason.
  page.on('dialog', (d) => (d.type() === 'prompt' ? d.accept(promptReply) : d.accept()));
  return page;
}

async function login(page, username = USER, password = USER_PASSWORD) {
  await page.goto(`${BASE}/`);
  await page.fill('input[name=username]', username);
  await page.fill('input[name=password]', password);
  await page.click('form button[type=submit]');
  await page.waitForSelector('nav.side a');
}

/** Runs a step whose request the server refuses on purpose: the browser logs that 4xx as a
 * console error, which is no problem of the page; anything else logged still counts. */
async function refused(step) {
  const before = problems.length;
  await step();
  const logged = problems.splice(before);
  problems.push(...logged.filter((p) => !/status of 4\d\d/.test(p)));
}

async function cardStates(page) {
  await page.waitForSelector('[data-test=card-grid] li');
  return page.$$eval('[data-test=card-grid] li', (els) => els.map((e) => e.dataset.state));
}

async function shot(page, name) {
  await page.waitForTimeout(300);
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

before(async () => {
  browser = await launchChromium();
  const listing = await api(SUPPLIER, 'POST', '/api/v1/market/listings', {
    class: 'b', resource_type: 'gpu', model: 'A100 80GB', card_memory_gib: 80, memory_gib: 512, vcpus: 64,
    prices: { hourly_minor: 36000, monthly_minor: 2000000 }, vendor: VENDOR, region: '深圳市',
    storage: [{ kind: 'nvme_ssd', role: 'data', size_gb: 3840 }], site: 'acme-sz',
    cards: [{ node: 'n1', index: 0 }, { node: 'n1', index: 1 }],
  });
  cpcid = listing.cpcid;
  await api(ADMIN_TOKEN, 'POST', '/api/v1/billing/topups', { tenant: 'lab', amount_minor: 1000000 });
});

after(async () => {
  await browser?.close();
});

test('a user finds the listing with filters, orders a card from its grid, sees and releases the lease, and opens billing', async () => {
  const page = await newPage();
  await login(page);
  await page.click('nav.side a[data-path=market]');
  await page.waitForSelector(`[data-test=market-results] a:text-is("${cpcid}")`);

  // A filter it cannot meet hides it; the address bar keeps the filters.
  await page.fill('input[name=min_cards]', '3');
  await page.click('.market-filter button[type=submit]');
  await page.waitForSelector('[data-test=market-results] .empty');
  await page.fill('input[name=min_cards]', '2');
  await page.fill('input[name=model]', 'a100 80gb');
  await page.selectOption('select[name=mode]', 'hourly');
  await page.fill('input[name=max_price]', '400');
  await page.selectOption('select[name=sort]', 'price');
  await page.click('.market-filter button[type=submit]');
  await page.waitForSelector(`[data-test=market-results] a:text-is("${cpcid}")`);
  assert.match(page.url(), /min_cards=2/);
  assert.match(page.url(), /max_price=400/);
  await shot(page, '40-market');

  await page.click(`[data-test=market-results] a:text-is("${cpcid}")`);
  await page.waitForSelector('[data-test=card-grid] li');
  const states = await page.$$eval('[data-test=card-grid] li', (els) => els.map((e) => e.dataset.state));
  assert.deepEqual(states, ['idle', 'idle']);
  // The state is in words too, not only in colour.
  assert.match(await page.textContent('[data-test=card-grid] li'), /idle/);
  const listingText = await page.textContent('[data-test=listing]');
  assert.ok(listingText.includes(VENDOR), 'the vendor shown as text');
  assert.equal(await page.$('[data-xss]'), null, 'no markup from a supplier');
  await shot(page, '41-listing');

  // Order exactly the second card.
  await page.check('[data-test=card-grid] li:nth-child(2) input[type=checkbox]');
  await page.click('[data-test=order]');
  await page.waitForURL(/#\/leases\/\d+/);
  await page.waitForSelector('[data-test=lease][data-state=active]');
  const leaseId = page.url().match(/#\/leases\/(\d+)/)[1];
  assert.match(await page.textContent('[data-test=lease]'), new RegExp(cpcid));
  // Class B: the live panel names the node and the leased card (no agent reports here, so
  // its figures are dashes, not zeros).
  await page.waitForSelector('[data-test=monitoring] table');
  assert.match(await page.textContent('[data-test=monitoring]'), /n1 GPU 1/);
  await shot(page, '42-lease');

  // The grid shows the ordered card taken and the other still idle.
  await page.goto(`${BASE}/#/market/${cpcid}`);
  await page.waitForSelector('[data-test=card-grid] li');
  const after = await page.$$eval('[data-test=card-grid] li', (els) => els.map((e) => e.dataset.state));
  assert.equal(after[0], 'idle');
  assert.notEqual(after[1], 'idle');

  // The lease list has it; its detail releases it.
  await page.click('nav.side a[data-path=leases]');
  await page.waitForSelector(`[data-test=lease-list] a:text-is("${leaseId}")`);
  await page.click(`[data-test=lease-list] a:text-is("${leaseId}")`);
  await page.waitForSelector('[data-test=release]');
  // Metered to the second: a lease released within its first second may bill nothing, so
  // let it run long enough to leave a usage record for the billing page.
  await page.waitForTimeout(1500);
  await page.click('[data-test=release]');
  await page.waitForSelector('[data-test=lease][data-state=ended]');
  assert.equal(await page.$('[data-test=release]'), null);
  // Ended: the platform's evaluation of the cluster, and no more live panel.
  await page.waitForSelector('[data-test=evaluation]');
  assert.equal(await page.$('[data-test=monitoring]'), null);
  await shot(page, '43-lease-released');

  // Billing: the top-up, the released lease's usage as a bar, no invoice before the close.
  await page.click('nav.side a[data-path=billing]');
  await page.waitForSelector('[data-test=billing]');
  await shot(page, '44-billing');
  await page.waitForSelector('[data-test=usage-chart] li');
  assert.match(await page.textContent('[data-test=usage-chart]'), new RegExp(`${leaseId}`));
  assert.match(await page.textContent('[data-test=billing] .kpi'), /¥/);
  await shot(page, '44-billing');
  await page.context().close();
});

test('the supplier sees the listing, delists it with a reason and relists it', async () => {
  const page = await newPage();
  // The harness gives every user the same password.
  await login(page, 'sup');
  await page.click('nav.side a[data-path=listings]');
  await page.waitForSelector(`[data-test=my-listings] a:text-is("${cpcid}")`);
  await page.click('[data-test=delist]');
  await page.waitForSelector('[data-test=relist]');
  assert.match(await page.textContent('[data-test=my-listings]'), /maintenance window/);
  assert.equal((await api(SUPPLIER, 'GET', `/api/v1/market/listings/${cpcid}`)).status, 'delisted');
  await shot(page, '47-my-listings-delisted');
  await page.click('[data-test=relist]');
  await page.waitForSelector('[data-test=delist]');
  assert.equal((await api(SUPPLIER, 'GET', `/api/v1/market/listings/${cpcid}`)).status, 'listed');
  await page.context().close();
});

test('the supplier publishes a class A listing from the console\'s YAML form', async () => {
  const page = await newPage();
  await login(page, 'sup');
  await page.click('nav.side a[data-path=listings]');
  await page.waitForSelector('textarea[name=listing]');
  // Broken YAML is refused in the page, before any request.
  await page.fill('textarea[name=listing]', 'class: [a');
  await page.click('.my-listings form button[type=submit]');
  await page.waitForSelector('.my-listings .form-error:has-text("does not parse")');
  // A listing the server refuses (no such site) says why and publishes nothing.
  const yaml = (site) => [
    'class: a', 'resource_type: gpu', 'model: H100 80GB', 'card_memory_gib: 80', 'memory_gib: 256', 'vcpus: 32',
    'prices: {hourly_minor: 52000}', 'vendor: Acme Cloud', 'region: 深圳市', `site: ${site}`,
    'storage: [{kind: nvme_ssd, role: data, size_gb: 1920}]',
    'cards: [{node: n2, index: 0}]', 'usage: "ssh as the account shown on the lease; CUDA 12"',
  ].join('\n');
  await refused(async () => {
    await page.fill('textarea[name=listing]', yaml('nowhere'));
    await page.click('.my-listings form button[type=submit]');
    await page.waitForSelector('.my-listings .form-error:has-text("nowhere")');
  });
  await page.fill('textarea[name=listing]', yaml('acme-sz'));
  await page.click('.my-listings form button[type=submit]');
  await page.waitForURL(/#\/market\/[^/]+$/);
  cpcidA = decodeURIComponent(page.url().match(/#\/market\/([^/]+)$/)[1]);
  assert.deepEqual(await cardStates(page), ['idle']);
  assert.match(await page.textContent('[data-test=listing]'), /H100 80GB/);
  const listed = await api(SUPPLIER, 'GET', `/api/v1/market/listings/${encodeURIComponent(cpcidA)}`);
  assert.equal(listed.spec.class, 'a');
  assert.equal(listed.status, 'listed');
  assert.equal(listed.spec.prices.hourly_minor, 52000);
  await shot(page, '48-listing-a-published');
  // It is among the supplier's listings, with its idle count.
  await page.click('nav.side a[data-path=listings]');
  await page.waitForSelector(`[data-test=my-listings] tr:has-text("${cpcidA}")`);
  assert.match(await page.textContent(`[data-test=my-listings] tr:has-text("${cpcidA}")`), /1 \/ 1/);
  await page.context().close();
});

test('a class A lease: bob orders, the supplier issues the code once (in Chinese), bob enters it with his key', async () => {
  const user = await newPage();
  await login(user);
  await user.goto(`${BASE}/#/market/${encodeURIComponent(cpcidA)}`);
  await user.waitForSelector('[data-test=card-grid] li input[type=checkbox]');
  await user.check('[data-test=card-grid] li input[type=checkbox]');
  await user.click('[data-test=order]');
  await user.waitForURL(/#\/leases\/\d+/);
  leaseA = user.url().match(/#\/leases\/(\d+)/)[1];
  await user.waitForSelector('[data-test=lease][data-state=awaiting_access]');
  assert.match(await user.textContent('[data-test=lease]'), /waiting for the supplier's authorization code/);
  await user.waitForSelector('input[name=code]');
  await shot(user, '49-lease-a-awaiting');
  // The ordered card is no longer offered.
  await user.goto(`${BASE}/#/market/${encodeURIComponent(cpcidA)}`);
  assert.notEqual((await cardStates(user))[0], 'idle');

  // The supplier, in Chinese, issues the code: shown once.
  const sup = await newPage('zh-CN');
  await login(sup, 'sup');
  await sup.goto(`${BASE}/#/leases/${leaseA}`);
  await sup.waitForSelector('[data-test=issue-code]');
  assert.match(await sup.textContent('[data-test=lease]'), /给用户的授权码/);
  await sup.click('[data-test=issue-code]');
  const first = (await sup.textContent('[data-test=code]')).trim();
  assert.match(first, /\S{6,}/);
  assert.match(await sup.textContent('[data-test=lease]'), /仅显示一次/);
  await shot(sup, '50-lease-a-code-zh');
  // A reload shows it no more, and the server will not show it again: only replace it.
  await sup.reload();
  await sup.waitForSelector('[data-test=issue-code]');
  assert.equal(await sup.$('[data-test=code]'), null);
  assert.ok(!(await sup.textContent('main')).includes(first), 'the code is gone after a reload');
  await refused(async () => {
    await sup.click('[data-test=issue-code]');
    await sup.waitForSelector('[data-test=lease] [role=alert]');
  });
  assert.match(await sup.textContent('[data-test=issue-code]'), /替换/);
  await sup.click('[data-test=issue-code]');
  await sup.waitForSelector('[data-test=code]');
  const code = (await sup.textContent('[data-test=code]')).trim();
  assert.notEqual(code, first);
  await sup.context().close();

  // bob: the replaced code is refused; the new one, with his key, grants access.
  await user.goto(`${BASE}/#/leases/${leaseA}`);
  await user.waitForSelector('input[name=code]');
  await user.fill('input[name=code]', first);
  await user.fill('textarea[name=public_key]', SSH_KEY);
  await refused(async () => {
    await user.click('[data-test=lease] form button[type=submit]');
    await user.waitForSelector('[data-test=lease] .form-error:not(:empty)');
  });
  assert.equal((await api(ADMIN_TOKEN, 'GET', `/api/v1/market/leases/${leaseA}`)).state, 'awaiting_access');
  await user.fill('input[name=code]', code);
  await user.click('[data-test=lease] form button[type=submit]');
  await user.waitForSelector('[data-test=lease][data-state=active]');
  // No agent runs on n2 here: the server says it waits for it to create the account.
  assert.match(await user.textContent('[data-test=lease]'), /waiting for node n2's agent to create the SSH account/);
  assert.equal(await user.$('input[name=code]'), null);
  const lease = await api(ADMIN_TOKEN, 'GET', `/api/v1/market/leases/${leaseA}`);
  assert.equal(lease.state, 'active');
  assert.ok(!JSON.stringify(lease).includes(code), 'the API does not return the code either');
  await shot(user, '51-lease-a-active');
  await user.goto(`${BASE}/#/market/${encodeURIComponent(cpcidA)}`);
  assert.deepEqual(await cardStates(user), ['busy']);
  await user.context().close();
});

test('the operator approves one registration and rejects another (in Chinese) in the review queue', async (t) => {
  if (!APPROVE) {
    t.skip('no registration waits for review (the server had no SMTP relay)');
    return;
  }
  const page = await newPage();
  await login(page, 'admin', ADMIN_PASSWORD);
  await page.click('nav.side a[data-path=reviews]');
  const row = (name) => `[data-test=reviews] tr:has-text("${name}")`;
  await page.waitForSelector(row(APPROVE));
  await page.waitForSelector(row(REJECT));
  assert.match(await page.textContent(row(APPROVE)), /enterprise_supplier/);
  assert.match(await page.textContent(row(APPROVE)), new RegExp(`${APPROVE} Computing`));
  await shot(page, '52-reviews');
  await page.click(`${row(APPROVE)} [data-test=approve]`);
  await page.waitForSelector(row(REJECT));
  await page.waitForSelector(row(APPROVE), { state: 'detached' });
  assert.equal((await api(ADMIN_TOKEN, 'GET', `/api/v1/market/accounts/${APPROVE_ID}`)).state, 'active');
  await page.context().close();

  const zh = await newPage('zh-CN');
  await login(zh, 'admin', ADMIN_PASSWORD);
  await zh.goto(`${BASE}/#/reviews`);
  await zh.waitForSelector(row(REJECT));
  assert.match(await zh.textContent('main h1'), /注册审核/);
  promptReply = 'the licence seal is unreadable';
  try {
    await zh.click(`${row(REJECT)} [data-test=reject]`);
    await zh.waitForSelector('[data-test=reviews] .empty');
  } finally {
    promptReply = 'maintenance window';
  }
  assert.match(await zh.textContent('[data-test=reviews]'), /没有待审核的注册/);
  const rejected = await api(ADMIN_TOKEN, 'GET', `/api/v1/market/accounts/${REJECT_ID}`);
  assert.equal(rejected.state, 'rejected');
  assert.equal(rejected.state_reason, 'the licence seal is unreadable');
  await shot(zh, '53-reviews-done-zh');
  await zh.context().close();
});

test('the marketplace pages speak Chinese', async () => {
  const page = await newPage('zh-CN');
  await login(page);
  assert.match(await page.textContent('nav.side'), /算力市场/);
  await page.goto(`${BASE}/#/market/${cpcid}`);
  await page.waitForSelector('[data-test=card-grid] li');
  assert.match(await page.textContent('[data-test=listing]'), /空闲/);
  // The released lease's evaluation is in the listing's history.
  await page.waitForSelector('[data-test=evaluations] table');
  assert.match(await page.textContent('[data-test=evaluations]'), /可靠性/);
  await shot(page, '45-listing-zh');
  await page.goto(`${BASE}/#/leases`);
  await page.waitForSelector('[data-test=lease-list] table');
  assert.match(await page.textContent('[data-test=lease-list]'), /已结束/);
  await page.goto(`${BASE}/#/billing`);
  await page.waitForSelector('[data-test=usage-chart] li');
  assert.match(await page.textContent('main h1'), /账单/);
  await shot(page, '46-billing-zh');
  await page.context().close();
});

test('the marketplace pages pass an accessibility audit (axe-core: no serious or critical violation)', async () => {
  // axe is injected, which the CSP forbids: this context bypasses it, the others keep it.
  const page = await newPage('en-US', { bypassCSP: true });
  await login(page);
  const axe = fileURLToPath(new URL('../node_modules/axe-core/axe.min.js', import.meta.url));
  const found = [];
  const audit = async (page, p) => {
    await page.goto(`${BASE}/#/${p}`);
    await page.waitForSelector('main h1');
    await page.waitForTimeout(300);
    await page.addScriptTag({ path: axe });
    const violations = await page.evaluate(async () => (await window.axe.run(document, { resultTypes: ['violations'] })).violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`));
    found.push(...violations.map((v) => `${p}: ${v}`));
  };
  for (const p of ['market', `market/${cpcid}`, `market/${encodeURIComponent(cpcidA)}`, 'leases', 'leases/1', `leases/${leaseA}`, 'billing']) await audit(page, p);
  await page.context().close();
  // The supplier's and the operator's pages.
  const sup = await newPage('en-US', { bypassCSP: true });
  await login(sup, 'sup');
  for (const p of ['listings', `leases/${leaseA}`]) await audit(sup, p);
  await sup.context().close();
  const op = await newPage('en-US', { bypassCSP: true });
  await login(op, 'admin', ADMIN_PASSWORD);
  await audit(op, 'reviews');
  await op.context().close();
  assert.deepEqual(found, []);
});

test('no marketplace page logged a console error or warning', () => {
  assert.deepEqual(problems, []);
});
