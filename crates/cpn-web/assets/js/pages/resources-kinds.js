// The registry kinds shown on the Resources & tags page: their table columns, a short
// summary of each spec, example specs for the register form (taken from the demo
// federation, so they are valid as they are) and the lookups that turn ids into names.
import { listAll, get } from '../api.js';
import { t, has, fmtNumber } from '../i18n.js';
import { h, badge } from '../ui.js';

/** Tab order; `one` is the singular the tagging API takes as a target kind. */
export const KINDS = [
  { id: 'sites', one: 'site' },
  { id: 'resources', one: 'resource' },
  { id: 'platforms', one: 'platform' },
  { id: 'clouds', one: 'cloud' },
  { id: 'links', one: 'link' },
  { id: 'tags', one: 'tag' },
];
export const kindOf = (id) => KINDS.find((k) => k.id === id);
/** Kinds a tag can be applied to (everything but tags themselves). */
export const TAGGABLE = KINDS.filter((k) => k.id !== 'tags');

export const ENUMS = {
  chip: ['cpu', 'gpu', 'npu', 'dcu', 'fpga'],
  rtype: ['compute', 'network', 'storage', 'security'],
  visibility: ['public', 'tenant'],
};

/** A value of an enumeration in the current language (the raw value where none is known). */
export function enumText(group, value) {
  if (value === null || value === undefined || value === '') return '–';
  const key = `res.enum.${group}.${value}`;
  return has(key) ? t(key) : String(value);
}

/** Who may do what: the API enforces it, the page only hides what would fail. */
export function canCreate(user, kind) {
  return user.role === 'operator' || (user.role === 'supplier' && ['sites', 'resources', 'links'].includes(kind));
}
export function canModify(user, obj) {
  return user.role === 'operator' || (user.role === 'supplier' && obj.owner === user.username);
}

/**
 * Sites, platforms and clouds (and resources and links, loaded on demand), by id and by
 * name, so references in specs can be shown by name.
 */
export class Lookups {
  constructor() {
    this.lists = {};
  }

  async load() {
    const [sites, platforms, clouds] = await Promise.all(['sites', 'platforms', 'clouds'].map((k) => listAll(`/api/v1/${k}`)));
    this.lists = { sites, platforms, clouds };
    this.index();
  }

  /** Loads a further kind (resources, links, tags) once. */
  async ensure(kind) {
    if (!this.lists[kind]) {
      this.lists[kind] = await listAll(`/api/v1/${kind}`);
      this.index();
    }
    return this.lists[kind];
  }

  /** Forgets everything but the base lists, then reloads those (after a change). */
  async reload() {
    this.lists = {};
    await this.load();
  }

  index() {
    this.by = {};
    for (const [kind, list] of Object.entries(this.lists)) {
      const m = new Map();
      for (const o of list) {
        m.set(o.id, o);
        m.set(o.name, o);
      }
      this.by[kind] = m;
    }
  }

  find(kind, ref) {
    return ref ? this.by?.[kind]?.get(ref) : undefined;
  }

  name(kind, ref) {
    return this.find(kind, ref)?.name ?? ref ?? '–';
  }

  /** The objects an object inherits labels from, nearest first. */
  parents(kind, obj) {
    const s = obj.spec || {};
    if (kind === 'resources') return [['sites', this.find('sites', s.site)]].filter((p) => p[1]);
    if (kind === 'sites') return [['platforms', this.find('platforms', s.platform)], ['clouds', this.find('clouds', s.cloud)]].filter((p) => p[1]);
    return [];
  }

  /**
   * Where an effective label comes from: null when set on the object itself, otherwise
   * [kind, object] of the ancestor that sets it (or [null, null] when it cannot be told).
   */
  origin(kind, obj, key) {
    const value = obj.effective_labels?.[key];
    if (obj.labels && key in obj.labels && obj.labels[key] === value) return null;
    for (const [pk, p] of this.parents(kind, obj)) {
      if (p.labels?.[key] === value) return [pk, p];
      if (p.effective_labels?.[key] === value) return this.origin(pk, p, key) || [pk, p];
    }
    return [null, null];
  }
}

/** A link to another object on this page. */
export function objLink(kind, obj, label) {
  if (!obj) return label ?? '–';
  return h('a', { href: `#/resources/${kind}/${encodeURIComponent(obj.name)}` }, label ?? obj.name);
}

