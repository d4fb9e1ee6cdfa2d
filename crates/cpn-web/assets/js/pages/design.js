// Templates & plans (DO-RES-03, DO-PLAN, SC-PROV): the template marketplace, a template's
// node graph and versions, plans compared side by side, and the instruction set of a
// confirmed plan. Each view lives in its own module; this one routes between them:
//   #/design                          marketplace (?q=&category=&state=)
//   #/design/template/<id>            a template (?plan=1 opens "Make plans", ?tab=)
//   #/design/plan/<id>?alts=<id>,…    the alternatives of one planning request
//   #/design/instructions/<plan id>   the instruction set; Execute → #/flows/<flow id>
import { t } from '../i18n.js';
import { h, clear, errorState } from '../ui.js';
import './design-common.js';
import { renderMarket } from './design-market.js';
import { renderTemplate } from './design-template.js';
import { renderPlans } from './design-plans.js';
import { renderInstructions } from './design-instructions.js';

export default {
  render(main, ctx) {
    const [view, id] = ctx.params;
    main.classList.add('design-page');
    if (!view) return renderMarket(main, ctx);
    if (!id) {
      clear(main, errorState(new Error(t('design.err.noid'))));
      return undefined;
    }
    if (view === 'template') return renderTemplate(main, ctx, id);
    if (view === 'plan' || view === 'plans') return renderPlans(main, ctx, id);
    if (view === 'instructions') return renderInstructions(main, ctx, id);
    clear(main, h('h1', {}, t('design.title')), errorState(new Error(t('common.notfound', { path: `design/${view}` }))));
    return undefined;
  },
};
