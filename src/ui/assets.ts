import { APP_JS } from './app-script.js';
import { APP_CSS, INDEX_HTML } from './page.js';

/** Everything the page loads, served from memory: nothing from elsewhere. */
export const ASSETS: Record<string, { type: string; body: string }> = {
  '/index.html': { type: 'text/html; charset=utf-8', body: INDEX_HTML },
  '/app.css': { type: 'text/css; charset=utf-8', body: APP_CSS },
  '/app.js': { type: 'text/javascript; charset=utf-8', body: APP_JS },
};
