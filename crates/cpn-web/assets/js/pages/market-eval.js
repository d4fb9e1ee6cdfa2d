// Evaluation and live monitoring of class B clusters (issue #14, SH-CL-18, -20, -21): a
// listing's evaluations after its leases, and a lease's live panel — CPU and GPU
// utilisation, temperature, power and voltage where the hardware reports them (else a dash,
// never 0), network traffic, and the latency and loss of the site's links.
import { get } from '../api.js';
import { register, t, fmtTime, fmtNumber } from '../i18n.js';
import { h, clear, table, empty, props, errorState } from '../ui.js';
import { stateBadge } from './market-common.js';

register({
  en: {
    'ev.title': 'Evaluations',
    'ev.intro': 'After each class B lease the platform scores the cluster from its monitoring: availability, less 200‰ per GPU drop-off and 100‰ per node loss. The reliability is their weighted mean, recent leases counting most.',
    'ev.none': 'Not evaluated yet: no class B lease of this cluster has ended.',
    'ev.lease': 'Lease',
    'ev.at': 'Evaluated',
    'ev.samples': 'Samples',
    'ev.availability': 'Availability',
    'ev.cpu': 'CPU use',
    'ev.gpu': 'GPU use',
    'ev.drop_offs': 'GPU drop-offs',
    'ev.node_losses': 'Node losses',
    'ev.score': 'Score',
    'ev.reliability': 'Reliability',
    'ev.unrated': 'not evaluated yet',
    'mon.title': 'Live monitoring',
    'mon.so_far': 'So far: {n} samples, {d} GPU drop-offs, {l} node losses.',
    'mon.node': 'Node',
    'mon.ready': 'Ready',
    'mon.cpu': 'CPU',
    'mon.memory': 'Memory',
    'mon.rx': 'Received',
    'mon.tx': 'Sent',
    'mon.power': 'Power',
    'mon.card': 'Card',
    'mon.state': 'State',
    'mon.gpu': 'GPU',
    'mon.temp': 'Temperature',
    'mon.voltage': 'Voltage',
    'mon.missing': 'missing from the report (dropped off)',
    'mon.links': 'Network',
    'mon.link': 'Link',
    'mon.peer': 'To site',
    'mon.latency': 'Latency',
    'mon.loss': 'Loss',
    'mon.no_links': 'No measured link of this site.',
    'mon.class_a': 'Class A clusters are not monitored by the platform.',
  },
  zh: {
    'ev.title': '评价',
    'ev.intro': '每个 B 类租约结束后，平台依据监控数据为集群评分：可用率，每次掉卡扣 200‰，每次节点失联扣 100‰。可靠性为各次评分的加权平均，近期租约权重更高。',
    'ev.none': '尚未评价：该集群还没有结束的 B 类租约。',
    'ev.lease': '租约',
    'ev.at': '评价时间',
    'ev.samples': '采样数',
    'ev.availability': '可用率',
    'ev.cpu': 'CPU 利用率',
    'ev.gpu': 'GPU 利用率',
    'ev.drop_offs': '掉卡次数',
    'ev.node_losses': '节点失联',
    'ev.score': '评分',
    'ev.reliability': '可靠性',
    'ev.unrated': '尚未评价',
    'mon.title': '实时监控',
    'mon.so_far': '目前：{n} 次采样，掉卡 {d} 次，节点失联 {l} 次。',
    'mon.node': '节点',
    'mon.ready': '就绪',
    'mon.cpu': 'CPU',
    'mon.memory': '内存',
    'mon.rx': '接收',
    'mon.tx': '发送',
    'mon.power': '功率',
    'mon.card': '卡',
    'mon.state': '状态',
    'mon.gpu': 'GPU',
    'mon.temp': '温度',
    'mon.voltage': '电压',
    'mon.missing': '上报中缺失（掉卡）',
    'mon.links': '网络',
    'mon.link': '链路',
    'mon.peer': '对端站点',
    'mon.latency': '时延',
    'mon.loss': '丢包率',
    'mon.no_links': '该站点没有已测量的链路。',
    'mon.class_a': '平台不监控 A 类集群。',
  },
});

/** A per mille figure, or a dash where nothing was measured. */
export function perMille(x) {
  return x == null ? '–' : `${x}‰`;
}

/** A measured figure with its unit, or a dash where the hardware reports none. */
function figure(x, unit, digits = 1) {
  return x == null ? '–' : `${fmtNumber(x, digits)} ${unit}`;
}

function evaluationTable(list) {
  return table([
    { title: t('ev.lease'), value: (e) => h('a', { href: `#/leases/${e.lease}` }, String(e.lease)), num: true },
    { title: t('ev.at'), value: (e) => fmtTime(e.evaluated_at) },
    { title: t('ev.samples'), value: (e) => e.samples, num: true },
    { title: t('ev.availability'), value: (e) => perMille(e.availability), num: true },
    { title: t('ev.cpu'), value: (e) => perMille(e.cpu_util), num: true },
    { title: t('ev.gpu'), value: (e) => perMille(e.gpu_util), num: true },
    { title: t('ev.drop_offs'), value: (e) => e.drop_offs, num: true },
    { title: t('ev.node_losses'), value: (e) => e.node_losses, num: true },
    { title: t('ev.score'), value: (e) => perMille(e.score), num: true },
  ], list, { emptyText: t('ev.none'), scrollLabel: t('ev.title') });
}

