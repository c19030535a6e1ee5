// Generates TypeScript types from every schema in ../../proto, as they
// are: no schema is edited and no format registered. One module per
// schema file under src/generated/ (shared definitions repeat per file,
// so import each type from the file of the handler it belongs to).
import { compileFromFile } from "json-schema-to-typescript";
import fs from "node:fs";
import path from "node:path";

const proto = path.resolve(import.meta.dirname, "../../proto");
const out = path.resolve(import.meta.dirname, "src/generated");
fs.rmSync(out, { recursive: true, force: true });
fs.mkdirSync(out, { recursive: true });
// error-codes.json is a table of data, not a schema.
const schemas = fs.readdirSync(proto).filter((f) => f.endsWith(".json") && f !== "error-codes.json");
for (const file of schemas.sort()) {
  const ts = await compileFromFile(path.join(proto, file), {
    cwd: proto,
    additionalProperties: false,
    bannerComment: `// Generated from proto/${file} by generate.mjs. Do not edit.`,
    strictIndexSignatures: true,
  });
  fs.writeFileSync(path.join(out, file.replace(/\.json$/, ".ts")), ts);
}
console.log(`generated ${schemas.length} modules from proto/`);
