// Where the Node test suites put the logs of the sallyport processes they start, so that
// scripts/test can scan the whole run for secrets (scripts/lib/scan-logs).
//
// scripts/test exports SALLYPORT_TEST_LOG_DIR (one directory for the run) and
// SALLYPORT_TEST_RUST_LOG (debug, trace for sallyport crates). A suite that starts a
// sallyport process writes its stderr to `logPath(...)` (or `logStream(...)`) and passes
// `rustLog(...)` as its RUST_LOG; without the variables (a suite run on its own) nothing
// changes. A suite may list the passwords and secrets it uses with `registerSecrets`, so
// the scan looks for them literally too.
import fs from 'node:fs';
import path from 'node:path';

let seq = 0;

function dir() {
  const d = process.env.SALLYPORT_TEST_LOG_DIR;
  if (!d) return null;
  fs.mkdirSync(d, { recursive: true });
  return d;
}

/** RUST_LOG for a sallyport child: the collected run's level, else RUST_LOG, else `fallback`. */
export function rustLog(fallback) {
  return process.env.SALLYPORT_TEST_RUST_LOG || process.env.RUST_LOG || fallback;
}

/** The log file of a sallyport child: in SALLYPORT_TEST_LOG_DIR when set, else `fallback`. */
export function logPath(suite, name, fallback) {
  const d = dir();
  if (!d) return fallback;
  seq += 1;
  return path.join(d, `${suite}-${name}-${process.pid}-${seq}.log`);
}

/** A stream to copy a piped child's stderr into when logs are collected, else null. */
export function logStream(suite, name) {
  const p = logPath(suite, name, null);
  return p ? fs.createWriteStream(p, { flags: 'a' }) : null;
}

/** Tells the scan the literal passwords and secrets this suite uses. */
export function registerSecrets(suite, secrets) {
  const d = dir();
  if (!d) return;
  fs.writeFileSync(path.join(d, `${suite}-${process.pid}.secrets`), `${secrets.join('\n')}\n`);
}
