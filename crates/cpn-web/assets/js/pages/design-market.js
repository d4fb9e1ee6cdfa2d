// The template marketplace (#/design): cards of the templates the caller may see, a search
// box and category (and, for operators, state) filters, the "Recommended for you" strip with
// its reasons, publish/withdraw for operators, and a dialog to create a template from YAML.
import { get, post } from '../api.js';
import { t, fmtNumber } from '../i18n.js';
import { h, clear, badge, errorState, loading, empty, field, select, toast, debounce } from '../ui.js';
import { stateLabel, say, send, issues, modal } from './design-common.js';

const STATE_ORDER = { published: 0, draft: 1, offline: 2 };

export const canPublish = (user) => user.role === 'operator' || user.role === 'supplier';

/** Publish or withdraw a template; resolves to the changed template (null on error, shown as a toast). */
export async function setState(tpl, to) {
  try {
    const res = await post(`/api/v1/templates/${encodeURIComponent(tpl.id)}/${to === 'published' ? 'publish' : 'withdraw'}`, { version: tpl.version });
    toast(t(to === 'published' ? 'design.published' : 'design.withdrawn', { name: tpl.name }), 'ok');
    return res;
  } catch (e) {
    toast(t('design.err.state', { message: e.message }), 'bad');
    return null;
  }
}

/** Publish/withdraw buttons for a template (none for roles that may not). */
export function stateButtons(user, tpl, changed) {
  if (!canPublish(user)) return null;
  const go = (to) => async (e) => {
    e.target.disabled = true;
    const res = await setState(tpl, to);
    e.target.disabled = false;
    if (res) changed(res);
  };
  return tpl.state === 'published'
    ? h('button', { type: 'button', class: 'secondary', on: { click: go('offline') }, 'aria-label': t('design.withdraw.label', { name: tpl.name }) }, t('design.withdraw'))
    : h('button', { type: 'button', on: { click: go('published') }, 'aria-label': t('design.publish.label', { name: tpl.name }) }, t('design.publish'));
}

const SKELETON = `description: My service - one container and its storage
inputs:
  replicas:
    type: integer
    default: 1
    constraints: {min: 1, max: 10}
  hours:
    type: number
    default: 24
node_templates:
  data:
    type: storage
    properties:
      storage_gib: 100
  web:
    type: container
    properties:
      cores: 2
      memory_gib: 4
      replicas: {get_input: replicas}
      command: ["sh", "-c", "echo web up"]
    requirements:
      depends_on: [data]
      connects_to:
        - {node: data, max_latency_ms: 20}
`;

/** The "new template" dialog; navigates to the new template when it is created. */
function createDialog(ctx) {
  const name = h('input', { name: 'name', required: true, maxlength: 128, autocomplete: 'off' });
  const category = h('input', { name: 'category', autocomplete: 'off', placeholder: 'ai-training' });
  const tags = h('input', { name: 'tags', autocomplete: 'off', placeholder: 'gpu, training' });
  const description = h('input', { name: 'description', autocomplete: 'off' });
  const source = h('textarea', { name: 'source', rows: 18, spellcheck: false, required: true }, SKELETON);
  const fields = {
    name: field(t('common.name'), name),
    category: field(t('design.category'), category),
    tags: field(t('design.tags'), tags, t('design.tags.help')),
    description: field(t('design.description'), description),
    source: field(t('design.source'), source, t('design.source.help')),
  };
  const error = h('div', { class: 'form-error', role: 'alert' });
  const submit = h('button', { type: 'submit' }, t('common.create'));
  const form = h('form', {
    novalidate: true,
    on: {
      submit: async (e) => {
        e.preventDefault();
        Object.values(fields).forEach((f) => f.setError(''));
        error.textContent = '';
        if (!name.value.trim()) {
          fields.name.setError(t('design.err.required'));
          name.focus();
          return;
        }
        if (!source.value.trim()) {
          fields.source.setError(t('design.err.required'));
          source.focus();
          return;
        }
        submit.disabled = true;
        try {
          const tpl = await send('POST', '/api/v1/templates', {
            name: name.value.trim(),
            category: category.value.trim() || undefined,
            tags: tags.value.split(',').map((s) => s.trim()).filter(Boolean),
            description: description.value.trim() || undefined,
            source: source.value,
          });
          close();
          toast(t('design.created', { name: tpl.name }), 'ok');
          ctx.navigate(`#/design/template/${encodeURIComponent(tpl.id)}`);
        } catch (err) {
          const list = issues(err);
          const top = (err.field || list[0]?.path || '').split('.')[0];
          if (fields[top] && top !== 'source') fields[top].setError(err.message);
          else if (top === 'source' || list.some((i) => /^(inputs|node_templates|outputs|description)\b/.test(i.path))) {
            fields.source.setError(list.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('\n'));
          } else error.textContent = err.message;
        } finally {
          submit.disabled = false;
        }
      },
    },
  },
  h('div', { class: 'grid cols-2 design-form-grid' }, fields.name, fields.category, fields.tags, fields.description),
  fields.source,
  error,
  h('div', { class: 'form-actions' }, submit, h('button', { type: 'button', class: 'secondary', on: { click: () => close() } }, t('common.cancel'))));
  const { close } = modal(t('design.new.title'), [h('p', { class: 'muted' }, t('design.new.intro')), form], { wide: true });
  name.focus();
}

