// The marketplace (issue #14): search idle capacity with filters and a sort (the filters live
// in the address bar, so a search can be shared), and a listing's detail with the state of
// every card and, for users, the order form. #/market or #/market/<CPcId>.
import { get, post } from '../api.js';
import { t, fmtTime } from '../i18n.js';
import { h, clear, table, badge, field, errorState, loading, empty, props, select, toast } from '../ui.js';
import { money, prices, stateBadge, MODES } from './market-common.js';
import { evaluationsPanel } from './market-eval.js';

const SORTS = ['cpcid', 'price', '-price', '-idle_cards', '-card_memory', '-reliability'];
const FILTERS = ['class', 'model', 'region', 'min_cards', 'mode', 'max_price', 'sort'];

function searchPage(main, ctx) {
  const q = ctx.query;
  const cls = select([['', t('mk.any')], ['a', t('mk.class.a')], ['b', t('mk.class.b')]], q.get('class') || '', { name: 'class' });
  const model = h('input', { name: 'model', value: q.get('model') || '' });
  const region = h('input', { name: 'region', value: q.get('region') || '' });
  const minCards = h('input', { name: 'min_cards', type: 'number', min: '1', step: '1', value: q.get('min_cards') || '' });
  const mode = select([['', t('mk.any')], ...MODES.map((m) => [m, t(`mode.${m}`)])], q.get('mode') || '', { name: 'mode' });
  const maxPrice = h('input', { name: 'max_price', type: 'number', min: '0', step: '0.01', value: q.get('max_price') || '' });
  const sort = select(SORTS.map((s) => [s, t(`mk.sort.${s}`)]), q.get('sort') || 'cpcid', { name: 'sort' });
  const inputs = { class: cls, model, region, min_cards: minCards, mode, max_price: maxPrice, sort };
  const results = h('div', { 'data-test': 'market-results' }, loading());
  const count = h('p', { class: 'muted', role: 'status' });

  const form = h('form', {
    class: 'market-filter',
    on: {
      submit: (e) => {
        e.preventDefault();
        const next = new URLSearchParams();
        for (const k of FILTERS) if (inputs[k].value.trim()) next.set(k, inputs[k].value.trim());
        history.replaceState(null, '', `#/market${next.size ? `?${next}` : ''}`);
        load(0);
      },
    },
  },
  field(t('mk.class'), cls), field(t('mk.model'), model), field(t('mk.region'), region),
  field(t('mk.min_cards'), minCards), field(t('mk.mode'), mode),
  field(t('mk.max_price'), maxPrice, t('mk.max_price.help')), field(t('mk.sort'), sort),
  h('div', { class: 'form-actions' }, h('button', { type: 'submit' }, t('mk.search'))));

  clear(main, h('div', { class: 'market' },
    h('div', { class: 'page-head' }, h('h1', {}, t('mk.title'))),
    h('p', { class: 'muted' }, t('mk.intro')),
    h('section', { class: 'panel' }, form),
    h('section', { class: 'panel', 'aria-live': 'polite' }, count, results)));

  // The API pages by at most 100; "More" appends the next page.
  let shown = [];
  async function load(offset = 0) {
    // The form speaks yuan; the API, fen. A price needs a mode (the API says so otherwise).
    const api = new URLSearchParams({ limit: '100', offset: String(offset) });
    for (const k of ['class', 'model', 'region', 'min_cards', 'mode', 'sort']) {
      if (inputs[k].value.trim()) api.set(k, inputs[k].value.trim());
    }
    if (maxPrice.value.trim()) api.set('max_unit_price_minor', String(Math.round(Number(maxPrice.value) * 100)));
    if (!offset) {
      clear(results, loading());
      count.textContent = '';
    }
    let hits;
    try {
      hits = await get(`/api/v1/market/listings?${api}`);
    } catch (err) {
      clear(results, errorState(err, () => load(offset)));
      return;
    }
    shown = offset ? shown.concat(hits.items) : hits.items;
    count.textContent = t('mk.found', { n: hits.total });
    const more = shown.length < hits.total
      ? h('div', { class: 'form-actions' }, h('button', { type: 'button', class: 'secondary', on: { click: () => load(shown.length) } }, t('mk.more')))
      : null;
    clear(results, shown.length ? table([
      { title: t('mk.col.cpcid'), value: (l) => h('a', { href: `#/market/${encodeURIComponent(l.cpcid)}` }, l.cpcid) },
      { title: t('mk.col.class'), value: (l) => l.class.toUpperCase() },
      { title: t('mk.col.model'), value: (l) => l.model },
      { title: t('mk.col.region'), value: (l) => l.region },
      { title: t('mk.col.idle'), value: (l) => l.idle_cards, num: true },
      { title: t('mk.col.card_memory'), value: (l) => `${l.card_memory_gib} GiB`, num: true },
      { title: t('mk.col.prices'), value: (l) => prices(l.prices) },
      { title: t('mk.col.reliability'), value: (l) => (l.reliability == null ? '–' : l.reliability), num: true },
    ], shown, { onRow: (l) => ctx.navigate(`#/market/${encodeURIComponent(l.cpcid)}`), scrollLabel: t('mk.title') }) : empty(t('mk.none')), more);
  }
  return load(0);
}

/** The card grid: one tile per card, its state in colour and in words (for screen readers and
 * colour-blind eyes alike); idle cards are checkboxes when the viewer may order. */
