// A supplier's own listings (issue #14; operators see all): publish one from YAML (the same
// document `cpn market publish -f` reads, checked by the server), delist with a reason and
// relist. #/listings.
import { get, post } from '../api.js';
import { load as parseYaml } from '../../vendor/js-yaml.mjs';
import { t, register, fmtTime } from '../i18n.js';
import { h, clear, table, field, errorState, loading, empty, badge, toast } from '../ui.js';
import { prices } from './market-common.js';

register({
  en: {
    'sl.title': 'My listings',
    'sl.intro': 'The clusters you list in the marketplace, listed or not. Users see only listed ones with idle cards.',
    'sl.none': 'You have no listings yet. Publish one below.',
    'sl.publish': 'Publish a listing',
    'sl.yaml': 'Listing (YAML, as for cpn market publish -f)',
    'sl.yaml.help': 'class, resource_type, model, card_memory_gib, memory_gib, vcpus, prices, vendor, region, storage, site; cards (node and index) or none for every GPU of the site.',
    'sl.publish.submit': 'Publish',
    'sl.published': '{id} published.',
    'sl.col.status': 'Status',
    'sl.col.idle': 'Idle / cards',
    'sl.col.published': 'Published',
    'sl.col.actions': 'Actions',
    'sl.delist': 'Delist',
    'sl.delist.reason': 'Why delist {id}? (shown to people who open it)',
    'sl.relist': 'Relist',
    'sl.done': '{id}: {status}.',
    'sl.bad_yaml': 'The YAML does not parse: {message}',
  },
  zh: {
    'sl.title': '我的挂牌',
    'sl.intro': '您在算力市场挂牌的集群（含已下架）。用户只能看到已挂牌且有空闲卡的集群。',
    'sl.none': '暂无挂牌，可在下方发布。',
    'sl.publish': '发布挂牌',
    'sl.yaml': '挂牌内容（YAML，与 cpn market publish -f 相同）',
    'sl.yaml.help': 'class、resource_type、model、card_memory_gib、memory_gib、vcpus、prices、vendor、region、storage、site；cards（node 与 index），不填则挂牌站点的全部 GPU。',
    'sl.publish.submit': '发布',
    'sl.published': '{id} 已发布。',
    'sl.col.status': '状态',
    'sl.col.idle': '空闲 / 总卡数',
    'sl.col.published': '发布时间',
    'sl.col.actions': '操作',
    'sl.delist': '下架',
    'sl.delist.reason': '下架 {id} 的原因？（打开挂牌的人可见）',
    'sl.relist': '重新挂牌',
    'sl.done': '{id}：{status}。',
    'sl.bad_yaml': 'YAML 无法解析：{message}',
  },
});

async function act(path, body, l, main, ctx) {
  try {
    const v = await post(path, body);
    toast(t('sl.done', { id: v.cpcid, status: v.status }), 'ok');
    render(main, ctx);
  } catch (err) {
    toast(err.message, 'bad');
  }
}

function actions(l, main, ctx) {
  if (l.status === 'listed') {
    return h('button', {
      type: 'button', class: 'secondary', 'data-test': 'delist',
      on: {
        click: () => {
          const reason = prompt(t('sl.delist.reason', { id: l.cpcid }));
          if (reason === null || !reason.trim()) return;
          act(`/api/v1/market/listings/${encodeURIComponent(l.cpcid)}/delist`, { reason: reason.trim() }, l, main, ctx);
        },
      },
    }, t('sl.delist'));
  }
  return h('button', {
    type: 'button', class: 'secondary', 'data-test': 'relist',
    on: { click: () => act(`/api/v1/market/listings/${encodeURIComponent(l.cpcid)}/relist`, {}, l, main, ctx) },
  }, t('sl.relist'));
}

function publishForm(main, ctx) {
  const text = h('textarea', { name: 'listing', rows: 14, spellcheck: false, class: 'mono' });
  const error = h('div', { class: 'form-error', role: 'alert' });
  const submit = h('button', { type: 'submit' }, t('sl.publish.submit'));
  return h('form', {
    on: {
      submit: async (e) => {
        e.preventDefault();
        error.textContent = '';
        let spec;
        try {
          spec = parseYaml(text.value);
        } catch (err) {
          error.textContent = t('sl.bad_yaml', { message: err.message });
          return;
        }
        submit.disabled = true;
        try {
          const l = await post('/api/v1/market/listings', spec);
          toast(t('sl.published', { id: l.cpcid }), 'ok');
          ctx.navigate(`#/market/${encodeURIComponent(l.cpcid)}`);
        } catch (err) {
          error.textContent = err.message;
        } finally {
          submit.disabled = false;
        }
      },
    },
  }, field(t('sl.yaml'), text, t('sl.yaml.help')), error, h('div', { class: 'form-actions' }, submit));
}

async function render(main, ctx) {
  clear(main, loading());
  let listings;
  try {
    listings = await get('/api/v1/market/my-listings');
  } catch (err) {
    clear(main, errorState(err, () => render(main, ctx)));
    return;
  }
  clear(main, h('div', { class: 'my-listings' },
    h('div', { class: 'page-head' }, h('h1', {}, t('sl.title'))),
    h('p', { class: 'muted' }, t('sl.intro')),
    h('section', { class: 'panel', 'data-test': 'my-listings' }, listings.length ? table([
      { title: t('mk.col.cpcid'), value: (l) => h('a', { href: `#/market/${encodeURIComponent(l.cpcid)}` }, l.cpcid) },
      { title: t('mk.col.model'), value: (l) => l.spec.model },
      { title: t('mk.col.class'), value: (l) => l.spec.class.toUpperCase() },
      { title: t('sl.col.status'), value: (l) => [badge(l.status === 'listed' ? 'ok' : 'warn', t(`listing.${l.status}`)), l.delisted_reason ? h('div', { class: 'muted' }, l.delisted_reason) : null] },
      { title: t('sl.col.idle'), value: (l) => `${l.idle_cards} / ${l.cards.length}`, num: true },
      { title: t('mk.col.prices'), value: (l) => prices(l.spec.prices) },
      { title: t('sl.col.published'), value: (l) => fmtTime(l.published_at) },
      { title: t('sl.col.actions'), value: (l) => actions(l, main, ctx) },
    ], listings, { scrollLabel: t('sl.title') }) : empty(t('sl.none'))),
    ctx.user.role === 'supplier' ? h('section', { class: 'panel' }, h('h2', {}, t('sl.publish')), publishForm(main, ctx)) : null));
}

export default { render };