function card(tpl, ctx, changed) {
  const href = `#/design/template/${encodeURIComponent(tpl.id)}`;
  return h('article', { class: `design-card state-${tpl.state}`, dataset: { template: tpl.id } },
    h('header', {},
      h('h3', {}, h('a', { href }, tpl.name)),
      badge(tpl.state, stateLabel(tpl.state))),
    h('div', { class: 'muted design-meta' },
      h('span', {}, tpl.category || t('design.nocategory')),
      h('span', {}, t('design.version', { v: tpl.version })),
      h('span', {}, t('design.usage', { n: fmtNumber(tpl.usage_count, 0) }))),
    h('p', { class: 'design-desc' }, tpl.description || t('design.nodescription')),
    tpl.tags?.length ? h('ul', { class: 'design-tags', 'aria-label': t('design.tags') }, tpl.tags.map((g) => h('li', {}, g))) : null,
    h('footer', {},
      tpl.state !== 'offline'
        ? h('a', { class: 'button', href: `${href}?plan=1`, 'aria-label': t('design.makeplans.label', { name: tpl.name }) }, t('design.makeplans'))
        : h('span', { class: 'muted' }, t('design.offline.hint')),
      h('a', { class: 'button secondary', href, 'aria-label': t('design.open.label', { name: tpl.name }) }, t('design.open')),
      stateButtons(ctx.user, tpl, changed)));
}

function recStrip(recs) {
  const top = recs.slice(0, 4);
  if (!top.length) return null;
  return h('section', { class: 'panel design-recs', 'aria-labelledby': 'design-recs-h' },
    h('h2', { id: 'design-recs-h' }, t('design.recs')),
    h('p', { class: 'muted design-recs-intro' }, t('design.recs.intro')),
    h('ol', { class: 'design-rec-list' }, top.map((r, i) => h('li', { class: 'design-rec', dataset: { recommended: r.template.id } },
      h('div', { class: 'design-rec-head' },
        h('span', { class: 'design-rank', 'aria-hidden': 'true' }, String(i + 1)),
        h('a', { href: `#/design/template/${encodeURIComponent(r.template.id)}` }, r.template.name),
        h('span', { class: 'muted design-score', title: t('design.score.title') }, t('design.score', { n: fmtNumber(r.score, 2) }))),
      h('div', { class: 'muted design-meta' }, r.template.category),
      h('ul', { class: 'design-reasons' }, r.reasons.map((x) => h('li', {}, say(x))))))));
}

export async function renderMarket(main, ctx) {
  const head = h('div', { class: 'page-head' },
    h('h1', {}, t('design.title')),
    h('button', { type: 'button', on: { click: () => createDialog(ctx) } }, t('design.new')));
  clear(main, head, loading());
  let templates;
  let recs;
  try {
    [templates, recs] = await Promise.all([get('/api/v1/templates'), get('/api/v1/templates/recommended').catch(() => [])]);
  } catch (e) {
    clear(main, head, errorState(e, () => renderMarket(main, ctx)));
    return;
  }
  const operator = canPublish(ctx.user);
  const q = ctx.query;
  const search = h('input', { type: 'search', name: 'q', value: q.get('q') || '', placeholder: t('design.search.placeholder'), autocomplete: 'off' });
  const categories = [...new Set(templates.map((x) => x.category).filter(Boolean))].sort();
  const cat = select([['', t('design.allcategories')], ...categories.map((c) => [c, c])], q.get('category') || '', { name: 'category' });
  const states = [...new Set(templates.map((x) => x.state))];
  const st = select([['', t('design.allstates')], ...['published', 'draft', 'offline'].filter((s) => states.includes(s)).map((s) => [s, stateLabel(s)])], q.get('state') || '', { name: 'state' });
  const count = h('span', { class: 'muted', role: 'status' });
  const grid = h('div', { class: 'design-cards' });

  const paint = () => {
    const words = search.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const shown = templates
      .filter((x) => !cat.value || x.category === cat.value)
      .filter((x) => !st.value || x.state === st.value)
      .filter((x) => {
        const hay = [x.name, x.description, x.category, ...(x.tags || [])].join(' ').toLowerCase();
        return words.every((w) => hay.includes(w));
      })
      .sort((a, b) => (STATE_ORDER[a.state] ?? 9) - (STATE_ORDER[b.state] ?? 9) || b.usage_count - a.usage_count || a.name.localeCompare(b.name));
    count.textContent = t('design.count', { n: shown.length, total: templates.length });
    if (!templates.length) clear(grid, empty(t('design.empty')));
    else if (!shown.length) clear(grid, empty(t('design.nomatch')));
    else {
      clear(grid, shown.map((x) => card(x, ctx, (res) => {
        templates = templates.map((o) => (o.id === res.id ? res : o));
        paint();
      })));
    }
  };
  const remember = () => {
    const p = new URLSearchParams();
    if (search.value.trim()) p.set('q', search.value.trim());
    if (cat.value) p.set('category', cat.value);
    if (st.value) p.set('state', st.value);
    const hash = `#/design${p.toString() ? `?${p}` : ''}`;
    history.replaceState(null, '', hash);
  };
  const onChange = () => {
    paint();
    remember();
  };
  search.addEventListener('input', debounce(onChange, 200));
  cat.addEventListener('change', onChange);
  st.addEventListener('change', onChange);

  const filters = h('div', { class: 'design-filters', role: 'search' },
    field(t('common.search'), search),
    field(t('design.category'), cat),
    operator ? field(t('common.state'), st) : null,
    count);
  clear(main, head,
    recStrip(recs),
    h('section', { class: 'panel', 'aria-labelledby': 'design-market-h' },
      h('h2', { id: 'design-market-h' }, operator ? t('design.market.all') : t('design.market')),
      filters,
      grid));
  paint();
}