/** The object's own labels as small badges, and the inherited ones counted after them. */
export function labelBadges(obj) {
  const own = Object.entries(obj.labels || {});
  const inherited = Object.entries(obj.effective_labels || {}).filter(([k]) => !(k in (obj.labels || {})));
  const shown = own.slice(0, 4);
  return h('span', { class: 'res-labels' },
    shown.map(([k, v]) => h('span', { class: 'badge res-label', title: `${k}=${v}` }, `${k}=${v}`)),
    own.length > shown.length ? h('span', { class: 'muted', title: own.slice(4).map(([k, v]) => `${k}=${v}`).join('\n') }, t('res.labels.more', { n: own.length - shown.length })) : null,
    inherited.length ? h('span', { class: 'muted res-inh', title: inherited.map(([k, v]) => `${k}=${v}`).join('\n') }, t('res.labels.inherited', { n: inherited.length })) : null);
}

/** One line saying what a resource is: GPU · A100-80G × 512, object storage · 8 PiB, … */
export function resourceSummary(spec) {
  const s = spec || {};
  if (s.type === 'compute' && s.compute) {
    const c = s.compute;
    return `${String(c.chip_type || '').toUpperCase()} · ${c.model} × ${fmtNumber(c.count, 0)}`;
  }
  if (s.type === 'storage' && s.storage) return `${enumText('storage', s.storage.kind)} · ${fmtNumber(s.storage.capacity_gib / 1024, 0)} TiB`;
  if (s.type === 'network' && s.network) return `${enumText('link', s.network.kind)} · ${fmtNumber(s.network.bandwidth_mbps / 1000, 1)} Gbit/s`;
  if (s.type === 'security' && s.security) return `${enumText('security', s.security.kind)}${s.security.spec ? ` · ${s.security.spec}` : ''}`;
  return '–';
}

/** Text cut to one line of the column, whole in the tooltip. */
const trunc = (text) => h('span', { class: 'res-trunc', title: text }, text);
const num = (v, d = 1) => (v === null || v === undefined ? '–' : fmtNumber(v, d));

/** The table columns of each kind; `L` resolves references. */
export function columns(kind, L) {
  const name = { title: t('common.name'), value: (o) => h('span', { class: 'res-name' }, o.name) };
  const labels = { title: t('res.col.labels'), opt: true, labels: true, value: (o) => labelBadges(o) };
  switch (kind) {
    case 'sites':
      return [name,
        { title: t('res.col.region'), value: (o) => o.spec?.region },
        { title: t('res.col.city'), opt: true, value: (o) => o.spec?.city || '–' },
        { title: t('res.col.supplier'), opt: true, value: (o) => o.spec?.supplier },
        { title: t('res.col.health'), value: (o) => badge(o.spec?.health || 'healthy', enumText('health', o.spec?.health || 'healthy')) },
        { title: t('res.col.pue'), num: true, opt: true, value: (o) => num(o.spec?.pue, 2) },
        labels];
    case 'resources':
      return [name,
        { title: t('common.site'), value: (o) => L.name('sites', o.spec?.site) },
        { title: t('res.col.type'), opt: true, value: (o) => enumText('rtype', o.spec?.type) },
        { title: t('res.col.what'), value: (o) => trunc(resourceSummary(o.spec)) },
        { title: t('res.col.price'), num: true, opt: true, value: (o) => (o.spec?.compute?.unit_price ? num(o.spec.compute.unit_price, 3) : '–') },
        labels];
    case 'platforms':
      return [name,
        { title: t('res.col.level'), value: (o) => enumText('level', o.spec?.level) },
        { title: t('res.col.region'), value: (o) => o.spec?.region || '–' },
        { title: t('res.col.compute_types'), opt: true, value: (o) => (o.spec?.compute_types || []).map((c) => enumText('class', c)).join('、') || '–' },
        labels];
    case 'clouds':
      return [name,
        { title: t('res.col.cloud_type'), value: (o) => enumText('cloud', o.spec?.cloud_type) },
        { title: t('res.col.provider'), value: (o) => o.spec?.provider },
        { title: t('res.col.region'), value: (o) => o.spec?.region || '–' },
        labels];
    case 'links':
      return [name,
        { title: t('res.col.from'), value: (o) => L.name('sites', o.spec?.from) },
        { title: t('res.col.to'), value: (o) => L.name('sites', o.spec?.to) },
        { title: t('res.col.link_type'), opt: true, value: (o) => enumText('link', o.spec?.link_type) },
        { title: t('res.col.latency'), num: true, value: (o) => num(o.spec?.latency_ms, 1) },
        { title: t('res.col.bandwidth'), num: true, value: (o) => num(o.spec?.bandwidth_gbps, 1) },
        labels];
    case 'tags':
      return [name,
        { title: t('res.col.group'), value: (o) => enumText('group', o.spec?.group) },
        { title: t('res.col.status'), value: (o) => badge(o.spec?.status === 'disabled' ? 'cancelled' : 'ok', enumText('tagstatus', o.spec?.status || 'active')) },
        { title: t('res.col.inheritable'), value: (o) => (o.spec?.inheritable ? t('common.yes') : t('common.no')) },
        { title: t('res.col.policy_match'), opt: true, value: (o) => (o.spec?.policy_match ? t('common.yes') : t('common.no')) },
        { title: t('res.col.description'), opt: true, value: (o) => trunc(o.spec?.description || '–') },
        { title: t('res.col.allowed'), opt: true, value: (o) => trunc(o.spec?.allowed_values?.length ? o.spec.allowed_values.join(', ') : t('res.tag.anyvalue')) },
        labels];
    default:
      return [name, labels];
  }
}

