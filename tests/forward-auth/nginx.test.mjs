// Forward-auth with the real nginx and the configuration files docs/guides/forward-auth/ shows.
import { forwardAuthSuite } from './lib/scenario.mjs';

forwardAuthSuite('nginx');