function cardGrid(cards, chosen, onChange) {
  return h('ul', { class: 'card-grid', 'data-test': 'card-grid', 'aria-label': t('mk.cards') },
    cards.map((c) => {
      const label = t('mk.card', { id: c.id, node: c.node, index: c.index, state: t(`card.${c.state}`) });
      const box = chosen && c.state === 'idle'
        ? h('input', { type: 'checkbox', 'aria-label': label, on: { change: (e) => { if (e.target.checked) chosen.add(c.id); else chosen.delete(c.id); onChange(); } } })
        : null;
      return h('li', { class: `card-tile ${c.state}`, title: label, dataset: { card: String(c.id), state: c.state } },
        box,
        h('span', { class: 'card-id' }, `#${c.id}`),
        h('span', { class: 'card-where' }, `${c.node} · GPU ${c.index}`),
        stateBadge('card', c.state));
    }));
}

async function detailPage(main, ctx, cpcid) {
  clear(main, loading());
  let l;
  try {
    l = await get(`/api/v1/market/listings/${encodeURIComponent(cpcid)}`);
  } catch (err) {
    clear(main, errorState(err, () => detailPage(main, ctx, cpcid)));
    return;
  }
  const s = l.spec;
  const canOrder = ctx.user.role === 'user' && l.status === 'listed';
  const chosen = canOrder ? new Set() : null;
  const chosenText = h('span', { class: 'muted', role: 'status' });
  const grid = cardGrid(l.cards, chosen, () => { chosenText.textContent = t('mk.order.chosen', { n: chosen.size }); });

  let orderBox = h('p', { class: 'muted' }, t('mk.order.only_users'));
  if (canOrder) {
    const offered = MODES.filter((m) => s.prices[`${m}_minor`] != null);
    const mode = select(offered.map((m) => [m, `${t(`mode.${m}`)} · ${money(s.prices[`${m}_minor`])}`]), offered[0], { name: 'mode' });
    const cards = h('input', { name: 'cards', type: 'number', min: '1', max: String(l.idle_cards || 1), step: '1', value: '1' });
    const periods = h('input', { name: 'periods', type: 'number', min: '1', step: '1', value: '1' });
    const periodsField = field(t('mk.order.periods'), periods);
    const showPeriods = () => { periodsField.hidden = mode.value === 'hourly'; };
    mode.addEventListener('change', showPeriods);
    showPeriods();
    const error = h('div', { class: 'form-error', role: 'alert' });
    const submit = h('button', { type: 'submit', 'data-test': 'order' }, t('mk.order.submit'));
    orderBox = h('form', {
      class: 'market-order',
      on: {
        submit: async (e) => {
          e.preventDefault();
          error.textContent = '';
          submit.disabled = true;
          const body = { listing: l.cpcid, mode: mode.value };
          if (chosen.size) body.card_ids = [...chosen];
          else body.cards = Number(cards.value);
          if (mode.value !== 'hourly') body.periods = Number(periods.value);
          try {
            const placed = await post('/api/v1/market/orders', body);
            if (placed.lease) {
              toast(t('mk.order.placed', { id: placed.lease.id }), 'ok');
              ctx.navigate(`#/leases/${placed.lease.id}`);
            } else {
              toast(t('mk.order.waiting', { id: placed.order.id }));
              detailPage(main, ctx, cpcid);
            }
          } catch (err) {
            error.textContent = err.message;
          } finally {
            submit.disabled = false;
          }
        },
      },
    }, field(t('mk.mode'), mode), field(t('mk.order.cards'), cards), periodsField, chosenText, error,
    h('div', { class: 'form-actions' }, submit));
  }

  clear(main, h('div', { class: 'market-detail', 'data-test': 'listing' },
    h('p', {}, h('a', { href: '#/market' }, t('mk.back'))),
    h('div', { class: 'page-head' }, h('h1', {}, `${l.cpcid} · ${s.model}`), badge(l.status === 'listed' ? 'ok' : 'warn', t(`listing.${l.status}`))),
    h('div', { class: 'grid cols-2' },
      h('section', { class: 'panel' }, props([
        [t('mk.class'), t(`mk.class.${s.class}`)],
        [t('mk.supplier'), l.supplier],
        [t('mk.vendor'), s.vendor],
        [t('mk.region'), `${s.region} · ${s.site}`],
        [t('mk.col.card_memory'), `${s.card_memory_gib} GiB`],
        [t('mk.memory'), `${s.memory_gib} GiB`],
        [t('mk.vcpus'), String(s.vcpus)],
        [t('mk.storage'), s.storage.map((d) => `${d.role}: ${d.size_gb} GB ${d.kind}`).join(', ') || '–'],
        [t('mk.col.prices'), prices(s.prices)],
        [t('mk.approval'), t(`mk.approval.${s.approval === 'by_supplier' ? 'manual' : 'auto'}`)],
        [t('mk.published'), fmtTime(l.published_at)],
        s.usage ? [t('mk.usage'), s.usage] : null,
        l.delisted_reason ? [t('mk.status'), l.delisted_reason] : null,
      ])),
      h('section', { class: 'panel' }, h('h2', {}, t('mk.order')), orderBox)),
    h('section', { class: 'panel' }, h('h2', {}, t('mk.cards')), h('p', { class: 'muted' }, t('mk.cards.intro')), grid),
    s.class === 'b' ? evaluationsPanel(l) : null));
}

export default {
  render(main, ctx) {
    if (ctx.params[0]) return detailPage(main, ctx, ctx.params[0]);
    return searchPage(main, ctx);
  },
};
