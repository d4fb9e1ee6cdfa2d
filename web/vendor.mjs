// Copies the console's third-party browser files, at the versions pinned in package.json and
// package-lock.json, from node_modules into crates/cpn-web/assets/vendor, with their licences.
// The copies are committed so that building and running cpn needs no Node.js; CI runs
// `node vendor.mjs --check` after `npm ci` to prove they are exactly what npm serves.
import { readFileSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'crates', 'cpn-web', 'assets', 'vendor');

// [package, file in the package, name in vendor/]
const FILES = [
  ['echarts', 'dist/echarts.min.js', 'echarts.min.js'],
  ['echarts', 'LICENSE', 'LICENSES/echarts.LICENSE'],
  ['echarts', 'NOTICE', 'LICENSES/echarts.NOTICE'],
  ['zrender', 'LICENSE', 'LICENSES/zrender.LICENSE'],
  ['tslib', 'LICENSE.txt', 'LICENSES/tslib.LICENSE'],
  ['topojson-client', 'dist/topojson-client.min.js', 'topojson-client.min.js'],
  ['topojson-client', 'LICENSE', 'LICENSES/topojson-client.LICENSE'],
  // YAML for template sources and pasted workflow definitions (an ES module).
  ['js-yaml', 'dist/js-yaml.mjs', 'js-yaml.mjs'],
  ['js-yaml', 'LICENSE', 'LICENSES/js-yaml.LICENSE'],
  // Land masses only, no borders: a neutral backdrop for the sites' coordinates.
  ['world-atlas', 'land-50m.json', 'land-50m.json'],
  ['world-atlas', 'LICENSE', 'LICENSES/world-atlas.LICENSE'],
];

const check = process.argv.includes('--check');
let stale = 0;
const manifest = [];
for (const [pkg, file, name] of FILES) {
  const src = join(here, 'node_modules', pkg, file);
  if (!existsSync(src)) {
    console.error(`missing ${src}: run \`npm ci\` in web/ first`);
    process.exit(2);
  }
  const version = JSON.parse(readFileSync(join(here, 'node_modules', pkg, 'package.json'))).version;
  manifest.push(`${name}\t${pkg}@${version}\t${file}`);
  const bytes = readFileSync(src);
  const dst = join(out, name);
  if (check) {
    if (!existsSync(dst) || !readFileSync(dst).equals(bytes)) {
      console.error(`vendor/${name} differs from ${pkg}@${version}/${file}`);
      stale++;
    }
  } else {
    mkdirSync(dirname(dst), { recursive: true });
    writeFileSync(dst, bytes);
  }
}
const manifestText = '# file\tpackage@version\tpath in the package (written by web/vendor.mjs)\n' + manifest.join('\n') + '\n';
const manifestPath = join(out, 'MANIFEST.tsv');
if (check) {
  if (!existsSync(manifestPath) || readFileSync(manifestPath, 'utf8') !== manifestText) {
    console.error('vendor/MANIFEST.tsv is out of date');
    stale++;
  }
  if (stale) {
    console.error(`${stale} vendored file(s) differ: run \`npm run vendor\` in web/ and commit`);
    process.exit(1);
  }
  console.log(`vendored files match npm (${FILES.length} files)`);
} else {
  writeFileSync(manifestPath, manifestText);
  console.log(`wrote ${FILES.length} files to ${out}`);
}
