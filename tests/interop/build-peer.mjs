// Builds the Rust side of the suite (crates/session/examples/interop_peer.rs) once,
// before `node --test` starts. Honours CARGO_TARGET_DIR (default
// /var/cache/sallyport/target, as scripts/test). Set SALLYPORT_INTEROP_PEER to an
// already built binary to skip the build.
import { execFileSync } from "node:child_process";
import { peerPath, repoRoot, targetDir } from "./test/peer.mjs";

if (process.env.SALLYPORT_INTEROP_PEER) {
  console.log(`using prebuilt peer ${process.env.SALLYPORT_INTEROP_PEER}`);
} else {
  execFileSync(
    "cargo",
    ["build", "--quiet", "-p", "sallyport-session", "--example", "interop_peer"],
    { cwd: repoRoot, env: { ...process.env, CARGO_TARGET_DIR: targetDir }, stdio: "inherit" },
  );
  console.log(`built ${peerPath}`);
}