/** The sections of a resource spec, one per resource type (from the demo federation). */
export const RESOURCE_SECTIONS = {
  compute: { supply_mode: 'kubernetes', chip_type: 'gpu', architecture: 'ampere', model: 'A100-80G', count: 8, memory_gib: 80, tflops: 312, unit_price: 9.5, power_watts: 400 },
  storage: { kind: 'object', capacity_gib: 102400, iops: 20000, throughput_mbps: 4000, region: 'Hebei', provider: 'Unicom Cloud' },
  network: { kind: 'private_line', bandwidth_mbps: 10000, region: 'Hebei', provider: 'China Unicom', spec: '10GE x2' },
  security: { kind: 'firewall', spec: 'next-generation firewall, 10 Gbps', provider: 'Unicom Cloud' },
};

/** A valid example spec for a new object of `kind`, referring to objects that exist. */
export function exampleSpec(kind, L, user) {
  const sites = (L.lists.sites || []).filter((s) => canModify(user, s));
  const anySite = sites[0] || L.lists.sites?.[0];
  const other = (L.lists.sites || []).find((s) => s !== anySite);
  switch (kind) {
    case 'sites':
      return {
        region: 'Hebei', city: 'Zhangjiakou', location: { lat: 40.8244, lon: 114.8875 },
        ...(L.lists.platforms?.[0] && user.role === 'operator' ? { platform: L.lists.platforms[0].name } : {}),
        supplier: user.role === 'supplier' ? user.tenant : 'China Unicom',
        resource_types: ['cpu', 'gpu'],
        scale: { cpu_cores: 2048, gpus: 64, npus: 0, memory_gib: 16384, storage_tib: 512 },
        pue: 1.25, electricity_price: 0.55, health: 'healthy',
        description: '',
      };
    case 'resources':
      return { site: anySite?.name || 'zhangjiakou', type: 'compute', compute: { ...RESOURCE_SECTIONS.compute } };
    case 'platforms':
      return { level: 'province', compute_types: ['general', 'intelligent'], region: 'Hebei', description: '' };
    case 'clouds':
      return { cloud_type: 'public', provider: 'China Telecom Cloud', region: 'nationwide', description: '' };
    case 'links':
      return { from: anySite?.name || 'zhangjiakou', to: other?.name || 'beijing', link_type: 'private_line', latency_ms: 5.6, bandwidth_gbps: 100, jitter_ms: 0.2, loss_pct: 0.01, bidirectional: true };
    case 'tags':
      return { group: 'custom', status: 'active', operations: ['modify', 'delete', 'share'], inheritable: false, policy_match: true, description: '' };
    default:
      return {};
  }
}

/** Objects of another kind that refer to this one (for the detail panel). */
export async function related(kind, obj, L) {
  if (kind === 'sites') {
    const [resources, links] = await Promise.all([L.ensure('resources'), L.ensure('links')]);
    return {
      resources: resources.filter((r) => r.spec?.site === obj.id || r.spec?.site === obj.name),
      links: links.filter((l) => [l.spec?.from, l.spec?.to].some((x) => x === obj.id || x === obj.name)),
    };
  }
  if (kind === 'platforms' || kind === 'clouds') {
    const key = kind === 'platforms' ? 'platform' : 'cloud';
    return { sites: (L.lists.sites || []).filter((s) => s.spec?.[key] === obj.id || s.spec?.[key] === obj.name) };
  }
  return {};
}

/** How many objects of each taggable kind carry a label (own or inherited). */
export async function labelUse(key) {
  const sel = encodeURIComponent(key);
  const counts = await Promise.all(TAGGABLE.map((k) => listAll(`/api/v1/${k.id}?selector=${sel}`).then((xs) => xs.length)));
  return TAGGABLE.map((k, i) => [k.id, counts[i]]);
}

export const fetchObject = (kind, ref) => get(`/api/v1/${kind}/${encodeURIComponent(ref)}`);
