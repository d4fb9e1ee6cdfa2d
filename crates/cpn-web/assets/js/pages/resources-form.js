// The register / edit form of the Resources & tags page: name, visibility, labels as
// key=value lines and the spec as JSON, with structured fields for the common spec fields
// of sites and compute resources kept in step with the JSON. The API's validation errors
// are shown at the form and at the field they name (error.field, e.g. spec.location.lat);
// the user's input is never thrown away by a failed save.
import { t, fmtNumber } from '../i18n.js';
import { h, clear, field, select, debounce } from '../ui.js';
import { ENUMS, enumText, exampleSpec, RESOURCE_SECTIONS, fetchObject } from './resources-kinds.js';
import { send } from './resources-api.js';

const getPath = (o, path) => path.reduce((x, k) => (x === null || x === undefined ? undefined : x[k]), o);
function setPath(o, path, v) {
  let x = o;
  for (const k of path.slice(0, -1)) {
    if (typeof x[k] !== 'object' || x[k] === null) x[k] = {};
    x = x[k];
  }
  const last = path[path.length - 1];
  if (v === undefined) delete x[last];
  else x[last] = v;
}

export function labelsToText(labels) {
  return Object.entries(labels || {}).map(([k, v]) => `${k}=${v}`).join('\n');
}

/** key=value lines (blank lines and # comments skipped) to a map; throws on a bad line. */
export function parseLabels(text) {
  const out = {};
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new Error(t('res.form.labels.bad', { n: i + 1, line }));
    out[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
  });
  return out;
}

/** The line of the JSON text where the (dotted) path's last key is, or -1. */
function locate(text, segments) {
  let pos = 0;
  let found = -1;
  for (const seg of segments) {
    if (/^\d+$/.test(seg)) continue;
    const i = text.indexOf(`"${seg}"`, pos);
    if (i < 0) break;
    found = i;
    pos = i + seg.length + 2;
  }
  return found;
}

/** The structured fields per kind: [path in spec, label key, input kind, options]. */
function structuredDefs(kind, L) {
  if (kind === 'sites') {
    return [
      { path: ['region'], label: 'res.f.region', type: 'text' },
      { path: ['city'], label: 'res.f.city', type: 'text', optional: true },
      { path: ['location', 'lat'], label: 'res.f.lat', type: 'number' },
      { path: ['location', 'lon'], label: 'res.f.lon', type: 'number' },
    ];
  }
  if (kind === 'resources') {
    const sites = (L.lists.sites || []).map((s) => [s.name, s.name]);
    const compute = (spec) => spec?.type === 'compute';
    return [
      { path: ['type'], label: 'res.f.type', type: 'select', options: ENUMS.rtype.map((v) => [v, enumText('rtype', v)]) },
      { path: ['site'], label: 'common.site', type: 'select', options: [['', t('res.f.choose')], ...sites], ref: 'sites' },
      { path: ['compute', 'chip_type'], label: 'res.f.chip', type: 'select', options: ENUMS.chip.map((v) => [v, v.toUpperCase()]), when: compute },
      { path: ['compute', 'model'], label: 'res.f.model', type: 'text', when: compute },
      { path: ['compute', 'count'], label: 'res.f.count', type: 'number', step: '1', when: compute },
      { path: ['compute', 'unit_price'], label: 'res.f.price', type: 'number', when: compute },
    ];
  }
  return [];
}

/**
 * The form. `obj` is the object to edit (null to register); onSaved(saved) runs after a
 * successful save, onCancel() when the user gives up.
 */
