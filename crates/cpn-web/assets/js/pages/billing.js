// Billing (issue #14): the tenant's balance and budget, a month's usage (bars per lease, drawn
// as plain elements so no chart library is needed for one series), and the month's invoices
// and, for suppliers, settlement statements, each downloadable as the CSV the server made.
// #/billing?month=YYYY-MM.
import { get } from '../api.js';
import { t, fmtTime } from '../i18n.js';
import { h, clear, table, field, errorState, loading, empty, kpi } from '../ui.js';
import { money, thisMonth } from './market-common.js';

/** A link that saves `text` as a file; the object URL lives as long as the page. */
function csvLink(text, name, urls) {
  const url = URL.createObjectURL(new Blob([text], { type: 'text/csv' }));
  urls.push(url);
  return h('a', { href: url, download: name, class: 'csv-link' }, t('bl.csv'));
}

/** Usage summed per lease, as horizontal bars scaled to the largest; text says the amount. */
function usageBars(usage) {
  const per = new Map();
  for (const u of usage) {
    const key = u.lease;
    const cur = per.get(key) || { lease: u.lease, listing: u.listing, amount: 0 };
    cur.amount += u.amount_minor;
    per.set(key, cur);
  }
  const rows = [...per.values()].sort((a, b) => b.amount - a.amount);
  const max = Math.max(1, ...rows.map((r) => r.amount));
  return h('ul', { class: 'bars', 'data-test': 'usage-chart' }, rows.map((r) => {
    const label = t('bl.usage.bar', { lease: r.lease, listing: r.listing, amount: money(r.amount) });
    return h('li', { class: 'bar-row' },
      h('span', { class: 'bar-label' }, label),
      h('span', { class: 'bar-track', 'aria-hidden': 'true' },
        h('span', { class: 'bar-fill', style: { width: `${Math.max(1, (100 * r.amount) / max)}%` } })));
  }));
}

async function render(main, ctx) {
  const urls = [];
  const month = /^\d{4}-\d{2}$/.test(ctx.query.get('month') || '') ? ctx.query.get('month') : thisMonth();
  const monthInput = h('input', { name: 'month', type: 'month', value: month, required: true });
  const form = h('form', {
    class: 'row',
    on: {
      submit: (e) => {
        e.preventDefault();
        ctx.navigate(`#/billing?month=${encodeURIComponent(monthInput.value)}`);
      },
    },
  }, field(t('bl.month'), monthInput), h('button', { type: 'submit' }, t('bl.show')));
  clear(main, loading());
  let balance; let usage; let invoices; let statements;
  try {
    const supplier = ctx.user.role !== 'user';
    [balance, usage, invoices, statements] = await Promise.all([
      get('/api/v1/billing/balance'),
      get(`/api/v1/billing/usage?month=${encodeURIComponent(month)}`),
      get(`/api/v1/billing/months/${encodeURIComponent(month)}/invoices`),
      // Statements are what suppliers are paid; users have none to see.
      supplier ? get(`/api/v1/billing/months/${encodeURIComponent(month)}/statements`) : Promise.resolve(null),
    ]);
  } catch (err) {
    clear(main, errorState(err, () => render(main, ctx)));
    return undefined;
  }
  const budget = balance.budget_limit_minor != null ? t('bl.budget', { b: money(balance.budget_limit_minor) }) : null;
  clear(main, h('div', { class: 'billing', 'data-test': 'billing' },
    h('div', { class: 'page-head' }, h('h1', {}, `${t('bl.title')} · ${balance.tenant}`), form),
    h('div', { class: 'grid cols-4' },
      kpi(t('bl.available'), money(balance.available_minor)),
      kpi(t('bl.funds'), money(balance.funds_minor)),
      kpi(t('bl.credit'), money(balance.credit_minor)),
      kpi(t('bl.spent'), money(balance.spent_this_month_minor), budget)),
    h('section', { class: 'panel' }, h('h2', {}, `${t('bl.usage')} · ${month}`),
      usage.length ? usageBars(usage) : empty(t('bl.usage.none', { m: month }))),
    usage.length ? h('section', { class: 'panel' }, h('h2', {}, t('bl.records')), table([
      { title: t('bl.col.lease'), value: (u) => h('a', { href: `#/leases/${u.lease}` }, String(u.lease)), num: true },
      { title: t('bl.col.kind'), value: (u) => u.kind },
      { title: t('bl.col.quantity'), value: (u) => u.quantity, num: true },
      { title: t('bl.col.from'), value: (u) => fmtTime(u.start) },
      { title: t('bl.col.to'), value: (u) => fmtTime(u.end) },
      { title: t('bl.col.amount'), value: (u) => money(u.amount_minor), num: true },
    ], usage, { scrollLabel: t('bl.records') })) : null,
    h('section', { class: 'panel', 'data-test': 'invoices' }, h('h2', {}, t('bl.invoices')),
      invoices.length ? table([
        { title: t('bl.month'), value: (i) => i.month },
        { title: t('bl.col.tenant'), value: (i) => i.tenant },
        { title: t('bl.col.total'), value: (i) => money(i.total_minor), num: true },
        { title: 'CSV', value: (i) => csvLink(i.csv, `invoice-${i.tenant}-${i.month}.csv`, urls) },
      ], invoices) : empty(t('bl.invoices.none', { m: month }))),
    statements ? h('section', { class: 'panel' }, h('h2', {}, t('bl.statements')),
      statements.length ? table([
        { title: t('bl.month'), value: (s) => s.month },
        { title: t('bl.col.supplier'), value: (s) => s.supplier },
        { title: t('bl.col.gross'), value: (s) => money(s.gross_minor), num: true },
        { title: t('bl.col.commission'), value: (s) => money(s.commission_minor), num: true },
        { title: t('bl.col.net'), value: (s) => money(s.net_minor), num: true },
        { title: 'CSV', value: (s) => csvLink(s.csv, `statement-${s.supplier}-${s.month}.csv`, urls) },
      ], statements) : empty(t('bl.statements.none', { m: month }))) : null));
  return () => urls.forEach((u) => URL.revokeObjectURL(u));
}

export default { render };
