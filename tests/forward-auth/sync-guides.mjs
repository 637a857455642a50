// Rewrites the `file=` blocks of the forward-auth guides from docs/guides/forward-auth/.
import { syncGuides } from './lib/guides.mjs';

syncGuides();