export function objectForm({ kind, obj, L, user, onSaved, onCancel }) {
  const editing = !!obj;
  let current = obj;
  const kindName = t(`res.kind1.${kind}`);

  const nameIn = h('input', { name: 'name', autocomplete: 'off', spellcheck: 'false', readonly: editing, value: obj?.name || '' });
  const visIn = select(ENUMS.visibility.map((v) => [v, enumText('visibility', v)]),
    obj?.visibility || (user.role === 'operator' ? 'public' : 'tenant'), { name: 'visibility' });
  const labelsIn = h('textarea', { name: 'labels', rows: 3, spellcheck: 'false', class: 'res-labels-in', placeholder: 'zone=east\npower=green' });
  const specIn = h('textarea', { name: 'spec', rows: 18, spellcheck: 'false', wrap: 'off', class: 'res-spec-in' });
  const tagHelp = h('span');
  const fName = field(t('common.name'), nameIn, editing ? t('res.form.name.fixed') : t('res.form.name.help'));
  const fVis = field(t('res.prop.visibility'), visIn, t('res.form.visibility.help'));
  const fLabels = field(t('res.form.labels'), labelsIn, h('span', {}, t('res.form.labels.help'), ' ', tagHelp));
  const fSpec = field(t('res.form.spec'), specIn, t('res.form.spec.help'));
  const errorBox = h('div', { class: 'form-error res-form-error', 'data-test': 'form-error', role: 'alert' });
  const submit = h('button', { type: 'submit' }, editing ? t('common.save') : (kind === 'tags' ? t('common.create') : t('res.form.register.button')));

  // The tag library, as a hint for the labels field.
  L.ensure('tags').then((tags) => {
    const keys = tags.filter((x) => x.spec?.status !== 'disabled').map((x) => x.name);
    tagHelp.textContent = keys.length ? t('res.form.labels.keys', { keys: keys.join(', ') }) : '';
  }).catch(() => {});

  // Structured fields, synchronised with the JSON in both directions.
  const defs = structuredDefs(kind, L).map((d) => {
    const input = d.type === 'select'
      ? select(d.options, '', { name: `f-${d.path.join('.')}` })
      : h('input', { name: `f-${d.path.join('.')}`, type: d.type, step: d.type === 'number' ? (d.step || 'any') : null, autocomplete: 'off' });
    const wrap = field(t(d.label), input);
    return { ...d, input, wrap };
  });
  const byPath = new Map(defs.map((d) => [`spec.${d.path.join('.')}`, d]));

  const parseSpec = () => {
    try {
      const v = JSON.parse(specIn.value);
      return v && typeof v === 'object' && !Array.isArray(v) ? v : null;
    } catch {
      return null;
    }
  };
  const fillFields = (spec) => {
    for (const d of defs) {
      let v = getPath(spec, d.path);
      if (d.ref) v = L.find(d.ref, v)?.name ?? v;
      if (d.type === 'select' && v !== undefined && v !== null && ![...d.input.options].some((o) => o.value === String(v))) {
        d.input.append(h('option', { value: String(v) }, String(v)));
      }
      d.input.value = v === undefined || v === null ? '' : String(v);
      d.wrap.hidden = d.when ? !d.when(spec) : false;
    }
  };
  const fromField = (d) => {
    const spec = parseSpec();
    if (!spec) {
      fSpec.setError(t('res.form.json.first'));
      return;
    }
    fSpec.setError('');
    d.wrap.setError('');
    const raw = d.input.value;
    let v;
    if (d.type === 'number') v = raw === '' ? undefined : Number(raw);
    else v = raw === '' && (d.optional || d.type === 'select') ? undefined : raw;
    if (kind === 'resources' && d.path[0] === 'type' && v) {
      for (const other of ENUMS.rtype) if (other !== v) delete spec[other];
      if (!spec[v]) spec[v] = structuredClone(RESOURCE_SECTIONS[v]);
    }
    setPath(spec, d.path, v);
    specIn.value = JSON.stringify(spec, null, 2);
    fillFields(spec);
  };
  for (const d of defs) d.input.addEventListener(d.type === 'select' ? 'change' : 'input', () => fromField(d));
  specIn.addEventListener('input', debounce(() => {
    const spec = parseSpec();
    if (spec) fillFields(spec);
  }, 250));

  const fill = (o) => {
    labelsIn.value = labelsToText(o?.labels);
    specIn.value = JSON.stringify(o ? o.spec : exampleSpec(kind, L, user), null, 2);
    if (o) visIn.value = o.visibility;
    fillFields(parseSpec() || {});
  };
  fill(obj);

  const allFields = [fName, fVis, fLabels, fSpec, ...defs.map((d) => d.wrap)];
  const clearErrors = () => {
    for (const f of allFields) f.setError('');
    clear(errorBox);
    specIn.classList.remove('res-has-error');
  };

  /** Puts an API error at the form and at the field it names. */
  const showError = (err) => {
    const path = err.field || '';
    clear(errorBox,
      h('strong', {}, errTitle(err)), ' ',
      path ? h('code', { class: 'res-path' }, path) : null, path ? ' ' : null,
      err.message);
    let focus = null;
    if (path === 'name') {
      fName.setError(err.message);
      focus = nameIn;
    } else if (path === 'visibility') {
      fVis.setError(err.message);
      focus = visIn;
    } else if (path.startsWith('labels')) {
      fLabels.setError(err.message);
      focus = labelsIn;
    } else if (path === 'spec' || path.startsWith('spec.') || path.startsWith('spec[')) {
      const segs = path.replace(/\[(\d+)\]/g, '.$1').split('.').slice(1);
      const at = locate(specIn.value, segs);
      const line = at >= 0 ? specIn.value.slice(0, at).split('\n').length : 0;
      fSpec.setError(line ? t('res.form.err.line', { path, line, message: err.message }) : `${path}: ${err.message}`);
      specIn.classList.add('res-has-error');
      const d = byPath.get(path);
      if (d && !d.wrap.hidden) {
        d.wrap.setError(err.message);
        focus = d.input;
      } else if (at >= 0) {
        const start = specIn.value.lastIndexOf('\n', at) + 1;
        const end = specIn.value.indexOf('\n', at);
        focus = specIn;
        requestAnimationFrame(() => {
          specIn.setSelectionRange(start, end < 0 ? specIn.value.length : end);
          const lh = parseFloat(getComputedStyle(specIn).lineHeight) || 18;
          specIn.scrollTop = Math.max(0, (line - 3) * lh);
        });
      } else focus = specIn;
    }
    if (err.code === 'generation_conflict') {
      const again = h('button', { type: 'button', class: 'secondary', on: { click: reload } }, t('res.form.reload'));
      errorBox.append(' ', again);
      focus = again;
    }
    if (focus) focus.focus();
    else errorBox.scrollIntoView({ block: 'nearest' });
  };

  async function reload() {
    try {
      current = await fetchObject(kind, current.id);
      clearErrors();
      fill(current);
      clear(errorBox, h('span', { class: 'res-note' }, t('res.form.reloaded', { generation: fmtNumber(current.generation, 0) })));
    } catch (e) {
      clear(errorBox, e.message);
    }
  }

  const onSubmit = async (e) => {
    e.preventDefault();
    clearErrors();
    const name = nameIn.value.trim();
    if (!editing && !name) {
      fName.setError(t('res.form.name.required'));
      nameIn.focus();
      return;
    }
    let labels;
    try {
      labels = parseLabels(labelsIn.value);
    } catch (err) {
      fLabels.setError(err.message);
      labelsIn.focus();
      return;
    }
    let spec;
    try {
      spec = JSON.parse(specIn.value);
    } catch (err) {
      fSpec.setError(t('res.form.json.bad', { message: err.message }));
      specIn.classList.add('res-has-error');
      specIn.focus();
      return;
    }
    submit.disabled = true;
    try {
      const saved = editing
        ? await send('PUT', `/api/v1/${kind}/${encodeURIComponent(current.id)}`, { generation: current.generation, visibility: visIn.value, labels, spec })
        : await send('POST', `/api/v1/${kind}`, { name, visibility: visIn.value, labels, spec });
      onSaved(saved);
    } catch (err) {
      showError(err);
    } finally {
      submit.disabled = false;
    }
  };

  const title = editing ? t('res.form.edit', { kind: kindName, name: obj.name }) : (kind === 'tags' ? t('res.register.tag') : t('res.form.register', { kind: kindName }));
  const titleId = `res-form-${Math.random().toString(36).slice(2, 8)}`;
  const structured = defs.length
    ? h('fieldset', { class: 'res-structured' }, h('legend', {}, t('res.form.structured')), h('div', { class: 'res-structured-grid' }, defs.map((d) => d.wrap)))
    : null;
  const form = h('form', { class: 'panel res-form', 'data-test': 'object-form', novalidate: true, 'aria-labelledby': titleId, on: { submit: onSubmit } },
    h('div', { class: 'res-panel-head' },
      h('h2', { id: titleId }, title),
      h('button', { type: 'button', class: 'secondary res-close', 'aria-label': t('common.close'), title: t('common.close'), on: { click: () => onCancel() } }, '×')),
    h('div', { class: 'res-form-top' }, fName, fVis),
    fLabels,
    structured,
    fSpec,
    errorBox,
    h('div', { class: 'form-actions' }, submit, h('button', { type: 'button', class: 'secondary', on: { click: () => onCancel() } }, t('common.cancel'))));
  form.focusFirst = () => (editing ? labelsIn : nameIn).focus();
  return form;
}

/** A short heading for an API error, by its code. */
export function errTitle(err) {
  const map = {
    invalid_field: 'res.err.invalid', generation_conflict: 'res.err.conflict', already_exists: 'res.err.exists',
    in_use: 'res.err.inuse', forbidden: 'res.err.forbidden', not_found: 'res.err.notfound',
  };
  return t(map[err.code] || 'res.err.failed');
}
