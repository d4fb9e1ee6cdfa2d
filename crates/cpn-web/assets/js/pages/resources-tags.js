// Batch tagging (RM-TAG): apply a tag with a value to, or remove it from, many objects at
// once: those of a kind matching a label selector, or those picked from a list. Shows how
// many objects a choice covers before it is sent, and how many changed after.
import { listAll, ApiError } from '../api.js';
import { t, fmtNumber } from '../i18n.js';
import { h, clear, field, select, debounce, loading, empty, errorState, toast } from '../ui.js';
import { TAGGABLE, canModify, kindOf } from './resources-kinds.js';
import { send } from './resources-api.js';
import { errTitle } from './resources-form.js';

export function applySection({ tag, user, onChanged }) {
  const allowed = tag.spec?.allowed_values || [];
  const disabled = tag.spec?.status === 'disabled';
  const valueIn = allowed.length
    ? select(allowed.map((v) => [v, v]), allowed[0], { name: 'value' })
    : h('input', { name: 'value', autocomplete: 'off', spellcheck: 'false' });
  const kindIn = select(TAGGABLE.map((k) => [k.id, t(`res.kind.${k.id}`)]), 'sites', { name: 'target-kind' });
  const modeName = `mode-${tag.id}`;
  const radio = (value, label, checked) => h('label', { class: 'res-radio' },
    h('input', { type: 'radio', name: modeName, value, checked, on: { change: () => setMode(value) } }), label);
  const selIn = h('input', { name: 'target-selector', autocomplete: 'off', spellcheck: 'false', placeholder: 'zone=west' });
  const filterIn = h('input', { name: 'target-filter', type: 'search', autocomplete: 'off', placeholder: t('res.apply.filter.placeholder') });
  const fValue = field(t('res.apply.value'), valueIn, allowed.length ? t('res.apply.value.allowed') : t('res.apply.value.free'));
  const fKind = field(t('res.apply.kind'), kindIn);
  const fSel = field(t('res.apply.selector'), selIn, t('res.apply.selector.help'));
  const fFilter = field(t('res.apply.filter'), filterIn);
  const preview = h('p', { class: 'muted res-preview', role: 'status' });
  const pickList = h('div', { class: 'res-picklist' });
  const pickHead = h('div', { class: 'row res-pickhead' });
  const pickBox = h('div', { hidden: true }, fFilter, pickHead, pickList);
  const selBox = h('div', {}, fSel);
  const applyBtn = h('button', { type: 'button', on: { click: () => run('apply') } }, t('res.apply.apply'));
  const removeBtn = h('button', { type: 'button', class: 'secondary', on: { click: () => run('remove') } }, t('res.apply.remove'));
  const result = h('div', { class: 'res-result', role: 'status' });
  const errorBox = h('div', { class: 'form-error', role: 'alert' });

  let mode = 'selector';
  let matched = null; // objects the selector matches and the user may change
  let objects = []; // the kind's objects, for picking
  const picked = new Set();
  let seq = 0;
  const kindId = () => kindIn.value;
  const one = () => kindOf(kindId()).one;
  const valueOf = (o) => o.labels?.[tag.name];

  function setMode(m) {
    mode = m;
    selBox.hidden = m !== 'selector';
    pickBox.hidden = m !== 'pick';
    preview.hidden = m !== 'selector';
    refresh();
  }

  function buttons() {
    const n = mode === 'selector' ? matched?.length : picked.size;
    const kn = t(`res.kindn.${kindId()}`);
    applyBtn.textContent = n === null || n === undefined ? t('res.apply.apply') : t('res.apply.applyn', { n: fmtNumber(n, 0), kind: kn });
    removeBtn.textContent = n === null || n === undefined ? t('res.apply.remove') : t('res.apply.removen', { n: fmtNumber(n, 0), kind: kn });
    applyBtn.disabled = disabled || !n;
    removeBtn.disabled = !n;
  }

  /** Counts what the selector covers (only objects the user may change are tagged). */
  const previewSelector = debounce(async () => {
    const my = ++seq;
    fSel.setError('');
    matched = null;
    buttons();
    preview.textContent = t('common.loading');
    const sel = selIn.value.trim();
    try {
      const all = await listAll(`/api/v1/${kindId()}?selector=${encodeURIComponent(sel)}`);
      if (my !== seq) return;
      matched = all.filter((o) => canModify(user, o));
      const has = matched.filter((o) => valueOf(o) !== undefined).length;
      preview.textContent = [
        sel ? t('res.apply.matches', { n: fmtNumber(matched.length, 0), kind: t(`res.kindn.${kindId()}`) }) : t('res.apply.matches.all', { n: fmtNumber(matched.length, 0), kind: t(`res.kindn.${kindId()}`) }),
        all.length > matched.length ? t('res.apply.notyours', { n: fmtNumber(all.length - matched.length, 0) }) : '',
        has ? t('res.apply.already', { n: fmtNumber(has, 0), tag: tag.name }) : '',
      ].filter(Boolean).join(' ');
    } catch (e) {
      if (my !== seq) return;
      matched = null;
      preview.textContent = '';
      if (e instanceof ApiError && e.status === 400) fSel.setError(e.message);
      else preview.textContent = e.message;
    }
    buttons();
  }, 400);

  async function loadPick() {
    const my = ++seq;
    clear(pickList, loading());
    try {
      const all = await listAll(`/api/v1/${kindId()}`);
      if (my !== seq) return;
      objects = all.filter((o) => canModify(user, o));
      for (const id of [...picked]) if (!objects.some((o) => o.id === id)) picked.delete(id);
      paintPick();
    } catch (e) {
      if (my === seq) clear(pickList, errorState(e, loadPick));
    }
  }

  function paintPick() {
    const q = filterIn.value.trim().toLowerCase();
    const shown = objects.filter((o) => !q || o.name.toLowerCase().includes(q));
    clear(pickHead,
      h('span', { class: 'muted' }, t('res.apply.picked', { n: fmtNumber(picked.size, 0), total: fmtNumber(objects.length, 0) })),
      h('button', { type: 'button', class: 'secondary small', on: { click: () => { shown.forEach((o) => picked.add(o.id)); paintPick(); } } }, t('res.apply.all')),
      h('button', { type: 'button', class: 'secondary small', on: { click: () => { picked.clear(); paintPick(); } } }, t('res.apply.none')));
    if (!objects.length) {
      clear(pickList, empty(t('res.apply.nothing', { kind: t(`res.kindn.${kindId()}`) })));
    } else {
      clear(pickList, h('ul', {}, shown.map((o) => h('li', {},
        h('label', {},
          h('input', { type: 'checkbox', value: o.id, checked: picked.has(o.id), on: { change: (e) => { if (e.target.checked) picked.add(o.id); else picked.delete(o.id); paintPick(); } } }),
          h('span', { class: 'res-name' }, o.name),
          valueOf(o) !== undefined ? h('span', { class: 'badge res-label' }, `${tag.name}=${valueOf(o)}`) : null)))));
    }
    buttons();
  }

  function refresh() {
    result.textContent = '';
    errorBox.textContent = '';
    if (mode === 'selector') previewSelector();
    else loadPick();
    buttons();
  }

  async function run(action) {
    clear(errorBox);
    fValue.setError('');
    fSel.setError('');
    result.textContent = '';
    const value = valueIn.value.trim();
    if (action === 'apply' && !allowed.length && !value) {
      fValue.setError(t('res.apply.value.required'));
      valueIn.focus();
      return;
    }
    const body = mode === 'selector'
      ? { kind: one(), selector: selIn.value.trim() }
      : { targets: objects.filter((o) => picked.has(o.id)).map((o) => ({ kind: one(), id: o.id })) };
    if (action === 'apply') body.value = value;
    applyBtn.disabled = true;
    removeBtn.disabled = true;
    try {
      const r = await send('POST', `/api/v1/tags/${encodeURIComponent(tag.name)}/${action}`, body);
      const msg = t(action === 'apply' ? 'res.apply.done' : 'res.apply.removed', {
        changed: fmtNumber(r.changed, 0), unchanged: fmtNumber(r.unchanged, 0), tag: tag.name, value,
      });
      result.textContent = msg;
      toast(msg, 'ok');
      onChanged?.();
      if (mode === 'selector') previewSelector();
      else loadPick();
    } catch (e) {
      if (e.field === 'value') fValue.setError(e.message);
      else if (e.field === 'selector') fSel.setError(e.message);
      clear(errorBox, h('strong', {}, errTitle(e)), ' ', e.message);
      buttons();
    }
  }

  kindIn.addEventListener('change', () => {
    picked.clear();
    refresh();
  });
  selIn.addEventListener('input', () => previewSelector());
  selIn.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      previewSelector();
    }
  });
  filterIn.addEventListener('input', debounce(paintPick, 150));

  const el = h('section', { class: 'res-apply', 'aria-label': t('res.apply.title', { tag: tag.name }) },
    h('h3', {}, t('res.apply.title', { tag: tag.name })),
    disabled ? h('p', { class: 'form-error' }, t('res.apply.disabled')) : null,
    h('div', { class: 'res-form-top' }, fValue, fKind),
    h('fieldset', { class: 'res-modes' }, h('legend', {}, t('res.apply.targets')),
      radio('selector', t('res.apply.mode.selector'), true),
      radio('pick', t('res.apply.mode.pick'), false)),
    selBox, pickBox, preview,
    h('div', { class: 'form-actions' }, applyBtn, removeBtn),
    result, errorBox);
  refresh();
  return el;
}
