// Forward-auth with the real traefik and the configuration files docs/guides/forward-auth/ shows.
import { forwardAuthSuite } from './lib/scenario.mjs';

forwardAuthSuite('traefik');