/** The listing's reliability and its evaluations, newest first. */
export function evaluationsPanel(listing) {
  const body = h('div', {});
  const panel = h('section', { class: 'panel', 'data-test': 'evaluations' },
    h('h2', {}, t('ev.title')),
    props([[t('ev.reliability'), listing.reliability == null ? t('ev.unrated') : perMille(listing.reliability)]]),
    h('p', { class: 'muted' }, t('ev.intro')), body);
  get(`/api/v1/market/listings/${encodeURIComponent(listing.cpcid)}/evaluations`)
    .then((list) => clear(body, evaluationTable(list)))
    .catch((err) => clear(body, errorState(err)));
  return panel;
}

/** One lease's evaluation as properties, for the lease page. */
export function evaluationProps(e) {
  return props([
    [t('ev.score'), perMille(e.score)],
    [t('ev.availability'), perMille(e.availability)],
    [t('ev.cpu'), perMille(e.cpu_util)],
    [t('ev.gpu'), perMille(e.gpu_util)],
    [t('ev.drop_offs'), String(e.drop_offs)],
    [t('ev.node_losses'), String(e.node_losses)],
    [t('ev.samples'), String(e.samples)],
  ]);
}

function paintMonitoring(body, m) {
  const nodes = table([
    { title: t('mon.node'), value: (n) => n.node },
    { title: t('mon.ready'), value: (n) => (n.ready ? '✓' : '✗') },
    { title: t('mon.cpu'), value: (n) => figure(n.cpu_util_pct, '%'), num: true },
    { title: t('mon.memory'), value: (n) => figure(n.memory_util_pct, '%'), num: true },
    { title: t('mon.rx'), value: (n) => figure(n.net_rx_bytes_per_s == null ? null : n.net_rx_bytes_per_s / 1e6, 'MB/s', 2), num: true },
    { title: t('mon.tx'), value: (n) => figure(n.net_tx_bytes_per_s == null ? null : n.net_tx_bytes_per_s / 1e6, 'MB/s', 2), num: true },
    { title: t('mon.power'), value: (n) => figure(n.power_watts, 'W'), num: true },
  ], m.nodes, { scrollLabel: t('mon.title') });
  const cards = m.nodes.flatMap((n) => n.cards.map((c) => ({ ...c, node: n.node })));
  const cardTable = table([
    { title: t('mon.card'), value: (c) => `#${c.card} ${c.node} GPU ${c.index}` },
    { title: t('mon.state'), value: (c) => h('span', {}, stateBadge('card', c.state), !c.missing ? null : h('span', { class: 'muted' }, ` ${t('mon.missing')}`)) },
    { title: t('mon.gpu'), value: (c) => figure(c.util_pct, '%'), num: true },
    { title: t('mon.memory'), value: (c) => (c.memory_used_mib == null ? '–' : `${c.memory_used_mib}/${c.memory_total_mib} MiB`), num: true },
    { title: t('mon.temp'), value: (c) => figure(c.temperature_c, '°C'), num: true },
    { title: t('mon.power'), value: (c) => figure(c.power_watts, 'W'), num: true },
    { title: t('mon.voltage'), value: (c) => figure(c.voltage_v, 'V', 2), num: true },
  ], cards, { scrollLabel: t('mon.title') });
  const links = m.links.length ? table([
    { title: t('mon.link'), value: (l) => l.link },
    { title: t('mon.peer'), value: (l) => l.peer },
    { title: t('mon.latency'), value: (l) => figure(l.latency_ms, 'ms'), num: true },
    { title: t('mon.loss'), value: (l) => figure(l.loss_pct, '%', 2), num: true },
  ], m.links, { scrollLabel: t('mon.links') }) : empty(t('mon.no_links'));
  const s = m.so_far;
  clear(body, nodes, cardTable, h('h3', {}, t('mon.links')), links,
    h('p', { class: 'muted' }, t('mon.so_far', { n: s.samples, d: s.drop_offs, l: s.node_losses })));
}

/** How often the live panel asks again: the agents report every few seconds. */
const MONITOR_MS = 5000;

/** A running class B lease's live panel; it refreshes while it is on the page. */
export function monitoringPanel(lease) {
  const body = h('div', { 'aria-live': 'polite' });
  const panel = h('section', { class: 'panel', 'data-test': 'monitoring' }, h('h2', {}, t('mon.title')), body);
  if (lease.class !== 'b') {
    clear(body, h('p', { class: 'muted' }, t('mon.class_a')));
    return panel;
  }
  const refresh = async () => {
    try {
      const m = await get(`/api/v1/market/leases/${lease.id}/monitoring`);
      if (panel.isConnected || !timer) paintMonitoring(body, m);
    } catch (err) {
      clear(body, errorState(err));
    }
  };
  let timer = null;
  refresh();
  timer = setInterval(() => {
    if (!panel.isConnected) clearInterval(timer);
    else if (!document.hidden) refresh();
  }, MONITOR_MS);
  return panel;
}
