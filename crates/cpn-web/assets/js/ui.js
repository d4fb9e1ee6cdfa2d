// Small DOM helpers shared by the pages. Text always goes in as text nodes (never innerHTML),
// so names and messages from the API cannot inject markup.
import { t } from './i18n.js';

/**
 * h('div', {class: 'x', on: {click: fn}, 'aria-label': '…'}, child, …) builds an element.
 * Children may be strings, numbers, nodes, arrays, or null/false (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const loading = () => h('p', { class: 'loading', role: 'status' }, t('common.loading'));
export const empty = (message) => h('div', { class: 'empty', role: 'status' }, message || t('common.empty'));

export function errorState(err, retry) {
  return h('div', { class: 'error-state', role: 'alert' },
    h('p', {}, t('common.error', { message: err?.message || String(err) })),
    retry ? h('button', { class: 'secondary', on: { click: retry } }, t('common.retry')) : null);
}

/** A state or health word as a coloured badge (the CSS class is the value itself). */
export function badge(value, label) {
  const v = String(value ?? '');
  return h('span', { class: `badge ${v.toLowerCase()}` }, label ?? v);
}

/**
 * A table. columns: [{title, value: row => text|node, num: bool}]. Rows are clickable
 * (and reachable with Tab + Enter) when onRow is given.
 */
export function table(columns, rows, { onRow, emptyText, caption, scrollLabel } = {}) {
  if (!rows.length) return empty(emptyText);
  const head = h('tr', {}, columns.map((c) => h('th', { class: c.num ? 'num' : null, scope: 'col' }, c.title)));
  const body = rows.map((row) => {
    const tr = h('tr', {}, columns.map((c) => h('td', { class: c.num ? 'num' : null }, c.value(row))));
    if (onRow) {
      tr.className = 'clickable';
      tr.tabIndex = 0;
      tr.addEventListener('click', () => onRow(row));
      tr.addEventListener('keydown', (e) => {
        if (e.key === 'Enter') onRow(row);
      });
    }
    return tr;
  });
  // A table wider than a narrow panel scrolls sideways: keyboard users reach the scrolling
  // region only if it takes focus, so such tables name themselves (`scrollLabel`).
  const wrap = scrollLabel ? { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': scrollLabel } : { class: 'table-wrap' };
  return h('div', wrap,
    h('table', { class: 'data' }, caption ? h('caption', { class: 'muted' }, caption) : null, h('thead', {}, head), h('tbody', {}, body)));
}

/** A labelled form field; `input` is an element. Returns the wrapper, with .setError(msg). */
export function field(labelText, input, help) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  const err = h('div', { class: 'error', role: 'alert' });
  const wrap = h('div', { class: 'field' }, h('label', { for: id }, labelText), input, help ? h('div', { class: 'help' }, help) : null, err);
  wrap.setError = (msg) => {
    err.textContent = msg || '';
    if (msg) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  };
  return wrap;
}

/** A definition list of [label, value] pairs. */
export function props(pairs) {
  return h('dl', { class: 'props' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '–')]));
}

export function kpi(label, value, sub) {
  return h('div', { class: 'kpi' }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value), sub ? h('div', { class: 'sub' }, sub) : null);
}

let toastBox;
export function toast(message, kind = '') {
  if (!toastBox) {
    toastBox = h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite' });
    document.body.append(toastBox);
  }
  const el = h('div', { class: `toast ${kind}` }, message);
  toastBox.append(el);
  setTimeout(() => el.remove(), kind === 'bad' ? 8000 : 4000);
}

/** Tabs: [{id, label, render(el)}]; returns the element. Arrow keys move between tabs. */
export function tabs(list, initial) {
  const body = h('div', { role: 'tabpanel' });
  const buttons = list.map((tab) => h('button', {
    role: 'tab', type: 'button', 'aria-selected': 'false', dataset: { tab: tab.id },
    on: { click: () => select(tab.id) },
  }, tab.label));
  const bar = h('div', { class: 'tabs', role: 'tablist' }, buttons);
  bar.addEventListener('keydown', (e) => {
    const i = buttons.indexOf(document.activeElement);
    if (i < 0) return;
    const next = e.key === 'ArrowRight' ? i + 1 : e.key === 'ArrowLeft' ? i - 1 : null;
    if (next === null) return;
    const b = buttons[(next + buttons.length) % buttons.length];
    b.focus();
    b.click();
  });
  function select(id) {
    buttons.forEach((b) => b.setAttribute('aria-selected', String(b.dataset.tab === id)));
    const tab = list.find((x) => x.id === id) || list[0];
    body.replaceChildren();
    tab.render(body);
  }
  const el = h('div', {}, bar, body);
  el.select = select;
  select(initial || list[0].id);
  return el;
}

// Charts: ECharts instances tied to the page that made them, disposed when it is left.
// Animations are off under automation (screenshots must not catch half-drawn charts) and
// when the user asks for reduced motion.
export const quiet = navigator.webdriver || matchMedia('(prefers-reduced-motion: reduce)').matches;
const live = new Set();

export function chart(el, option) {
  const c = window.echarts.init(el, null, { renderer: 'canvas' });
  c.setOption({ animation: !quiet, ...option });
  // A layout pass can leave the element without size for a moment (full-page screenshots do);
  // resizing a chart to zero breaks ECharts' map, so wait for a real size.
  const ro = new ResizeObserver(() => {
    if (el.clientWidth && el.clientHeight) c.resize();
  });
  ro.observe(el);
  c.__ro = ro;
  live.add(c);
  return c;
}

export function disposeCharts() {
  for (const c of live) {
    c.__ro?.disconnect();
    c.dispose();
  }
  live.clear();
}

/** A select of options [[value, label]], with the current value chosen. */
export function select(options, value, attrs = {}) {
  return h('select', attrs, options.map(([v, label]) => h('option', { value: v, selected: v === value }, label)));
}

/** Debounces fn by ms. */
export function debounce(fn, ms = 250) {
  let timer;
  return (...a) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...a), ms);
  };
}
