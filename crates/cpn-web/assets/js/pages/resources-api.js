// Writes to the registry, with an optional If-Match generation; errors keep the API's
// `field` (e.g. spec.location.lat) so forms can point at it.
import { api } from '../api.js';

export function send(method, path, body, { ifMatch } = {}) {
  const headers = ifMatch !== undefined && ifMatch !== null ? { 'If-Match': `"${ifMatch}"` } : undefined;
  return api(method, path, body, { headers });
}
