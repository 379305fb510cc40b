// Compile a JavaScript mapping module into a WebAssembly component with
// componentize-js's own API (scripts/build-js-plugin.sh calls this).
//
//   node build.mjs <module.js> <wit folder> <out.wasm>
//
// The component targets the `mapping-plugin` world. Its `http` and `fetch-event`
// features are left out: plugins have no network, and the host refuses `wasi:http`.
import { componentize } from "@bytecodealliance/componentize-js";
import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";

const [source, wit, out] = process.argv.slice(2);
if (!source || !wit || !out) {
  console.error("usage: node build.mjs <module.js> <wit folder> <out.wasm>");
  process.exit(2);
}
const { component } = await componentize({
  sourcePath: resolve(source),
  witPath: resolve(wit),
  worldName: "mapping-plugin",
  disableFeatures: ["http", "fetch-event"],
});
await writeFile(out, component);
